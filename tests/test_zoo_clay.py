"""Clay v1 base against TerraTorch's Clay ``Embedder``, on a checkpoint in the released
Lightning layout (``state_dict`` with ``model.encoder.*``, decoder and teacher entries)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("terratorch")

from eoembed import OutputSpec
from eoembed.embedders import describe_model, get_embedder
from zoo import (
    CONTEXT,
    assert_parity,
    checkpoint_bytes,
    offline_hub,  # noqa: F401
    publish,
    sample_pixels,
    shallow,  # noqa: F401
)

# Clay configs/metadata.yaml, sentinel-2-l2a: band_order, mean, std, wavelength.
CLAY_BANDS = ["blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08",
              "swir16", "swir22"]
S2_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
MEAN = [1105.0, 1355.0, 1552.0, 1887.0, 2422.0, 2630.0, 2743.0, 2785.0, 2388.0, 1835.0]
STD = [1809.0, 1757.0, 1888.0, 1870.0, 1732.0, 1697.0, 1742.0, 1648.0, 1470.0, 1379.0]
WAVES = [0.493, 0.56, 0.665, 0.704, 0.74, 0.783, 0.842, 0.865, 1.61, 2.19]


def normalize_timestamp(date: dt.datetime) -> tuple[tuple[float, float], tuple[float, float]]:
    """As Clay's tutorials."""
    week = date.isocalendar().week * 2 * np.pi / 52
    hour = date.hour * 2 * np.pi / 24
    return (math.sin(week), math.cos(week)), (math.sin(hour), math.cos(hour))


def normalize_latlon(lat: float, lon: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """As Clay's tutorials."""
    lat, lon = lat * np.pi / 180, lon * np.pi / 180
    return (math.sin(lat), math.cos(lat)), (math.sin(lon), math.cos(lon))


def _embedder_module() -> Any:
    from terratorch.models.backbones.clay_v1 import embedder

    return embedder


def test_clay_matches_terratorch(
    offline_hub: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,  # noqa: F811
    sample_provider: Any, shallow: Callable[[str], None],  # noqa: F811
) -> None:
    shallow("clay-v1-base")
    embedder_mod = _embedder_module()
    torch.manual_seed(0)
    net = embedder_mod.Embedder(img_size=256, bands=CLAY_BANDS)
    state = {"model.encoder." + k.removeprefix("clay_encoder."): v
             for k, v in net.state_dict().items()}
    state["model.decoder.embed_to_pixels.weight"] = torch.randn(4, 4)  # dropped by the filter
    state["model.teacher.cls_token"] = torch.randn(1, 1, 8)
    payload = checkpoint_bytes({"state_dict": state, "epoch": 3, "global_step": 100})
    del net, state

    # Reference: TerraTorch's Embedder with its transform_state_dict filter, strictly.
    ckpt = tmp_path / "clay.ckpt"
    ckpt.write_bytes(payload)
    reference = embedder_mod.Embedder(img_size=256, bands=CLAY_BANDS)
    loaded = torch.load(ckpt, map_location="cpu", weights_only=True)
    reference.load_state_dict(embedder_mod.Embedder.transform_state_dict(loaded, reference))
    pixels = sample_pixels(sample_provider, S2_BANDS, 256, n=2)
    x = torch.from_numpy((pixels - np.array(MEAN, np.float32)[:, None, None])
                         / np.array(STD, np.float32)[:, None, None])
    week, hour = normalize_timestamp(dt.datetime(2015, 12, 16))
    lat, lon = normalize_latlon(CONTEXT.lat, CONTEXT.lon)
    time = torch.tensor([[*week, *hour]] * 2, dtype=torch.float32)
    latlon = torch.tensor([[*lat, *lon]] * 2, dtype=torch.float32)
    with torch.inference_mode():
        tokens = reference.eval().forward_features(
            x, time=time, latlon=latlon, waves=torch.tensor(WAVES), gsd=10.0)[-1][:, 1:]
    ref = tokens.reshape(2, 32, 32, -1).permute(0, 3, 1, 2).numpy()
    del reference, loaded
    gc.collect()

    source = publish(offline_hub, monkeypatch, "clay-v1-base", payload)
    embedder = get_embedder("clay-v1-base", device="cpu")
    assert embedder.weights_meta["sha256"] == source.sha256
    grid = embedder.embed(pixels, OutputSpec.grid(), [CONTEXT, CONTEXT])
    pooled = embedder.embed(pixels, OutputSpec.pooled(), [CONTEXT, CONTEXT])
    assert_parity(grid, ref)
    assert_parity(pooled, ref.mean(axis=(2, 3)))

    # Side inputs are wired: place, date and GSD each move the embedding.
    for other in (dataclasses.replace(CONTEXT, lat=-10.0, lon=120.0),
                  dataclasses.replace(CONTEXT, date=dt.date(2016, 6, 1)),
                  dataclasses.replace(CONTEXT, gsd_m=30.0)):
        changed = embedder.embed(pixels[:1], OutputSpec.pooled(), [other])
        assert not np.allclose(changed, pooled[:1], rtol=1e-3, atol=1e-4)
    # Mixed GSDs in one batch: each sample as if alone.
    mixed = embedder.embed(pixels, OutputSpec.pooled(),
                           [CONTEXT, dataclasses.replace(CONTEXT, gsd_m=30.0)])
    np.testing.assert_allclose(mixed[0], pooled[0], rtol=1e-4, atol=1e-5)


def test_clay_card_is_consistent() -> None:
    card = describe_model("clay-v1-base")
    assert card.input.band_names == S2_BANDS
    norm = card.input.normalisation
    assert list(norm.mean) == MEAN and list(norm.std) == STD and norm.scale == 1.0
    assert card.input.image_size == 256 and card.input.patch_size == 8
    assert card.embedding_dim == 768
    assert set(card.input.side_inputs) == {"wavelengths", "gsd", "latlon", "time"}
