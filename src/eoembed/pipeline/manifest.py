"""The export manifest: one JSON line per region x model outcome, appended as the run goes.

Why JSON lines: appending one line is a single ``write`` followed by ``fsync``, so a run killed
at any moment (``kill -9`` included) leaves every earlier line intact and at worst a torn last
line, which :class:`Manifest` drops on open. The last line for an id wins, so a region that
failed in one run and succeeded in the next reads as ``ok``. Data files are recorded only after
they are complete, which makes the manifest the single source of truth for resume.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from eoembed.redact import redact

__all__ = [
    "MANIFEST_NAME",
    "Manifest",
    "ManifestEntry",
    "MemoryManifest",
    "Status",
    "read_manifest",
]

MANIFEST_NAME = "manifest.jsonl"

Status = Literal["ok", "failed", "skipped"]
"""``ok``: written; ``failed``: an error after all retries (redone on resume); ``skipped``:
nothing to embed (no scene covers the region in the window; not redone on resume)."""


@dataclass
class ManifestEntry:
    """The outcome of one region x model."""

    id: str
    model: str
    status: Status
    fingerprint: str
    region: int
    """Index of the region's first occurrence in the input."""
    spatial: dict[str, Any]
    stage: str | None = None
    """Where it failed or was skipped: ``fetch``, ``embed`` or ``write``."""
    error: str | None = None
    attempts: dict[str, int] = field(default_factory=dict)
    """Tries per stage, retries included."""
    timings: dict[str, float] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    """Data files holding this record, relative to the model's folder."""
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per file: ``size``, ``sha256`` and ``records`` (how many records it holds), which
    resume and ``load_export`` verify (see :mod:`eoembed.pipeline.integrity`)."""
    time: str = ""
    """When the outcome was recorded (UTC, ISO 8601)."""

    def to_json(self) -> str:
        """One line of canonical JSON; the error's signatures and tokens are masked."""
        data = asdict(self)
        if data["error"] is not None:
            data["error"] = redact(data["error"])
        return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def _parse(lines: Iterable[bytes]) -> Iterator[ManifestEntry]:
    for line in lines:
        try:
            yield ManifestEntry(**json.loads(line))
        except (ValueError, TypeError):
            continue  # a torn or foreign line: ignore it


class Manifest:
    """Append-only log of outcomes in ``<out>/manifest.jsonl``; thread-safe appends.

    Opening it reads every complete line and cuts off a torn last line, so later appends start
    on a fresh line. :attr:`entries` is the state found on opening (what resume needs); appends
    go to disk only, so memory does not grow with the length of a run.
    """

    def __init__(self, out: Path) -> None:
        self.path = Path(out) / MANIFEST_NAME
        self._lock = threading.Lock()
        self.entries: dict[str, ManifestEntry] = {}
        if self.path.exists():
            raw = self.path.read_bytes()
            complete = raw[: raw.rfind(b"\n") + 1]
            if len(complete) != len(raw):
                with open(self.path, "r+b") as fh:
                    fh.truncate(len(complete))
            for entry in _parse(complete.splitlines()):
                self.entries[entry.id] = entry

    def append(self, entries: Iterable[ManifestEntry]) -> None:
        """Record outcomes durably: one write, then fsync."""
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        batch = list(entries)
        if not batch:
            return
        for entry in batch:
            entry.time = entry.time or now
        payload = "".join(e.to_json() + "\n" for e in batch).encode()
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, payload)
                os.fsync(fd)
            finally:
                os.close(fd)

    def ok_entries(self, model: str) -> list[ManifestEntry]:
        """The entries of ``model`` whose latest outcome is ``ok``."""
        return [e for e in self.entries.values() if e.model == model and e.status == "ok"]


class MemoryManifest:
    """What a cluster task records: entries kept in memory for the client to append.

    Has the :class:`Manifest` methods the engine calls; the client owns the real file, so
    outcomes reach it only with the task's result (a task lost with its worker records
    nothing, and runs again).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.collected: list[ManifestEntry] = []
        self.entries: dict[str, ManifestEntry] = {}

    def append(self, entries: Iterable[ManifestEntry]) -> None:
        """Keep outcomes (stamped with the time, as the file's are)."""
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        batch = list(entries)
        for entry in batch:
            entry.time = entry.time or now
        with self._lock:
            self.collected.extend(batch)


def read_manifest(out: str | Path) -> list[ManifestEntry]:
    """The current outcome of every region x model of an export, in first-recorded order."""
    path = Path(out) / MANIFEST_NAME
    if not path.exists():
        return []
    latest: dict[str, ManifestEntry] = {}
    for entry in _parse(path.read_bytes().splitlines()):
        latest[entry.id] = entry
    return list(latest.values())
