"""Where the time goes in get_embeddings_batch on the sample scene.

Measures, in one run and on the same regions: provider fetch alone, model forward alone on
pre-loaded arrays, and the end-to-end batch call; prints regions/s for each and the ratio of
end-to-end to forward-only throughput (1.0 = no overhead outside the model).

    .venv/bin/python benchmarks/batch_embedding.py [--model mosaiks] [--regions 32]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from eoembed import OutputSpec, PointBuffer, TemporalSpec, get_embeddings_batch
from eoembed.api import default_sensor
from eoembed.embedders import describe_model, get_embedder
from eoembed.providers import get_provider

WINDOW = TemporalSpec.range("2015-06-23", "2016-06-11")


def regions(n: int, buffer_m: float) -> list[PointBuffer]:
    """``n`` distinct points on a lattice inside the sample scene."""
    side = int(np.ceil(np.sqrt(n)))
    lons = np.linspace(-75.70, -75.56, side)
    lats = np.linspace(37.62, 37.74, side)
    return [PointBuffer(float(lo), float(la), buffer_m) for lo in lons for la in lats][:n]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="mosaiks")
    parser.add_argument("--regions", type=int, default=32)
    parser.add_argument("--buffer-m", type=float, default=1280)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    model_args = {"weights": "random"} if describe_model(args.model).weights else {}
    spatials = regions(args.regions, args.buffer_m)
    sensor = default_sensor(describe_model(args.model))
    provider = get_provider("sample")
    embedder = get_embedder(args.model, device="cpu", batch_size=args.batch_size, **model_args)

    t0 = time.perf_counter()
    patches = np.stack([provider.fetch(s, WINDOW, sensor).values for s in spatials])
    fetch_s = time.perf_counter() - t0

    embedder.embed(patches[: args.batch_size], OutputSpec.pooled())  # warm-up
    t0 = time.perf_counter()
    embedder.embed(patches, OutputSpec.pooled())
    forward_s = time.perf_counter() - t0

    # Warm the API's embedder cache so both paths share the same built model.
    kwargs = {"temporal": WINDOW, "provider": provider, "device": "cpu",
              "batch_size": args.batch_size}
    get_embeddings_batch(args.model, spatials=spatials[:1], **kwargs, **model_args)
    t0 = time.perf_counter()
    get_embeddings_batch(args.model, spatials=spatials, **kwargs, **model_args)
    total_s = time.perf_counter() - t0

    n = len(spatials)
    print(f"model {args.model}  regions {n}  input {patches.shape[1:]}")
    print(f"fetch only        {n / fetch_s:8.1f} regions/s")
    print(f"forward only      {n / forward_s:8.1f} regions/s")
    print(f"end to end        {n / total_s:8.1f} regions/s")
    print(f"efficiency {forward_s / total_s:.2f}")


if __name__ == "__main__":
    main()
