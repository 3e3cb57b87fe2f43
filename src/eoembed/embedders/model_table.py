"""The documentation's model table, generated from the model cards (never written by hand).

``eoembed models --markdown`` prints it; ``scripts/update_readme.py`` writes it between the
README's ``<!-- models:start -->`` / ``<!-- models:end -->`` markers and a test keeps the two
equal, so the docs cannot drift from the cards.
"""

from __future__ import annotations

from eoembed.embedders.card import ModelCard
from eoembed.embedders.registry import describe_model, list_models
from eoembed.specs.output import REDUCTIONS

__all__ = ["README_MARKERS", "markdown_table", "model_row"]

README_MARKERS = ("<!-- models:start -->", "<!-- models:end -->")

_HEADER = (
    "| id | family | input | unit | side inputs | dim | outputs | pooled: default; also | "
    "weights | licence |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def _bands(card: ModelCard) -> str:
    names = card.input.band_names
    if card.product is not None:
        return f"published, {len(names)} dims ({names[0]}..{names[-1]})"
    if len(names) > 6:
        return f"{len(names)} S2 bands ({names[0]}..{names[-1]})"
    return " ".join(names)


def _input(card: ModelCard) -> str:
    contract = card.input
    if card.product is not None:
        years = card.product.years
        when = "static" if years is None else f"annual {years[0]}-{years[1]}"
        return f"{_bands(card)}, {contract.gsd_m:g} m, {when}"
    size = f"{contract.image_size} px" if contract.image_size else "any size"
    return (
        f"{_bands(card)}, {contract.processing_level}, {contract.gsd_m:g} m; {size}, "
        f"{contract.patch_size} px/cell"
    )


_UNIT_LABEL = {"dn": "DN (reflectance x 10000)", "reflectance": "reflectance (DN / 10000)"}


def _pooling(card: ModelCard) -> str:
    """``**default**; others`` with the grid reductions written once."""
    rule = card.pooling
    others = [p for p in rule.supported if p != rule.default and p not in REDUCTIONS]
    reductions = [p for p in REDUCTIONS if p in rule.supported and p != rule.default]
    if reductions:
        others.append("/".join(reductions))
    return f"**{rule.default}**" + (f"; {', '.join(others)}" if others else "")


def _weights(card: ModelCard) -> str:
    w = card.weights
    if card.product is not None:
        return f"[product]({card.product.url}) via {', '.join(card.product.providers)}"
    if w is None:
        return "none (no training)"
    if w.download_url:
        pin = f"sha256 `{w.sha256[:7]}`" if w.pinned else "unpinned"
        return f"[{w.filename}]({w.url or w.download_url}) {pin}"
    pin = f"`{w.revision[:7]}`" if w.pinned else "unpinned"
    return f"[{w.repo_id}]({w.url or 'https://huggingface.co/' + w.repo_id}) {pin}"


def model_row(card: ModelCard) -> str:
    """One markdown table row for ``card``."""
    cells = [
        f"`{card.id}`",
        card.family,
        _input(card),
        "-" if card.product is not None else _UNIT_LABEL[card.input.unit],
        ", ".join(card.input.side_inputs) or "-",
        str(card.embedding_dim),
        ", ".join(card.outputs),
        _pooling(card),
        _weights(card),
        card.licence.replace("|", "/"),
    ]
    return "| " + " | ".join(cells) + " |"


def markdown_table() -> str:
    """Every registered model as a markdown table, sorted by id."""
    rows = [model_row(describe_model(m)) for m in list_models()]
    return "\n".join([_HEADER, *rows])
