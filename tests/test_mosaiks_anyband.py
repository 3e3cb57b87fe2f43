"""MOSAIKS on any bands, standardised with fixed statistics or the input's own."""

from __future__ import annotations

import numpy as np
import pytest

from eoembed import OutputSpec, PointBuffer, TemporalSpec, get_embedding
from eoembed.embedders import get_embedder
from zoo import sample_pixels

POINT = PointBuffer(lon=-75.70, lat=37.70, buffer_m=320)
WINDOW = TemporalSpec.range("2015-06-23", "2016-06-11")


def test_input_stats_are_invariant_to_gain_and_offset(sample_provider) -> None:
    pixels = sample_pixels(sample_provider, ("B02", "B03", "B04", "B08"), 64)
    model = get_embedder("mosaiks", device="cpu", stats="input")
    base = model.embed(pixels, OutputSpec.pooled())
    gain = np.asarray([0.5, 2.0, 3.0, 0.1], np.float32)[None, :, None, None]
    rescaled = model.embed(pixels * gain + 100.0, OutputSpec.pooled())
    np.testing.assert_allclose(rescaled, base, rtol=1e-3, atol=1e-4)
    fixed = get_embedder("mosaiks", device="cpu", stats="fixed")
    assert not np.allclose(fixed.embed(pixels, OutputSpec.pooled()), base, rtol=1e-2)
    far = fixed.embed(pixels * gain + 100.0, OutputSpec.pooled())
    assert far.shape == base.shape
    assert any("standard deviations" in w for n in fixed.call_notes() for w in n.get("warnings", []))


@pytest.mark.parametrize("bands", [("B04", "B03", "B02"), ("B02", "B03", "B04", "B8A", "B11", "B12")])
def test_any_band_count_and_stats_in_metadata(bands) -> None:
    emb = get_embedding("mosaiks", spatial=POINT, temporal=WINDOW, device="cpu", bands=bands)
    norm = emb.meta["normalisation"]
    assert norm["bands"] == list(bands) and len(norm["mean"]) == len(bands)
    # auto: B11/B12 have no counterpart among B02/B03/B04/B08, so each region's own statistics
    assert norm["stats"] == ("input" if "B11" in bands else "fixed") and norm["valid_pixels"] > 0
    assert emb.meta["band_match"] == {b: b for b in bands}
    assert np.asarray(emb.data).shape == (512,)


def test_auto_stats_lend_the_nearest_default_band_statistics() -> None:
    """B8A takes B08's sample statistics under auto; the same numbers as stats='fixed'."""
    bands = ("B02", "B03", "B04", "B8A")
    auto = get_embedding("mosaiks", spatial=POINT, temporal=WINDOW, device="cpu", bands=bands)
    own = get_embedding("mosaiks", spatial=POINT, temporal=WINDOW, device="cpu",
                        bands=("B02", "B03", "B04", "B08"))
    assert auto.meta["normalisation"]["mean"] == own.meta["normalisation"]["mean"]
    assert auto.meta["normalisation"]["stats"] == "fixed"
    local = get_embedding("mosaiks", spatial=POINT, temporal=WINDOW, device="cpu", bands=bands,
                          stats="input")
    assert not np.allclose(np.asarray(local.data), np.asarray(auto.data), rtol=1e-2)


def test_new_options_at_their_defaults_keep_earlier_fingerprints() -> None:
    """Exports written before ``bands``/``stats``/``mean``/``std`` existed stay current."""
    from eoembed import SensorSpec
    from eoembed.pipeline.plan import model_request

    sensor = SensorSpec("sentinel-2-l1c", ("B02", "B03", "B04", "B08"), 10.0)

    def options(**args: object) -> dict:
        request = model_request(get_embedder("mosaiks", device="cpu", **args), sensor, WINDOW,
                                OutputSpec.pooled(), "sample", None, "test")
        return request["options"]

    earlier = {"num_features", "kernel_size", "bias", "seed", "cell_px"}  # before stop 19
    assert set(options()) == earlier and options() == options(stats="auto", bands=[])
    assert options(stats="input")["stats"] == "input"
    assert options(bands=["B04", "B08"])["bands"] == ["B04", "B08"]
