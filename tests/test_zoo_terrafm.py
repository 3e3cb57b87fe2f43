"""TerraFM-B: the released state dict loads, and matches the vendored original terrafm.py.

No maintained package provides TerraFM, so the reference is the Hub repo's own ``terrafm.py``
vendored in ``eoembed.embedders._vendor.terrafm``: ``terrafm_base()`` with seeded random
weights, run through its ``forward`` (class token) and ``extract_feature`` (grid) the way
rs-embed's adapter calls them, on preprocessing written out here. The checkpoint is the plain
state dict the publisher releases (``TerraFM-B.pth``), in the offline hub cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from eoembed import OutputSpec
from eoembed.embedders import describe_model, get_embedder
from eoembed.embedders._vendor.terrafm import terrafm as vendored
from eoembed.embedders.terrafm import TERRAFM_BANDS
from zoo import (
    assert_parity,
    checkpoint_bytes,
    offline_hub,  # noqa: F401
    publish,
    sample_pixels,
)

MODEL = "terrafm-base"


def test_parity_with_vendored_terrafm(
    offline_hub: Path, monkeypatch: pytest.MonkeyPatch, sample_provider: Any,  # noqa: F811
) -> None:
    pixels = sample_pixels(sample_provider, TERRAFM_BANDS, 224, n=2)
    torch.manual_seed(0)
    ref = vendored.terrafm_base().eval()
    x = torch.from_numpy(np.clip(pixels / 10000.0, 0.0, 1.0)).float()
    with torch.inference_mode():
        ref_pooled = ref(x)
        ref_grid = ref.extract_feature(x, out_indices=[11])[-1]
    assert ref_grid.shape == (2, 768, 14, 14)
    source = publish(offline_hub, monkeypatch, MODEL, checkpoint_bytes(ref.state_dict()))
    del ref

    embedder = get_embedder(MODEL, device="cpu")
    assert embedder.weights_meta["sha256"] == source.sha256
    assert_parity(embedder.embed(pixels, OutputSpec.pooled()), ref_pooled)
    assert_parity(embedder.embed(pixels, OutputSpec.grid()), ref_grid)


def test_card() -> None:
    card = describe_model(MODEL)
    assert card.input.band_names == TERRAFM_BANDS and "B10" not in card.input.band_names
    assert card.input.image_size == 224 and card.input.patch_size == 16
    assert card.input.unit == "reflectance"
    assert card.input.provider_scale == pytest.approx(1e-4)
    assert card.embedding_dim == vendored.terrafm_base().embed_dim
    assert card.weights is not None
    assert (card.weights.repo_id, card.weights.filename) == ("MBZUAI/TerraFM", "TerraFM-B.pth")
