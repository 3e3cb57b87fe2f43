"""Exports opened by GDAL/QGIS's own tools: COG metadata, the VRT mosaic, FlatGeobuf and
GeoPackage, the Zarr root (DataTree and mosaic), and what Debian's GDAL cannot open.

Real MOSAIKS exports of the sample scene. The command-line checks use Debian's ``gdal-bin``
(GDAL 3.6 here; ``scripts/setup.sh`` installs it) and skip where it is absent.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from eoembed import OutputSpec, PointBuffer, TemporalSpec, export_batch, load_export
from eoembed.errors import CapabilityError, FormatLimitError
from eoembed.writers import get_writer
from eoembed.writers.base import EmbeddingSchema

WINDOW = TemporalSpec.range("2015-06-23", "2016-06-11")
ALIGNED = [PointBuffer(-75.700, 37.700, 320), PointBuffer(-75.6955, 37.700, 320)]
"""Two overlapping regions whose 80 m grids share one lattice (checked in the tests)."""
FAR = PointBuffer(-75.65, 37.66, 320)
"""A region km away, on another lattice (its grid is not aligned with ALIGNED's)."""
needs_gdal = pytest.mark.skipif(
    shutil.which("gdalinfo") is None or shutil.which("ogrinfo") is None,
    reason="GDAL's command-line tools are not installed (apt-get install gdal-bin;"
    " scripts/setup.sh does it where it can)",
)


def _run(*args: str) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{args}: {proc.stderr}"
    return proc.stdout


def _export(out: Path, provider, regions, fmt: str, mode: str = "grid", **kw) -> Path:
    output = OutputSpec.grid() if mode == "grid" else OutputSpec.pooled()
    result = export_batch(regions, "mosaiks", temporal=WINDOW, out=out, output=output,
                          format=fmt, provider=provider, device="cpu", progress=False, **kw)
    assert result.ok + result.reused == len(regions) and result.failed == 0
    return out / "mosaiks"


@pytest.fixture(scope="module")
def cog_export(tmp_path_factory, sample_provider) -> Path:
    return _export(tmp_path_factory.mktemp("cog"), sample_provider, [*ALIGNED, FAR], "cog")


@pytest.fixture(scope="module")
def pooled_exports(tmp_path_factory, sample_provider) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pooled")
    regions = [*ALIGNED, FAR]
    return {fmt: _export(root / fmt, sample_provider, regions, fmt, "pooled")
            for fmt in ("geoparquet", "flatgeobuf", "gpkg")}


# -- COG: metadata domain, VRT mosaic -------------------------------------------------------


def test_cog_metadata_is_one_item_per_field_in_its_own_domain(cog_export) -> None:
    import rasterio

    tif = min(cog_export.glob("*.tif"))
    with rasterio.open(tif) as src:
        tags = src.tags(ns="EOEMBED")
    assert tags["emb_dimensions"] == "512" and tags["emb_type"] == "pixel"
    assert tags["id"] == tif.stem and tags["model"] == "mosaiks"
    assert json.loads(tags["emb_runtime_parameters"])["model"] == "mosaiks"
    assert json.loads(tags["eoembed"])["mode"] == "grid"
    if shutil.which("gdalinfo"):  # GDAL's own reader, by name
        info = json.loads(_run("gdalinfo", "-json", "-mdd", "EOEMBED", str(tif)))
        assert info["metadata"]["EOEMBED"] == tags
        assert "emb" not in info["metadata"].get("", {})
    tree = load_export(cog_export.parent)  # the loader reads them back under emb: names
    ds = tree[tif.stem].to_dataset()
    assert ds.attrs["emb:dimensions"] == "512" and ds.attrs["id"] == tif.stem


def _cell_centre(tif: Path) -> tuple[float, float, np.ndarray]:
    """A region's centre cell: its coordinates and every band's value there."""
    import rasterio

    with rasterio.open(tif) as src:
        row, col = src.height // 2, src.width // 2
        x, y = src.xy(row, col)
        return x, y, src.read()[:, row, col]


def test_vrt_mosaic_opens_as_one_raster_with_each_regions_values(cog_export) -> None:
    import rasterio

    tifs = sorted(cog_export.glob("*.tif"))
    assert get_writer("cog").list_files(cog_export) == [t.name for t in tifs]  # no .vrt
    vrt = cog_export / "mosaic.vrt"  # one CRS: one VRT
    lefts = []
    for tif in tifs:
        with rasterio.open(tif) as src:
            lefts.append((src.transform.c, src.bounds))
    with rasterio.open(vrt) as mosaic:
        assert mosaic.count == 512 and mosaic.crs.to_epsg() == 32618
        assert mosaic.descriptions[:2] == ("dim_000", "dim_001")
        assert mosaic.bounds.left == min(b.left for _, b in lefts)
        assert mosaic.bounds.top == max(b.top for _, b in lefts)
        assert mosaic.tags(ns="EOEMBED")["emb_dimensions"] == "512"
        for tif in tifs:
            x, y, want = _cell_centre(tif)
            got = np.array(next(iter(mosaic.sample([(x, y)]))))
            np.testing.assert_array_equal(got, want)
    if not shutil.which("gdalinfo"):
        pytest.skip("gdal-bin absent: the VRT was checked with rasterio's GDAL only")
    info = json.loads(_run("gdalinfo", "-json", str(vrt)))
    with rasterio.open(vrt) as mosaic:
        assert info["size"] == [mosaic.width, mosaic.height]
    assert "32618" in info["coordinateSystem"]["wkt"] and len(info["bands"]) == 512
    for tif in tifs:  # Debian's gdallocationinfo, at a georeferenced point of each region
        x, y, want = _cell_centre(tif)
        out = _run("gdallocationinfo", "-valonly", "-geoloc", str(vrt), str(x), str(y))
        got = np.array([float(v) for v in out.split()], dtype=np.float32)
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_vrt_is_one_per_crs_rebuilt_on_close(tmp_path, cog_export) -> None:
    """A second CRS splits the mosaic; removing it leaves no stale VRT behind."""
    import rasterio
    from rasterio.warp import calculate_default_transform, reproject

    folder = tmp_path / "cog"
    shutil.copytree(cog_export, folder)
    src_path = min(folder.glob("*.tif"))
    moved = folder / "zzzz-utm17.tif"
    with rasterio.open(src_path) as src:
        transform, width, height = calculate_default_transform(
            src.crs, "EPSG:32617", src.width, src.height, *src.bounds)
        profile = src.profile | {"crs": "EPSG:32617", "transform": transform,
                                 "width": width, "height": height, "driver": "GTiff"}
        with rasterio.open(moved, "w", **profile) as dst:
            for band in range(1, src.count + 1):
                reproject(rasterio.band(src, band), rasterio.band(dst, band))
    schema = EmbeddingSchema(model="mosaiks", mode="grid", dim=512)
    get_writer("cog")(folder, schema).close()
    assert sorted(p.name for p in folder.glob("*.vrt")) == [
        "mosaic-EPSG_32617.vrt", "mosaic-EPSG_32618.vrt"]
    moved.unlink()
    get_writer("cog")(folder, schema).close()
    assert sorted(p.name for p in folder.glob("*.vrt")) == ["mosaic.vrt"]


def test_vrt_past_its_source_limit_is_not_written(tmp_path, cog_export, monkeypatch,
                                                 caplog) -> None:
    """Too many (region, band) sources for one VRT: none, a warning, and no stale one left."""
    from eoembed.writers import vrt

    folder = tmp_path / "cog"
    shutil.copytree(cog_export, folder)
    regions = len(list(folder.glob("*.tif")))
    schema = EmbeddingSchema(model="mosaiks", mode="grid", dim=512)
    monkeypatch.setattr(vrt, "MAX_VRT_ENTRIES", 512 * regions)
    get_writer("cog")(folder, schema).close()
    assert (folder / "mosaic.vrt").exists()
    monkeypatch.setattr(vrt, "MAX_VRT_ENTRIES", 512 * regions - 1)
    with caplog.at_level("WARNING", logger="eoembed.writers.vrt"):
        get_writer("cog")(folder, schema).close()
    assert not list(folder.glob("*.vrt"))
    assert "STAC catalogue" in caplog.text


def test_vrt_rebuild_is_skipped_while_its_files_are_unchanged(tmp_path, cog_export,
                                                             monkeypatch) -> None:
    """A close that finds the VRT stamped with the files as they are opens no file; a
    removed (or rewritten) region file makes it rebuild."""
    from eoembed.writers import vrt

    folder = tmp_path / "cog"
    shutil.copytree(cog_export, folder)
    schema = EmbeddingSchema(model="mosaiks", mode="grid", dim=512)
    writer = get_writer("cog")
    writer(folder, schema).close()  # the copy's mtimes differ: rebuilt and stamped
    before = (folder / "mosaic.vrt").read_text()
    assert vrt.STAMP_KEY in before
    real = vrt._read_source
    monkeypatch.setattr(vrt, "_read_source", lambda path: pytest.fail(f"read {path}"))
    writer(folder, schema).close()
    assert (folder / "mosaic.vrt").read_text() == before
    gone = min(folder.glob("*.tif"))
    gone.unlink()
    monkeypatch.setattr(vrt, "_read_source", real)
    writer(folder, schema).close()
    after = (folder / "mosaic.vrt").read_text()
    assert gone.name in before and gone.name not in after


def test_int8_vrt_dequantises_each_region_with_its_own_scales(tmp_path, sample_provider):
    import rasterio

    folder = _export(tmp_path, sample_provider, ALIGNED, "cog", quantize="int8")
    float_tree = get_writer("cog").load(folder)  # dequantised by eoembed
    with rasterio.open(folder / "mosaic.vrt") as mosaic:
        assert mosaic.dtypes[0] == "float32"
        for tif in sorted(folder.glob("*.tif")):
            with rasterio.open(tif) as src:
                row, col = src.height // 2, src.width // 2
                x, y = src.xy(row, col)
            want = float_tree[tif.stem]["embedding"].values[:, row, col]
            got = np.array(next(iter(mosaic.sample([(x, y)]))))
            np.testing.assert_allclose(got, want, rtol=1e-6)


# -- FlatGeobuf and GeoPackage ----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["flatgeobuf", "gpkg"])
def test_pooled_vector_formats_load_like_geoparquet(pooled_exports, fmt) -> None:
    reference = load_export(pooled_exports["geoparquet"].parent).set_index("id")
    got = load_export(pooled_exports[fmt].parent).set_index("id")
    assert list(got.columns) == list(reference.columns)
    assert sorted(got.index) == sorted(reference.index)
    for rid, row in got.iterrows():
        ref = reference.loc[rid]
        np.testing.assert_array_equal(row["embedding"], ref["embedding"])
        assert row["embedding"].dtype == np.float32
        assert list(row["scene_ids"]) == list(ref["scene_ids"])
        assert row["input_transform"] == list(ref["input_transform"])
        assert row["start_datetime"] == ref["start_datetime"]
        # the formats hold milliseconds: the inclusive end is the window's last millisecond
        assert abs(row["end_datetime"] - ref["end_datetime"]).total_seconds() < 1e-3
        assert row["geometry"].equals_exact(ref["geometry"], 1e-9)
    assert got.crs.equals(reference.crs)


def _ogr_summary(path: Path) -> str:
    return _run("ogrinfo", "-al", "-so", str(path))


@needs_gdal
@pytest.mark.parametrize("fmt", ["flatgeobuf", "gpkg"])
def test_debians_ogrinfo_reads_the_parts(pooled_exports, fmt) -> None:
    folder = pooled_exports[fmt]
    [part] = get_writer(fmt).list_files(folder)
    summary = _ogr_summary(folder / part)
    assert "Feature Count: 3" in summary
    assert 'ID["OGC","CRS84"]' in summary
    fields = re.findall(r"^(\w+): (?:Real|Integer|Integer64|String|DateTime)", summary, re.MULTILINE)
    assert len([f for f in fields if f.startswith("emb_")]) == 512
    assert {"id", "model", "start_datetime", "fingerprint"} <= set(fields)
    if fmt == "gpkg":  # layer metadata: GPKG everywhere (FlatGeobuf's header from GDAL 3.9)
        assert "emb_dimensions=512" in summary and "emb_type=chip" in summary
    table = _run("ogr2ogr", "-f", "CSV", "/vsistdout/", str(folder / part))
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(table))}
    reference = load_export(pooled_exports["geoparquet"].parent)
    assert set(rows) == set(reference["id"])
    names = [f for f in fields if f.startswith("emb_")]
    for rid, emb in zip(reference["id"], reference["embedding"], strict=True):
        values = np.array([float(rows[rid][n]) for n in names], dtype=np.float32)
        # GDAL 3.6 prints float32 fields with 8 significant digits: equal to within an ulp
        np.testing.assert_allclose(values, emb, rtol=2e-7)


def test_geopackage_refuses_more_dimensions_than_columns(tmp_path) -> None:
    schema = EmbeddingSchema(model="resnet50", mode="pooled", dim=2048)
    with pytest.raises(FormatLimitError, match=r"2000 columns.*geoparquet") as info:
        get_writer("gpkg")(tmp_path / "g", schema)
    assert isinstance(info.value, CapabilityError) and not (tmp_path / "g").exists()
    get_writer("flatgeobuf")(tmp_path / "f", schema)  # 65535 columns: fits


def test_geopackage_column_limit_is_sqlites(tmp_path, sample_provider) -> None:
    """The most dimensions accepted really fit (and one more would not, in SQLite itself)."""
    import dataclasses

    import pyogrio

    from eoembed import get_embedding
    from eoembed.writers.ogr import GeoPackageWriter
    from test_writers import make_record

    room = 2000 - 17  # the limit less the record fields, feature id and geometry
    with pytest.raises(FormatLimitError):
        GeoPackageWriter(tmp_path / "over", EmbeddingSchema("mosaiks", "pooled", room + 1))
    emb = get_embedding("mosaiks", spatial=ALIGNED[0], temporal=WINDOW, provider=sample_provider,
                        device="cpu")
    record = make_record(ALIGNED[0], emb)
    # the widest part: int8 (adds embedding_scale) from a time series (adds frame_dates)
    wide = dataclasses.replace(record, values=np.resize(record.values, room),
                               frame_dates=("2015-09-01", "2016-03-01"))
    schema = EmbeddingSchema("mosaiks", "pooled", room, dtype="int8",
                             quantization="int8-symmetric")
    [part] = GeoPackageWriter(tmp_path / "max", schema).write([wide])
    info = pyogrio.read_info(tmp_path / "max" / part.path)
    assert len(info["fields"]) + 2 == 2000 and info["features"] == 1  # + fid and geometry
    got = GeoPackageWriter.load(tmp_path / "max", dequantize=False)
    assert got["embedding"][0].shape == (room,) and got["frame_dates"][0] == [
        "2015-09-01", "2016-03-01"]
    with pytest.raises(Exception, match="one_more"):  # 2001 columns: GDAL/SQLite refuse
        raw = pyogrio.read_dataframe(tmp_path / "max" / part.path)
        pyogrio.write_dataframe(raw.assign(one_more=1.0), tmp_path / "over.gpkg")


# -- Zarr root ---------------------------------------------------------------------------------


def test_zarr_root_opens_as_a_datatree_and_a_mosaic(tmp_path, sample_provider) -> None:
    import xarray as xr

    folder = _export(tmp_path / "z", sample_provider, ALIGNED, "zarr")
    store = folder / "embeddings.zarr"
    regions = get_writer("zarr").load(folder)
    lefts = {n: c.to_dataset().rio.transform().c for n, c in regions.children.items()}
    assert (max(lefts.values()) - min(lefts.values())) % 80 == 0  # one lattice (precondition)

    tree = xr.open_datatree(store, engine="zarr")
    assert sorted(tree.children) == sorted(regions.children)
    mosaic = xr.open_zarr(store)
    assert mosaic["embedding"].dims == ("dim", "mosaic_y", "mosaic_x")
    assert mosaic.rio.crs.to_epsg() == 32618
    emb = mosaic["embedding"].rio.set_spatial_dims(x_dim="mosaic_x", y_dim="mosaic_y")
    assert emb.rio.transform().a == 80.0
    covered = np.zeros(mosaic["embedding"].shape[1:], dtype=int)
    cells = {}
    for name, child in regions.children.items():
        ds = child.to_dataset()
        rows = np.searchsorted(-mosaic["mosaic_y"].values, -ds["y"].values)
        cols = np.searchsorted(mosaic["mosaic_x"].values, ds["x"].values)
        covered[np.ix_(rows, cols)] += 1
        cells[name] = (np.ix_(rows, cols), ds["embedding"].values)
    assert (covered == 2).any() and (covered == 1).any()  # they overlap, not only
    values = mosaic["embedding"].values
    for name, (window, own) in cells.items():
        got = values[:, window[0], window[1]]
        same = np.all((got == own) | (np.isnan(got) & np.isnan(own)), axis=0)
        only_here = covered[window] == 1
        assert same[only_here].all(), name  # cells no other region covers: this region's
    assert np.isnan(values[:, covered == 0]).all()


def test_zarr_regions_on_different_lattices_get_no_mosaic(tmp_path, sample_provider) -> None:
    import xarray as xr

    folder = _export(tmp_path / "z", sample_provider, [ALIGNED[0], FAR], "zarr")
    store = folder / "embeddings.zarr"
    assert len(xr.open_datatree(store, engine="zarr").children) == 2
    assert "embedding" not in xr.open_zarr(store)


# -- what Debian's GDAL cannot open (the README's table) -----------------------------------


@needs_gdal
def test_debians_gdal_reads_neither_geoparquet_nor_zarr_v3(pooled_exports, tmp_path,
                                                           sample_provider) -> None:
    version = _run("gdalinfo", "--version")
    match = re.match(r"GDAL (\d+)\.(\d+)", version)
    assert match
    if (int(match[1]), int(match[2])) >= (3, 8):
        pytest.skip(f"{version.strip()} may read them; the table's claim is for GDAL < 3.8")
    [part] = get_writer("geoparquet").list_files(pooled_exports["geoparquet"])
    parquet = subprocess.run(["ogrinfo", "-so", "-al", str(pooled_exports["geoparquet"] / part)],
                             capture_output=True, text=True, check=False)
    assert parquet.returncode != 0
    store = _export(tmp_path / "z", sample_provider, ALIGNED, "zarr") / "embeddings.zarr"
    zarr = subprocess.run(["gdalinfo", str(store)], capture_output=True, text=True,
                          check=False)
    assert zarr.returncode != 0 and "not recognized" in zarr.stderr


def test_zarr_mosaic_is_rebuilt_when_an_export_grows(tmp_path, sample_provider) -> None:
    import xarray as xr

    out = tmp_path / "z"
    store = _export(out, sample_provider, ALIGNED[:1], "zarr") / "embeddings.zarr"
    assert xr.open_zarr(store)["embedding"].shape == (512, 8, 8)
    _export(out, sample_provider, ALIGNED, "zarr")  # resume adds the second region
    mosaic = xr.open_zarr(store)
    assert mosaic["embedding"].shape == (512, 8, 13)
    assert len(xr.open_datatree(store, engine="zarr").children) == 2


def test_zarr_mosaic_overlap_takes_the_later_region_and_size_is_capped(
    tmp_path, sample_provider, monkeypatch, caplog
) -> None:
    """Overlapping cells hold the later region's (by id) values; a mosaic past
    MAX_MOSAIC_BYTES is not written (a warning says so) and no region's values are read."""
    import logging

    import xarray as xr

    from eoembed.writers import zarr_mosaic

    folder = _export(tmp_path / "z", sample_provider, ALIGNED, "zarr")
    store = folder / "embeddings.zarr"
    mosaic = xr.open_zarr(store)
    values = mosaic["embedding"].values
    later = max(get_writer("zarr").load(folder).children)
    ds = xr.open_dataset(store, group=later, engine="zarr", consolidated=False)
    rows = np.searchsorted(-mosaic["mosaic_y"].values, -ds["y"].values)
    cols = np.searchsorted(mosaic["mosaic_x"].values, ds["x"].values)
    own = ds["embedding"].values
    got = values[:, rows[:, None], cols[None, :]]
    assert np.array_equal(got[~np.isnan(own)], own[~np.isnan(own)])  # the overlap included

    groups = sorted(get_writer("zarr").load(folder).children)
    shape = mosaic["embedding"].shape
    monkeypatch.setattr(zarr_mosaic, "MAX_MOSAIC_BYTES", int(np.prod(shape)) * 4 - 1)
    monkeypatch.setattr(xr, "open_dataset", lambda *a, **k: pytest.fail("values read"))
    with caplog.at_level(logging.WARNING, logger="eoembed.writers.zarr_mosaic"):
        assert zarr_mosaic.write_mosaic(store, groups) is False
    assert "no root mosaic" in caplog.text
    monkeypatch.setattr(zarr_mosaic, "MAX_MOSAIC_BYTES", int(np.prod(shape)) * 4)
    monkeypatch.undo()
    zarr_mosaic.remove_mosaic(store)
    assert zarr_mosaic.write_mosaic(store, groups) is True
    np.testing.assert_array_equal(xr.open_zarr(store)["embedding"].values, values)
