"""Galileo adapters: parity with the original encoder (nasaharvest ``single_file_galileo.py``,
vendored) loaded the upstream way (``Encoder.load_from_folder``) from a release laid out as
the Hub repository ``nasaharvest/galileo`` publishes it (``models/<size>/config.json`` and
``encoder.pt``), fed as ``construct_galileo_input(s2=...)`` packs an S2-only sample and
normalised as the pretraining ``Normalizer(std=True)`` does."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("einops")

from conftest import SAMPLE_POINT, SAMPLE_WINDOW
from eoembed import OutputSpec, get_embedding
from eoembed.embedders import describe_model, get_embedder
from eoembed.embedders._vendor.galileo import single_file_galileo as sfg
from zoo import (
    CONTEXT,
    assert_parity,
    checkpoint_bytes,
    offline_hub,  # noqa: F401
    publish,
    sample_pixels,
)

SIZES = {"galileo-nano": "nano", "galileo-tiny": "tiny", "galileo-base": "base"}
ENCODER_CONFIGS = {
    # "model" -> "encoder" of nasaharvest/galileo config/models/<size>.json (= the releases'
    # models/<size>/config.json).
    "nano": {"embedding_size": 128, "depth": 4, "num_heads": 8, "mlp_ratio": 4,
             "max_sequence_length": 24, "freeze_projections": False, "drop_path": 0.1,
             "max_patch_size": 8},
    "tiny": {"embedding_size": 192, "depth": 12, "num_heads": 3, "mlp_ratio": 4,
             "max_sequence_length": 24, "freeze_projections": False, "drop_path": 0.1,
             "max_patch_size": 8},
    "base": {"embedding_size": 768, "depth": 12, "num_heads": 12, "mlp_ratio": 4,
             "max_sequence_length": 24, "freeze_projections": False, "drop_path": 0.1,
             "max_patch_size": 8},
}
NORMALIZATION_13 = {
    # config/normalization.json, key "13" (SPACE_TIME_BANDS: VV VH B2..B12 NDVI).
    "mean": [-11.728724389184965, -18.85558188024017, 1395.3408730676722, 1338.4026921784578,
             1343.09883810357, 1543.8607982512297, 2186.2022069512263, 2525.0932853316694,
             2410.3377187373408, 2750.2854646886753, 2234.911100061487, 1474.5311266077113,
             0.2892116502999044],
    "std": [4.887145774840316, 5.730270320384293, 917.7041440370853, 913.2988423581528,
            1092.678723527555, 1047.2206083460424, 1048.0101611156767, 1143.6903026819996,
            1098.979177731649, 1204.472755085893, 1145.9774063078878, 980.2429840007796,
            0.2720939024500081],
}
PATCH, SIZE_PX, DEFAULT_MONTH = 8, 64, 5


def _normalize(s_t_x: np.ndarray) -> np.ndarray:
    """``Normalizer(std=True)`` on space-time bands: std bands are all but NDVI (shift 0, div 1)."""
    mean, std = np.array(NORMALIZATION_13["mean"]), np.array(NORMALIZATION_13["std"])
    shift, div = mean - 2 * std, 4 * std
    shift[-1], div[-1] = 0.0, 1.0
    return (s_t_x - shift) / div


def _to_cartesian(lat: float, lon: float) -> np.ndarray:
    """``src/data/dataset.py`` ``to_cartesian`` (float inputs)."""
    lat, lon = lat * math.pi / 180, lon * math.pi / 180
    return np.array([math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat)])


def _construct_s2_input(s2: np.ndarray, months: list[int],
                        latlon: tuple[float, float] | None = None) -> list[Any]:
    """One instance as ``construct_galileo_input(s2=[H, W, T, 10], latlon=..., months=...)``:
    the location group visible and cartesian when given (its normaliser is shift 0, div 1)."""
    h, w, t, _ = s2.shape
    s_t_x = np.zeros((h, w, t, len(sfg.SPACE_TIME_BANDS)))
    s_t_m = np.ones((h, w, t, len(sfg.SPACE_TIME_BANDS_GROUPS_IDX)))
    idx = [i for i, b in enumerate(sfg.SPACE_TIME_BANDS) if b in sfg.S2_BANDS]
    groups = [i for i, k in enumerate(sfg.SPACE_TIME_BANDS_GROUPS_IDX) if "S2" in k]
    s_t_x[..., idx] = s2
    s_t_m[..., groups] = 0
    st_x = np.zeros(len(sfg.STATIC_BANDS))
    st_m = np.ones(len(sfg.STATIC_BAND_GROUPS_IDX))
    if latlon is not None:
        st_x[[sfg.STATIC_BANDS.index(b) for b in sfg.LOCATION_BANDS]] = _to_cartesian(*latlon)
        st_m[[i for i, k in enumerate(sfg.STATIC_BAND_GROUPS_IDX) if "location" in k]] = 0
    return [
        _normalize(s_t_x),
        np.zeros((h, w, len(sfg.SPACE_BANDS))),
        np.zeros((t, len(sfg.TIME_BANDS))),
        st_x,
        s_t_m,
        np.ones((h, w, len(sfg.SPACE_BAND_GROUPS_IDX))),
        np.ones((t, len(sfg.TIME_BAND_GROUPS_IDX))),
        st_m,
        np.array(months),
    ]


PLACE = (CONTEXT.lat, CONTEXT.lon)


def _reference_run(encoder: Any, frames: np.ndarray, months: list[list[int]],
                   latlons: list[tuple[float, float] | None] | None = None) -> tuple[Any, Any]:
    """(grid, pooled) of ``(N, T, 10, H, W)`` DN frames, the upstream way."""
    places = latlons or [None] * len(frames)
    items = [_construct_s2_input(f.transpose(2, 3, 0, 1), m, ll)
             for f, m, ll in zip(frames, months, places, strict=True)]
    batch = [torch.from_numpy(np.stack(parts)) for parts in zip(*items, strict=True)]
    x, m = [b.float() for b in batch[:8]], batch[8].long()
    with torch.no_grad():
        out = encoder(*x, m, patch_size=PATCH)
        tokens = out[:8]
        per_patch = encoder.apply_mask_and_average_tokens_per_patch(*tokens)
        pooled = encoder.average_tokens(*tokens)
    n, hp, wp = tokens[0].shape[:3]
    return per_patch.reshape(n, hp, wp, -1).permute(0, 3, 1, 2), pooled


def _publish_release(size: str, model_id: str, cache: Path, monkeypatch: pytest.MonkeyPatch,
                     seed: int) -> tuple[Any, str]:
    """Seeded random encoder saved as the release (encoder.pt + config.json); the reference
    loaded back from those files with the upstream ``Encoder.load_from_folder``."""
    torch.manual_seed(seed)
    payload = checkpoint_bytes(sfg.Encoder(**ENCODER_CONFIGS[size]).state_dict())
    source = publish(cache, monkeypatch, model_id, payload)
    assert source.filename == f"models/{size}/encoder.pt"
    folder = cache / f"models--{source.repo_id.replace('/', '--')}" / "snapshots"
    folder = folder / source.revision / "models" / size
    (folder / "config.json").write_text(json.dumps({"model": {"encoder": ENCODER_CONFIGS[size]}}))
    reference = sfg.Encoder.load_from_folder(folder, device=torch.device("cpu")).eval()
    return reference, hashlib.sha256(payload).hexdigest()


@pytest.mark.parametrize("model_id", list(SIZES))
def test_parity_with_the_original_encoder(
    model_id: str, offline_hub: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
    sample_provider: Any,
) -> None:
    reference, digest = _publish_release(SIZES[model_id], model_id, offline_hub, monkeypatch, 0)
    embedder = get_embedder(model_id, device="cpu")
    assert embedder.weights_meta["sha256"] == digest
    card = describe_model(model_id)
    pixels = sample_pixels(sample_provider, card.input.band_names, SIZE_PX, n=2)
    ctx = [CONTEXT, CONTEXT]
    grid = embedder.embed(pixels, OutputSpec.grid(), ctx)
    pooled = embedder.embed(pixels, OutputSpec.pooled(), ctx)
    assert CONTEXT.date is not None
    december = CONTEXT.date.month - 1
    ref_grid, ref_pooled = _reference_run(reference, pixels[:, None], [[december]] * 2,
                                          [PLACE] * 2)
    assert grid.shape == (2, card.embedding_dim, SIZE_PX // PATCH, SIZE_PX // PATCH)
    assert_parity(grid, ref_grid)
    assert_parity(pooled, ref_pooled)
    if model_id != "galileo-nano":
        return

    # The month is wired: June (sample 0) changes the embedding as it changes the reference's;
    # without a context, upstream's DEFAULT_MONTH.
    june = dataclasses.replace(CONTEXT, date=dt.date(2015, 6, 16))
    other = embedder.embed(pixels, OutputSpec.pooled(), [june, CONTEXT])
    assert not np.allclose(other[0], pooled[0], rtol=1e-4, atol=1e-5)
    assert_parity(other, _reference_run(reference, pixels[:, None], [[5], [december]],
                                        [PLACE] * 2)[1])
    bare = embedder.embed(pixels, OutputSpec.grid())
    assert_parity(bare, _reference_run(reference, pixels[:, None], [[DEFAULT_MONTH]] * 2)[0])
    # The location is wired: known (sample 0, elsewhere) visible as upstream packs it, unknown
    # (sample 1) masked; either way as the reference.
    away = dataclasses.replace(CONTEXT, lat=-33.9, lon=18.4)
    nowhere = dataclasses.replace(CONTEXT, lat=math.nan, lon=math.nan)
    placed = embedder.embed(pixels, OutputSpec.pooled(), [away, nowhere])
    assert not np.allclose(placed[0], pooled[0], rtol=1e-4, atol=1e-5)
    assert_parity(placed, _reference_run(reference, pixels[:, None], [[december]] * 2,
                                         [(-33.9, 18.4), None])[1])

    # A time series (N, T, 10, H, W): real pixels of three places as three frames, each
    # frame's month from frame_dates.
    more = sample_pixels(sample_provider, card.input.band_names, SIZE_PX, n=4)
    series = np.stack([more[0:3], more[1:4]])
    dates = (dt.date(2016, 1, 10), dt.date(2016, 5, 2), dt.date(2016, 9, 30))
    fctx = [dataclasses.replace(CONTEXT, frame_dates=dates)] * 2
    s_grid = embedder.embed(series, OutputSpec.grid(), fctx)
    s_pooled = embedder.embed(series, OutputSpec.pooled(), fctx)
    r_grid, r_pooled = _reference_run(reference, series, [[0, 4, 8]] * 2, [PLACE] * 2)
    assert s_grid.shape == grid.shape
    assert_parity(s_grid, r_grid)
    assert_parity(s_pooled, r_pooled)


def test_card_matches_the_original() -> None:
    for model_id, size in SIZES.items():
        card = describe_model(model_id)
        assert card.embedding_dim == ENCODER_CONFIGS[size]["embedding_size"]
        assert card.weights is not None and card.weights.repo_id == "nasaharvest/galileo"
        assert card.weights.filename == f"models/{size}/encoder.pt"
        assert card.input.patch_size == ENCODER_CONFIGS[size]["max_patch_size"] == PATCH
        assert card.input.frames <= ENCODER_CONFIGS[size]["max_sequence_length"]
    card = describe_model("galileo-nano")
    assert [b.replace("B0", "B") for b in card.input.band_names] == sfg.S2_BANDS
    # The card's affine map is Normalizer(std=True) on the S2 entries of the 13 bands.
    norm = card.input.normalisation
    x = np.random.default_rng(0).uniform(0, 10000, (5, 10))
    full = np.zeros((5, 13))
    full[:, 2:12] = x
    ours = (x * norm.scale - np.array(norm.mean)) / np.array(norm.std)
    np.testing.assert_allclose(ours, _normalize(full)[:, 2:12])


def test_frames_tiles_and_checkpoint_keys() -> None:
    embedder = get_embedder("galileo-nano", device="cpu", weights="random")
    # Released keys with the ".backbone" infix load as Encoder.load_from_folder loads them.
    assert embedder.convert_checkpoint({"space_embed.SRTM.backbone.proj.bias": 1}) == {
        "space_embed.SRTM.proj.bias": 1
    }
    # frames=1 through the pipeline: the frame's date reaches the model; grid georeferenced.
    emb = get_embedding(
        "galileo-nano", spatial=SAMPLE_POINT, temporal=SAMPLE_WINDOW, frames=1,
        output=OutputSpec.grid(), device="cpu", weights="random",
    )
    assert emb.data.shape == (128, 8, 8) and emb.meta["frames"] == 1
    assert emb.meta["side_inputs"]["frame_dates"][0] is not None
    # Tiles: 64-px tiles at native resolution, each the model's own 8 x 8 grid.
    tiled = get_embedder("galileo-nano", device="cpu", weights="random", input_prep="tile")
    rng = np.random.default_rng(0)
    pixels = rng.uniform(500, 3000, (1, 10, 128, 128)).astype(np.float32)
    grid = tiled.embed(pixels, OutputSpec.grid())
    assert grid.shape == (1, 128, 16, 16)
    corner = tiled.embed(pixels[..., :64, 64:], OutputSpec.grid())
    np.testing.assert_allclose(grid[..., :8, 8:], corner, rtol=1e-4, atol=1e-5)
    del embedder, tiled
    gc.collect()
