"""A rich progress bar for exports: done / total, rate, ETA and failures; silent when quiet."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from eoembed.pipeline.engine import RunCounts

__all__ = ["ProgressSink", "export_progress"]


class ProgressSink(Protocol):
    """Called with the number of region x model outcomes just recorded."""

    def __call__(self, n: int) -> None:
        """Advance by ``n``."""


@contextmanager
def export_progress(
    total: int, counts: RunCounts | None, *, enabled: bool, description: str = "embedding"
) -> Iterator[ProgressSink]:
    """Yield a callback that advances a progress bar on stderr (a no-op when disabled)."""
    if not enabled or total == 0:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("[cyan]{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("[red]{task.fields[failed]}"),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(description, total=total, rate="", failed="")

        def advance(n: int) -> None:
            bar.advance(task, n)
            speed = bar.tasks[task].speed
            failed = counts.failed if counts is not None else 0
            bar.update(
                task,
                rate=f"{speed:.1f} regions/s" if speed else "",
                failed=f"{failed} failed" if failed else "",
            )

        yield advance
