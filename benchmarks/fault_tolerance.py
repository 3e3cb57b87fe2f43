"""Regions that survive injected HTTP faults in one export run, STAC API and COGs on loopback.

Serves the sample scene's 10 m bands as COGs behind a STAC API (eoembed.testing.servers),
then exports a grid of regions through the pipeline (``export_batch``, model ``mosaiks``)
while the file server fails a seeded fraction of requests, the API's included (HTTP 500,
503, 429, connections closed without an answer or reset). Each read is signed with a fresh
token, so no region is served from what GDAL cached for another; public (unsigned) URLs
are the same for every region, as earth-search's, where one failed open used to fail every
later read of that file in the process. Prints, per fault rate, the regions
written / total in that single run, the faults injected and the provider reads made; and
the same with only the first request for each file dropped (the open GDAL used to cache).

    python benchmarks/fault_tolerance.py               # 5 % and 20 %, 132 regions
    python benchmarks/fault_tolerance.py --rates 0.2 --regions 40 --kinds drop
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from eoembed import PointBuffer, SensorSpec, TemporalSpec
from eoembed.pipeline import export_batch
from eoembed.providers import StacProvider
from eoembed.providers.sample import sample_folder
from eoembed.testing.servers import BANDS, L1C, Servers, serve_sample_stac

WINDOW = TemporalSpec.range("2015-06-23", "2016-06-11")
CENTRE = (-75.70, 37.70)
"""Inside the sample scene (UTM 18N)."""


def regions(count: int, buffer_m: float = 320.0) -> list[PointBuffer]:
    """``count`` distinct points on a grid around the sample's centre, 0.004 degree apart."""
    side = int(count**0.5) + 1
    return [
        PointBuffer(CENTRE[0] + 0.004 * (i % side - side // 2),
                    CENTRE[1] + 0.004 * (i // side - side // 2), buffer_m)
        for i in range(count)
    ]


def run(
    servers: Servers, out: Path, rate: float, kinds: str, count: int, seed: int, signed: bool
) -> dict[str, Any]:
    """One export with ``rate`` of requests failing (0: the first request per path); what
    survived."""
    servers.control("reset")
    if rate > 0:
        servers.control("faults", rate=rate, seed=seed, kinds=kinds, scope="all")
    else:
        servers.control("faults", first=1, kinds=kinds, scope="files")
    # Public COGs (earth-search): every region and every retry reads the same four URLs
    # (made unique to this run only, so that it starts with nothing cached). Signed: each
    # read signs its hrefs anew with a unique token, so GDAL cannot answer from what it
    # cached for another region and every region makes its own requests, as over many files.
    run_id = uuid.uuid4().hex
    provider = StacProvider(
        f"{servers.files}/stac", collections=[L1C], backoff=0.05,
        sign=(lambda href: f"{href}?token={uuid.uuid4().hex}") if signed
        else (lambda href: f"{href}?run={run_id}"),
    )
    t0 = time.perf_counter()
    result = export_batch(
        regions(count), "mosaiks", temporal=WINDOW, out=out,
        sensor=SensorSpec(L1C, BANDS, 10), provider=provider, on_error="continue",
        retry_backoff_s=0.05, progress=False, device="cpu",
    )
    faults = servers.faults()
    servers.control("reset")
    return {
        "urls": "signed" if signed else "public", "rate": rate, "kinds": kinds, "regions_ok": result.ok, "total": result.total,
        "failed": result.failed, "skipped": result.skipped, "faults_injected": faults, "fetches": result.fetches,
        "seconds": round(time.perf_counter() - t0, 1),
        "first_error": result.failures[0]["error"] if result.failures else None,
    }


def main() -> None:
    """Parse the options, start the servers, print one line per fault rate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.05, 0.2])
    parser.add_argument("--regions", type=int, default=132)
    parser.add_argument("--kinds", default="500,503,429,drop,reset")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, serve_sample_stac(
        Path(tmp) / "stac", sample_folder()
    ) as servers:
        for signed in (False, True):
            for rate, kinds in [(r, args.kinds) for r in args.rates] + [(0.0, "drop")]:
                out = Path(tmp) / f"out-{rate}-{signed}"
                row = run(servers, out, rate, kinds, args.regions, args.seed, signed)
                what = f"{rate:4.0%} faults" if rate else "first request per file"
                print(f"{row['urls']:>6} URLs, {what} ({kinds}): "
                      f"{row['regions_ok']}/{row['total']} regions survived in one run, "
                      f"{row['faults_injected']} faults injected, {row['fetches']} provider "
                      f"reads, {row['seconds']} s", flush=True)
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
