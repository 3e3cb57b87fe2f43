"""An export folder's identity, lock and bookkeeping files, read as untrusted input.

An export folder holds the results of one request (everything but the regions: models and
their options, weights, sensor, time window, output, provider, format, quantisation, frames,
version), fixed when the folder is created and recorded in ``export.json``. Later runs may add
regions, never change the request; :func:`identity_diff` names exactly what differs.

Everything read from the folder (``export.json``, the manifest) may be damaged or edited, so
paths taken from it are resolved with :func:`inside`, which refuses any that would leave the
folder, and an unreadable ``export.json`` is a :class:`~eoembed.errors.CorruptExportError`
that says what to do, not a traceback.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from eoembed.errors import CorruptExportError, ExportLockedError, UnsafeExportPathError

__all__ = [
    "JOB_FILE",
    "LOCK_FILE",
    "export_lock",
    "identity_diff",
    "inside",
    "job_identity",
    "model_dir",
    "model_folder",
    "normalise",
    "read_job",
    "write_job",
]

JOB_FILE = "export.json"
"""The job description at the top of an export folder: format, output, models, requests."""

LOCK_FILE = ".eoembed.lock"
"""Held (an OS file lock) by the export writing the folder, for the whole run."""

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$")


def model_dir(model: str) -> str:
    """The folder name of a model's files inside an export."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", model).lstrip(".") or "_"


@contextmanager
def export_lock(out: Path) -> Iterator[None]:
    """Hold ``out``'s lock for the block; refuse at once if another export holds it.

    An OS lock (``flock``) is released by the kernel when its process dies, so a crashed run
    never leaves the folder locked; the lock file itself stays and is harmless.

    Raises:
        ExportLockedError: another export (process or thread) is writing ``out``.
    """
    from filelock import FileLock, Timeout

    lock = FileLock(str(out / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ExportLockedError(
            f"{out} is being written by another export (it holds {out / LOCK_FILE}); wait "
            "for it to finish or export to another folder"
        ) from None
    try:
        yield
    finally:
        lock.release()


def read_job(out: Path) -> dict[str, Any] | None:
    """``out/export.json`` checked for shape, or ``None`` when there is none.

    Raises:
        CorruptExportError: the file is unreadable (truncated, not JSON, edited).
        UnsafeExportPathError: it names a model folder outside ``out``.
    """
    path = out / JOB_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("format"), str):
            raise ValueError("not an eoembed job description")  # noqa: TRY004 (JSON content)
        models = data.get("models")
        if not isinstance(models, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("dir"), str)
            and isinstance(v.get("request"), dict)
            for v in models.values()
        ):
            raise ValueError("'models' is not {model: {dir, request}}")
    except (OSError, ValueError) as exc:
        raise CorruptExportError(
            f"{path} is unreadable ({type(exc).__name__}: {exc}). Run the same export again "
            "to rebuild it from the manifest (resume checks every result against the "
            "request), or pass overwrite=True (--overwrite) to start the folder afresh"
        ) from None
    for model, info in models.items():
        model_folder(out, info["dir"], model)
    return data


def write_job(out: Path, job: Mapping[str, Any]) -> None:
    """Write ``export.json`` atomically (a temporary file renamed over the old one)."""
    path = out / JOB_FILE
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(json.dumps(job, indent=2, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, path)


def inside(base: Path, relative: str, what: str) -> Path:
    """``base / relative``, refused unless it stays inside ``base`` (symlinks resolved).

    Raises:
        UnsafeExportPathError: an absolute path, ``..``, or a link that leads out of ``base``.
    """
    rel = Path(relative)
    target = base / rel
    if (
        not relative
        or rel.is_absolute()
        or ".." in rel.parts
        or not target.resolve().is_relative_to(base.resolve())
    ):
        raise UnsafeExportPathError(
            f"{what} names {relative!r}, which is outside {base}; eoembed never reads or "
            "deletes outside an export folder (the folder's files were edited: restore them "
            "or export to a new folder)"
        )
    return target


def model_folder(out: Path, name: str, model: str) -> Path:
    """A model's folder from ``export.json``: one plain name inside ``out``.

    Raises:
        UnsafeExportPathError: anything but a plain folder name inside ``out``.
    """
    if not _SAFE_NAME.match(name):
        raise UnsafeExportPathError(
            f"{out / JOB_FILE} gives model {model!r} the folder {name!r}, not a plain name "
            "inside the export; eoembed never reads or deletes outside an export folder "
            "(restore the file, or export to a new folder)"
        )
    return inside(out, name, f"{out / JOB_FILE} (model {model!r})")


def normalise(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists, keys strings)."""
    return json.loads(json.dumps(value, default=str))


def job_identity(fmt: str, requests: Mapping[str, Any]) -> dict[str, Any]:
    """What an export folder is fixed to: the format and each model's request."""
    identity: dict[str, Any] = normalise({"format": fmt, "models": dict(requests)})
    return identity


def identity_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The fields that differ between two identities, e.g. ``temporal.start`` or ``format``.

    A field that differs for several models is named once; a model present on one side only
    is ``models`` (the set of models is part of the request).
    """
    old, new = normalise(old), normalise(new)
    names: set[str] = set()
    if old.get("format") != new.get("format"):
        names.add("format")
    old_models, new_models = old.get("models", {}), new.get("models", {})
    if set(old_models) != set(new_models):
        names.add("models")
    for model in set(old_models) & set(new_models):
        names.update(_diff(old_models[model], new_models[model]))
    return sorted(names)


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted names of the fields that differ between two JSON values."""
    if isinstance(old, dict) and isinstance(new, dict):
        names = []
        for key in sorted(set(old) | set(new)):
            names += _diff(old.get(key), new.get(key), f"{prefix}{key}.")
        return names
    return [] if old == new else [prefix.rstrip(".") or "request"]
