"""Forward throughput of every model at its native input size, against the compute limit.

For each model: FLOPs of one forward pass (``torch.utils.flop_counter``), images/s measured
on real sample pixels, and the achieved fraction of the compute limit (model FLOP/s over the
matrix-product rate this machine measures in the same run). Variants are measured side by
side: fp32 (default), ``channels_last`` where the network is convolutional, ``bf16`` autocast
(with its cosine similarity to fp32), and optionally ``torch.compile``.

    .venv/bin/python benchmarks/model_throughput.py [--models a,b] [--batch 4] [--variants]
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from eoembed import OutputSpec, PointBuffer, SensorSpec, TemporalSpec
from eoembed.embedders import describe_model, get_embedder, list_models
from eoembed.embedders.context import SampleContext
from eoembed.embedders.torch_embedder import TorchEmbedder
from eoembed.providers import get_provider

WINDOW = TemporalSpec.range("2015-06-23", "2016-06-11")


def matmul_rate(dtype: torch.dtype, n: int = 2048, seconds: float = 1.5) -> float:
    """Sustained FLOP/s of an ``n x n`` matrix product (the compute limit)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    runs, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        runs += 1
    return 2 * n**3 * runs / (time.perf_counter() - t0)


def timed(fn: Callable[[], Any], seconds: float) -> float:
    """Seconds per call: one warm-up, then as many calls as fit in ``seconds`` (at least 2)."""
    fn()
    runs, t0 = 0, time.perf_counter()
    while runs < 2 or time.perf_counter() - t0 < seconds:
        fn()
        runs += 1
    return (time.perf_counter() - t0) / runs


def sample_batch(model: str, batch: int) -> np.ndarray:
    """Real sample pixels at the model's native size (224 px for any-size models)."""
    card = describe_model(model)
    size = card.input.image_size or 224
    sensor = SensorSpec("sentinel-2-l1c", bands=card.input.band_names, scale_m=10.0)
    provider = get_provider("sample")
    out = []
    for i in range(batch):
        region = PointBuffer(lon=-75.70 + 0.02 * i, lat=37.70, buffer_m=size * 5)
        out.append(provider.fetch(region, WINDOW, sensor).values[:, :size, :size])
    return np.stack(out).astype(np.float32)


def random_weights(model: str) -> dict[str, Any]:
    """Untrained weights (no downloads here); the network and its FLOPs are the same."""
    return {"weights": "random"} if describe_model(model).weights is not None else {}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest per-sample cosine similarity."""
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def count_flops(embedder: Any, pixels: np.ndarray, ctx: list[SampleContext]) -> int:
    """FLOPs of one forward pass over ``pixels`` (counted under no_grad: the flop counter's
    module hooks do not work on inference-mode tensors)."""
    x = embedder.prepare(torch.from_numpy(embedder.normalise(pixels)))
    forward = embedder.forward_pooled if embedder.native_pooling else embedder.forward_grid
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            forward(x, ctx)
    except AssertionError:  # some models' hooks want autograd on; FLOPs are the same
        with FlopCounterMode(display=False) as counter:
            forward(x, ctx)
    return int(counter.get_total_flops())


def measure(model: str, batch: int, seconds: float, variants: bool, rate: float) -> list[str]:
    """Table rows for ``model``: fp32, then the speed variants when asked."""
    card = describe_model(model)
    pixels = sample_batch(model, batch)
    ctx = [SampleContext(lon=-75.70, lat=37.70, date=None, gsd_m=card.input.gsd_m)] * batch
    pooled = OutputSpec.pooled()
    embedder = get_embedder(model, device="cpu", batch_size=batch, **random_weights(model))
    reference = embedder.embed(pixels, pooled, ctx)
    flops = count_flops(embedder, pixels, ctx) / batch
    rows = []

    def row(name: str, emb: Any, cos: float | None) -> None:
        # The limit is measured right before and after this model's timing (the better of
        # the two): this machine's matmul rate drifts by tens of percent over minutes.
        before = matmul_rate(torch.float32, seconds=1.0)
        per_image = timed(lambda: emb.embed(pixels, pooled, ctx), seconds) / batch
        limit = max(before, matmul_rate(torch.float32, seconds=1.0), rate)
        fraction = flops / per_image / limit
        cos_text = "-" if cos is None else f"{cos:.5f}"
        rows.append(
            f"| `{model}` | {name} | {flops / 1e9:.2f} | {1 / per_image:.2f} | "
            f"{limit / 1e9:.0f} | {fraction:.2f} | {cos_text} |"
        )

    row("fp32", embedder, None)
    if variants and isinstance(embedder, TorchEmbedder):
        state = embedder.model.state_dict()
        for name, args in (("channels_last", {"channels_last": True}), ("bf16", {"precision": "bf16"})):
            if name == "channels_last" and not getattr(embedder, "channels_last_ok", False):
                continue
            other = get_embedder(model, device="cpu", batch_size=batch, **random_weights(model), **args)
            other.model.load_state_dict(state)
            row(name, other, cosine(reference, other.embed(pixels, pooled, ctx)))
            del other
    del embedder
    gc.collect()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="", help="comma-separated ids (default: all)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0, help="timing budget per variant")
    parser.add_argument("--variants", action="store_true", help="also channels_last and bf16")
    parser.add_argument("--compile", default="", help="also time torch.compile on this model")
    args = parser.parse_args()
    models = args.models.split(",") if args.models else list_models()
    rate = matmul_rate(torch.float32)
    bf16_rate = matmul_rate(torch.bfloat16, n=512, seconds=0.5)
    print(f"threads {torch.get_num_threads()}; fp32 matmul {rate / 1e9:.1f} GFLOP/s at start; "
          f"bf16 matmul {bf16_rate / 1e9:.1f} GFLOP/s (the compute limit is the fp32 rate, "
          f"the best of the start and each model's own before/after measurements)")
    print("| model | variant | GFLOP/image | images/s | limit GFLOP/s | fraction of limit | "
          "cosine vs fp32 |")
    print("|---|---|---|---|---|---|---|")
    fractions = []
    for model in models:
        try:
            lines = measure(model, args.batch, args.seconds, args.variants, rate)
        except Exception as exc:  # noqa: BLE001 (one model's failure must not end the table)
            print(f"| `{model}` | error: {type(exc).__name__}: {exc} | | | | |", flush=True)
            continue
        for line in lines:
            print(line, flush=True)
            if "| fp32 |" in line:
                fractions.append(float(line.split("|")[6]))
    if args.compile:
        compile_row(args.compile, args.batch, args.seconds)
    print(f"median fraction of compute limit (fp32) {np.median(fractions):.2f} over "
          f"{len(fractions)} models")


def compile_row(model: str, batch: int, seconds: float) -> None:
    """Eager vs ``torch.compile`` of the same network (cosine and speed-up)."""
    pixels = sample_batch(model, batch)
    embedder = get_embedder(model, device="cpu", batch_size=batch, **random_weights(model))
    pooled = OutputSpec.pooled()
    eager = embedder.embed(pixels, pooled)
    eager_s = timed(lambda: embedder.embed(pixels, pooled), seconds)
    embedder.model = torch.compile(embedder.model)
    t0 = time.perf_counter()
    compiled = embedder.embed(pixels, pooled)
    compile_s = time.perf_counter() - t0
    compiled_s = timed(lambda: embedder.embed(pixels, pooled), seconds)
    print(f"torch.compile {model}: {compile_s:.0f} s to compile, eager {eager_s:.3f} s vs "
          f"compiled {compiled_s:.3f} s per batch (x{eager_s / compiled_s:.2f}), cosine "
          f"{cosine(eager, compiled):.6f}")


if __name__ == "__main__":
    main()
