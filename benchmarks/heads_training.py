"""How long heads take to train on 100,000 pooled embeddings of dim 768.

The embeddings are random but structured like real ones: a 16-dimensional latent state per
sample, mixed into 768 dimensions and a little noise (a low-rank model), so the target (a
non-linear function of the latents) is learnable and the held-out R2 says whether the head
learnt anything. Each head is trained through eoembed's head API (what ``eoembed train``
runs after the join) on all 100,000 rows, and scored on 20,000 more from the same model.

Run: ``python benchmarks/heads_training.py [--rows 100000] [--dim 768] [--heads linear gbm mlp]``.
Prints one line per head (seconds, R2) and a JSON summary as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def make_data(rows: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Low-rank embeddings and a target that depends on their latent state."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(rows, 16)).astype(np.float32)
    mixing = rng.normal(size=(16, dim)).astype(np.float32) / 4
    x = latent @ mixing + 0.3 * rng.normal(size=(rows, dim)).astype(np.float32)
    y = latent[:, 0] * 2 + np.sin(latent[:, 1]) + 0.5 * latent[:, 2] * latent[:, 3]
    return x.astype(np.float32), (y + 0.1 * rng.normal(size=rows)).astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--heads", nargs="+", default=["linear", "gbm", "mlp"])
    args = parser.parse_args()

    from eoembed.heads.base import head_class
    from eoembed.heads.metrics import regression_metrics

    t0 = time.perf_counter()
    n_train = args.rows
    x, y = make_data(n_train + n_train // 5, args.dim)
    print(f"data: {len(x)} x {args.dim} float32 in {time.perf_counter() - t0:.1f} s; "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    results = {}
    for kind in args.heads:
        head = head_class(kind)("regression", seed=0)
        t = time.perf_counter()
        head.fit(x[:n_train], y[:n_train])
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        predicted = head.predict(x[n_train:])
        predict_s = time.perf_counter() - t
        r2 = regression_metrics(y[n_train:], predicted)["r2"]
        results[kind] = {"fit_s": round(fit_s, 2), "predict_s": round(predict_s, 3),
                         "r2": round(r2, 4)}
        print(f"{kind:>8}: fit {fit_s:6.2f} s on {n_train} rows, predict {predict_s:5.2f} s "
              f"on {len(x) - n_train}, test R2 {r2:.3f}")
    print(json.dumps({"train_rows": n_train, "test_rows": len(x) - n_train, "dim": args.dim,
                      "heads": results}))


if __name__ == "__main__":
    main()
