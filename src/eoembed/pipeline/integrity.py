"""Checksums of an export's data files, so resume and ``load_export`` trust files, not claims.

Every manifest ``ok`` entry records, for each file holding it, the size, the sha256 and how
many records the file holds. sha256 because it is sound against any change, not only the
torn writes a CRC catches, and cheap here: it hashes about 1.7 GB/s on one core, while an
export writes a few MB per second of embeddings; the file is hashed right after it is
written, from the page cache. A Zarr group is a folder: its checksum is the sha256 of the
sorted (path, size, sha256) of every file in it.

A file is *good* when it exists with its recorded size and sha256 and when as many ``ok``
entries name it as it holds records; a record whose manifest line was torn leaves its file
with fewer names than records, and the whole file is redone rather than leave a duplicate
row on disk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eoembed.pipeline.folder import inside

__all__ = ["FileCheck", "Verdict", "checksum", "verify"]

def _file_sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def checksum(path: Path) -> dict[str, Any]:
    """``{"size", "sha256"}`` of a file, or of a folder's files (a Zarr group)."""
    if path.is_dir():
        listing = []
        size = 0
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            child_size = child.stat().st_size
            size += child_size
            rel = child.relative_to(path).as_posix()
            listing.append(f"{rel}\t{child_size}\t{_file_sha256(child)}")
        digest = hashlib.sha256("\n".join(listing).encode()).hexdigest()
        return {"size": size, "sha256": digest}
    return {"size": path.stat().st_size, "sha256": _file_sha256(path)}


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


@dataclass(frozen=True)
class FileCheck:
    """What the manifest says about one data file."""

    path: str
    """Relative to the model's folder."""
    size: int | None
    sha256: str | None
    records: int | None
    """How many records the writer put in it."""


@dataclass
class Verdict:
    """The outcome of checking one model's recorded files."""

    good: set[str]
    """Ids whose every file is intact."""
    bad_ids: set[str]
    """Ids recorded ``ok`` whose files are missing, truncated, changed or short of names."""
    bad_files: set[str]
    """Those files (relative paths) that exist and must be removed before redoing."""
    reasons: dict[str, str]
    """Why each bad file is bad (for warnings and errors)."""


def verify(
    directory: Path,
    entries: Iterable[tuple[str, Iterable[str], Mapping[str, Any]]],
    *,
    full: bool = True,
) -> Verdict:
    """Check the files of ``entries`` (id, files, checks) of one model in ``directory``.

    Args:
        directory: the model's folder.
        entries: every ``ok`` entry of the model: its id, files, and per-file checks
            (``{path: {"size", "sha256", "records"}}``; empty in manifests written before
            checks were recorded, whose files are only required to exist).
        full: also compare sha256 (resume); ``False`` compares sizes only (``load_export``).

    Raises:
        UnsafeExportPathError: a recorded path that leads outside ``directory``.
    """
    names: dict[str, set[str]] = {}
    checks: dict[str, FileCheck] = {}
    for rid, files, recorded in entries:
        for rel in files:
            names.setdefault(rel, set()).add(rid)
            info = recorded.get(rel) or {}
            checks.setdefault(
                rel, FileCheck(rel, info.get("size"), info.get("sha256"), info.get("records"))
            )
    reasons: dict[str, str] = {}
    existing: set[str] = set()
    for rel, check in checks.items():
        path = inside(directory, rel, f"the manifest entry of {min(names[rel])}")
        if not path.exists():
            reasons[rel] = "missing"
            continue
        existing.add(rel)
        if check.records is not None and len(names[rel]) < check.records:
            reasons[rel] = f"holds {check.records} records, {len(names[rel])} recorded"
        elif check.size is not None and _size(path) != check.size:
            reasons[rel] = f"{_size(path)} bytes, {check.size} recorded"
        elif full and check.sha256 is not None and checksum(path)["sha256"] != check.sha256:
            reasons[rel] = "contents differ from the recorded sha256"
    bad_ids = {rid for rel in reasons for rid in names[rel]}
    good = {rid for ids in names.values() for rid in ids} - bad_ids
    return Verdict(good, bad_ids, set(reasons) & existing, reasons)
