"""Published embedding products through the same calls as the models: AlphaEarth's COG mirror.

The mirror is rebuilt from the sample scene in its real layout (index GeoParquet with s3://
paths, ``{year}/{zone}/{image}-{yoff}-{xoff}.tiff``, 64 int8 bands, -128 nodata, bottom-up
files) and read locally and over a loopback range-request server with injected faults.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from eoembed import BBox, OutputSpec, PointBuffer, TemporalSpec, get_embedding
from eoembed.errors import NoDataError, SpecError
from eoembed.providers.alphaearth import AlphaEarthProvider, dequantise_alphaearth
from eoembed.providers.cache import CachedProvider
from eoembed.testing.products import AlphaEarthFixture, make_alphaearth_mirror
from eoembed.testing.servers import Servers, serve_folder

Y2024 = TemporalSpec.year(2024)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's product and patch caches in its own folder, never the user's."""
    monkeypatch.setenv("EOEMBED_CACHE", str(tmp_path / "eoembed-cache"))


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> AlphaEarthFixture:
    return make_alphaearth_mirror(tmp_path_factory.mktemp("aef"), sample_dir)


@pytest.fixture(scope="module")
def served(mirror: AlphaEarthFixture) -> Any:
    with serve_folder(mirror.base.parent.parent) as servers:
        yield servers


def _box(fx: AlphaEarthFixture, rows: tuple[int, int], cols: tuple[int, int]) -> BBox:
    """The crop's pixels ``rows`` x ``cols`` (half-open) as a UTM box."""
    t = fx.transform
    return BBox(t.c + cols[0] * t.a, t.f + rows[1] * t.e, t.c + cols[1] * t.a,
                t.f + rows[0] * t.e, crs=fx.crs)


def _expected(fx: AlphaEarthFixture, year: int, rows: tuple[int, int],
              cols: tuple[int, int]) -> np.ndarray:
    codes = fx.codes[year][:, rows[0] : rows[1], cols[0] : cols[1]].astype(np.float32)
    codes[codes == -128] = np.nan
    return dequantise_alphaearth(codes)


def test_dequantisation_is_the_documented_square_law() -> None:
    codes = np.array([127, 64, 1, 0, -1, -64, -127], np.int8)
    got = dequantise_alphaearth(codes)
    # "divide by 127.5, square, multiply by the sign of the original value"
    np.testing.assert_allclose(got, np.sign(codes) * (codes / 127.5) ** 2, rtol=1e-6)
    assert got[0] == pytest.approx(0.992172, abs=1e-6) and got[3] == 0.0
    assert (np.diff(got) < 0).all()  # monotonic: order of codes kept


def test_grid_over_four_bottom_up_tiles_matches_every_pixel(mirror: AlphaEarthFixture) -> None:
    with rasterio.open(mirror.files[0]) as src:
        assert src.transform.e > 0  # stored bottom-up, as the mirror's are
    provider = AlphaEarthProvider(str(mirror.base))
    rows, cols = (20, 300), (100, 400)  # crosses both tile edges (256) and the no-data rows
    emb = get_embedding("alphaearth", spatial=_box(mirror, rows, cols), temporal=Y2024,
                        output=OutputSpec.grid(), provider=provider)
    expected = _expected(mirror, 2024, rows, cols)
    got = emb.data.values
    assert got.shape == expected.shape == (64, 280, 300)
    np.testing.assert_array_equal(got, expected)  # north-up, not shifted, NaN where -128
    assert emb.meta["valid_fraction"] == pytest.approx(1 - 20 / 280)
    assert len(emb.meta["scene_ids"]) == 4 and emb.meta["provider"] == "alphaearth"
    # the output grid is the product's: same CRS, 10 m, edges on the tiles' pixel edges
    grid = emb.meta["output_grid"]
    assert grid["crs"] == mirror.crs and grid["transform"][0] == 10
    assert grid["transform"][2] == mirror.transform.c + cols[0] * 10
    # unit vectors, as the product's are (up to quantisation)
    norms = np.linalg.norm(got[:, ~np.isnan(got[0])], axis=0)
    assert np.abs(norms - 1).max() < 0.02


def test_a_point_reads_the_pixel_under_it(mirror: AlphaEarthFixture) -> None:
    from pyproj import Transformer

    row, col = 300, 200
    t = mirror.transform
    x, y = t.c + (col + 0.5) * 10, t.f - (row + 0.5) * 10
    lon, lat = Transformer.from_crs(mirror.crs, "EPSG:4326", always_xy=True).transform(x, y)
    emb = get_embedding("alphaearth", spatial=PointBuffer(lon, lat, buffer_m=5),
                        temporal=Y2024, output=OutputSpec.grid(),
                        provider=AlphaEarthProvider(str(mirror.base)))
    values = emb.data.values.reshape(64, -1)
    # a 10 m square around the point's centre: the pixel under it, whatever snapping did
    assert any(np.array_equal(values[:, k], _expected(mirror, 2024, (row, row + 1),
                                                      (col, col + 1))[:, 0, 0])
               for k in range(values.shape[1]))


def test_pooled_is_the_mean_of_valid_pixels_and_the_year_selects_files(
    mirror: AlphaEarthFixture,
) -> None:
    provider = AlphaEarthProvider(str(mirror.base))
    rows, cols = (30, 90), (240, 280)
    region = _box(mirror, rows, cols)
    for year in (2023, 2024):
        pooled = get_embedding("alphaearth", spatial=region, temporal=TemporalSpec.year(year),
                               provider=provider)
        expected = _expected(mirror, year, rows, cols).reshape(64, -1)
        np.testing.assert_allclose(pooled.numpy(), np.nanmean(expected, axis=1), rtol=1e-5,
                                   atol=1e-7)
        assert all(f"xfixture{year}aef" in s for s in pooled.meta["scene_ids"])
    # a window inside one year selects it, like TemporalSpec.year
    part = get_embedding("alphaearth", spatial=region, provider=provider,
                         temporal=TemporalSpec.range("2023-03-01", "2023-09-01"))
    np.testing.assert_array_equal(part.numpy(), get_embedding(
        "alphaearth", spatial=region, provider=provider, temporal=TemporalSpec.year(2023)
    ).numpy())


def test_years_and_places_outside_the_product_are_refused(mirror: AlphaEarthFixture) -> None:
    provider = AlphaEarthProvider(str(mirror.base))
    region = _box(mirror, (0, 50), (0, 50))
    with pytest.raises(SpecError, match=r"spans 2023\.\.2024"):
        get_embedding("alphaearth", spatial=region, provider=provider,
                      temporal=TemporalSpec.range("2023-06-01", "2024-06-01"))
    with pytest.raises(SpecError, match=r"2018\.\.2024, not 2017"):  # the mirror withholds 2017
        get_embedding("alphaearth", spatial=region, provider=provider,
                      temporal=TemporalSpec.year(2017))
    with pytest.raises(NoDataError, match="no tile for 2024"):
        get_embedding("alphaearth", spatial=PointBuffer(10.0, 50.0, 100), provider=provider,
                      temporal=Y2024)
    with pytest.raises(NoDataError, match="hold no value"):  # only the -128 rows
        get_embedding("alphaearth", spatial=_box(mirror, (42, 58), (10, 30)), temporal=Y2024,
                      provider=provider)


def test_over_http_with_faults_then_from_the_cache(
    mirror: AlphaEarthFixture, served: Servers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default provider: index downloaded once, tiles by range requests through faults,
    and a second call answered from disk without a single request."""
    from eoembed.providers.registry import get_provider

    monkeypatch.setenv("EOEMBED_CACHE", str(tmp_path / "cache"))
    rows, cols = (100, 400), (150, 450)
    region = _box(mirror, rows, cols)
    url = f"{served.files}/v1/annual"
    served.control("reset")
    served.control("faults", rate=0.2, seed=5, kinds="500,503,drop,reset", scope="files")
    provider = get_provider(f"alphaearth:{url}")
    assert isinstance(provider, CachedProvider)
    first = get_embedding("alphaearth", spatial=region, temporal=Y2024,
                          output=OutputSpec.grid(), provider=provider)
    injected = served.faults()
    served.control("reset")
    np.testing.assert_array_equal(first.data.values, _expected(mirror, 2024, rows, cols))
    assert injected > 0
    again = get_provider(f"alphaearth:{url}")  # a new provider: only the disk is shared
    second = get_embedding("alphaearth", spatial=region, temporal=Y2024,
                           output=OutputSpec.grid(), provider=again)
    np.testing.assert_array_equal(second.data.values, first.data.values)
    assert served.control("stats") == {}  # not one request: no index, no tile
    assert (tmp_path / "cache" / "products").is_dir()


def test_export_and_a_head_from_the_command_line(
    mirror: AlphaEarthFixture, tmp_path: Path, sample_dir: Path
) -> None:
    """Grid export to Zarr, a segmentation head on it (water from the sample's NIR), and a
    pooled GeoParquet export, all through the CLI like any model's embeddings."""
    from eoembed.cli.main import app

    t = mirror.transform
    features = []
    for r0 in (64, 192, 320):  # 3 x 3 tiles of 96 px, away from the no-data rows
        for c0 in (32, 160, 288):
            left, top = t.c + c0 * 10, t.f - r0 * 10
            ring = [[left, top], [left + 960, top], [left + 960, top - 960],
                    [left, top - 960], [left, top]]
            features.append({"type": "Feature", "properties": {"tile": f"{r0}_{c0}"},
                             "geometry": {"type": "Polygon", "coordinates": [ring]}})
    regions = tmp_path / "tiles.geojson"
    regions.write_text(json.dumps({
        "type": "FeatureCollection", "features": features,
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32618"}},
    }))
    with rasterio.open(sample_dir / "s2_B08.jp2") as src:
        window = rasterio.windows.Window(600, 800, 512, 512)
        water = (src.read(1, window=window) < 1000).astype(np.uint8)
        profile = {"driver": "GTiff", "height": 512, "width": 512, "count": 1,
                   "dtype": "uint8", "crs": src.crs, "transform": src.window_transform(window),
                   "nodata": 255}
    labels = tmp_path / "water.tif"
    with rasterio.open(labels, "w", **profile) as dst:
        dst.write(water, 1)

    def ok(*args: str | Path) -> None:
        result = CliRunner().invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.output + str(result.exception or "")

    provider = f"alphaearth:{mirror.base}"
    export = tmp_path / "grid"
    ok("export", "--model", "alphaearth", "--provider", provider, "--regions", regions,
       "--year", "2024", "--output", "grid", "--format", "zarr", "--out", export)
    head = tmp_path / "head"
    ok("train", "--embeddings", export, "--labels", labels, "--task", "segmentation",
       "--head", "segmentation", "--param", "epochs=30", "--split", "random",
       "--test-size", "0.34", "--out", head, "--no-plots", "-q")
    ok("evaluate", head, "--export", export, "--labels", labels, "--json", tmp_path / "s.json")
    scores = json.loads((tmp_path / "s.json").read_text())
    scores = scores.get("metrics", scores)
    assert scores["n"] == 9 * 96 * 96 and scores["miou"] > 0.6  # water is easy to see

    pooled = tmp_path / "pooled"
    ok("export", "--model", "alphaearth", "--provider", provider, "--regions", regions,
       "--year", "2024", "--out", pooled)
    from eoembed.pipeline import load_export

    frame = load_export(pooled)
    assert len(frame) == 9 and len(frame["embedding"].iloc[0]) == 64
    # rerun: everything reused, nothing read
    result = CliRunner().invoke(app, ["export", "--model", "alphaearth", "--provider", provider,
                                      "--regions", str(regions), "--year", "2024",
                                      "--out", str(pooled)])
    assert result.exit_code == 0 and "9 reused" in result.output.replace("\n", " ")


# ------------------------------------------------------------------------------- TESSERA


@pytest.fixture(scope="module")
def tessera(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Any:
    from eoembed.testing.products import make_tessera_server

    pytest.importorskip("geotessera")
    root = tmp_path_factory.mktemp("tessera")
    fixture = make_tessera_server(root / "server", sample_dir)
    with serve_folder(fixture.root) as servers:
        yield fixture, servers


def _tessera_region(fx: Any) -> BBox:
    """A box inside the tile, on the request grid's 10 m multiples (not the tile's)."""
    t = fx.transform
    x0, y1 = round((t.c + 2000) / 10) * 10, round((t.f - 800) / 10) * 10
    return BBox(x0, y1 - 3000, x0 + 2500, y1, crs=fx.crs)


def test_tessera_through_geotessera_lands_each_pixel_where_it_belongs(
    tessera: Any, tmp_path: Path
) -> None:
    import geotessera.registry

    from eoembed.providers.tessera import TesseraProvider

    fx, servers = tessera
    servers.control("reset")
    provider = TesseraProvider(servers.files, cache_dir=tmp_path / "cache")
    emb = get_embedding("tessera", spatial=_tessera_region(fx), temporal=Y2024,
                        output=OutputSpec.grid(), provider=provider)
    da = emb.data
    # nearest resampling: each request pixel holds the tile pixel its centre falls in
    cols = np.floor((da.x.values - fx.transform.c) / 10).astype(int)
    rows = np.floor((fx.transform.f - da.y.values) / 10).astype(int)
    expected = fx.values[:, rows[:, None], cols[None, :]]
    np.testing.assert_array_equal(da.values, expected)
    assert np.isnan(expected).any() and not np.isnan(expected).all()  # the NaN-scale rows
    assert emb.meta["valid_fraction"] == pytest.approx(np.isfinite(expected[0]).mean())
    assert emb.meta["scene_ids"] == [f"grid_{fx.tile[0]:.2f}_{fx.tile[1]:.2f}_2024"]
    assert geotessera.registry.TESSERA_BASE_URL == "https://dl2.geotessera.org"  # restored
    fetched = servers.control("stats")
    assert any(path.endswith("_scales.npy") for path in fetched)  # geotessera's own layout

    # pooled: the mean over the region's valid pixels
    pooled = get_embedding("tessera", spatial=_tessera_region(fx), temporal=Y2024,
                           provider=provider)
    np.testing.assert_allclose(pooled.numpy(), np.nanmean(expected.reshape(128, -1).astype(float), axis=1),
                               rtol=1e-5, atol=1e-7)

    # a second provider on the same cache: not one request (registry, tiles, landmask)
    servers.control("reset")
    again = TesseraProvider(servers.files, cache_dir=tmp_path / "cache")
    second = get_embedding("tessera", spatial=_tessera_region(fx), temporal=Y2024,
                           output=OutputSpec.grid(), provider=again)
    np.testing.assert_array_equal(second.data.values, da.values)
    assert servers.control("stats") == {}


def test_tessera_refuses_what_it_does_not_have(tessera: Any, tmp_path: Path) -> None:
    from eoembed.errors import ChecksumError
    from eoembed.providers.tessera import TesseraProvider

    fx, servers = tessera
    provider = TesseraProvider(servers.files, cache_dir=tmp_path / "cache")
    with pytest.raises(NoDataError, match="no tile for 2023"):
        get_embedding("tessera", spatial=_tessera_region(fx), provider=provider,
                      temporal=TemporalSpec.year(2023))
    with pytest.raises(SpecError, match=r"2017\.\.2024, not 2016"):
        get_embedding("tessera", spatial=_tessera_region(fx), provider=provider,
                      temporal=TemporalSpec.year(2016))
    # a tile whose bytes differ from the registry's sha256 is refused by geotessera's check
    tampered = tmp_path / "tampered"
    import shutil

    shutil.copytree(fx.root, tampered)
    npy = next(tampered.rglob("grid_*[0-9].npy"))
    raw = bytearray(npy.read_bytes())
    raw[-1] ^= 0xFF
    npy.write_bytes(bytes(raw))
    with serve_folder(tampered) as other, pytest.raises(ChecksumError, match="ash"):
        get_embedding("tessera", spatial=_tessera_region(fx), temporal=Y2024,
                      provider=TesseraProvider(other.files, cache_dir=tmp_path / "c2"))


# ----------------------------------------------------------------------- Copernicus-Embed


@pytest.fixture(scope="module")
def copernicus_map(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Any:
    from eoembed.testing.products import make_copernicus_embed_map

    root = tmp_path_factory.mktemp("copernicus_embed")
    return make_copernicus_embed_map(root / "embed_map_310k.tif", sample_dir)


def test_copernicus_embed_cells_land_where_the_lattice_puts_them(copernicus_map: Any) -> None:
    from pyproj import Transformer

    from eoembed.providers.copernicus_embed import CopernicusEmbedProvider

    path, values, transform = copernicus_map
    provider = CopernicusEmbedProvider(path)
    region = PointBuffer(-75.60, 37.70, buffer_m=20_000)  # spans several cells, some ocean
    grid = get_embedding("copernicus-embed", spatial=region, temporal=Y2024,
                         output=OutputSpec.grid(), provider=provider)
    da = grid.data
    assert da.shape[0] == 768 and grid.meta["output_grid"]["transform"][0] == 1000
    xs, ys = np.meshgrid(da.x.values, da.y.values)
    lon, lat = Transformer.from_crs(str(da.rio.crs), "EPSG:4326", always_xy=True).transform(xs, ys)
    cols = np.floor((lon - transform.c) / 0.25).astype(int)
    rows = np.floor((transform.f - lat) / 0.25).astype(int)
    expected = values[:, rows, cols]
    expected[:, ~np.any(expected != 0, axis=0)] = np.nan  # empty (ocean) cells: no data
    np.testing.assert_array_equal(da.values, expected)
    assert 0 < grid.meta["valid_fraction"] < 1  # the Atlantic is empty
    # static: any window gives the same map, and says it selected nothing
    pooled = get_embedding("copernicus-embed", spatial=region, provider=provider,
                           temporal=TemporalSpec.range("2017-03-01", "2019-05-01"))
    np.testing.assert_allclose(
        pooled.numpy(), np.nanmean(expected.reshape(768, -1).astype(float), axis=1),
        rtol=1e-5, atol=1e-7)
    assert pooled.meta["scene_times"] == [{"datetime": None, "start_datetime": None,
                                            "end_datetime": None}]
    with pytest.raises(NoDataError, match="hold no value"):  # open ocean
        get_embedding("copernicus-embed", spatial=PointBuffer(-74.2, 37.0, 5000),
                      temporal=Y2024, provider=provider)


def test_copernicus_embed_from_the_hub_cache_is_checksummed(
    copernicus_map: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pinned Hub file, found in a Hugging Face cache laid out as the client writes it
    (offline: no download), is used only when its md5 is the one pinned."""
    import shutil

    from huggingface_hub import constants

    from eoembed.errors import ChecksumError
    from eoembed.providers.copernicus_embed import (
        HUB_FILE,
        HUB_REVISION,
        CopernicusEmbedProvider,
        _file_md5,
    )

    path = copernicus_map[0]
    cache = tmp_path / "hub"
    snapshot = cache / "datasets--torchgeo--copernicus_embed" / "snapshots" / HUB_REVISION
    snapshot.mkdir(parents=True)
    shutil.copy(path, snapshot / HUB_FILE)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    region = PointBuffer(-75.70, 37.70, buffer_m=2000)
    with pytest.raises(ChecksumError, match="not the published"):
        get_embedding("copernicus-embed", spatial=region, temporal=Y2024,
                      provider=CopernicusEmbedProvider())
    pinned = CopernicusEmbedProvider(md5=_file_md5(snapshot / HUB_FILE))
    via_hub = get_embedding("copernicus-embed", spatial=region, temporal=Y2024, provider=pinned)
    local = get_embedding("copernicus-embed", spatial=region, temporal=Y2024,
                          provider=CopernicusEmbedProvider(path))
    np.testing.assert_array_equal(via_hub.numpy(), local.numpy())


# ------------------------------------------------------------------------------- Major TOM

SAMPLE_RANGE = TemporalSpec.range("2015-06-23", "2016-06-11")


@pytest.fixture(scope="module")
def majortom(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Any:
    from eoembed.testing.products import make_majortom_hub

    pytest.importorskip("aiohttp")
    root = tmp_path_factory.mktemp("majortom")
    hub = make_majortom_hub(root / "hub", sample_dir)
    with serve_folder(root / "hub") as servers:
        yield hub, servers


def _majortom_region(hub: dict[str, Any]) -> BBox:
    """Inside the sample's Major TOM cell, across the overlaps of nine fragments."""
    b = hub["boxes"]
    return BBox(b[6][0] + 500, b[18][1] + 500, b[18][2] - 500, b[6][3] - 500, crs=hub["crs"])


def test_majortom_paints_each_pixel_with_the_fragment_around_it(
    majortom: Any, tmp_path: Path
) -> None:
    import shapely
    from pyproj import Transformer

    from eoembed.providers.majortom import MajorTomProvider

    hub, servers = majortom
    servers.control("reset")
    provider = MajorTomProvider(servers.files, cache_dir=tmp_path / "cache")
    emb = get_embedding("majortom-s2l1c-ssl4eo", spatial=_majortom_region(hub),
                        temporal=SAMPLE_RANGE, output=OutputSpec.grid(), provider=provider)
    da = emb.data
    assert da.shape[0] == 2048 and emb.meta["valid_fraction"] == 1.0
    # each pixel: the fragment (a UTM box) holding its centre, the nearest centre among those
    boxes = [shapely.box(*b) for b in hub["boxes"]]
    to_lonlat = Transformer.from_crs(hub["crs"], "EPSG:4326", always_xy=True)
    to_utm = Transformer.from_crs(str(da.rio.crs), hub["crs"], always_xy=True)
    expected = np.empty(da.shape, np.float32)
    for i, y in enumerate(da.y.values):
        for j, x in enumerate(da.x.values):
            px, py = to_utm.transform(x, y)
            inside = [k for k, b in enumerate(boxes) if b.contains(shapely.Point(px, py))]
            lon, lat = to_lonlat.transform(px, py)
            centres = [to_lonlat.transform(*boxes[k].centroid.coords[0]) for k in inside]
            k = inside[int(np.argmin([np.hypot(cx - lon, cy - lat) for cx, cy in centres]))]
            expected[:, i, j] = hub["embeddings"][k]
    np.testing.assert_array_equal(da.values, expected)
    assert len({tuple(da.values[:3, i, j]) for i in range(da.shape[1])
                for j in range(da.shape[2])}) == 9  # the nine fragments under the region

    # only the matching row group of one shard was read, plus each shard's footer
    stats = servers.control("stats")
    far, near = (stats[f"/datasets/Major-TOM/Core-S2L1C-SSL4EO/resolve/main/embeddings/{p.name}"]
                 for p in hub["shards"])
    assert far["bytes"] < 0.1 * hub["shards"][0].stat().st_size  # its footer only
    assert near["bytes"] > 25 * 2048 * 4  # the 25 fragments' embeddings
    assert emb.meta["scene_ids"] == ["part_00051-00100#0"]

    # again from a new provider on the same cache: no request at all
    servers.control("reset")
    again = get_embedding("majortom-s2l1c-ssl4eo", spatial=_majortom_region(hub),
                          temporal=SAMPLE_RANGE, output=OutputSpec.grid(),
                          provider=MajorTomProvider(servers.files, cache_dir=tmp_path / "cache"))
    np.testing.assert_array_equal(again.data.values, da.values)
    assert servers.control("stats") == {}
    pooled = get_embedding("majortom-s2l1c-ssl4eo", spatial=_majortom_region(hub),
                           temporal=SAMPLE_RANGE, provider=provider)
    np.testing.assert_allclose(pooled.numpy(), da.values.reshape(2048, -1).mean(axis=1),
                               rtol=1e-5, atol=1e-7)


def test_majortom_window_selects_fragments_by_their_image_time(
    majortom: Any, tmp_path: Path
) -> None:
    from eoembed.providers.majortom import MajorTomProvider

    hub, servers = majortom
    provider = MajorTomProvider(servers.files, cache_dir=tmp_path / "cache")
    with pytest.raises(NoDataError, match="imaged on 2015-06-23, none within"):
        get_embedding("majortom-s2l1c-ssl4eo", spatial=_majortom_region(hub), provider=provider,
                      temporal=TemporalSpec.year(2019))
    with pytest.raises(NoDataError, match="no tile"):  # no fragment anywhere near
        get_embedding("majortom-s2l1c-ssl4eo", spatial=PointBuffer(140.0, -30.0, 1000),
                      temporal=SAMPLE_RANGE, provider=provider)


# ---------------------------------------------------------------------- every product, export


def test_every_product_exports_like_a_model(
    tessera: Any, copernicus_map: Any, majortom: Any, tmp_path: Path
) -> None:
    """export_batch writes the same vectors get_embedding gives, records them in the
    manifest, and a rerun reuses them without reading anything."""
    from eoembed import describe_model as describe
    from eoembed import export_batch
    from eoembed.pipeline import load_export
    from eoembed.providers.copernicus_embed import CopernicusEmbedProvider
    from eoembed.providers.majortom import MajorTomProvider
    from eoembed.providers.tessera import TesseraProvider

    fx, tessera_server = tessera
    hub, majortom_server = majortom
    t = fx.transform
    cases = {
        "tessera": (TesseraProvider(tessera_server.files, cache_dir=tmp_path / "t"), Y2024,
                    [BBox(t.c + 2000 + 600 * k, t.f - 4000, t.c + 2500 + 600 * k, t.f - 3500,
                          crs=fx.crs) for k in range(3)]),
        "copernicus-embed": (CopernicusEmbedProvider(copernicus_map[0]), Y2024,
                             [PointBuffer(-75.9 + 0.1 * k, 37.7, 3000) for k in range(3)]),
        "majortom-s2l1c-ssl4eo": (
            MajorTomProvider(majortom_server.files, cache_dir=tmp_path / "m"), SAMPLE_RANGE,
            [BBox(*hub["boxes"][k][:2], hub["boxes"][k][0] + 1000, hub["boxes"][k][1] + 1000,
                  crs=hub["crs"]) for k in (0, 12, 24)]),
    }
    for model, (provider, window, regions) in cases.items():
        out = tmp_path / model
        result = export_batch(regions, model, temporal=window, out=out, provider=provider,
                              progress=False)
        assert (result.ok, result.failed) == (3, 0), (model, result.failures)
        frame = load_export(out)
        written = [np.asarray(v) for v in frame["embedding"]]
        assert len(written) == 3 and len(written[0]) == describe(model).embedding_dim
        for region in regions:  # each region's vector is among those written
            direct = get_embedding(model, spatial=region, temporal=window,
                                   provider=provider).numpy()
            assert any(np.allclose(direct, w, rtol=1e-6, atol=1e-7) for w in written), model
        again = export_batch(regions, model, temporal=window, out=out, provider=provider,
                             progress=False)
        assert (again.reused, again.fetches) == (3, 0), model


def test_product_caches_stay_under_their_size_limit(
    tessera: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Least recently used files go first; a tile evicted is downloaded again when needed."""
    import os

    from eoembed.providers.downloads import trim_cache
    from eoembed.providers.tessera import TesseraProvider

    folder = tmp_path / "lru"
    folder.mkdir()
    for age, name in enumerate(("newest", "middle", "oldest", "index.parquet")):
        (folder / name).write_bytes(b"x" * 100)
        os.utime(folder / name, (1e9 - age * 100, 1e9 - age * 100))
    assert trim_cache(folder, 250, keep=("index.parquet",)) == 200
    assert sorted(p.name for p in folder.iterdir()) == ["index.parquet", "newest"]

    fx, servers = tessera
    monkeypatch.setenv("EOEMBED_PRODUCTS_CACHE_BYTES", "1000")  # smaller than any tile
    provider = TesseraProvider(servers.files, cache_dir=tmp_path / "cache")
    first = get_embedding("tessera", spatial=_tessera_region(fx), temporal=Y2024,
                          provider=provider)
    tiles = tmp_path / "cache" / "tiles"
    assert sum(p.stat().st_size for p in tiles.rglob("*") if p.is_file()) <= 1000
    servers.control("reset")
    second = get_embedding("tessera", spatial=_tessera_region(fx), temporal=Y2024,
                           provider=provider)
    np.testing.assert_array_equal(first.numpy(), second.numpy())
    assert any(p.endswith(".npy") for p in servers.control("stats"))  # fetched again


# ------------------------------------------------------------------------- refusals, errors


def test_products_refuse_what_they_cannot_do_before_any_read(
    mirror: AlphaEarthFixture, tmp_path: Path
) -> None:
    from eoembed import SensorSpec, export_batch
    from eoembed.errors import CapabilityError, ProductFileNotFoundError

    region = _box(mirror, (0, 50), (0, 50))
    with pytest.raises(CapabilityError, match="served by 'alphaearth', 'earthengine'"):
        get_embedding("alphaearth", spatial=region, temporal=Y2024, provider="sample")
    with pytest.raises(CapabilityError, match="published product"):  # mixed: one provider
        export_batch([region], ["alphaearth", "mosaiks"], temporal=Y2024, out=tmp_path / "x",
                     progress=False)
    assert not (tmp_path / "x").exists()
    provider = AlphaEarthProvider(str(mirror.base))
    bands = tuple(f"A{i:02d}" for i in range(64))
    with pytest.raises(SpecError, match="resampling"):
        get_embedding("alphaearth", spatial=region, temporal=Y2024, provider=provider,
                      sensor=SensorSpec("alphaearth-annual", bands, resampling="bilinear"))
    # a local folder without the index: said, and nothing of the user's deleted
    empty = tmp_path / "not-a-mirror"
    empty.mkdir()
    with pytest.raises(ProductFileNotFoundError, match="no AlphaEarth index"):
        get_embedding("alphaearth", spatial=region, temporal=Y2024,
                      provider=AlphaEarthProvider(str(empty)))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "aef_index.parquet").write_bytes(b"not parquet")
    from eoembed.errors import CorruptFileError

    with pytest.raises(CorruptFileError, match="could not be read"):
        get_embedding("alphaearth", spatial=region, temporal=Y2024,
                      provider=AlphaEarthProvider(str(broken)))
    assert (broken / "aef_index.parquet").exists()


def test_a_polygon_pools_only_the_pixels_it_covers(mirror: AlphaEarthFixture) -> None:
    from eoembed import GeometrySpec

    t = mirror.transform
    x0, y0 = t.c + 100 * 10, t.f - 300 * 10  # a right triangle over rows 100..300
    triangle = GeometrySpec.from_geometry(
        {"type": "Polygon", "coordinates": [[[x0, y0], [x0 + 2000, y0], [x0, y0 + 2000],
                                             [x0, y0]]]}, crs=mirror.crs)
    provider = AlphaEarthProvider(str(mirror.base))
    grid = get_embedding("alphaearth", spatial=triangle, temporal=Y2024,
                         output=OutputSpec.grid(), provider=provider).data.values
    nan = np.isnan(grid[0])
    assert nan[0, -1] and not nan[-1, 0]  # the corner outside is left out, inside kept
    assert 0.4 < (~nan).mean() < 0.65
    pooled = get_embedding("alphaearth", spatial=triangle, temporal=Y2024, provider=provider)
    np.testing.assert_allclose(pooled.numpy(), np.nanmean(grid.reshape(64, -1).astype(float),
                                                          axis=1), rtol=1e-5, atol=1e-7)


def test_majortom_server_refusals_are_provider_errors_not_retries(
    majortom: Any, tmp_path: Path
) -> None:
    from eoembed.errors import ProviderError, ProviderUnavailableError
    from eoembed.providers.majortom import MajorTomProvider

    hub, servers = majortom
    servers.control("reset")
    missing = MajorTomProvider(f"{servers.files}/nowhere", cache_dir=tmp_path / "c")
    with pytest.raises(ProviderError, match="listing") as info:
        get_embedding("majortom-s2l1c-ssl4eo", spatial=_majortom_region(hub),
                      temporal=SAMPLE_RANGE, provider=missing)
    assert not isinstance(info.value, ProviderUnavailableError)  # a 404: not "unavailable"
    assert len(servers.statuses()) == 1  # asked once, not retried
