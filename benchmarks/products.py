"""Published products: what a region costs to read, cold and cached, against reading it all.

Fixtures in each product's real layout are built from the sample scene and served by the
loopback range-request file server (``eoembed.testing.servers.serve_folder``); the figures
are measured side by side in one run:

- **AlphaEarth COG mirror**: ``--regions`` squares of ``--side-m`` over the bottom-up int8
  tiles, exported once cold (index download + HTTP range reads of the blocks under each
  region) and once again from a fresh provider on the same cache; bytes transferred per
  region against the bytes of the tiles they lie in.
- **Major TOM**: one region read through the row-group index (footers, then the one row
  group near it) against the bytes of every shard (what reading the set without the
  index would take).

Run: ``python benchmarks/products.py [--regions 8] [--side-m 320]``. Prints the figures and
a JSON summary as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def _served_bytes(servers: object, prefix: str = "") -> int:
    stats = servers.control("stats")  # type: ignore[attr-defined]
    return sum(v["bytes"] for k, v in stats.items() if k.startswith(prefix))


def alphaearth(root: Path, sample: Path, regions: int, side_m: float) -> dict[str, float]:
    from eoembed import BBox, TemporalSpec, export_batch
    from eoembed.providers.registry import get_provider
    from eoembed.testing.products import make_alphaearth_mirror
    from eoembed.testing.servers import serve_folder

    fixture = make_alphaearth_mirror(root / "aef", sample, years=(2024,))
    t = fixture.transform
    per_row = 4  # regions spread over the tiles, 1.2 km apart
    boxes = []
    for k in range(regions):
        x0 = t.c + 100 + (k % per_row) * 1200
        y1 = t.f - 700 - (k // per_row) * 1200
        boxes.append(BBox(x0, y1 - side_m, x0 + side_m, y1, crs=fixture.crs))
    tile_bytes = sum(f.stat().st_size for f in fixture.files)
    year = TemporalSpec.year(2024)
    with serve_folder(root / "aef") as servers:
        url = f"alphaearth:{servers.files}/v1/annual"
        servers.control("reset")
        t0 = time.perf_counter()
        cold = export_batch(boxes, "alphaearth", temporal=year, out=root / "cold",
                            provider=get_provider(url), progress=False)
        cold_s = time.perf_counter() - t0
        cold_bytes = _served_bytes(servers)
        servers.control("reset")
        t0 = time.perf_counter()
        warm = export_batch(boxes, "alphaearth", temporal=year, out=root / "warm",
                            provider=get_provider(url), progress=False)
        warm_s = time.perf_counter() - t0
        warm_bytes = _served_bytes(servers)
    assert cold.ok == warm.ok == regions, (cold.failures, warm.failures)
    area = regions * side_m**2 / (len(fixture.files) * (256 * 10.0) ** 2)
    return {
        "regions": regions, "side_m": side_m, "area_fraction_of_tiles": area,
        "cold_s": cold_s, "cached_s": warm_s, "speedup": cold_s / warm_s,
        "cold_bytes_per_region": cold_bytes / regions, "cached_bytes": warm_bytes,
        "tile_bytes": tile_bytes, "cold_fraction_of_tiles": cold_bytes / tile_bytes,
    }


def majortom(root: Path, sample: Path) -> dict[str, float]:
    from eoembed import BBox, TemporalSpec, get_embedding
    from eoembed.providers.majortom import MajorTomProvider
    from eoembed.testing.products import make_majortom_hub
    from eoembed.testing.servers import serve_folder

    hub = make_majortom_hub(root / "hub", sample, far_cells=200)
    b = hub["boxes"]
    region = BBox(b[6][0] + 500, b[18][1] + 500, b[18][2] - 500, b[6][3] - 500, crs=hub["crs"])
    shard_bytes = sum(p.stat().st_size for p in hub["shards"])
    with serve_folder(root / "hub") as servers:
        servers.control("reset")
        t0 = time.perf_counter()
        get_embedding("majortom-s2l1c-ssl4eo", spatial=region, provider=MajorTomProvider(
            servers.files, cache_dir=root / "mt-cache"),
            temporal=TemporalSpec.range("2015-06-23", "2016-06-11"))
        seconds = time.perf_counter() - t0
        read = _served_bytes(servers)
    return {"seconds": seconds, "bytes_read": read, "shard_bytes": shard_bytes,
            "fraction_read": read / shard_bytes}


def main() -> None:
    from eoembed.providers.sample import sample_folder

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--regions", type=int, default=8)
    parser.add_argument("--side-m", type=float, default=320.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["EOEMBED_CACHE"] = str(root / "cache")  # never the user's cache
        aef = alphaearth(root, sample_folder(), args.regions, args.side_m)
        print(f"alphaearth: {aef['regions']} regions of {aef['side_m']:g} m: cold "
              f"{aef['cold_s']:.2f} s ({aef['cold_bytes_per_region'] / 1e3:.0f} kB/region, "
              f"{aef['cold_fraction_of_tiles']:.1%} of the tiles' bytes for "
              f"{aef['area_fraction_of_tiles']:.1%} of their area), cached "
              f"{aef['cached_s']:.2f} s with {aef['cached_bytes']} bytes read: "
              f"{aef['speedup']:.1f}x")
        mt = majortom(root, sample_folder())
        print(f"majortom: one region in {mt['seconds']:.2f} s reading "
              f"{mt['bytes_read'] / 1e6:.2f} MB of {mt['shard_bytes'] / 1e6:.1f} MB of shards "
              f"({mt['fraction_read']:.1%})")
        print(json.dumps({"alphaearth": aef, "majortom": mt}))


if __name__ == "__main__":
    main()
