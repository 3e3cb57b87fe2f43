"""Forward throughput of every model at its native input size, against the compute limit.

For each model: FLOPs of one forward pass (``torch.utils.flop_counter``), images/s measured
on real sample pixels, and the achieved fraction of the compute limit (model FLOP/s over the
matrix-product rate this machine measures in the same run, in the same precision). Each
precision mode (``--precisions``: fp32, fp32-bf16mm, bf16) gets its own row with its speed-up
over fp32 and its smallest per-sample cosine with fp32 (same weights, same pixels); then
``precision="auto"`` runs the same batch and the row says which mode it chose from its own
first-batch trial. ``channels_last`` (``--variants``) and ``torch.compile`` are optional.
``--device cuda`` measures a GPU (TF32 for fp32-bf16mm there).

    .venv/bin/python benchmarks/model_throughput.py [--models a,b] [--batch 4] [--device cpu]
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from eoembed import OutputSpec, PointBuffer, SensorSpec, TemporalSpec
from eoembed.embedders import describe_model, get_embedder, list_models
from eoembed.embedders.context import SampleContext
from eoembed.embedders.precision import MODES, min_cosine, precision_scope
from eoembed.embedders.torch_embedder import TorchEmbedder

WINDOW = TemporalSpec.range("2015-06-23", "2016-06-11")


def matmul_rate(mode: str = "fp32", device: str = "cpu", n: int = 2048,
                seconds: float = 1.5) -> float:
    """Sustained FLOP/s of an ``n x n`` matrix product in ``mode`` (that mode's limit).

    fp32 and fp32-bf16mm multiply fp32 matrices (the latter with torch's "medium" matmul
    precision); bf16 multiplies bf16 matrices, as autocast does.
    """
    dtype = torch.bfloat16 if mode == "bf16" else torch.float32
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    with precision_scope("fp32" if mode == "bf16" else mode, torch.device(device).type):
        a @ b
        sync(device)
        runs, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            a @ b
            runs += 1
        sync(device)
    return 2 * n**3 * runs / (time.perf_counter() - t0)


def sync(device: str) -> None:
    """Wait for queued GPU work (timings on CUDA are asynchronous otherwise)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], seconds: float) -> float:
    """Seconds per call: one warm-up, then as many calls as fit in ``seconds`` (at least 2)."""
    fn()
    runs, t0 = 0, time.perf_counter()
    while runs < 2 or time.perf_counter() - t0 < seconds:
        fn()
        runs += 1
    return (time.perf_counter() - t0) / runs


PIXELS_CACHE: Path | None = None
"""``--pixels-cache``: a folder of fetched batches, so a machine without the sample's raster
stack (a lent GPU) measures on the same real pixels."""


def sample_batch(model: str, batch: int) -> np.ndarray:
    """Real sample pixels at the model's native size (224 px for any-size models)."""
    card = describe_model(model)
    size = card.input.image_size or 224
    name = f"{size}px-{'-'.join(card.input.band_names)}-{batch}.npy"
    cached = PIXELS_CACHE / name if PIXELS_CACHE else None
    if cached is not None and cached.exists():
        return np.load(cached).astype(np.float32)
    from eoembed.providers import get_provider

    sensor = SensorSpec("sentinel-2-l1c", bands=card.input.band_names, scale_m=10.0)
    provider = get_provider("sample")
    out = []
    for i in range(batch):
        # Rows of seven places 2.5 km apart, all inside the 19 km scene.
        row, col = divmod(i, 7)
        region = PointBuffer(lon=-75.70 + 0.025 * col, lat=37.72 - 0.03 * row, buffer_m=size * 5)
        out.append(provider.fetch(region, WINDOW, sensor).values[:, :size, :size])
    pixels = np.stack(out).astype(np.float32)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        # Digital numbers: uint16 holds them exactly at half the size.
        exact = np.array_equal(pixels, pixels.astype(np.uint16))
        np.save(cached, pixels.astype(np.uint16) if exact else pixels)
    return pixels


def random_weights(model: str) -> dict[str, Any]:
    """Untrained weights (no downloads here); the network and its FLOPs are the same."""
    return {"weights": "random"} if describe_model(model).weights is not None else {}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest per-sample cosine similarity (NaN when ``b`` is not finite)."""
    value = min_cosine(a.reshape(len(a), -1), b.reshape(len(b), -1))
    return float("nan") if value is None else value


def count_flops(embedder: Any, pixels: np.ndarray, ctx: list[SampleContext]) -> int:
    """FLOPs of one forward pass over ``pixels`` (counted under no_grad: the flop counter's
    module hooks do not work on inference-mode tensors)."""
    x = embedder.prepare(torch.from_numpy(embedder.normalise(pixels)).to(embedder.device))
    forward = embedder.forward_pooled if embedder.native_pooling else embedder.forward_grid
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            forward(x, ctx)
    except AssertionError:  # some models' hooks want autograd on; FLOPs are the same
        with FlopCounterMode(display=False) as counter:
            forward(x, ctx)
    return int(counter.get_total_flops())


def measure(
    model: str, batch: int, seconds: float, variants: bool, rates: dict[str, float],
    device: str, modes: list[str],
) -> list[str]:
    """Table rows for ``model``: fp32, each reduced precision mode, auto, then variants."""
    card = describe_model(model)
    pixels = sample_batch(model, batch)
    ctx = [SampleContext(lon=-75.70, lat=37.70, date=None, gsd_m=card.input.gsd_m)] * batch
    pooled = OutputSpec.pooled()
    embedder = get_embedder(model, device=device, batch_size=batch, **random_weights(model))
    reference = embedder.embed(pixels, pooled, ctx)
    flops = count_flops(embedder, pixels, ctx) / batch
    rows, fp32_rate = [], [0.0]

    def row(name: str, emb: Any, cos: float | None, limit_mode: str = "fp32") -> None:
        # The limit is measured right before and after this model's timing (the better of
        # the two): this machine's matmul rate drifts by tens of percent over minutes.
        before = matmul_rate(limit_mode, device, seconds=1.0)
        per_image = timed(lambda: emb.embed(pixels, pooled, ctx), seconds) / batch
        limit = max(before, matmul_rate(limit_mode, device, seconds=1.0), rates[limit_mode])
        fraction = flops / per_image / limit
        if name == "fp32":
            fp32_rate[0] = 1 / per_image
        cos_text = "-" if cos is None else f"{cos:.5f}"
        rows.append(
            f"| `{model}` | {name} | {flops / 1e9:.2f} | {1 / per_image:.2f} | "
            f"{1 / per_image / fp32_rate[0]:.2f} | {limit / 1e9:.0f} | {fraction:.2f} | "
            f"{cos_text} |"
        )

    row("fp32", embedder, None)
    if isinstance(embedder, TorchEmbedder):
        state = embedder.model.state_dict()

        def twin(**args: Any) -> Any:
            other = get_embedder(model, device=device, batch_size=batch,
                                 **random_weights(model), **args)
            other.model.load_state_dict(state)
            return other

        for mode in modes:
            if mode != "fp32":
                other = twin(precision=mode)
                row(mode, other, cosine(reference, other.embed(pixels, pooled, ctx)), mode)
                del other
        auto = twin(precision="auto")
        values = auto.embed(pixels, pooled, ctx)  # the first batch: auto's own trial
        kind = auto.card.resolve_output(pooled).kind
        chosen = auto.precision_mode(kind)
        row(f"auto -> {chosen}", auto, cosine(reference, values), chosen or "fp32")
        trial = auto.metadata()["precision"]["trials"][kind]
        rows.append(f"|  | auto's trial: {trial['reason']} | | | | | | |")
        del auto
        if variants and getattr(embedder, "channels_last_ok", False):
            other = twin(channels_last=True)
            row("channels_last", other, cosine(reference, other.embed(pixels, pooled, ctx)))
            del other
    del embedder
    gc.collect()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="", help="comma-separated ids (default: all)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0, help="timing budget per variant")
    parser.add_argument("--variants", action="store_true", help="also channels_last")
    parser.add_argument("--precisions", default=",".join(MODES),
                        help=f"comma-separated precision modes to time (of {', '.join(MODES)})")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    parser.add_argument("--compile", default="", help="also time torch.compile on this model")
    parser.add_argument("--pixels-cache", type=Path, default=None,
                        help="folder to save fetched sample batches to, or load them from")
    args = parser.parse_args()
    global PIXELS_CACHE
    PIXELS_CACHE = args.pixels_cache
    models = args.models.split(",") if args.models else list_models()
    modes = [m for m in MODES if m in args.precisions.split(",")]
    rates = {m: matmul_rate(m, args.device, n=2048 if m != "bf16" else 1024) for m in MODES}
    print(f"device {args.device}; threads {torch.get_num_threads()}; matmul at start: "
          + ", ".join(f"{m} {r / 1e9:.1f} GFLOP/s" for m, r in rates.items())
          + " (each mode's limit is the best of the start and each row's own before/after "
          "measurements)")
    print("| model | precision | GFLOP/image | images/s | x fp32 | limit GFLOP/s "
          "(same precision) | fraction of limit | cosine vs fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    fractions = []
    for model in models:
        try:
            lines = measure(model, args.batch, args.seconds, args.variants, rates,
                            args.device, modes)
        except Exception as exc:  # noqa: BLE001 (one model's failure must not end the table)
            print(f"| `{model}` | error: {type(exc).__name__}: {exc} | | | | | | |", flush=True)
            continue
        for line in lines:
            print(line, flush=True)
            if "| fp32 |" in line:
                fractions.append(float(line.split("|")[7]))
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
