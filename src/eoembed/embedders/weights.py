"""Fetching and loading pretrained weights safely.

Weights come from the Hugging Face Hub through ``huggingface_hub`` (so its cache, offline mode
``HF_HUB_OFFLINE=1`` and ``HF_HUB_CACHE`` are honoured), pinned to a commit, checked against
a sha256, and loaded without executing code: safetensors, or ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eoembed.errors import (
    ChecksumError,
    DependencyNotFoundError,
    UnsafeWeightsError,
    WeightsNotFoundError,
)

if TYPE_CHECKING:
    from eoembed.embedders.card import WeightsSource

__all__ = ["download_weights", "file_sha256", "load_state_dict", "resolve_weights"]


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _how_to_get(model_id: str, source: WeightsSource) -> str:
    return (
        f"on a connected machine run `eoembed weights download {model_id}` (or "
        f"`huggingface-cli download {source.repo_id} {source.filename} --revision "
        f"{source.revision}`) and copy the Hugging Face cache (HF_HUB_CACHE) here; or pass "
        f"weights='/path/to/{source.filename}'; or weights='random' for an untrained model"
    )


def download_weights(model_id: str, source: WeightsSource) -> Path:
    """The local path of ``source``: from the hub cache, downloading only when allowed.

    Raises:
        WeightsNotFoundError: not cached and not downloadable (offline, or no network);
            the message says how to get the file.
        ChecksumError: the file's sha256 does not match the pinned one.
    """
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError:
        raise DependencyNotFoundError("huggingface_hub", "torch") from None
    try:
        path = Path(
            hf_hub_download(source.repo_id, source.filename, revision=source.revision)
        )
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise WeightsNotFoundError(
            f"weights for {model_id!r} ({source.repo_id}@{source.revision[:12]}/"
            f"{source.filename}) are not available: {type(exc).__name__}. "
            + _how_to_get(model_id, source)
        ) from None
    digest = file_sha256(path)
    if source.sha256 and not digest.startswith(source.sha256.lower()):
        raise ChecksumError(
            f"weights file {path} for {model_id!r} has sha256 {digest}, expected "
            f"{source.sha256}...; delete it and download again"
        )
    return path


def resolve_weights(
    model_id: str, source: WeightsSource | None, weights: str | None
) -> tuple[Path | None, dict[str, Any]]:
    """Interpret a model's ``weights`` argument.

    ``None``: the pinned pretrained weights. ``"random"``: no weights (recorded as such).
    A path: that local file (its sha256 is recorded, nothing is verified).
    """
    if weights == "random":
        return None, {"source": "random initialisation (explicitly requested)"}
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(f"weights file {str(path)!r} for {model_id!r} not found")
        return path, {"source": "local file", "path": str(path), "sha256": file_sha256(path)}
    if source is None:
        raise WeightsNotFoundError(f"model {model_id!r} has no published weights")
    path = download_weights(model_id, source)
    return path, {
        "source": "huggingface",
        "repo_id": source.repo_id,
        "revision": source.revision,
        # The hub cache stores files under snapshots/<commit>/: what was actually loaded.
        "commit": _snapshot_commit(path) or source.revision,
        "pinned": source.pinned,
        "filename": source.filename,
        "sha256": file_sha256(path),
        "licence": source.licence,
    }


def _snapshot_commit(path: Path) -> str | None:
    """The commit a hub-cache file belongs to (``.../snapshots/<commit>/<filename>``)."""
    for parent in path.parents:
        if parent.parent.name == "snapshots":
            return parent.name
    return None


def load_state_dict(path: Path) -> dict[str, Any]:
    """Tensors from a checkpoint, without running pickled code.

    ``.safetensors`` files load with safetensors; anything else with
    ``torch.load(weights_only=True)``. A top-level ``state_dict``/``model`` entry is unwrapped.
    """
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    import pickle

    import torch

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeWeightsError(
            f"{path} holds objects other than tensors; refusing to unpickle them "
            f"({str(exc).splitlines()[0]})"
        ) from None
    for key in ("state_dict", "model", "teacher"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise WeightsNotFoundError(f"{path} holds no state dict (found {type(obj).__name__})")
    return obj
