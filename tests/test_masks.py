"""Per-pixel cloud/shadow masks: decoding, and composites over clear observations only.

The scenes are real Sentinel-2 pixels (sample bands B02/B04/B08 over SMALL) copied into
local STAC catalogues, with quality layers written here that mark known rectangles as cloud,
shadow, cirrus, fill... and the band values under them replaced by 20000, so anything that
leaks shows. Every expected value is computed here with numpy from the constructed arrays,
never by eoembed's masking or compositing code.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import from_bounds

from eoembed import PointBuffer, SensorSpec, TemporalSpec
from eoembed.errors import CapabilityError, ProviderError, SpecError
from eoembed.grid import Grid
from eoembed.providers.local import LocalProvider
from eoembed.providers.masks import (
    AUTO_MASKS,
    CLOUD_MASKS,
    clear_mask,
    cloud_prob_clear,
    fmask_clear,
    qa_pixel_clear,
    resolve_mask,
    scl_clear,
)
from eoembed.specs.sensor import MASKS
from eoembed.testing import make_cog, make_stac_catalog, make_stac_item

L2A = "sentinel-2-l2a"
LANDSAT = "landsat-c2-l2"
UTM = "EPSG:32618"
SMALL = PointBuffer(-75.70, 37.70, 320)  # 64 x 64 pixels at 10 m
GRID = SMALL.grid(10)
JUNE = TemporalSpec.range("2020-06-01", "2020-06-10")  # scenes a, b, c
BANDS = ("B02", "B04", "B08")
CLOUD = 20000  # band value under every masked rectangle: bright, and far above real pixels
MASKED_SCL = (0, 1, 3, 8, 9, 10)  # what the mask is documented to drop


def read_window(path: Path, grid: Grid) -> np.ndarray:
    with rasterio.open(path) as src:
        window = from_bounds(*grid.bounds, transform=src.transform)
        return src.read(1, window=window.round_offsets().round_lengths())


@pytest.fixture(scope="module")
def base(sample_dir) -> dict[str, np.ndarray]:
    """The sample's 10 m bands under GRID, uint16."""
    return {
        b: read_window(sample_dir / f"s2_{b}.jp2", GRID).astype(np.uint16) for b in BANDS
    }


# --------------------------------------------------------------------- scene construction


def _scl_truth() -> dict[str, np.ndarray]:
    """SCL class of every 10 m pixel per scene; rectangles on even rows/cols (SCL is 20 m)."""
    a = np.full((64, 64), 4, np.uint8)  # vegetation
    a[0:16, 0:32] = 9  # cloud, high probability
    a[32:48, 32:64] = 3  # cloud shadow
    a[48:64, 48:64] = 11  # snow: kept by default
    a[16:24, 0:8] = 2  # dark area: kept
    b = np.full((64, 64), 5, np.uint8)  # not vegetated
    b[0:16, 16:48] = 10  # thin cirrus
    b[48:64, 0:16] = 8  # cloud, medium probability
    c = np.full((64, 64), 6, np.uint8)  # water
    c[0:8, 16:24] = 1  # saturated: with a's cloud and b's cirrus, clear in no scene
    c[56:64, 56:64] = 0  # SCL no data, over band values that look fine
    c[24:32, 40:48] = 7  # unclassified: kept
    return {"a": a, "b": b, "c": c}


OFFSETS = {"a": 0, "b": 100, "c": 300, "d": 1000}
C_B02_HOLE = (slice(40, 44), slice(0, 8))  # c has no B02 there (0 = nodata), other bands fine


def _scene_bands(base: dict[str, np.ndarray], name: str, cls: np.ndarray | None):
    out = {}
    for band, values in base.items():
        data = values + OFFSETS[name]
        if cls is not None:
            data[np.isin(cls, MASKED_SCL)] = CLOUD
        if name == "c" and band == "B02":
            data[C_B02_HOLE] = 0
        out[band] = data.astype(np.uint16)
    return out


@pytest.fixture(scope="module")
def l2a(tmp_path_factory, base):
    """Scenes a (cloud 10 %), b (20 %), c (25 %) with SCL, and d (5 %, later) without."""
    root = tmp_path_factory.mktemp("masks")
    truth = _scl_truth()
    scl_transform = Grid(UTM, GRID.left, GRID.top, 20.0, 32, 32).transform
    items = []
    dates = {"a": "2020-06-01", "b": "2020-06-05", "c": "2020-06-09", "d": "2020-06-20"}
    clouds = {"a": 10, "b": 20, "c": 25, "d": 5}
    for name in "abcd":
        cls = truth.get(name)
        assets = {
            band: make_cog(root / name / f"{band}.tif", data, UTM, GRID.transform, nodata=0)
            for band, data in _scene_bands(base, name, cls).items()
        }
        if cls is not None:
            assets["SCL"] = make_cog(root / name / "SCL.tif", cls[::2, ::2], UTM, scl_transform)
        items.append(make_stac_item(name, assets, date=dates[name], cloud_cover=clouds[name],
                                    collection=L2A))
    provider = LocalProvider.from_stac(make_stac_catalog(root / "stac", items))
    return provider, truth


def _expected(base, truth, bands, method, fill, *, masked=True):
    """Composite and clear count computed here: numpy on the constructed arrays."""
    layers, clear = [], []
    for name in "abc":  # search order: least cloudy first
        cls = truth[name]
        values = _scene_bands(base, name, cls)  # the files: CLOUD under the rectangles
        stack = np.stack([values[b] for b in bands]).astype(np.float64)
        ok = (stack != 0).all(axis=0)  # every band present
        if masked:
            ok &= ~np.isin(cls, MASKED_SCL)
        stack[:, ~ok] = np.nan
        layers.append(stack)
        clear.append(ok)
    cube = np.stack(layers)
    count = np.sum(clear, axis=0)
    if method == "median":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
            out = np.nanmedian(cube, axis=0)
    else:
        out = np.full(cube.shape[1:], np.nan)
        for layer in cube:
            gap = np.isnan(out)
            out[gap] = layer[gap]
    out[:, count == 0] = fill
    return out.astype(np.float32), count


def _sensor(bands=BANDS, **kw):
    return SensorSpec(L2A, bands, **{"fill_value": -1, **kw})


# --------------------------------------------------------------------- composites


@pytest.mark.parametrize("method", ["median", "mosaic"])
def test_masked_pixels_never_leak(l2a, base, method) -> None:
    provider, truth = l2a
    da = provider.fetch(SMALL, JUNE, _sensor(composite=method))
    assert da.attrs["scene_ids"] == ["a", "b", "c"]
    assert da.attrs["mask"] == "scl" and da.attrs["masked_scene_ids"] == ["a", "b", "c"]
    got = da.values
    assert got.max() < CLOUD  # no cloud value anywhere
    expected, _ = _expected(base, truth, BANDS, method, -1)
    np.testing.assert_array_equal(got, expected)
    if method == "mosaic":  # least cloudy first: a wherever a is clear
        a_clear = ~np.isin(truth["a"], MASKED_SCL)
        np.testing.assert_array_equal(got[1][a_clear], base["B04"][a_clear].astype(np.float32))


def test_clear_count_is_what_was_constructed(l2a, base) -> None:
    provider, truth = l2a
    da = provider.fetch(SMALL, JUNE, _sensor())
    count = da.coords["clear_count"]
    assert count.dims == ("y", "x") and count.dtype == np.uint16
    assert da.dims == ("band", "y", "x") and list(da.band.values) == list(BANDS)
    _, expected = _expected(base, truth, BANDS, "median", -1)
    np.testing.assert_array_equal(count.values, expected)
    # spot checks of the constructed layout
    assert count.values[4, 20] == 0  # a cloud, b cirrus, c saturated
    assert count.values[4, 40] == 2  # b cirrus only
    assert count.values[20, 2] == 3  # dark area in a is kept
    assert count.values[50, 50] == 3  # a's snow is kept
    assert count.values[60, 60] == 2  # c: SCL no data
    assert count.values[42, 4] == 2  # c lacks B02: no whole observation
    # the coordinate follows band selection and slicing
    assert da.sel(band=["B04"]).clear_count.shape == (64, 64)
    assert da.isel(y=slice(0, 8)).clear_count.shape == (8, 64)


def test_pixels_clear_nowhere_are_filled_and_not_valid(l2a) -> None:
    provider, _ = l2a
    da = provider.fetch(SMALL, JUNE, _sensor(fill_value=-7))
    none = da.clear_count.values == 0
    assert none.sum() == 8 * 8  # rows 0..7, cols 16..23
    assert (da.values[:, none] == -7).all()
    assert (da.values[:, ~none] != -7).all()
    assert da.attrs["valid_fraction"] == pytest.approx(1 - 64 / 64**2)


def test_mask_none_is_the_old_unmasked_composite(l2a, base) -> None:
    """B04 and B08 share their nodata pixels: no observation is partial, as before masks."""
    provider, truth = l2a
    bands = ("B04", "B08")
    for method in ("median", "mosaic"):
        da = provider.fetch(SMALL, JUNE, _sensor(bands, composite=method, mask="none"))
        assert da.attrs["mask"] == "none" and da.attrs["masked_scene_ids"] == []
        # the previous algorithm: per band, NaN for nodata, nanmedian or first valid
        raw = np.stack([
            np.stack([_scene_bands(base, n, truth[n])[b] for b in bands]) for n in "abc"
        ]).astype(np.float32)
        raw[raw == 0] = np.nan
        if method == "median":
            old = np.nanmedian(raw, axis=0)
        else:
            old = raw[0].copy()
            for layer in raw[1:]:
                old[np.isnan(old)] = layer[np.isnan(old)]
        old[np.isnan(old)] = -1
        np.testing.assert_array_equal(da.values, old)
        assert (da.clear_count.values == 3).all()
        assert da.values.max() == CLOUD  # unmasked, the clouds show
    # and that equals this file's own unmasked expectation
    expected, _ = _expected(base, truth, bands, "median", -1, masked=False)
    got = provider.fetch(SMALL, JUNE, _sensor(bands, mask="none")).values
    np.testing.assert_array_equal(got, expected)


def test_partial_observation_is_dropped_whole(l2a, base) -> None:
    """c lacks B02 at C_B02_HOLE: its B04/B08 there are not mixed with other scenes' B02."""
    provider, _ = l2a
    da = provider.fetch(SMALL, JUNE, _sensor(mask="none"))
    rows, cols = C_B02_HOLE
    # a (base) and b (base + 100) are whole there: every band is their mean, c's B04 and B08
    # (base + 300) are not used; per band they would have made B04 base + 100.
    for i, band in enumerate(BANDS):
        np.testing.assert_array_equal(da.values[i][rows, cols], base[band][rows, cols] + 50)
    assert (da.clear_count.values[rows, cols] == 2).all()


def test_explicit_scl_equals_auto_here(l2a) -> None:
    provider, _ = l2a
    auto = provider.fetch(SMALL, JUNE, _sensor())
    scl = provider.fetch(SMALL, JUNE, _sensor(mask="scl"))
    np.testing.assert_array_equal(auto.values, scl.values)
    np.testing.assert_array_equal(auto.clear_count.values, scl.clear_count.values)


def test_scene_without_mask_band(l2a, base) -> None:
    provider, _ = l2a
    june = TemporalSpec.range("2020-06", "2020-07")
    da = provider.fetch(SMALL, june, _sensor(composite="mosaic"))
    assert da.attrs["scene_ids"] == ["d", "a", "b", "c"]  # d: least cloudy, no SCL
    assert da.attrs["masked_scene_ids"] == ["a", "b", "c"]
    # auto uses d unmasked: it is clear everywhere and first, so the mosaic is d
    np.testing.assert_array_equal(da.values[1], (base["B04"] + 1000).astype(np.float32))
    assert da.clear_count.values.min() == 1
    with pytest.raises(ProviderError, match=r"\bd\b.*'SCL'.*mask='scl'"):
        provider.fetch(SMALL, june, _sensor(mask="scl"))


def test_read_scene_is_nan_where_unclear(l2a, base) -> None:
    provider, truth = l2a
    scene = next(s for s in provider.scenes if s.id == "c")
    got = provider.read_scene(scene, GRID, _sensor())
    assert got.shape == (3, 64, 64) and got.dtype == np.float32
    unclear = np.isin(truth["c"], MASKED_SCL)
    unclear[C_B02_HOLE] = True
    assert (np.isnan(got) == unclear[None]).all()
    for i, band in enumerate(BANDS):
        np.testing.assert_array_equal(got[i][~unclear], (base[band] + 300)[~unclear])
    raw = provider.read_scene(scene, GRID, _sensor(mask="none"))
    assert np.isnan(raw).sum() == 3 * 4 * 8  # only the B02 hole, in every band


def test_mask_band_is_read_nearest_without_collection_nodata(l2a, monkeypatch) -> None:
    import eoembed.providers._raster as raster

    provider, _ = l2a
    calls: list[tuple[str, str, float | None]] = []
    real = raster.read_onto_grid

    def spy(href, grid, *, resampling="auto", nodata=None):
        calls.append((Path(href).name, resampling, nodata))
        return real(href, grid, resampling=resampling, nodata=nodata)

    monkeypatch.setattr(raster, "read_onto_grid", spy)
    provider.fetch(SMALL, JUNE, _sensor(resampling="bilinear"))
    scl = [c for c in calls if c[0] == "SCL.tif"]
    assert len(scl) == 3 and all(c[1:] == ("nearest", None) for c in scl)
    assert all(c[1:] == ("bilinear", 0.0) for c in calls if c[0] != "SCL.tif")


def test_mask_at_coarser_grid_samples_nearest(l2a) -> None:
    """At 30 m the 20 m SCL goes through the warper: still nearest, never averaged codes."""
    provider, truth = l2a
    grid30 = Grid(UTM, GRID.left, GRID.top, 30.0, 21, 21)
    da = provider.fetch(SMALL, JUNE, _sensor(("B04", "B08"), scale_m=30), grid=grid30)
    # 30 m pixel centres lie 15 + 30 j metres from the edge: 20 m pixel (15 + 30 j) // 20
    idx = (15 + 30 * np.arange(21)) // 20
    expected = sum(
        (~np.isin(truth[n][::2, ::2], MASKED_SCL))[np.ix_(idx, idx)].astype(int) for n in "abc"
    )
    np.testing.assert_array_equal(da.clear_count.values, expected)


# --------------------------------------------------------------------- other mask bands


@pytest.fixture(scope="module")
def cloud_prob(tmp_path_factory, base):
    """One L2A scene with B04 and a 20 m cloud probability (no SCL): 0..93 % by column."""
    root = tmp_path_factory.mktemp("cldprb")
    prob = np.tile((np.arange(32) * 3).astype(np.uint8), (32, 1))
    b04 = base["B04"].copy()
    b04[np.repeat(np.repeat(prob >= 40, 2, 0), 2, 1)] = CLOUD
    item = make_stac_item("p", {
        "B04": make_cog(root / "B04.tif", b04, UTM, GRID.transform, nodata=0),
        "CLDPRB": make_cog(root / "CLDPRB.tif", prob, UTM,
                           Grid(UTM, GRID.left, GRID.top, 20.0, 32, 32).transform),
    }, date="2020-06-01", collection=L2A)
    return LocalProvider.from_stac(make_stac_catalog(root / "stac", [item])), prob


@pytest.mark.parametrize("mask", ["auto", "cloud_prob"])
def test_cloud_probability_threshold(cloud_prob, base, mask) -> None:
    provider, prob = cloud_prob
    da = provider.fetch(SMALL, JUNE, SensorSpec(L2A, ("B04",), mask=mask, fill_value=-1))
    assert da.attrs["mask"] == "cloud_prob"  # auto: SCL is not served, CLDPRB is
    clear = np.repeat(np.repeat(prob < 40, 2, 0), 2, 1)
    assert clear[:, :2].all()  # probability 0 is clear, not "nodata 0"
    np.testing.assert_array_equal(da.clear_count.values, clear.astype(np.uint16))
    np.testing.assert_array_equal(da.values[0][clear], base["B04"][clear])
    assert (da.values[0][~clear] == -1).all()


def test_named_mask_not_served_fails_before_reading(cloud_prob, sample_provider,
                                                    sample_point, sample_window,
                                                    monkeypatch) -> None:
    import eoembed.providers._raster as raster

    def no_reads(*args, **kwargs):
        raise AssertionError("read before checking the mask")

    monkeypatch.setattr(raster, "read_onto_grid", no_reads)
    provider, _ = cloud_prob
    with pytest.raises(CapabilityError, match=r"'scl'.*'SCL'.*masks it serves: cloud_prob"):
        provider.fetch(SMALL, JUNE, SensorSpec(L2A, ("B04",), mask="scl"))
    with pytest.raises(CapabilityError, match=r"provider 'sample'.*masks it serves: none"):
        sample_provider.fetch(sample_point, sample_window,
                              SensorSpec("sentinel-2-l1c", ("B04",), mask="qa_pixel"))


def test_l1c_sample_is_unmasked_by_default(sample_provider, sample_point, sample_window) -> None:
    da = sample_provider.fetch(sample_point, sample_window, SensorSpec("sentinel-2-l1c", ("B04",)))
    assert da.attrs["mask"] == "none"
    assert (da.clear_count.values == 1).all() and da.attrs["valid_fraction"] == 1.0


CLEAR_LAND = 21824  # QA_PIXEL of clear land: bit 6 clear + low confidence pairs
WATER = 21952  # clear, bit 7 water
QA_CLOUD, QA_DILATED, QA_SHADOW, QA_FILL = 1 << 3, 1 << 1, 1 << 4, 1


def test_landsat_qa_pixel_mosaic(tmp_path, base) -> None:
    """Two Landsat scenes (sample pixels as red/nir08) with QA_PIXEL flags; mosaic."""
    qa1 = np.full((64, 64), CLEAR_LAND, np.uint16)
    qa1[0:20, 0:20] |= QA_CLOUD
    qa1[20:30, 0:20] |= QA_DILATED
    qa1[40:64, 40:64] = WATER
    qa2 = np.full((64, 64), CLEAR_LAND, np.uint16)
    qa2[0:10, 0:64] |= QA_SHADOW
    qa2[10:20, 0:10] = QA_FILL
    items = []
    for name, qa, offset, cloud in (("l1", qa1, 0, 5.0), ("l2", qa2, 500, 15.0)):
        bad = (qa & (QA_FILL | QA_DILATED | 4 | QA_CLOUD | QA_SHADOW)) != 0
        bands = {}
        for key, source in (("red", "B04"), ("nir08", "B08")):
            data = base[source] + offset
            data[bad] = CLOUD
            bands[key] = make_cog(tmp_path / name / f"{key}.tif", data, UTM, GRID.transform,
                                  nodata=0)
        bands["qa_pixel"] = make_cog(tmp_path / name / "qa.tif", qa, UTM, GRID.transform)
        item = make_stac_item(name, bands, date="2020-06-02", cloud_cover=cloud,
                              collection=LANDSAT)
        for key in ("red", "nir08"):  # declared reflectance = DN / 10000: values as written
            item.assets[key].extra_fields["raster:bands"] = [{"scale": 1e-4, "offset": 0.0}]
        items.append(item)
    provider = LocalProvider.from_stac(make_stac_catalog(tmp_path / "stac", items))
    # On GRID itself (10 m edges on multiples of 10 m, as the COGs), not Landsat's native grid.
    da = provider.fetch(SMALL, JUNE, SensorSpec(LANDSAT, ("red", "nir08"), scale_m=10,
                                                composite="mosaic", fill_value=-1), grid=GRID)
    assert da.attrs["mask"] == "qa_pixel"
    bad1 = np.zeros((64, 64), bool)
    bad1[0:30, 0:20] = True  # cloud + dilated cloud; water is clear
    bad2 = np.zeros((64, 64), bool)
    bad2[0:10] = True
    bad2[10:20, 0:10] = True
    expected = np.where(bad1, base["B04"].astype(np.float32) + 500, base["B04"])
    expected[bad1 & bad2] = -1
    np.testing.assert_array_equal(da.values[0], expected)
    np.testing.assert_array_equal(da.clear_count.values, (~bad1).astype(int) + (~bad2))
    assert da.values.max() < CLOUD


# --------------------------------------------------------------------- decoders


def test_scl_classes() -> None:
    codes = np.array([*range(12), np.nan], np.float32)
    assert scl_clear(codes).tolist() == [
        False, False, True, False, True, True, True, True, False, False, False, True, False
    ]
    assert scl_clear(codes, snow=True)[11] == np.False_
    assert scl_clear(np.array([4, 9], np.uint8)).tolist() == [True, False]


@pytest.mark.parametrize(
    ("value", "clear", "clear_no_snow"),
    [
        (CLEAR_LAND, True, True),
        (WATER, True, True),
        (0, True, True),  # no flag set
        (QA_FILL, False, False),
        (CLEAR_LAND | QA_DILATED, False, False),
        (CLEAR_LAND | 1 << 2, False, False),  # cirrus
        (CLEAR_LAND | QA_CLOUD, False, False),
        (CLEAR_LAND | QA_SHADOW, False, False),
        (CLEAR_LAND | 1 << 5, True, False),  # snow
        (55052, False, False),  # Landsat 8 C2 value table: cloud with cirrus (bits 2, 3)
        (23888, False, False),  # Landsat 8 C2 value table: cloud shadow (bit 4)
    ],
)
def test_qa_pixel_bits(value: int, clear: bool, clear_no_snow: bool) -> None:
    arr = np.array([value], np.uint16)
    assert qa_pixel_clear(arr)[0] == clear
    assert qa_pixel_clear(arr, snow=True)[0] == clear_no_snow
    assert qa_pixel_clear(arr.astype(np.float32))[0] == clear  # as read: float32, exact
    assert not qa_pixel_clear(np.array([np.nan]))[0]


def test_fmask_bits() -> None:
    values = np.array([0, 1, 2, 4, 8, 16, 32, 64 | 128, 32 | 64, 255, 16 | 32], np.uint8)
    assert fmask_clear(values).tolist() == [
        True, False, False, False, False, True, True, True, True, False, True
    ]
    assert fmask_clear(values, snow=True).tolist()[5] is False


def test_cloud_probability_threshold_values() -> None:
    prob = np.array([0, 10, 39, 39.9, 40, 41, 100, np.nan])
    assert cloud_prob_clear(prob).tolist() == [True] * 4 + [False] * 4
    assert cloud_prob_clear(prob, threshold=10).tolist() == [True] + [False] * 7


def test_clear_mask_registry() -> None:
    scl = np.array([[4, 9], [3, 11]], np.uint8)
    np.testing.assert_array_equal(clear_mask(L2A, "auto", scl), scl_clear(scl))
    np.testing.assert_array_equal(clear_mask(L2A, "scl", scl), [[True, False], [False, True]])
    prob = np.array([10.0, 50.0])
    assert clear_mask(L2A, "auto", prob, band="CLDPRB").tolist() == [True, False]
    assert clear_mask(LANDSAT, "auto", np.array([CLEAR_LAND, QA_FILL])).tolist() == [True, False]
    assert clear_mask("hls-s30", "auto", np.array([0, 2])).tolist() == [True, False]
    assert clear_mask(L2A, "none", scl).all() and clear_mask(L2A, "none", scl).shape == (2, 2)
    assert clear_mask("sentinel-2-l1c", "auto", scl).all()  # no known mask band
    with pytest.raises(SpecError, match=r"'clouds'.*'auto', 'none', 'scl'"):
        clear_mask(L2A, "clouds", scl)
    with pytest.raises(CapabilityError, match="'B04' is no mask band"):
        clear_mask(L2A, "auto", scl, band="B04")
    assert resolve_mask(L2A, "auto", ("B04", "CLDPRB")) is CLOUD_MASKS["cloud_prob"]
    assert resolve_mask(L2A, "auto", ("B04", "SCL", "CLDPRB")) is CLOUD_MASKS["scl"]
    assert resolve_mask(L2A, "auto", ("B04",)) is None
    assert resolve_mask(LANDSAT, "none", ("qa_pixel",)) is None
    assert {m for masks in AUTO_MASKS.values() for m in masks} <= set(CLOUD_MASKS)


# --------------------------------------------------------------------- the spec field


def test_sensor_mask_field() -> None:
    assert set(MASKS) == {"auto", "none", *CLOUD_MASKS}
    spec = SensorSpec(L2A, ("B04",))
    assert spec.mask == "auto"
    masked = SensorSpec(L2A, ("B04",), mask="none")
    assert SensorSpec.from_dict(masked.to_dict()) == masked
    assert masked.to_dict()["mask"] == "none"
    assert masked.fingerprint != spec.fingerprint
    with pytest.raises(SpecError, match=r"SensorSpec\.mask='cloudy'.*'auto', 'none', 'scl'"):
        SensorSpec(L2A, ("B04",), mask="cloudy")
    with pytest.raises(SpecError, match=r"SensorSpec\.mask"):
        SensorSpec(L2A, ("B04",), mask=None)  # type: ignore[arg-type]
