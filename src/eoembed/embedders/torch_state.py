"""Torch's process-wide settings: read them, restore them, name what changed.

Importing or building a third-party model may change settings that hold for the whole
process (TerraTorch's ``clay_v15`` module calls ``torch.set_float32_matmul_precision("medium")``
at import, which makes every later fp32 matrix product in the process run in bf16 on CPUs
with AMX and in TF32 on GPUs). :func:`preserved_torch_state` puts them back, the way
``rasterio.Env`` restores GDAL options; the test suite's autouse fixture uses
:func:`capture_torch_state` to fail any test that leaves them changed.

Torch >= 2.9 has two generations of precision settings, the legacy ones
(``set_float32_matmul_precision``, ``allow_tf32``) and ``torch.backends.*.fp32_precision``;
reading a legacy one raises while the two disagree. Both are read (an unreadable value is
recorded as :data:`MIXED`) and restored legacy first, then the new ones from the generic
level down, so the restored values read back exactly as captured.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from eoembed.embedders.base import import_torch

__all__ = [
    "MIXED", "TorchState", "capture_torch_state", "describe_changes", "preserved_torch_state",
]

MIXED = "<unreadable: legacy and new precision APIs disagree>"
"""The reading of a legacy precision setting while torch reports a mixed-API state."""

_FP32_PRECISION_PATHS = (
    # Generic level first, then per backend, then per operation: a level left at "none"
    # reads as the level above it, so parents are restored before their children.
    "backends",
    "backends.cudnn",
    "backends.mkldnn",
    "backends.cuda.matmul",
    "backends.cudnn.conv",
    "backends.cudnn.rnn",
    "backends.mkldnn.matmul",
    "backends.mkldnn.conv",
    "backends.mkldnn.rnn",
)
_FLAG_PATHS = (
    "backends.cuda.matmul.allow_bf16_reduced_precision_reduction",
    "backends.cuda.matmul.allow_fp16_reduced_precision_reduction",
    "backends.cuda.matmul.allow_fp16_accumulation",
    "backends.cudnn.enabled",
    "backends.cudnn.benchmark",
    "backends.cudnn.deterministic",
    "backends.mkldnn.enabled",
)
_SDP_KERNELS = ("flash", "mem_efficient", "math", "cudnn")


@dataclass(frozen=True)
class _Setting:
    name: str
    read: Callable[[], Any]
    write: Callable[[Any], None] | None
    """``None`` for values that can only be read (or follow from other settings)."""


def _resolve(torch: Any, path: str) -> Any:
    obj = torch
    for part in path.split(".") if path else ():
        obj = getattr(obj, part)
    return obj


def _attribute(torch: Any, path: str) -> _Setting | None:
    """A setting stored as a module attribute, or ``None`` when this torch lacks it."""
    owner_path, _, attr = path.rpartition(".")
    try:
        owner = _resolve(torch, owner_path)
        getattr(owner, attr)
    except (AttributeError, RuntimeError, AssertionError):
        return None
    return _Setting(
        f"torch.{path}",
        lambda: getattr(owner, attr),
        lambda value: setattr(owner, attr, value),
    )


def _legacy_matmul_precision(torch: Any) -> Any:
    try:
        return torch.get_float32_matmul_precision()
    except RuntimeError:
        return MIXED


def _legacy_flag(owner: Any, attr: str) -> Callable[[], Any]:
    def read() -> Any:
        try:
            return getattr(owner, attr)
        except RuntimeError:
            return MIXED

    return read


def _flushes_denormals(torch: Any) -> bool:
    """Whether denormal floats become zero (torch has a setter but no getter)."""
    return bool((torch.tensor([1e-30], dtype=torch.float32) * 1e-10).item() == 0.0)


@functools.cache
def _settings(torch: Any) -> tuple[_Setting, ...]:
    """Every setting this torch has, in restore order (legacy before new API)."""
    settings = [
        _Setting("torch.get_float32_matmul_precision()",
                 lambda: _legacy_matmul_precision(torch), torch.set_float32_matmul_precision),
        _Setting("torch.backends.cudnn.allow_tf32",
                 _legacy_flag(torch.backends.cudnn, "allow_tf32"),
                 lambda v: setattr(torch.backends.cudnn, "allow_tf32", v)),
        # A view of the matmul precision above and the new cuBLAS setting: read only.
        _Setting("torch.backends.cuda.matmul.allow_tf32",
                 _legacy_flag(torch.backends.cuda.matmul, "allow_tf32"), None),
    ]
    for path in _FP32_PRECISION_PATHS + _FLAG_PATHS:
        attr = path if path in _FLAG_PATHS else f"{path}.fp32_precision"
        setting = _attribute(torch, attr)
        if setting is not None:
            settings.append(setting)
    cuda = torch.backends.cuda
    for kernel in _SDP_KERNELS:
        getter = getattr(cuda, f"{kernel}_sdp_enabled", None)
        setter = getattr(cuda, f"enable_{kernel}_sdp", None)
        if getter is not None and setter is not None:
            settings.append(_Setting(f"torch.backends.cuda.{kernel}_sdp_enabled()", getter, setter))
    settings += [
        _Setting("torch.are_deterministic_algorithms_enabled() / warn_only",
                 lambda: (torch.are_deterministic_algorithms_enabled(),
                          torch.is_deterministic_algorithms_warn_only_enabled()),
                 lambda v: torch.use_deterministic_algorithms(v[0], warn_only=v[1])),
        _Setting("torch.get_default_dtype()", torch.get_default_dtype, torch.set_default_dtype),
        _Setting("torch.get_num_threads()", torch.get_num_threads, torch.set_num_threads),
        # Inter-op threads can be set once per process, before any parallel work: read only.
        _Setting("torch.get_num_interop_threads()", torch.get_num_interop_threads, None),
        _Setting("flush denormal (torch.set_flush_denormal)",
                 lambda: _flushes_denormals(torch), torch.set_flush_denormal),
    ]
    return tuple(settings)


@dataclass(frozen=True)
class TorchState:
    """A reading of torch's process-wide settings, by name (see :func:`capture_torch_state`)."""

    values: tuple[tuple[str, Any], ...]

    def as_dict(self) -> dict[str, Any]:
        """``{setting: value}``."""
        return dict(self.values)

    def changes(self, other: TorchState) -> dict[str, tuple[Any, Any]]:
        """``{setting: (value here, value in other)}`` for every setting that differs."""
        mine, theirs = self.as_dict(), other.as_dict()
        return {k: (mine.get(k), theirs.get(k)) for k in mine.keys() | theirs.keys()
                if mine.get(k) != theirs.get(k)}

    def restore(self) -> None:
        """Set every writable setting back to this reading (only those that differ now)."""
        saved = self.as_dict()
        for setting in _settings(import_torch()):
            if setting.write is None or setting.name not in saved:
                continue
            value = saved[setting.name]
            if value != MIXED and setting.read() != value:
                setting.write(value)


def capture_torch_state() -> TorchState:
    """Read torch's process-wide settings (about 0.1 ms; imports torch)."""
    return TorchState(tuple((s.name, s.read()) for s in _settings(import_torch())))


def describe_changes(changes: dict[str, tuple[Any, Any]]) -> str:
    """One line per changed setting: ``name: before -> after``."""
    return "\n".join(f"{name}: {a!r} -> {b!r}" for name, (a, b) in sorted(changes.items()))


_TORCH_ENV_PREFIXES = ("TORCH_", "PYTORCH_")
"""Environment variables torch reads (TerraTorch's Clay modules set
``TORCH_CUDNN_V8_API_DISABLED`` when imported)."""


def _torch_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(_TORCH_ENV_PREFIXES)}


@contextlib.contextmanager
def preserved_torch_state() -> Iterator[TorchState]:
    """Run the block, then put torch's process-wide settings back as they were before it.

    The ``TORCH_*``/``PYTORCH_*`` environment variables are put back too.
    """
    before = capture_torch_state()
    environment = _torch_environment()
    try:
        yield before
    finally:
        before.restore()
        for name in _torch_environment().keys() - environment.keys():
            del os.environ[name]
        os.environ.update(environment)
