"""Output paths, checked before any work so a long run never fails at its last step.

An empty path (``--out ""`` is the current folder to ``pathlib``), a path under a file, in a
missing or read-only folder: each is an :class:`~eoembed.errors.OutputPathError` naming the
path and what to change, raised before a model is built or a pixel is read.
"""

from __future__ import annotations

import os
from pathlib import Path

from eoembed.errors import OutputPathError

__all__ = ["check_output_dir", "check_output_file"]


def _text(path: str | os.PathLike[str]) -> str:
    if not isinstance(path, str | os.PathLike):
        raise OutputPathError(f"an output path must be a str or Path, not {type(path).__name__}")
    text = os.fspath(path)
    if not text.strip():
        raise OutputPathError(
            "an empty output path; name a file or folder (an empty one would write into the "
            "current folder)"
        )
    return text


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (the root always does)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _writable_folder(folder: Path, what: str, path: Path) -> None:
    """``folder`` exists, is a folder and can be written, else say which of these fails."""
    if not folder.exists():
        raise OutputPathError(f"cannot write {what} {str(path)!r}: folder {str(folder)!r} does "
                              "not exist; create it first")
    if not folder.is_dir():
        raise OutputPathError(f"cannot write {what} {str(path)!r}: {str(folder)!r} is a file, "
                              "not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write {what} {str(path)!r}: folder {str(folder)!r} is "
                              "read-only")


def check_output_file(
    path: str | os.PathLike[str], what: str = "output file", *, make_parents: bool = False
) -> Path:
    """``path`` as a Path, if a file can be written there: its folder exists and is writable.

    Args:
        path: the file to write.
        what: how messages name it (``"--out"``, ``"head folder"``...).
        make_parents: the caller creates missing folders, so only the nearest existing one
            must be a writable folder.

    Raises:
        OutputPathError: empty, an existing folder, or a parent that is missing, a file or
            read-only.
    """
    target = Path(_text(path)).expanduser()
    if target.is_dir():
        raise OutputPathError(f"cannot write {what} {str(target)!r}: it is a folder")
    if target.exists() and not os.access(target, os.W_OK):
        raise OutputPathError(f"cannot write {what} {str(target)!r}: the file is read-only")
    _writable_folder(_nearest_existing(target.parent) if make_parents else target.parent,
                     what, target)
    return target


def check_output_dir(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """``path`` as a Path, if it is a writable folder or can be created as one.

    Missing folders are fine (they are created, parents too); the nearest one that exists must
    be a writable folder.

    Raises:
        OutputPathError: empty, an existing file, under a file, or under a read-only folder.
    """
    target = Path(_text(path)).expanduser()
    if target.exists() and not target.is_dir():
        raise OutputPathError(f"cannot write {what} {str(target)!r}: it is a file, not a folder")
    existing = _nearest_existing(target)
    if existing == target:
        if not os.access(target, os.W_OK | os.X_OK):
            raise OutputPathError(f"cannot write {what} {str(target)!r}: it is read-only")
        return target
    _writable_folder(existing, what, target)
    return target
