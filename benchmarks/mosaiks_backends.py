"""MOSAIKS on the sample scene: the torch convolution against the numpy one, side by side.

MOSAIKS runs in numpy (``random_features``) on the CPU, with or without torch installed, and
in torch on a GPU; this measures the choice. For regions of several sizes, the same pixels go through both backends of
one embedder (grid output, the default 512 features): the best of ``--repeat`` wall times of
each, and the largest absolute and relative difference of their features (relative to the
largest feature magnitude, since single features can be ~0). Needs torch and the sample.

    .venv/bin/python benchmarks/mosaiks_backends.py [--sizes 256,1024,2048] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

from eoembed import OutputSpec, PointBuffer, SensorSpec, TemporalSpec
from eoembed.embedders import get_embedder
from eoembed.providers.registry import get_provider

WINDOW = TemporalSpec.range("2015-06-23", "2016-06-11")
BANDS = ["B02", "B03", "B04", "B08"]


def sample_pixels(size_px: int) -> np.ndarray:
    """A ``(1, 4, size, size)`` chip of the sample scene (10 m pixels) around its centre."""
    region = PointBuffer(lon=-75.70, lat=37.70, buffer_m=size_px * 5)
    sensor = SensorSpec("sentinel-2-l1c", bands=BANDS)
    return np.asarray(get_provider("sample").fetch(region, WINDOW, sensor).values)[None]


def best_time(run: Callable[[], np.ndarray], repeat: int) -> tuple[float, np.ndarray]:
    """The fastest of ``repeat`` calls of ``run`` and its (last) result."""
    best, out = float("inf"), np.empty(0)
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = run()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,1024,2048", help="chip sides in pixels")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import torch

    model = get_embedder("mosaiks", device="cpu")
    print(f"CPU threads: torch {torch.get_num_threads()}, os {os.cpu_count()}; "
          f"torch {torch.__version__}, numpy {np.__version__}")
    print(f"{'chip px':>8} {'torch s':>9} {'numpy s':>9} {'numpy/torch':>12} "
          f"{'max abs diff':>13} {'max rel diff':>13}")
    for size in (int(s) for s in args.sizes.split(",")):
        pixels = sample_pixels(size)
        times, grids = {}, {}
        for backend in ("torch", "numpy"):
            model.backend = backend  # the private switch the equality tests use
            model.embed(pixels, OutputSpec.grid())  # warm up (thread pools, filters)
            times[backend], grids[backend] = best_time(
                lambda pixels=pixels: model.embed(pixels, OutputSpec.grid()), args.repeat
            )
        diff = np.abs(grids["torch"] - grids["numpy"])
        scale = float(np.abs(grids["torch"]).max())
        print(f"{size:>8} {times['torch']:>9.3f} {times['numpy']:>9.3f} "
              f"{times['numpy'] / times['torch']:>12.2f} {diff.max():>13.2e} "
              f"{diff.max() / scale:>13.2e}")


if __name__ == "__main__":
    main()
