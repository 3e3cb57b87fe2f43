"""Bands matched by what they measure: the sensor registry and the matcher."""

from __future__ import annotations

import pytest

from eoembed.bandmatch import BandMatchError, accepted_sensors, any_bands, match_bands
from eoembed.bands import SENSORS, SENTINEL2_BANDS, band, register_sensor, sensor_bands, sentinel2
from eoembed.embedders.registry import describe_model, list_models
from eoembed.errors import CapabilityError


def test_sentinel2_bands_on_landsat8_by_wavelength() -> None:
    match = match_bands(sentinel2("B02", "B03", "B04", "B08", "B8A", "B11", "B12"),
                        SENSORS["landsat-8"])
    # Landsat 8's B11 is thermal, not Sentinel-2's SWIR B11: a name alone does not match.
    assert match.source == ("B2", "B3", "B4", "B5", "B5", "B6", "B7")
    assert match.unique_source == ("B2", "B3", "B4", "B5", "B6", "B7")
    assert ("B11", "B6") in match.substituted


def test_same_name_must_measure_the_same_thing() -> None:
    # MODIS B01 is red (620-670 nm); Sentinel-2's B01 is coastal (443 nm).
    with pytest.raises(BandMatchError, match="B01 \\(coastal"):
        match_bands(sentinel2("B01"), SENSORS["modis"])
    assert match_bands(sentinel2("B04"), SENSORS["modis"]).source == ("B01",)


def test_missing_bands_are_each_named_with_wavelengths() -> None:
    with pytest.raises(BandMatchError) as err:
        match_bands(tuple(SENTINEL2_BANDS.values()), SENSORS["landsat-8"],
                    model_id="m", sensor="landsat-8")
    text = str(err.value)
    for name in ("B05", "B06", "B07", "B09"):
        assert name in text
    assert "B04" not in text.split("has:")[0]
    assert isinstance(err.value, CapabilityError) and isinstance(err.value, ValueError)


def test_panchromatic_never_stands_in() -> None:
    only_pan = sensor_bands("landsat-8", ["pan"])
    with pytest.raises(BandMatchError):
        match_bands(sentinel2("B03"), only_pan)


def test_name_rule_refuses_substitutes() -> None:
    with pytest.raises(BandMatchError, match="of that name"):
        match_bands(sentinel2("B04"), SENSORS["landsat-8"], rule="name")
    assert match_bands(sentinel2("B04"), SENSORS["hls-s30"], rule="name").source == ("B04",)


def test_radar_by_polarisation_only() -> None:
    vv = sensor_bands("sentinel-1", ["vv"])
    assert match_bands(vv, SENSORS["sentinel-1"]).source == ("vv",)
    with pytest.raises(BandMatchError):
        match_bands(sensor_bands("sentinel-1", ["hv"]), vv)
    with pytest.raises(BandMatchError):
        match_bands(sentinel2("B04"), SENSORS["sentinel-1"])


def test_user_declared_sensor() -> None:
    name = "my-drone-test"
    register_sensor(name, [band("R", 0.66, 0.04), band("G", 0.56, 0.04), band("NIR", 0.84, 0.05)])
    try:
        assert match_bands(sentinel2("B04", "B03", "B08"), SENSORS[name]).source == (
            "R", "G", "NIR")
        with pytest.raises(CapabilityError, match="already registered"):
            register_sensor(name, [band("R", 0.66)])
        assert sensor_bands(name, ["nir"])[0].name == "NIR"
    finally:
        del SENSORS[name]
    with pytest.raises(CapabilityError, match="did you mean landsat-8"):
        sensor_bands("landsat8")


def test_every_model_states_its_sensors() -> None:
    for model in list_models():
        card = describe_model(model)
        sensors = card.input.accepted_sensors()
        if card.product is not None:  # published embeddings: read by name, from no sensor
            assert not sensors, model
            continue
        assert sensors, model
        for sensor in sensors:  # each one it states really serves each band
            if card.input.band_rule == "any":  # any optical bands: some there are
                assert any_bands(SENSORS[sensor]).model, (model, sensor)
                continue
            match_bands(card.input.bands, SENSORS[sensor], rule=card.input.band_rule)
    assert "landsat-8" in accepted_sensors(describe_model("mosaiks").input.bands)
