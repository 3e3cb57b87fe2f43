"""Published embedding products: the embedding is read, not computed.

A product (AlphaEarth, Tessera, ...) reaches eoembed the way imagery does: a provider turns
(where, when) into an array on the request grid whose "bands" are the embedding's dimensions,
dequantised, with NaN where the product has no data. The adapter here runs no network: grid
output is that array as it is, pooled output a reduction over each region's valid pixels.
So products go through the same one-call API, export engine, manifest, writers and heads as
the models, and no deep-learning framework is imported for them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from eoembed.bands import BandInfo
from eoembed.embedders.base import Embedder
from eoembed.embedders.card import InputContract, ModelCard, Normalisation, PoolingRule, ProductInfo
from eoembed.errors import CapabilityError

if TYPE_CHECKING:
    from eoembed.embedders.context import SampleContext
    from eoembed.specs import OutputSpec

__all__ = ["PublishedEmbedder", "product_card"]

_REDUCERS: dict[str, Callable[..., Any]] = {
    "mean": np.nanmean,
    "max": np.nanmax,
    "min": np.nanmin,
    "std": np.nanstd,
    "median": np.nanmedian,
}


def product_card(
    *, id: str, family: str, summary: str, collection: str, bands: tuple[BandInfo, ...],
    gsd_m: float, product: ProductInfo, licence: str, citation: str,
) -> ModelCard:
    """The card of a published product: its dimensions as bands, grid cells = its pixels."""
    return ModelCard(
        id=id,
        family=family,
        summary=summary,
        input=InputContract(
            collections=(collection,),
            processing_level="embedding",
            bands=bands,
            gsd_m=gsd_m,
            image_size=None,
            patch_size=1,
            normalisation=Normalisation(note="none: values are the published embedding"),
            band_rule="name",
        ),
        embedding_dim=len(bands),
        outputs=("pooled", "grid"),
        weights=None,
        licence=licence,
        citation=citation,
        grid_matches_input=True,
        reference=product.url,
        pooling=PoolingRule(
            default="mean",
            source="mean of the product's valid pixels over the region (NaN-aware)",
        ),
        product=product,
    )


class PublishedEmbedder(Embedder):
    """Pooled or gridded views of a product's pixels (no network, no torch)."""

    needs_torch = False

    def build(self) -> None:
        """Nothing to build: the values come with the pixels."""

    def embed(
        self,
        pixels: np.ndarray,
        output: OutputSpec,
        context: Sequence[SampleContext] | None = None,
        *,
        bands: Sequence[BandInfo] | None = None,
    ) -> np.ndarray:
        """``(N, D, H, W)`` product pixels (NaN: no data) -> ``(N, D)`` pooled or the grids.

        A pooled reduction takes each region's valid pixels only; a region without any gives
        NaN (providers refuse such regions before this).
        """
        dim = self.card.embedding_dim
        if pixels.ndim != 4 or pixels.shape[1] != dim:
            raise CapabilityError(
                f"product {self.card.id!r} takes (N, {dim}, H, W) values, got shape {pixels.shape}"
            )
        if bands is not None and tuple(bands) != self.card.input.bands:
            raise CapabilityError(f"product {self.card.id!r} takes its own {dim} dimensions only")
        if output.mode not in self.card.outputs:
            raise CapabilityError(f"product {self.card.id!r} gives no {output.mode!r} output")
        values = np.asarray(pixels, dtype=np.float32)
        if output.mode == "grid":
            return values
        pooling = self.card.resolve_output(output).pooling
        assert pooling is not None
        flat = values.reshape(*values.shape[:2], -1).astype(np.float64)  # sums of ~1e5 pixels
        with warnings.catch_warnings():  # an all-NaN region is NaN, said by the provider
            warnings.simplefilter("ignore", RuntimeWarning)
            pooled = _REDUCERS[pooling](flat, axis=-1)
        return np.asarray(pooled, dtype=np.float32)

    def metadata(self) -> dict[str, Any]:
        """The base record plus what the product is."""
        meta = super().metadata()
        product = self.card.product
        if product is not None:
            meta["product"] = {"name": product.name, "quantisation": product.quantisation,
                               "url": product.url}
        return meta
