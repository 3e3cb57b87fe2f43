"""Prithvi-EO adapters against TerraTorch's own Prithvi backbones, on checkpoints in the
released (masked-autoencoder) layouts."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import logging
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("terratorch")

from eoembed import OutputSpec
from eoembed.embedders import describe_model, get_embedder
from zoo import CONTEXT, assert_parity, checkpoint_bytes, offline_hub, publish, sample_pixels  # noqa: F401

# Normalisation as published: Prithvi-EO-1.0-100M config and Prithvi-EO-2.0 config.json
# (HLS reflectance x 10000), bands B02, B03, B04, B8A, B11, B12.
V1_MEAN = [775.2290211032589, 1080.992780391705, 1228.5855250417867, 2497.2022620507532,
           2204.2139147975554, 1610.8324823273745]
V1_STD = [1281.526139861424, 1270.0297974547493, 1399.4802505642526, 1368.3446143747644,
          1291.6764008585435, 1154.505683480695]
V2_MEAN = [1087.0, 1342.0, 1433.0, 2734.0, 1958.0, 1363.0]
V2_STD = [2248.0, 2179.0, 2178.0, 1850.0, 1242.0, 1049.0]
BANDS = ("B02", "B03", "B04", "B8A", "B11", "B12")

# id -> (TerraTorch variant, checkpoint layout): Prithvi 1.0 was released flat (no encoder./
# decoder. prefixes), 2.0 as a PrithviMAE state dict.
MODELS = {
    "prithvi-eo-v1-100": ("prithvi_eo_v1_100", "flat"),
    "prithvi-eo-v2-tiny-tl": ("prithvi_eo_v2_tiny_tl", "mae"),
    "prithvi-eo-v2-100-tl": ("prithvi_eo_v2_100_tl", "mae"),
    "prithvi-eo-v2-300": ("prithvi_eo_v2_300", "mae"),
    "prithvi-eo-v2-300-tl": ("prithvi_eo_v2_300_tl", "mae"),
    "prithvi-eo-v2-600": ("prithvi_eo_v2_600", "mae"),
    "prithvi-eo-v2-600-tl": ("prithvi_eo_v2_600_tl", "mae"),
}


def _released_checkpoint(variant: str, layout: str) -> bytes:
    """TerraTorch's full MAE with seeded random weights, at its pretraining num_frames."""
    from terratorch.models.backbones import prithvi_vit

    torch.manual_seed(0)
    frames = prithvi_vit.prithvi_cfgs[variant]["num_frames"]
    mae = getattr(prithvi_vit, f"{variant}_mae")(pretrained=False, num_frames=frames)
    state = mae.state_dict()
    if layout == "flat":
        state = {k.split(".", 1)[1]: v for k, v in state.items()}
    payload = checkpoint_bytes(state)
    del mae, state
    gc.collect()
    return payload


@pytest.mark.parametrize("model_id", list(MODELS))
def test_prithvi_matches_terratorch(
    model_id: str, offline_hub: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,  # noqa: F811
    sample_provider: object, caplog: pytest.LogCaptureFixture,
) -> None:
    from terratorch.models.backbones import prithvi_vit

    variant, layout = MODELS[model_id]
    card = describe_model(model_id)
    tl = "time" in card.input.side_inputs
    size, patch = 224, card.input.patch_size
    payload = _released_checkpoint(variant, layout)
    pixels = sample_pixels(sample_provider, BANDS, size, n=2)

    # Reference: TerraTorch's backbone loading the file through its checkpoint_filter_fn_vit.
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(payload)
    with caplog.at_level(logging.WARNING):
        reference = getattr(prithvi_vit, variant)(pretrained=True, ckpt_path=str(ckpt), num_frames=1)
    assert "Missing keys" not in caplog.text and "Unexpected keys" not in caplog.text
    ckpt.unlink()
    v1 = model_id.endswith("v1-100")
    mean = np.array(V1_MEAN if v1 else V2_MEAN, np.float32)[:, None, None]
    std = np.array(V1_STD if v1 else V2_STD, np.float32)[:, None, None]
    x = torch.from_numpy((pixels - mean) / std)
    kwargs = {}
    if tl:  # (year, day of year) of 2015-12-16 and (lat, lon) of CONTEXT
        kwargs = {"temporal_coords": torch.tensor([[[2015.0, 350.0]]] * 2),
                  "location_coords": torch.tensor([[37.70, -75.70]] * 2)}
    with torch.inference_mode():
        tokens = reference.eval().forward_features(x, **kwargs)[-1][:, 1:]
    side = size // patch
    ref = tokens.reshape(2, side, side, -1).permute(0, 3, 1, 2).numpy()
    del reference, tokens
    gc.collect()

    source = publish(offline_hub, monkeypatch, model_id, payload)
    del payload
    embedder = get_embedder(model_id, device="cpu")
    assert embedder.weights_meta["sha256"] == source.sha256
    context = [CONTEXT, CONTEXT] if tl else None
    grid = embedder.embed(pixels, OutputSpec.grid(), context)
    pooled = embedder.embed(pixels, OutputSpec.pooled(), context)
    assert_parity(grid, ref)
    assert_parity(pooled, ref.mean(axis=(2, 3)))

    if tl:  # the side inputs are wired: moving the place or the date moves the embedding
        moved = dataclasses.replace(CONTEXT, lat=-10.0, lon=120.0)
        later = dataclasses.replace(CONTEXT, date=dt.date(2016, 6, 1))
        for other in (moved, later):
            changed = embedder.embed(pixels[:1], OutputSpec.pooled(), [other])
            assert not np.allclose(changed, pooled[:1], rtol=1e-3, atol=1e-4)


def test_prithvi_cards_are_consistent() -> None:
    from terratorch.models.backbones import prithvi_vit

    for model_id, (variant, _) in MODELS.items():
        card = describe_model(model_id)
        assert card.input.band_names == BANDS
        norm = card.input.normalisation
        assert len(norm.mean) == len(norm.std) == len(BANDS) and norm.scale == 1.0
        assert card.input.image_size == 224 and 224 % card.input.patch_size == 0
        assert card.input.frames == prithvi_vit.prithvi_cfgs[variant]["num_frames"]
        assert card.weights is not None and card.weights.repo_id.startswith("ibm-nasa-geospatial/")
        assert card.input.side_inputs == (("latlon", "time") if variant.endswith("_tl") else ())
    dims = {m: describe_model(m).embedding_dim for m in MODELS}
    assert dims["prithvi-eo-v2-600"] == 1280 and dims["prithvi-eo-v2-tiny-tl"] == 192


def test_location_is_lat_lon_as_terratorch_tl_datasets_build_it() -> None:
    """TerraTorch's ``FireScarsNonGeo._get_coords`` (the HLS fire-scar set of the
    Prithvi-EO-2.0 TL fine-tuning) on a UTM tile centred on the sample point gives the
    coordinates eoembed feeds, in the same order; and ``LocationEncoder`` embeds column 0 in
    its latitude channels."""
    pytest.importorskip("rioxarray")
    import xarray as xr
    from pyproj import Transformer
    from terratorch.datasets.fire_scars import FireScarsNonGeo
    from terratorch.models.backbones.prithvi_mae import (
        LocationEncoder,
        _get_1d_sincos_embed_from_grid_torch,
    )

    from eoembed.embedders.prithvi import location_coords

    east, north = Transformer.from_crs(4326, 32618, always_xy=True).transform(
        CONTEXT.lon, CONTEXT.lat)
    xs = east + 30.0 * (np.arange(8) - 4) + 15.0
    ys = north - 30.0 * (np.arange(8) - 4) - 15.0
    tile = xr.DataArray(np.zeros((1, 8, 8), np.float32), dims=("band", "y", "x"),
                        coords={"band": [1], "y": ys, "x": xs}).rio.write_crs(32618)
    tile = tile.rio.write_transform(tile.rio.transform(recalc=True))  # as open_rasterio has it
    upstream = FireScarsNonGeo._get_coords(None, tile)  # type: ignore[arg-type]
    np.testing.assert_allclose(upstream.numpy(), location_coords(CONTEXT), atol=1e-3)
    encoder = LocationEncoder(embed_dim=16, trainable_scale=False)
    embedded = encoder(torch.tensor([location_coords(CONTEXT)]))[0, 0]
    lat_part = _get_1d_sincos_embed_from_grid_torch(8, torch.tensor([CONTEXT.lat]))[0]
    torch.testing.assert_close(embedded[: encoder.lat_embed_dim], lat_part)


def test_date_is_year_and_one_based_day_of_year() -> None:
    from eoembed.embedders.prithvi import temporal_coords

    assert CONTEXT.date is not None
    assert temporal_coords(CONTEXT.date) == (2015.0, 350.0)


def test_prithvi_time_series_matches_terratorch(
    offline_hub: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,  # noqa: F811
    sample_provider: object,
) -> None:
    """Three dated frames: TerraTorch built for num_frames=3 with per-frame (year, doy)."""
    from terratorch.models.backbones import prithvi_vit

    model_id, variant = "prithvi-eo-v2-100-tl", "prithvi_eo_v2_100_tl"
    payload = _released_checkpoint(variant, "mae")
    frames = sample_pixels(sample_provider, BANDS, 224, n=6).reshape(2, 3, len(BANDS), 224, 224)
    dates = (dt.date(2015, 7, 1), dt.date(2015, 9, 15), dt.date(2016, 2, 28))
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(payload)
    reference = prithvi_vit.prithvi_eo_v2_100_tl(pretrained=True, ckpt_path=str(ckpt), num_frames=3)
    ckpt.unlink()
    mean = np.array(V2_MEAN, np.float32)[:, None, None]
    std = np.array(V2_STD, np.float32)[:, None, None]
    x = torch.from_numpy((frames - mean) / std).permute(0, 2, 1, 3, 4)
    doy = [[float(d.year), float(d.timetuple().tm_yday)] for d in dates]
    with torch.inference_mode():
        tokens = reference.eval().forward_features(
            x, temporal_coords=torch.tensor([doy] * 2),
            location_coords=torch.tensor([[37.70, -75.70]] * 2),
        )[-1][:, 1:]
    ref = tokens.reshape(2, 3, 14, 14, -1).mean(dim=1).permute(0, 3, 1, 2).numpy()
    del reference, tokens
    gc.collect()

    publish(offline_hub, monkeypatch, model_id, payload)
    embedder = get_embedder(model_id, device="cpu")
    context = [dataclasses.replace(CONTEXT, frame_dates=dates)] * 2
    assert_parity(embedder.embed(frames, OutputSpec.grid(), context), ref)
    # Frame order is information: reversing the dates moves the embedding.
    flipped = [dataclasses.replace(CONTEXT, frame_dates=dates[::-1])]
    pooled = embedder.embed(frames[:1], OutputSpec.pooled(), context[:1])
    assert not np.allclose(embedder.embed(frames[:1], OutputSpec.pooled(), flipped), pooled,
                           rtol=1e-3, atol=1e-4)
