"""``--help`` text is wrapped once, by the terminal: no paragraph line ends early."""

from __future__ import annotations

import itertools

import pytest
from typer.testing import CliRunner

from eoembed.cli.helptext import unwrap_paragraphs
from eoembed.cli.main import app

WIDTH = 100
SLACK = 2
"""Columns a line may end short of where the next word would still have fitted (rounding)."""


def render_help(*command: str) -> list[str]:
    """``eoembed COMMAND --help`` rendered at :data:`WIDTH` columns, as lines."""
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": str(WIDTH)})
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def early_breaks(lines: list[str]) -> list[str]:
    """Description lines broken although the next line's first word would have fitted.

    The description is what comes between the usage line and the first option panel; it is
    indented one column, so its text may use the panel's width less two columns.
    """
    panel = next(i for i, line in enumerate(lines) if line.lstrip().startswith("╭"))
    text_width = len(lines[panel].rstrip()) - 2
    start = next(i for i, line in enumerate(lines) if "Usage:" in line) + 1
    body = [line.strip() for line in lines[start:panel]]
    found = []
    for line, following in itertools.pairwise(body):
        if line and following and not following.startswith(("- ", "* ")):
            fits = len(line) + 1 + len(following.split()[0])
            if fits <= text_width - SLACK:
                found.append(f"{line!r} (then {following.split()[0]!r})")
    return found


def _commands() -> list[list[str]]:
    """Every command and group of ``eoembed``, the root included."""
    import typer.main

    found: list[list[str]] = []

    def walk(command: object, path: list[str]) -> None:
        found.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


@pytest.mark.parametrize("command", _commands(), ids=lambda c: " ".join(c) or "eoembed")
def test_help_paragraphs_are_wrapped_once(command: list[str]) -> None:
    lines = render_help(*command)
    assert len(max(lines, key=len).rstrip()) <= WIDTH
    assert early_breaks(lines) == []


def test_help_keeps_paragraphs_and_lists() -> None:
    text = """First line
    of the summary.

    A paragraph written
    over two lines.

    - an item
    - another item

    \b
    kept
      as written
    """
    assert unwrap_paragraphs(text) == (
        "First line of the summary.\n\nA paragraph written over two lines.\n\n"
        "- an item\n- another item\n\n\b\nkept\n  as written"
    )
