"""Help text written wrapped in the source, handed to the terminal as whole paragraphs.

Docstrings are wrapped at the source's line length; typer keeps their line breaks and rich
then wraps each line again at the terminal's width, which leaves ragged, half-empty lines.
Joining each paragraph's lines first lets rich wrap it once.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

__all__ = ["unwrap_help", "unwrap_paragraphs"]

_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s")
"""A line that starts a list item: such paragraphs keep their lines."""


def unwrap_paragraphs(text: str) -> str:
    r"""``text`` with each paragraph's lines joined by spaces.

    Paragraphs are separated by blank lines. Kept as written: a paragraph that starts with
    ``\\b`` (click's "do not rewrap" mark), lists (lines starting with ``-``, ``*`` or
    ``1.``), and everything after a ``\\f`` line (click hides it).
    """
    shown, cut, hidden = inspect.cleandoc(text).partition("\f")
    paragraphs = []
    for paragraph in re.split(r"\n\s*\n", shown.strip()):
        lines = paragraph.splitlines()
        if lines[0].startswith("\b") or any(_LIST_ITEM.match(line) for line in lines):
            paragraphs.append(paragraph)
        else:
            paragraphs.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(paragraphs) + cut + hidden


def unwrap_help(command: Any) -> None:
    """Unwrap the help of a click command and, for a group, of every command under it."""
    if getattr(command, "help", None):
        command.help = unwrap_paragraphs(command.help)
    for sub in getattr(command, "commands", {}).values():
        unwrap_help(sub)
