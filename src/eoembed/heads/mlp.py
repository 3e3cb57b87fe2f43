"""A small MLP head in torch, trained on CPU in seconds, saved as safetensors.

Inputs are standardised with the training set's mean and standard deviation (and regression
targets too); the statistics are saved beside the network's weights in ``model.safetensors``,
so that file alone rebuilds the exact function. Training is seeded and runs in a forked RNG
state, leaving the caller's torch RNG untouched.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from eoembed.embedders.base import import_torch
from eoembed.errors import SpecError
from eoembed.heads.base import TabularHead, register_head

if TYPE_CHECKING:
    import torch

__all__ = ["MLPHead", "auto_epochs", "build_mlp", "load_tensors", "save_tensors"]

SAMPLE_PASSES = 500_000
"""With ``epochs=None`` an MLP sees about this many samples (at least 5, at most 300 epochs):
100,000 rows train for 5 epochs, 1,000 rows for 300."""


def auto_epochs(n: int) -> int:
    """Epochs for ``n`` training rows when none are given (see :data:`SAMPLE_PASSES`)."""
    return int(min(300, max(5, math.ceil(SAMPLE_PASSES / max(n, 1)))))


def build_mlp(dim: int, out: int, hidden: int, layers: int, dropout: float) -> torch.nn.Module:
    """``layers`` hidden layers of ``hidden`` units (GELU, dropout), then ``out`` outputs."""
    nn = import_torch().nn
    blocks: list[Any] = []
    width = dim
    for _ in range(layers):
        blocks += [nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout)]
        width = hidden
    blocks.append(nn.Linear(width, out))
    net: torch.nn.Module = nn.Sequential(*blocks)
    return net


def save_tensors(path: Path, net: torch.nn.Module, stats: dict[str, torch.Tensor],
                 metadata: dict[str, str]) -> None:
    """The network's state (``net.*``) and the scaling statistics in one safetensors file."""
    from safetensors.torch import save_file

    state = {f"net.{k}": v.detach().contiguous() for k, v in net.state_dict().items()}
    state.update({k: v.detach().contiguous() for k, v in stats.items()})
    save_file(state, str(path), metadata=metadata)


def load_tensors(path: Path, net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Load ``net``'s state from a :func:`save_tensors` file; returns the statistics.

    Raises:
        SpecError: tensors whose names or shapes do not fit ``net`` (another config's file).
    """
    from safetensors.torch import load_file

    state = load_file(str(path))
    try:
        net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
    except RuntimeError as exc:
        first = str(exc).splitlines()[1:2] or [type(exc).__name__]
        raise SpecError("weights", str(path), reason=f"they do not match config.json "
                        f"({first[0].strip()})") from None
    net.eval()
    return {k: v for k, v in state.items() if not k.startswith("net.")}


_PARAM_RANGES = (
    ("hidden", 1, 65_536), ("layers", 0, 64), ("dropout", 0.0, 0.99), ("epochs", 1, 100_000),
    ("batch_size", 1, 1_000_000), ("lr", 1e-12, 10.0), ("weight_decay", 0.0, 10.0),
)
"""Accepted range of each hyperparameter: past them a head does not fit in memory or learns
nothing (a hidden layer of 10**11 units is 200 TB)."""
_INT_PARAMS = frozenset({"hidden", "layers", "epochs", "batch_size"})


@register_head
class MLPHead(TabularHead):
    """A multilayer perceptron: GELU hidden layers, AdamW, MSE or cross-entropy loss."""

    kind: ClassVar[str] = "mlp"
    tasks: ClassVar[tuple[str, ...]] = ("regression", "classification")
    weights_file: ClassVar[str] = "model.safetensors"
    defaults: ClassVar[dict[str, Any]] = {
        "hidden": 256, "layers": 1, "dropout": 0.1, "epochs": None, "batch_size": 512,
        "lr": 1e-3, "weight_decay": 1e-4,
    }

    def _configure(self) -> None:
        import_torch()
        for name, low, high in _PARAM_RANGES:
            value = self.params[name]
            if value is None and name == "epochs":
                continue
            ok = isinstance(value, int | float) and not isinstance(value, bool) and (
                math.isfinite(value) and low <= value <= high)
            if not ok or (name in _INT_PARAMS and value != int(value)):
                kind = "a whole number" if name in _INT_PARAMS else "a number"
                raise SpecError(f"mlp.params.{name}", value, allowed=f"{kind} in [{low}, {high}]")
        self.module: torch.nn.Module | None = None
        self.stats: dict[str, torch.Tensor] = {}

    def _outputs(self) -> int:
        return 1 if self.task == "regression" else len(self.classes or ())

    def _build(self, dim: int) -> torch.nn.Module:
        p = self.params
        return build_mlp(dim, self._outputs(), int(p["hidden"]), int(p["layers"]),
                         float(p["dropout"]))

    def _fit(self, x: np.ndarray, y: np.ndarray) -> None:
        torch = import_torch()
        p = self.params
        n = len(x)
        epochs = int(p["epochs"]) if p["epochs"] is not None else auto_epochs(n)
        batch = int(min(int(p["batch_size"]), n))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            module = self._build(x.shape[1])
            xt = torch.from_numpy(np.ascontiguousarray(x))
            std = xt.std(dim=0)
            stats = {"x_mean": xt.mean(dim=0),
                     "x_std": torch.where(std > 0, std, torch.ones_like(std))}
            xt = (xt - stats["x_mean"]) / stats["x_std"]
            if self.task == "regression":
                yt = torch.from_numpy(y.astype(np.float32)).reshape(-1, 1)
                stats["y_mean"] = yt.mean(dim=0)
                stats["y_std"] = yt.std(dim=0).clamp_min(1e-12)
                target = (yt - stats["y_mean"]) / stats["y_std"]
                loss_fn: Any = torch.nn.functional.mse_loss
            else:
                target = torch.from_numpy(y.astype(np.int64))
                loss_fn = torch.nn.functional.cross_entropy
            optimiser = torch.optim.AdamW(module.parameters(), lr=float(p["lr"]),
                                          weight_decay=float(p["weight_decay"]))
            module.train()
            for _ in range(epochs):
                order = torch.randperm(n)
                for start in range(0, n, batch):
                    index = order[start:start + batch]
                    optimiser.zero_grad(set_to_none=True)
                    loss = loss_fn(module(xt[index]), target[index])
                    loss.backward()
                    optimiser.step()
        module.eval()
        self.module = module
        self.stats = stats

    def _predict(self, x: np.ndarray) -> np.ndarray:
        torch = import_torch()
        assert self.module is not None
        s = self.stats
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(x), 8192):
                chunk = (torch.from_numpy(x[start:start + 8192]) - s["x_mean"]) / s["x_std"]
                outputs.append(self.module(chunk))
        out = torch.cat(outputs)
        if self.task == "regression":
            values = (out * s["y_std"] + s["y_mean"])[:, 0]
            return np.asarray(values.numpy(), dtype=np.float64)
        return np.asarray(out.argmax(dim=1).numpy())

    def _save_weights(self, path: Path) -> None:
        assert self.module is not None
        save_tensors(path, self.module, self.stats, {"kind": self.kind, "task": self.task})

    def _load_weights(self, path: Path) -> None:
        assert self.input_dim is not None
        self.module = self._build(self.input_dim)
        self.stats = load_tensors(path, self.module)
