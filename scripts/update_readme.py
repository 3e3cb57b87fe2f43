"""Regenerate the README's model table from the model cards (``python scripts/update_readme.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

from eoembed.embedders.model_table import README_MARKERS, markdown_table

README = Path(__file__).resolve().parent.parent / "README.md"


def render(text: str) -> str:
    """``text`` with the block between the markers replaced by the current table."""
    start, end = README_MARKERS
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    if not rest or (not tail and end not in rest):
        sys.exit(f"README.md lacks the {start} / {end} markers")
    return f"{head}{start}\n{markdown_table()}\n{end}{tail}"


if __name__ == "__main__":
    README.write_text(render(README.read_text()))
    print(f"updated {README}")
