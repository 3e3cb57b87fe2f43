"""Export formats on real embeddings: round trips, external readers, atomicity, quantisation.

Records come from MOSAIKS on the sample scene (no weights to download): pooled 512-d vectors
and 80 m grids for three small regions, embedded once per session.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import shapely

from eoembed import OutputSpec, PointBuffer, TemporalSpec
from eoembed.errors import CapabilityError, ExportConflictError, SpecError
from eoembed.grid import Grid
from eoembed.writers import get_writer, list_writers
from eoembed.writers.base import (
    TIME_SEMANTICS,
    TMP_PREFIX,
    EmbeddingRecord,
    EmbeddingSchema,
    Writer,
)
from eoembed.writers.quantize import METHOD, MISSING, dequantize, quantize

WINDOW = TemporalSpec.range("2015-06-23", "2016-06-11")
POINTS = (
    PointBuffer(-75.70, 37.70, 320),
    PointBuffer(-75.69, 37.71, 320),
    PointBuffer(-75.71, 37.69, 480),
)
DIM = 512
CASES = [
    ("geoparquet", "pooled"),
    ("npz", "pooled"),
    ("npz", "grid"),
    ("zarr", "grid"),
    ("netcdf", "grid"),
    ("cog", "grid"),
    ("flatgeobuf", "pooled"),
    ("gpkg", "pooled"),
]
CASE_IDS = [f"{f}-{m}" for f, m in CASES]


def _grid(d: dict) -> Grid:
    t = d["transform"]
    return Grid(d["crs"], t[2], t[5], t[0], d["width"], d["height"])


def make_record(spec: PointBuffer, emb, model: str = "mosaiks") -> EmbeddingRecord:
    """What the export engine hands a writer, built from a real Embedding."""
    meta = emb.meta
    key = f"{spec.fingerprint}|{WINDOW.start}|{WINDOW.end}|{model}|{meta['output']['mode']}"
    return EmbeddingRecord(
        id=hashlib.sha256(key.encode()).hexdigest()[:16],
        model=model,
        values=np.asarray(emb.numpy(), dtype=np.float32),
        footprint_wkb=shapely.to_wkb(spec.lonlat_geometry()),
        input_grid=_grid(meta["input_grid"]),
        output_grid=_grid(meta["output_grid"]) if "output_grid" in meta else None,
        start_datetime=WINDOW.start,
        end_datetime=WINDOW.end,
        scene_ids=tuple(meta["scene_ids"]),
        spatial=meta["spatial"],
        fingerprint=hashlib.sha256(key.encode() + b"|request").hexdigest(),
        valid_fraction=meta["valid_fraction"],
        scene_times=tuple(meta["scene_times"]),
    )


@pytest.fixture(scope="session")
def records(sample_provider) -> dict[str, list[EmbeddingRecord]]:
    """Float32 records per output mode, from real MOSAIKS embeddings of the sample scene."""
    from eoembed import get_embeddings_batch

    out = {}
    for mode, spec in (("pooled", OutputSpec.pooled()), ("grid", OutputSpec.grid())):
        embs = get_embeddings_batch(
            "mosaiks", spatials=list(POINTS), temporal=WINDOW, output=spec,
            provider=sample_provider,
        )
        out[mode] = [make_record(p, e) for p, e in zip(POINTS, embs, strict=True)]
    return out


def schema_for(mode: str, quantised: bool = False) -> EmbeddingSchema:
    return EmbeddingSchema(
        model="mosaiks", mode=mode, dim=DIM,
        dtype="int8" if quantised else "float32",
        quantization=METHOD if quantised else None,
        pooling="mean" if mode == "pooled" else None,
        model_meta={"model": "mosaiks", "options": {"num_features": DIM}},
        request={"temporal": WINDOW.to_dict(), "provider": "sample"},
    )


def no_temp_files(directory: Path) -> bool:
    return not any(p.name.startswith(TMP_PREFIX) for p in directory.rglob("*"))


def _values_by_id(cls: type[Writer], directory: Path, mode: str) -> dict[str, np.ndarray]:
    loaded = cls.load(directory)
    if mode == "pooled":
        return {i: np.asarray(v) for i, v in zip(loaded["id"], loaded["embedding"], strict=True)}
    return {name: child["embedding"].values for name, child in loaded.children.items()}


# -- every format -------------------------------------------------------------------------


def test_registry_names_every_format() -> None:
    assert set(list_writers()) >= {f for f, _ in CASES}
    for fmt, mode in CASES:
        cls = get_writer(fmt)
        assert cls.name == fmt and mode in cls.modes and cls.requires


@pytest.mark.parametrize("quantised", [False, True], ids=["float32", "int8"])
@pytest.mark.parametrize(("fmt", "mode"), CASES, ids=CASE_IDS)
def test_round_trip(tmp_path, records, fmt, mode, quantised) -> None:
    cls = get_writer(fmt)
    recs = records[mode]
    writer = cls(tmp_path, schema_for(mode, quantised))
    written = writer.write(recs[:2]) + writer.write(recs[2:])
    writer.close()
    writer.close()  # safe twice

    assert sorted(i for f in written for i in f.ids) == sorted(r.id for r in recs)
    assert sorted(f.path for f in written) == cls.list_files(tmp_path)
    got = _values_by_id(cls, tmp_path, mode)
    assert set(got) == {r.id for r in recs}
    for r in recs:
        assert got[r.id].dtype == np.float32
        if quantised:
            q, scale = quantize(r.values)
            np.testing.assert_array_equal(got[r.id], dequantize(q, scale))
        else:
            np.testing.assert_array_equal(got[r.id], r.values)
    assert no_temp_files(tmp_path)


@pytest.mark.parametrize(("fmt", "mode"), [c for c in CASES if c[1] == "grid"],
                         ids=[i for i, c in zip(CASE_IDS, CASES, strict=True) if c[1] == "grid"])
def test_grids_load_georeferenced(tmp_path, records, fmt, mode) -> None:
    cls = get_writer(fmt)
    writer = cls(tmp_path, schema_for(mode))
    writer.write(records[mode])
    tree = cls.load(tmp_path)
    for r in records[mode]:
        ds = tree[r.id].to_dataset()
        assert ds.rio.crs.to_epsg() == 32618
        assert ds.rio.transform() == r.output_grid.transform
        np.testing.assert_allclose(ds["x"].values, r.output_grid.xs())
        np.testing.assert_allclose(ds["y"].values, r.output_grid.ys())
        assert ds["embedding"].dims == ("dim", "y", "x")


@pytest.mark.parametrize(("fmt", "mode"), CASES, ids=CASE_IDS)
def test_keep_int8_when_asked(tmp_path, records, fmt, mode) -> None:
    cls = get_writer(fmt)
    rec = records[mode][0]
    cls(tmp_path, schema_for(mode, quantised=True)).write([rec])
    loaded = cls.load(tmp_path, dequantize=False)
    q, scale = quantize(rec.values)
    if mode == "pooled":
        np.testing.assert_array_equal(loaded["embedding"][0], q)
        np.testing.assert_allclose(loaded["embedding_scale"][0], scale)
    else:
        ds = loaded[rec.id].to_dataset()
        np.testing.assert_allclose(ds["embedding_scale"].values, scale)
        # xarray masks int8's -128 on read (float32 then), the stored integers stay exact
        np.testing.assert_array_equal(np.asarray(ds["embedding"].values, np.float32), q)


@pytest.mark.parametrize(("fmt", "mode"), CASES, ids=CASE_IDS)
def test_bad_record_fails_the_batch_before_any_file(tmp_path, records, fmt, mode) -> None:
    cls = get_writer(fmt)
    writer = cls(tmp_path, schema_for(mode))
    good = records[mode]
    writer.write(good[:1])
    before = cls.list_files(tmp_path)
    wrong_dim = dataclasses.replace(good[2], values=good[2].values[:-1])
    with pytest.raises(SpecError, match="dim=512"):
        writer.write([good[1], wrong_dim])
    with pytest.raises(SpecError, match=r"EmbeddingRecord\.id"):
        writer.write([good[1], good[1]])
    assert cls.list_files(tmp_path) == before
    assert no_temp_files(tmp_path)


def _break_second_file(monkeypatch: pytest.MonkeyPatch, cls: type[Writer], mode: str) -> None:
    """Make the write fail halfway through a file (a full disk), after a partial file exists."""

    def partial(tmp: Path) -> None:
        if tmp.suffix:
            tmp.write_bytes(b"half a file")
        else:
            tmp.mkdir()
            (tmp / "zarr.json").write_text("{")
        raise OSError(28, "No space left on device")

    if mode == "pooled":  # one part per write: fail inside it
        target = "pyarrow.parquet.write_table" if cls.name == "geoparquet" else None
        if target:
            monkeypatch.setattr(target, lambda table, tmp, **kw: partial(Path(tmp)))
        elif cls.name in ("flatgeobuf", "gpkg"):
            monkeypatch.setattr("eoembed.writers.ogr._write_frame",
                                lambda gdf, tmp, *a: partial(Path(tmp)))
        else:
            monkeypatch.setattr("eoembed.writers.npz._save", lambda tmp, arrays: partial(tmp))
        return
    real = cls._write_one  # type: ignore[attr-defined]
    calls: list[str] = []

    def flaky(self: Writer, record: EmbeddingRecord, tmp: Path) -> None:
        calls.append(record.id)
        if len(calls) == 2:
            partial(tmp)
        real(self, record, tmp)

    monkeypatch.setattr(cls, "_write_one", flaky)


@pytest.mark.parametrize(("fmt", "mode"), CASES, ids=CASE_IDS)
def test_write_failing_midway_leaves_nothing(tmp_path, records, monkeypatch, fmt, mode) -> None:
    cls = get_writer(fmt)
    writer = cls(tmp_path, schema_for(mode))
    first = writer.write(records[mode][:1])
    before = {p: (tmp_path / p).stat().st_mtime_ns for p in cls.list_files(tmp_path)}
    with monkeypatch.context() as m:
        _break_second_file(m, cls, mode)
        with pytest.raises(OSError, match="No space"):
            writer.write(records[mode][1:])
    # the record completed before the failure is gone too: the batch retries from scratch
    assert {p: (tmp_path / p).stat().st_mtime_ns for p in cls.list_files(tmp_path)} == before
    assert no_temp_files(tmp_path)
    retried = writer.write(records[mode][1:])
    assert {f.path for f in retried}.isdisjoint({f.path for f in first})
    assert len(_values_by_id(cls, tmp_path, mode)) == 3


@pytest.mark.parametrize(("fmt", "mode"), CASES, ids=CASE_IDS)
def test_second_write_never_overwrites(tmp_path, records, fmt, mode) -> None:
    cls = get_writer(fmt)
    rec = records[mode][0]
    writer = cls(tmp_path, schema_for(mode))
    [first] = writer.write([rec])
    stamp = (tmp_path / first.path).stat().st_mtime_ns
    if mode == "pooled":  # parts: the same ids again go to a new part
        [second] = cls(tmp_path, schema_for(mode)).write([rec])
        assert second.path != first.path
        assert cls.list_files(tmp_path) == sorted([first.path, second.path])
    else:  # one file per id: a second copy is refused
        with pytest.raises(ExportConflictError, match="never rewrites"):
            writer.write([rec])
    assert (tmp_path / first.path).stat().st_mtime_ns == stamp


_CRASH = """
import os, pickle, sys
from pathlib import Path
from eoembed.writers import get_writer
fmt, directory, schema, records = pickle.loads(Path(sys.argv[1]).read_bytes())
writer = get_writer(fmt)(Path(directory), schema)
os.replace = lambda src, dst: os._exit(17)  # the process dies just before the rename
writer.write(records)
"""


@pytest.mark.parametrize(("fmt", "mode"), [("geoparquet", "pooled"), ("zarr", "grid")])
def test_crash_leaves_only_temp_files_that_resume_removes(tmp_path, records, fmt, mode) -> None:
    cls = get_writer(fmt)
    directory = tmp_path / "out"
    job = tmp_path / "job.pkl"
    job.write_bytes(pickle.dumps((fmt, str(directory), schema_for(mode), records[mode][:2])))
    proc = subprocess.run(
        [sys.executable, "-c", _CRASH, str(job)], capture_output=True, check=False
    )
    assert proc.returncode == 17, proc.stderr.decode()
    assert not no_temp_files(directory)  # the crash left a temp file or folder behind...
    assert cls.list_files(directory) == []  # ...that never counts as a result
    cls.remove_partial(directory)
    assert no_temp_files(directory)
    writer = cls(directory, schema_for(mode))
    writer.write(records[mode][:2])
    writer.close()
    assert len(_values_by_id(cls, directory, mode)) == 2


def test_mode_the_format_cannot_store_is_refused(tmp_path) -> None:
    with pytest.raises(CapabilityError, match="grid"):
        get_writer("cog")(tmp_path, schema_for("pooled"))
    with pytest.raises(CapabilityError, match="pooled"):
        get_writer("geoparquet")(tmp_path, schema_for("grid"))


def test_importing_writers_is_light() -> None:
    code = (
        "import sys, eoembed, eoembed.writers, eoembed.writers.base\n"
        "eoembed.writers.list_writers()\n"
        "print(sorted(m for m in ('pyarrow', 'zarr', 'netCDF4', 'geopandas', 'rasterio')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- quantisation --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["pooled", "grid"])
def test_quantisation_error_on_real_embeddings(records, mode) -> None:
    for rec in records[mode]:
        v = rec.values
        q, scale = quantize(v)
        assert q.dtype == np.int8 and scale.dtype == np.float32
        assert scale.shape == (() if mode == "pooled" else (DIM,))
        assert q.min() >= -127  # -128 is kept for missing values
        back = dequantize(q, scale)
        bound = np.asarray(scale).reshape(scale.shape + (1,) * (v.ndim - scale.ndim)) / 2
        assert np.all(np.abs(back - v) <= bound * (1 + 1e-6) + 1e-12)
        rel_rmse = np.sqrt(np.mean((back - v) ** 2) / np.mean(v**2))
        assert rel_rmse < 0.02
        a = v.reshape(DIM, -1).T
        b = back.reshape(DIM, -1).T
        cos = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cos.min() > (0.999 if mode == "pooled" else 0.998)


def test_quantisation_keeps_missing_and_zero() -> None:
    v = np.array([[0.5, np.nan, -0.25], [0.0, 0.0, 0.0]], dtype=np.float32)[:, :, None]
    q, scale = quantize(v)
    assert q[0, 1, 0] == MISSING
    assert scale[1] == 0 and not q[1].any()
    back = dequantize(q, scale)
    assert np.isnan(back[0, 1, 0]) and not np.isnan(back[0, [0, 2], 0]).any()
    np.testing.assert_array_equal(back[1], 0)
    np.testing.assert_allclose(back[0, [0, 2], 0], [0.5, -0.25], atol=float(scale[0]) / 2)


# -- GeoParquet ----------------------------------------------------------------------------


@pytest.fixture()
def parquet_dir(tmp_path, records) -> Path:
    writer = get_writer("geoparquet")(tmp_path, schema_for("pooled"))
    writer.write(records["pooled"][:2])
    writer.write(records["pooled"][2:])
    return tmp_path


def test_geoparquet_metadata_is_geoparquet_1_1(parquet_dir) -> None:
    import pyarrow.parquet as pq

    for part in sorted(parquet_dir.glob("part-*.parquet")):
        meta = pq.read_schema(part).metadata
        geo = json.loads(meta[b"geo"])
        assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
        col = geo["columns"]["geometry"]
        assert col["encoding"] == "WKB" and col["geometry_types"] == ["Polygon"]
        assert "crs" not in col  # omitted = OGC:CRS84
        corners = ("xmin", "ymin", "xmax", "ymax")
        assert col["covering"] == {"bbox": {k: ["bbox", k] for k in corners}}
        table = pq.read_table(part)
        bounds = shapely.bounds(shapely.from_wkb(table["geometry"].to_pylist()))
        np.testing.assert_allclose(col["bbox"], [*bounds[:, :2].min(0), *bounds[:, 2:].max(0)])
        # the STAC Embedding extension's fields, and the schema under "eoembed"
        assert json.loads(meta[b"emb:type"]) == "chip"
        assert json.loads(meta[b"emb:dimensions"]) == DIM
        assert json.loads(meta[b"data_type"]) == "float32"
        assert json.loads(meta[b"emb:runtime_parameters"])["model"] == "mosaiks"
        schema = json.loads(meta[b"eoembed"])
        assert schema["model"] == "mosaiks" and schema["request"]["provider"] == "sample"
        assert schema["time_semantics"] == TIME_SEMANTICS


def test_geoparquet_columns(parquet_dir, records) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(min(parquet_dir.glob("part-*.parquet")))
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), DIM)
    assert table.schema.field("bbox").type == pa.struct(
        [(k, pa.float64()) for k in ("xmin", "ymin", "xmax", "ymax")]
    )
    row = table.slice(0, 1).to_pylist()[0]
    rec = records["pooled"][0]
    assert row["id"] == rec.id and row["model"] == "mosaiks"
    assert row["scene_ids"] == list(rec.scene_ids)
    assert row["crs"] == "EPSG:32618"
    assert row["input_transform"] == list(rec.input_grid.transform)[:6]
    assert (row["input_width"], row["input_height"]) == (64, 64)
    assert row["input_bounds"] == list(rec.input_grid.bounds)
    assert row["valid_fraction"] == rec.valid_fraction and row["fingerprint"] == rec.fingerprint
    # STAC end_datetime is inclusive; eoembed's end day is excluded
    assert row["start_datetime"] == dt.datetime(2015, 6, 23, tzinfo=dt.UTC)
    assert row["end_datetime"].date() + dt.timedelta(days=1) == dt.date(2016, 6, 11)
    assert row["end_datetime"] == dt.datetime(2016, 6, 11, tzinfo=dt.UTC) - dt.timedelta(
        microseconds=1
    )


def test_geoparquet_int8_columns(tmp_path, records) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    get_writer("geoparquet")(tmp_path, schema_for("pooled", True)).write(records["pooled"])
    part = next(tmp_path.glob("part-*.parquet"))
    table = pq.read_table(part)
    assert table.schema.field("embedding").type == pa.list_(pa.int8(), DIM)
    assert table.schema.field("embedding_scale").type == pa.float32()
    quant = json.loads(table.schema.metadata[b"emb:quantization"])
    assert quant["original_dtype"] == "float32" and quant["quantized_dtype"] == "int8"
    assert quant["method"] == "linear" and set(quant) <= {  # the extension's keys only
        "method", "original_dtype", "quantized_dtype", "scale", "offset", "link"}
    details = json.loads(table.schema.metadata[b"eoembed:quantization"])
    assert details["scale"] == "embedding_scale" and details["method"] == "int8-symmetric"


def test_geoparquet_in_geopandas(parquet_dir, records) -> None:
    import geopandas as gpd
    import pyarrow.parquet as pq
    from pyproj import CRS

    gdf = get_writer("geoparquet").load(parquet_dir)
    assert gdf.crs == CRS("OGC:CRS84") and gdf.crs.equals(CRS("EPSG:4326"), ignore_axis_order=True)
    assert gdf.geometry.is_valid.all() and len(gdf) == 3
    for rec, geom in zip(records["pooled"], gdf.geometry, strict=True):
        assert geom.equals_exact(shapely.from_wkb(rec.footprint_wkb), 1e-12)
    bbox = pq.read_table(parquet_dir, columns=["id", "bbox"]).to_pylist()
    bounds = dict(zip(gdf["id"], gdf.geometry.bounds.to_numpy().tolist(), strict=True))
    for row in bbox:
        assert list(row["bbox"].values()) == bounds[row["id"]]
    # geopandas prunes with the covering column
    target = shapely.from_wkb(records["pooled"][1].footprint_wkb).centroid
    hit = gpd.read_parquet(parquet_dir, bbox=(target.x, target.y, target.x, target.y))
    assert list(hit["id"]) == [records["pooled"][1].id]


def _duckdb():
    duckdb = pytest.importorskip("duckdb")
    spatial = pytest.importorskip("duckdb_extension_spatial")
    ext = sorted(Path(spatial.__file__).parent.glob("extensions/*/spatial.duckdb_extension"))
    if not ext:
        pytest.skip("duckdb_extension_spatial ships no extension file")
    con = duckdb.connect()
    con.load_extension(str(ext[-1]))  # offline: the file inside the wheel, no INSTALL
    return con


def test_geoparquet_in_duckdb(parquet_dir, records) -> None:
    con = _duckdb()
    parts = str(parquet_dir / "*.parquet")
    con.execute("SET enable_geoparquet_conversion = false")  # raw WKB, decoded by hand
    rows = con.execute(
        "SELECT id, ST_IsValid(ST_GeomFromWKB(geometry)), ST_GeometryType(ST_GeomFromWKB("
        f"geometry)), len(embedding) FROM read_parquet('{parts}') ORDER BY id"
    ).fetchall()
    assert rows == sorted((r.id, True, "POLYGON", DIM) for r in records["pooled"])
    con.execute("SET enable_geoparquet_conversion = true")  # GeoParquet-aware reading
    kind = con.execute(f"SELECT typeof(geometry) FROM read_parquet('{parts}') LIMIT 1").fetchone()
    assert kind[0].startswith("GEOMETRY")
    # a bbox filter on the covering column finds exactly the regions that intersect
    box = (-75.705, 37.695, -75.695, 37.705)
    got = con.execute(
        f"SELECT id FROM read_parquet('{parts}') WHERE bbox.xmin <= ? AND bbox.xmax >= ?"
        " AND bbox.ymin <= ? AND bbox.ymax >= ? ORDER BY id",
        [box[2], box[0], box[3], box[1]],
    ).fetchall()
    expected = sorted(
        r.id for r in records["pooled"]
        if shapely.from_wkb(r.footprint_wkb).intersects(shapely.box(*box))
    )
    assert [g[0] for g in got] == expected and 0 < len(expected) < 3


def test_geoparquet_parts_continue_numbering_after_resume(parquet_dir, records) -> None:
    cls = get_writer("geoparquet")
    before = cls.list_files(parquet_dir)
    assert [p.split("-")[1] for p in before] == ["00000", "00001"]
    [new] = cls(parquet_dir, schema_for("pooled")).write(records["pooled"][:1])
    assert new.path.startswith("part-00002-") and new.path not in before


# -- Zarr ----------------------------------------------------------------------------------


def test_zarr_store_opens_with_zarr_and_xarray(tmp_path, records) -> None:
    import xarray as xr
    import zarr

    from eoembed.writers.zarr import STORE

    recs = records["grid"]
    cls = get_writer("zarr")
    writer = cls(tmp_path, schema_for("grid"))
    writer.write(recs[:2])
    store = tmp_path / STORE
    root = zarr.open_group(store, mode="r", zarr_format=3, use_consolidated=False)
    assert (store / "zarr.json").is_file()
    assert sorted(root.group_keys()) == sorted(r.id for r in recs[:2])
    assert root.attrs["emb:type"] == "pixel" and root.attrs["emb:dimensions"] == DIM
    ds = xr.open_zarr(store, group=recs[0].id, consolidated=False)
    assert ds.rio.crs.to_epsg() == 32618 and ds.rio.transform() == recs[0].output_grid.transform
    assert ds["embedding"].attrs["grid_mapping"] == "spatial_ref"
    assert {"crs_wkt", "spatial_ref", "GeoTransform"} <= set(ds["spatial_ref"].attrs)
    assert ds.attrs["id"] == recs[0].id and ds.attrs["scene_ids"] == list(recs[0].scene_ids)
    writer.close()
    tree = xr.open_datatree(store, engine="zarr")  # consolidated metadata after close()
    assert sorted(tree.children) == sorted(r.id for r in recs[:2])
    # a resumed export strips the consolidated metadata, so it is never stale
    writer = cls(tmp_path, schema_for("grid"))
    assert "consolidated_metadata" not in json.loads((store / "zarr.json").read_text())
    writer.write(recs[2:])
    tree = xr.open_datatree(store, engine="zarr", consolidated=False)
    assert sorted(tree.children) == sorted(r.id for r in recs)
    writer.close()
    consolidated = zarr.open_group(store, mode="r", use_consolidated=True)
    assert sorted(consolidated.group_keys()) == sorted(r.id for r in recs)


# -- NetCDF, COG, npz ----------------------------------------------------------------------


def test_netcdf_is_placed_by_gdal(tmp_path, records) -> None:
    import netCDF4
    import rasterio
    import xarray as xr

    rec = records["grid"][0]
    get_writer("netcdf")(tmp_path, schema_for("grid")).write([rec])
    path = tmp_path / f"{rec.id}.nc"
    with rasterio.open(path) as src:
        assert src.driver == "netCDF" and src.count == DIM
        assert src.crs.to_epsg() == 32618 and src.transform == rec.output_grid.transform
        np.testing.assert_array_equal(src.read(), rec.values)
    with netCDF4.Dataset(path) as nc:
        assert nc.getncattr("Conventions") == "CF-1.8"
        assert nc["embedding"].getncattr("grid_mapping") == "spatial_ref"
        assert nc["spatial_ref"].getncattr("grid_mapping_name") == "transverse_mercator"
        assert nc["x"].getncattr("standard_name") == "projection_x_coordinate"
    with xr.open_dataset(path) as ds:
        assert ds.rio.crs.to_epsg() == 32618
        assert json.loads(ds.attrs["eoembed"])["model"] == "mosaiks"
        assert ds.attrs["emb:type"] == "pixel"


@pytest.mark.filterwarnings("ignore:Scales differ across bands")  # applied per band all the same
def test_cog_is_a_cog(tmp_path, records) -> None:
    import rasterio
    import rioxarray

    rec = records["grid"][2]
    get_writer("cog")(tmp_path, schema_for("grid")).write([rec])
    with rasterio.open(tmp_path / f"{rec.id}.tif") as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.count == DIM and src.dtypes[0] == "float32"
        assert src.crs.to_epsg() == 32618 and src.transform == rec.output_grid.transform
        assert src.descriptions[:2] == ("dim_000", "dim_001")
        tags = src.tags(ns="EOEMBED")  # every field its own item, in eoembed's domain
        assert tags["id"] == rec.id and tags["model"] == "mosaiks"
        assert tags["emb_dimensions"] == str(DIM) and tags["emb_type"] == "pixel"
        assert json.loads(tags["emb_runtime_parameters"])["model"] == "mosaiks"
        assert json.loads(tags["eoembed"])["dim"] == DIM
        assert "emb" not in src.tags()
        assert json.loads(tags["scene_ids"]) == list(rec.scene_ids)
        assert tags["start_datetime"] == "2015-06-23T00:00:00Z"
        np.testing.assert_array_equal(src.read(), rec.values)

    q_dir = tmp_path / "int8"
    get_writer("cog")(q_dir, schema_for("grid", True)).write([rec])
    with rasterio.open(q_dir / f"{rec.id}.tif") as src:
        assert src.dtypes[0] == "int8" and src.nodata == MISSING
        q, scale = quantize(rec.values)
        np.testing.assert_allclose(src.scales, scale)
    # GDAL's own per-band scale: generic readers dequantise without eoembed
    da = rioxarray.open_rasterio(q_dir / f"{rec.id}.tif", mask_and_scale=True)
    np.testing.assert_allclose(da.values, dequantize(q, scale), rtol=1e-6)


def test_npz_keys_load_without_pickle(tmp_path, records) -> None:
    pooled, grid = tmp_path / "pooled", tmp_path / "grid"
    get_writer("npz")(pooled, schema_for("pooled")).write(records["pooled"])
    get_writer("npz")(grid, schema_for("grid", True)).write(records["grid"][:1])
    with np.load(next(pooled.glob("part-*.npz")), allow_pickle=False) as npz:
        assert npz["embeddings"].shape == (3, DIM)
        assert list(npz["ids"]) == [r.id for r in records["pooled"]]
        assert npz["bbox"].shape == (3, 4)
        assert json.loads(str(npz["metadata"]))["eoembed"]["model"] == "mosaiks"
    rec = records["grid"][0]
    with np.load(grid / f"{rec.id}.npz", allow_pickle=False) as npz:
        assert npz["embedding"].dtype == np.int8 and npz["embedding_scale"].shape == (DIM,)
        assert tuple(npz["transform"]) == tuple(rec.output_grid.transform)[:6]
        assert str(npz["crs"]) == "EPSG:32618"
    gdf = get_writer("npz").load(pooled)
    assert gdf.crs.to_string() == "OGC:CRS84" and gdf.geometry.is_valid.all()
    assert str(gdf["end_datetime"].dtype) == "datetime64[us, UTC]"


def test_list_files_ignores_temp_files(tmp_path, records) -> None:
    for fmt, mode in CASES:
        cls = get_writer(fmt)
        directory = tmp_path / f"{fmt}-{mode}"
        cls(directory, schema_for(mode)).write(records[mode][:1])
        listed = cls.list_files(directory)
        for path in [directory / f"{TMP_PREFIX}x.parquet", directory / f"{TMP_PREFIX}x.npz",
                     directory / f"{TMP_PREFIX}x.nc", directory / f"{TMP_PREFIX}x.tif"]:
            path.write_bytes(b"partial")
        if fmt == "zarr":
            (directory / "embeddings.zarr" / f"{TMP_PREFIX}x").mkdir()
            (directory / "embeddings.zarr" / f"{TMP_PREFIX}x" / "zarr.json").write_text("{}")
        assert cls.list_files(directory) == listed
        cls.remove_partial(directory)
        assert no_temp_files(directory) and cls.list_files(directory) == listed
        assert os.listdir(directory)
