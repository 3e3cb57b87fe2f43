"""The Dask engine against the local engine on the same export, and what a million costs.

One run, same job, side by side: ``export_batch`` with the local engine (threads in this
process) and with ``engine="dask"`` on a ``LocalCluster`` of ``--workers`` single-threaded
worker processes (each builds its model once), both writing GeoParquet from the sample
scene. Prints regions/s of each, their ratio, the per-region costs the manifest records
(fetch, embed, write) and bytes on disk per region, and from those a sizing of a
``--million``-region job: CPU-hours, output size, and wall time on N workers assuming the
per-region cost measured here (a Dask worker scales by workers until the storage or the
provider saturates; the measured ratio says what this machine's cores give).

Run: ``python benchmarks/dask_scaling.py [--regions 96] [--workers 2] [--model mosaiks]``.
The last line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def _peak_rss_mb() -> float:
    """This process's peak resident memory (run on each worker)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    import distributed

    from eoembed import PointBuffer, TemporalSpec, export_batch
    from eoembed.pipeline import read_manifest

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--regions", type=int, default=96)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", default="mosaiks")
    parser.add_argument("--million", type=int, default=1_000_000)
    args = parser.parse_args()
    window = TemporalSpec.range("2015-06-23", "2016-06-11")
    side = int(args.regions**0.5) + 1
    # Spread over the sample scene (0.2 x 0.15 degrees): every region has pixels.
    points = [PointBuffer(-75.715 + 0.19 * (i % side) / side,
                          37.60 + 0.145 * (i // side) / side, 640)
              for i in range(args.regions)]
    model_args = {args.model: {"num_features": 256}} if args.model == "mosaiks" else {}

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # Warm the page cache and the model once, so neither engine pays first-touch costs.
        export_batch(points[:4], args.model, temporal=window, out=root / "warm",
                     model_args=model_args, progress=False)
        t0 = time.perf_counter()
        local = export_batch(points, args.model, temporal=window, out=root / "local",
                             model_args=model_args, progress=False)
        local_s = time.perf_counter() - t0
        with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                      processes=True, dashboard_address=":0") as cluster, \
                distributed.Client(cluster) as client:
            export_batch(points[:2 * args.workers], args.model, temporal=window,
                         out=root / "warm-dask", model_args=model_args, engine="dask",
                         client=client, partition_size=1, progress=False)  # models built
            t0 = time.perf_counter()
            dask = export_batch(points, args.model, temporal=window, out=root / "dask",
                                model_args=model_args, engine="dask", client=client,
                                partition_size=max(1, args.regions // (4 * args.workers)),
                                progress=False)
            dask_s = time.perf_counter() - t0
            peaks = client.run(_peak_rss_mb)
        assert local.ok == dask.ok == args.regions, (local.failures, dask.failures)
        entries = [e for e in read_manifest(root / "local") if e.status == "ok"]
        per = {stage: statistics.median(e.timings.get(f"{stage}_s", 0.0) for e in entries)
               for stage in ("fetch", "embed", "write")}
        size = sum(p.stat().st_size for p in (root / "local").rglob("*.parquet"))
    local_rate, dask_rate = args.regions / local_s, args.regions / dask_s
    core_s = sum(per.values())  # one core's seconds per region: fetch + forward + write
    million = {
        "core_hours": args.million * core_s / 3600,
        "output_gb": args.million * size / args.regions / 1e9,
        "hours_on_32_single_core_workers": args.million * core_s / 32 / 3600,
        "worker_peak_rss_mb": max(peaks.values()),
    }
    print(f"{args.model}, {args.regions} regions of 1.28 km: local {local_rate:.1f} regions/s, "
          f"dask on {args.workers} workers {dask_rate:.1f} regions/s "
          f"(x{dask_rate / local_rate:.2f})")
    print(f"per region (median): fetch {per['fetch'] * 1e3:.0f} ms, embed "
          f"{per['embed'] * 1e3:.0f} ms, write {per['write'] * 1e3:.1f} ms; "
          f"{size / args.regions / 1e3:.1f} kB on disk")
    print(f"{args.million:,} regions: {million['core_hours']:.1f} core-hours, "
          f"{million['output_gb']:.1f} GB of GeoParquet, about "
          f"{million['hours_on_32_single_core_workers']:.2f} h on 32 one-core workers "
          f"(peak worker memory here {million['worker_peak_rss_mb']:.0f} MB, whatever the "
          "job size: a worker holds one partition)")
    print(json.dumps({"local_regions_per_s": local_rate, "dask_regions_per_s": dask_rate,
                      "ratio": dask_rate / local_rate, "workers": args.workers,
                      "per_region_s": per, "bytes_per_region": size / args.regions,
                      "million": million}))


if __name__ == "__main__":
    main()
