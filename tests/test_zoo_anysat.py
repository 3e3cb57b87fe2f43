"""AnySat adapter: the released checkpoint layout loads, and matches the original model.

The reference is the vendored original ``hubconf.AnySat`` (github.com/gastruc/AnySat, via
rs-embed 0.3.1) called as its README does, ``AnySat(data, patch_size=..., output=...)`` with
``data = {"s2": (B, T, 10, H, W), "s2_dates": (B, T)}``, on real sample pixels standardised
and dated here. Its (seeded, random) ``AnyModule`` weights are published as the release is
(``{"state_dict": ...}``, what ``AnySat.from_pretrained`` reads) into an offline hub cache
and loaded through eoembed's loader.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from eoembed import OutputSpec
from eoembed.embedders import describe_model, get_embedder
from eoembed.embedders.anysat import AnySatBase, frame_days_of_year
from eoembed.embedders.context import SampleContext
from eoembed.errors import ModelArgumentError
from zoo import (
    CONTEXT,
    assert_parity,
    checkpoint_bytes,
    offline_hub,  # noqa: F401
    publish,
    sample_pixels,
)

MODEL = "anysat-base"
BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
DATES = (dt.date(2016, 1, 1), dt.date(2016, 4, 10), dt.date(2016, 12, 31))
DOYS = [0, 100, 364]  # AnySat docs: 1 Jan -> 0, 31 Dec -> 364 (leap day clipped)


def _standardise(frames: np.ndarray) -> Any:
    """rs-embed's ``per_tile_zscore``: per sample and band over frames and pixels."""
    mean = frames.mean(axis=(1, 3, 4), keepdims=True)
    std = np.maximum(frames.std(axis=(1, 3, 4), keepdims=True), 1e-6)
    return torch.from_numpy(((frames - mean) / std).astype(np.float32))


def _data(frames: np.ndarray, doys: list[int]) -> dict[str, Any]:
    return {"s2": _standardise(frames), "s2_dates": torch.tensor([doys] * len(frames))}


def test_parity_with_original_anysat(
    offline_hub: Path, monkeypatch: pytest.MonkeyPatch, sample_provider: Any,  # noqa: F811
) -> None:
    from eoembed.embedders._vendor.anysat.hubconf import AnySat

    # One sample of three frames, each a real 32 x 32 px patch of the sample scene (the
    # scene has one acquisition), and one single image. Each sample costs ~5 s of CPU per
    # call: batches are left to the contract test (batch == one at a time).
    frames = sample_pixels(sample_provider, BANDS, 32, n=3).reshape(1, 3, 10, 32, 32)
    torch.manual_seed(0)
    ref = AnySat(model_size="base", flash_attn=False).eval()
    series, single = _data(frames, DOYS), _data(frames[:1, :1], [349])  # 2015-12-16
    with torch.inference_mode():
        ref_tile = ref(series, patch_size=20, output="tile")
        ref_patch = ref(series, patch_size=20, output="patch")  # (B, 16, 16, 768)
        ref_single = ref(single, patch_size=20, output="tile")
    payload = checkpoint_bytes({"state_dict": ref.model.state_dict()})
    del ref
    source = publish(offline_hub, monkeypatch, MODEL, payload)
    del payload

    embedder = get_embedder(MODEL, device="cpu")
    assert embedder.weights_meta["sha256"] == source.sha256
    context = [dataclasses.replace(CONTEXT, frame_dates=DATES)]
    assert_parity(embedder.embed(frames, OutputSpec.pooled(), context), ref_tile)
    grid = embedder.embed(frames, OutputSpec.grid(), context)
    assert grid.shape == (1, 768, 16, 16)
    assert_parity(grid, ref_patch.permute(0, 3, 1, 2))
    # One image is a one-frame series dated by the sample's date.
    assert_parity(embedder.embed(frames[:1, 0], OutputSpec.pooled(), [CONTEXT]), ref_single)


def test_frame_dates() -> None:
    """Frame dates, else the sample's date, else mid-year; day of year counted from 0."""
    with_frames = dataclasses.replace(CONTEXT, frame_dates=(DATES[0], None, DATES[2]))
    assert frame_days_of_year([with_frames], 1, 3) == [[0, 349, 364]]
    assert frame_days_of_year([CONTEXT], 1, 2) == [[349, 349]]  # no frame dates: the window's
    assert frame_days_of_year([SampleContext.unknown(10.0)], 1, 1) == [[182]]
    assert frame_days_of_year([], 2, 1) == [[182], [182]]


def test_checkpoint_layouts_and_options() -> None:
    """The release's ``AnyModule`` keys load as they are; a whole ``AnySat`` wrapper's state
    dict (``model.`` keys plus the shared spatial encoder again) maps onto them."""
    convert = object.__new__(AnySatBase).convert_checkpoint
    release = {"cls_token": 1, "spatial_encoder.cls_token": 2}
    assert convert(release) == release
    wrapper = {"model.cls_token": 1, "model.spatial_encoder.cls_token": 2, "spatial_encoder.cls_token": 2}
    assert convert(wrapper) == release
    with pytest.raises(ModelArgumentError, match="patch_size"):
        get_embedder(MODEL, device="cpu", weights="random", patch_size=3)


def test_card() -> None:
    card = describe_model(MODEL)
    assert card.input.band_names == BANDS
    assert card.input.frames > 1 and card.input.side_inputs == ("time",)
    assert card.input.image_size == 32 and card.input.patch_size == 2
    assert AnySatBase.native_pooling  # pooled is AnySat's own tile token, not the grid mean
    assert card.weights is not None
    assert (card.weights.repo_id, card.weights.filename) == ("g-astruc/AnySat", "models/AnySat.pth")
    assert card.licence == "MIT" and "CVPR 2025" in card.citation


def test_tiled_series_smaller_than_native() -> None:
    """``input_prep="tile"`` pads a series smaller than 32 px frame by frame (pooled path)."""
    embedder = get_embedder(MODEL, device="cpu", weights="random", input_prep="tile")
    frames = np.random.default_rng(0).uniform(500, 3000, (1, 2, 10, 24, 24)).astype(np.float32)
    pooled = embedder.embed(frames, OutputSpec.pooled())
    assert pooled.shape == (1, 768) and np.isfinite(pooled).all()


def test_tiled_grid_follows_the_patch_size_option() -> None:
    """Tiles are stitched at the option's patch size: 64 px at patch 4 -> 16 x 16 cells, each
    quadrant the model's own grid of that 32 px tile."""
    embedder = get_embedder(MODEL, device="cpu", weights="random", input_prep="tile", patch_size=4)
    pixels = np.random.default_rng(1).uniform(500, 3000, (1, 10, 64, 64)).astype(np.float32)
    grid = embedder.embed(pixels, OutputSpec.grid())
    assert grid.shape == (1, 768, 16, 16)
    corner = embedder.embed(pixels[..., 32:, :32], OutputSpec.grid())
    np.testing.assert_allclose(grid[..., 8:, :8], corner, rtol=1e-4, atol=1e-5)
