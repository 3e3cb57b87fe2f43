"""How close ``export_batch`` comes to the model's own speed, and whether its memory stays flat.

On the sample scene, in one run, with the same built model and batch size:

1. end to end: ``export_batch`` of N distinct regions to GeoParquet (fetch, embed, write,
   manifest), from a fresh provider;
2. forward only: the same model on the same regions' pixels, pre-loaded as one array
   (1 and 2 alternate for ``--rounds`` rounds; each export is paired with the forward runs
   around it, and the efficiency is the median of the paired ratios);
3. peak memory (max RSS) of exports of 1,000 and 10,000 small regions, each in a fresh
   child process;
4. fetches made vs unique requests, for a job with duplicate regions and two models that
   share one sensor.

The last line is ``efficiency <end-to-end throughput / forward-only throughput>``. With
``--precisions fp32,auto`` steps 1-2 run once per precision (neural models), and the mode
``auto`` chose on its first batch is printed beside its rates.

    .venv/bin/python benchmarks/export_efficiency.py [--model mosaiks] [--regions 64]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from eoembed import OutputSpec, PointBuffer, SensorSpec, TemporalSpec, export_batch
from eoembed.api import cached_embedder, default_sensor
from eoembed.embedders import describe_model
from eoembed.embedders.registry import embedder_class
from eoembed.providers._raster import clear_handle_cache
from eoembed.providers.sample import SampleProvider

WINDOW = TemporalSpec.range("2015-06-23", "2016-06-11")
LON = (-75.71, -75.53)
LAT = (37.60, 37.745)


def regions(n: int, buffer_m: float) -> list[PointBuffer]:
    """``n`` distinct points on a lattice inside the sample scene."""
    side = int(np.ceil(np.sqrt(n)))
    lons = np.linspace(*LON, side)
    lats = np.linspace(*LAT, side)
    return [PointBuffer(float(lo), float(la), buffer_m) for lo in lons for la in lats][:n]


def model_args(model: str, precision: str | None = None) -> dict[str, dict[str, str]]:
    """Untrained weights for models that would download some (same FLOPs, no network), and
    ``precision`` for models that take it."""
    args = {"weights": "random"} if describe_model(model).weights else {}
    options = {f.name for f in dataclasses.fields(embedder_class(model).Options)}
    if precision is not None and "precision" in options:
        args["precision"] = precision
    return {model: args} if args else {}


def efficiency(
    model: str, n: int, buffer_m: float, batch_size: int, rounds: int, fetch_workers: int,
    precision: str | None = None,
) -> tuple[float, float, list[float], dict[str, Any]]:
    """End-to-end and forward-only regions/s (medians), and the paired ratio of each round.

    Each round times the forward pass, then the export, then the forward pass again, and
    divides the export's rate by the mean of the two forward rates around it: this machine's
    speed drifts by 20 % over minutes, and pairing cancels the drift. Each export gets a fresh
    provider (built untimed: a catalogue is read once per process in real use too) and starts
    with no open file and an empty GDAL block cache.
    """
    spatials = regions(n, buffer_m)
    args = model_args(model, precision)
    embedder = cached_embedder(model, "cpu", batch_size, dict(args.get(model, {})))
    sensor = default_sensor(describe_model(model))
    pixels = np.stack([SampleProvider().fetch(s, WINDOW, sensor).values for s in spatials])
    embedder.embed(pixels[:batch_size], OutputSpec.pooled())  # warm-up

    def forward() -> float:
        t0 = time.perf_counter()
        embedder.embed(pixels, OutputSpec.pooled())
        return n / (time.perf_counter() - t0)

    e2e, fwd, ratios = [], [], []
    before = forward()
    for _ in range(rounds):
        provider = SampleProvider()
        clear_handle_cache()
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            result = export_batch(
                spatials, model, temporal=WINDOW, out=Path(tmp) / "export", provider=provider,
                device="cpu", batch_size=batch_size, fetch_workers=fetch_workers,
                model_args=args, progress=False,
            )
            rate = n / (time.perf_counter() - t0)
        assert result.ok == n, result.to_dict()
        after = forward()
        e2e.append(rate)
        fwd.append(after)
        ratios.append(rate / ((before + after) / 2))
        before = after
    meta = embedder.metadata()  # the export reused this embedder (same arguments, cached)
    return float(np.median(e2e)), float(np.median(fwd)), ratios, meta.get("precision", {})


def child_memory(n: int) -> None:
    """Export ``n`` small regions with MOSAIKS and print the process's peak RSS (MiB)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = export_batch(
            regions(n, 160), "mosaiks", temporal=WINDOW, out=Path(tmp) / "export",
            device="cpu", batch_size=64, progress=False,
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"regions": n, "ok": result.ok, "peak_mib": peak,
                      "seconds": result.seconds}))


def memory(n: int) -> dict[str, float]:
    """Run :func:`child_memory` in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, __file__, "--child-memory", str(n)], check=True, capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def fetch_counts(n: int) -> dict[str, int]:
    """Fetches made for n regions listed twice, embedded by two models sharing one sensor."""
    from eoembed.testing import CountingProvider

    spatials = regions(n, 320) * 2
    s2 = describe_model("ssl4eo-s12-vit-s16-dino").input
    sensor = SensorSpec("sentinel-2-l1c", s2.band_names, 10)
    provider = CountingProvider(SampleProvider())
    with tempfile.TemporaryDirectory() as tmp:
        result = export_batch(
            spatials, ["mosaiks", "ssl4eo-s12-vit-s16-dino"], temporal=WINDOW, sensor=sensor,
            out=Path(tmp) / "export", provider=provider, device="cpu", progress=False,
            model_args=model_args("ssl4eo-s12-vit-s16-dino"),
        )
    return {"regions_listed": len(spatials), "models": 2, "written": result.ok,
            "fetches": len(provider.calls), "unique_requests": result.unique_requests}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="mosaiks")
    parser.add_argument("--regions", type=int, default=64)
    parser.add_argument("--buffer-m", type=float, default=1280)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--fetch-workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--memory", type=int, nargs=2, default=(1000, 10000),
                        metavar=("SMALL", "LARGE"))
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--precisions", default="fp32",
                        help="comma-separated precisions to run steps 1-2 in (fp32,auto...)")
    parser.add_argument("--child-memory", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_memory:
        child_memory(args.child_memory)
        return

    if not args.skip_memory:
        small, large = (memory(n) for n in args.memory)
        print(f"peak memory  {small['regions']:>6.0f} regions {small['peak_mib']:8.1f} MiB"
              f"  ({small['seconds']:.1f} s)")
        print(f"peak memory  {large['regions']:>6.0f} regions {large['peak_mib']:8.1f} MiB"
              f"  ({large['seconds']:.1f} s)")
        print(f"memory ratio {large['peak_mib'] / small['peak_mib']:.3f}")
    counts = fetch_counts(16)
    print(f"fetches {counts['fetches']} for {counts['unique_requests']} unique requests "
          f"({counts['regions_listed']} regions listed x {counts['models']} models, "
          f"{counts['written']} written)")
    print(f"model {args.model}  regions {args.regions}  batch {args.batch_size}  "
          f"fetch workers {args.fetch_workers}  {args.rounds} rounds")
    for precision in args.precisions.split(","):
        e2e, forward, ratios, record = efficiency(
            args.model, args.regions, args.buffer_m, args.batch_size, args.rounds,
            args.fetch_workers, precision,
        )
        used = ", ".join(f"{kind}: {mode}" for kind, mode in record.get("used", {}).items())
        print(f"precision {precision} (ran {used or '-'})")
        print(f"forward only {forward:8.2f} regions/s (median)")
        print(f"end to end   {e2e:8.2f} regions/s (median)")
        print(f"paired ratios {' '.join(f'{r:.3f}' for r in ratios)}")
        print(f"efficiency {float(np.median(ratios)):.3f}")


if __name__ == "__main__":
    main()
