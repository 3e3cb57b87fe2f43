"""Torch's process-wide settings stay as the caller left them; precision is scoped and measured."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from eoembed import OutputSpec, SensorSpec
from eoembed.embedders import describe_model, get_embedder
from eoembed.embedders.precision import MIN_SPEEDUP, ModeTrial, choose_mode, min_cosine
from eoembed.embedders.torch_embedder import bf16_is_fast
from eoembed.embedders.torch_state import (
    MIXED,
    capture_torch_state,
    preserved_torch_state,
)
from eoembed.errors import ModelArgumentError

pytest_plugins = ("pytester",)

ROOT = Path(__file__).resolve().parent.parent
VIT = "ssl4eo-s12-vit-s16-dino"
"""A small ViT (22M parameters, matrix products everywhere), random weights."""
CNN = "ssl4eo-s12-resnet18-moco"


@pytest.fixture(scope="module")
def vit_pixels(sample_provider, sample_point, sample_window) -> np.ndarray:
    """Two real 224 px patches of the sample scene in the ViT's bands."""
    card = describe_model(VIT)
    sensor = SensorSpec("sentinel-2-l1c", bands=card.input.band_names, scale_m=10.0)
    values = sample_provider.fetch(sample_point, sample_window, sensor).values[:, :224, :224]
    return np.stack([values, values[:, ::-1, :]]).astype(np.float32)


def _python(code: str) -> str:
    """Run ``code`` in a fresh interpreter (a module imports once per process) and return
    its last line of output."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1",
             "HF_HUB_OFFLINE": "1"},
    )
    return out.stdout.strip().splitlines()[-1]


def test_terratorch_imports_and_builds_leave_the_matmul_precision_alone() -> None:
    if importlib.util.find_spec("terratorch") is None:  # (importing it here would leak)
        pytest.skip("needs terratorch")
    # Imported bare, TerraTorch's clay_v15 sets "medium" for the whole process ...
    bare = _python(
        "import torch, terratorch.models.backbones.clay_v15\n"
        "print(torch.get_float32_matmul_precision())"
    )
    assert bare == "medium"
    # ... through eoembed (require, then a TerraTorch-backed model's build and forward) not.
    ours = _python(
        "import json, numpy as np, torch\n"
        "from eoembed import OutputSpec\n"
        "from eoembed.embedders import get_embedder\n"
        "from eoembed.embedders.torch_embedder import require\n"
        "seen = []\n"
        "require('terratorch.models.backbones.clay_v15', 'terratorch')\n"
        "seen.append(torch.get_float32_matmul_precision())\n"
        "e = get_embedder('prithvi-eo-v2-tiny-tl', device='cpu', weights='random')\n"
        "seen.append(torch.get_float32_matmul_precision())\n"
        "e.embed(np.full((1, 6, 224, 224), 1000, np.float32), OutputSpec.pooled())\n"
        "seen.append(torch.get_float32_matmul_precision())\n"
        "print(json.dumps(seen))"
    )
    assert json.loads(ours) == ["highest"] * 3


def test_preserved_state_restores_every_setting_it_reads() -> None:
    before = capture_torch_state()
    with preserved_torch_state():
        torch.set_float32_matmul_precision("medium")
        torch.backends.cudnn.allow_tf32 = not torch.backends.cudnn.allow_tf32
        torch.backends.mkldnn.matmul.fp32_precision = "tf32"  # the torch >= 2.9 API, mixed in
        torch.backends.cudnn.benchmark = True
        torch.set_num_threads(torch.get_num_threads() + 1)
        torch.set_flush_denormal(True)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.set_default_dtype(torch.float64)
        changed = before.changes(capture_torch_state())
    assert {
        "torch.get_float32_matmul_precision()", "torch.backends.cudnn.allow_tf32",
        "torch.backends.mkldnn.matmul.fp32_precision", "torch.backends.cudnn.benchmark",
        "torch.get_num_threads()", "flush denormal (torch.set_flush_denormal)",
        "torch.are_deterministic_algorithms_enabled() / warn_only", "torch.get_default_dtype()",
    } <= changed.keys()
    # Legacy and new precision APIs disagree here: the legacy reading says so, no exception.
    assert changed["torch.get_float32_matmul_precision()"][1] == MIXED
    assert before.changes(capture_torch_state()) == {}
    assert torch.get_float32_matmul_precision() == "highest"  # readable again


def test_the_suite_fails_a_test_that_leaves_torch_settings_changed(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text())
    pytester.makepyfile(
        test_leaks="""
        import torch

        def test_sets_medium():
            torch.set_float32_matmul_precision("medium")

        def test_sets_threads():
            torch.set_num_threads(torch.get_num_threads() + 1)

        def test_restores_what_it_sets():
            from eoembed.embedders.torch_state import preserved_torch_state
            with preserved_torch_state():
                torch.set_float32_matmul_precision("medium")

        def test_sees_a_clean_process():
            assert torch.get_float32_matmul_precision() == "highest"
        """,
        test_import_leaks="""
        import torch
        torch.set_flush_denormal(True)

        def test_never_runs():
            pass
        """,
    )
    threads = torch.get_num_threads()
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--continue-on-collection-errors")
    # A test that leaks passes its body and errors at teardown, naming what it changed.
    result.assert_outcomes(passed=4, errors=3)
    result.stdout.fnmatch_lines([
        "*the test changed torch's process-wide settings:",
        "torch.get_float32_matmul_precision(): 'highest' -> 'medium'",
    ])
    result.stdout.fnmatch_lines(["torch.get_num_threads(): *", "*test_import_leaks.py*"])
    result.stdout.fnmatch_lines(["flush denormal (torch.set_flush_denormal): False -> True"])
    assert torch.get_num_threads() == threads and torch.get_float32_matmul_precision() == "highest"


def _precision_during_forward(embedder, pixels: np.ndarray, output: OutputSpec) -> list[str]:
    seen: list[str] = []
    first_layer = next(m for m in embedder.model.modules()
                       if isinstance(m, torch.nn.Conv2d | torch.nn.Linear))
    hook = first_layer.register_forward_pre_hook(
        lambda *_: seen.append(torch.get_float32_matmul_precision())
    )
    try:
        embedder.embed(pixels, output)
    finally:
        hook.remove()
    return seen


def test_fp32_bf16mm_sets_medium_around_the_forward_only() -> None:
    pixels = np.random.default_rng(0).uniform(0, 4000, (2, 13, 64, 64)).astype(np.float32)
    reduced = get_embedder(CNN, device="cpu", weights="random", precision="fp32-bf16mm")
    assert _precision_during_forward(reduced, pixels, OutputSpec.pooled()) == ["medium"]
    assert torch.get_float32_matmul_precision() == "highest"
    # "fp32" is fp32 even where the caller's own code set "medium"; the caller's choice stays.
    fp32 = get_embedder(CNN, device="cpu", weights="random")
    with preserved_torch_state():
        torch.set_float32_matmul_precision("medium")
        assert _precision_during_forward(fp32, pixels, OutputSpec.grid()) == ["highest"]
        assert torch.get_float32_matmul_precision() == "medium"
    assert fp32.metadata()["precision"] == {"requested": "fp32", "used": {"grid": "fp32"}}
    # Kept per kind of output: grid, and pooled with each pooling.
    fp32.embed(pixels, OutputSpec.pooled("max"))
    assert fp32.metadata()["precision"]["used"] == {"grid": "fp32", "pooled-max": "fp32"}


def test_bf16_autocast_really_runs_and_stays_close_on_a_cnn() -> None:
    fp32 = get_embedder(CNN, device="cpu", weights="random")
    bf16 = get_embedder(CNN, device="cpu", weights="random", precision="bf16")
    bf16.model.load_state_dict(fp32.model.state_dict())
    pixels = np.random.default_rng(1).uniform(0, 4000, (2, 13, 64, 64)).astype(np.float32)
    a, b = fp32.embed(pixels, OutputSpec.pooled()), bf16.embed(pixels, OutputSpec.pooled())
    assert not np.array_equal(a, b)  # bf16 really ran
    assert 0.99 < min_cosine(a, b) < 1.0  # type: ignore[operator]


def test_auto_keeps_fp32_when_no_reduced_mode_meets_the_threshold(vit_pixels: np.ndarray) -> None:
    strict = get_embedder(VIT, device="cpu", weights="random", batch_size=2,
                          precision="auto", precision_min_cosine=1.0)
    fp32 = get_embedder(VIT, device="cpu", weights="random", batch_size=2)
    fp32.model.load_state_dict(strict.model.state_dict())
    meta = strict.metadata()  # taken before the first batch, as an export's writers do
    assert meta["precision"]["used"] == {}
    values = strict.embed(vit_pixels, OutputSpec.grid())
    record = meta["precision"]
    assert record["requested"] == "auto" and record["min_cosine"] == 1.0
    if not bf16_is_fast("cpu"):
        assert "not measured" in record["trials"]["grid"]["reason"]
    else:
        modes = record["trials"]["grid"]["modes"]
        assert set(modes) == {"fp32", "fp32-bf16mm", "bf16"}
        assert all(m["seconds"] > 0 for m in modes.values())
        assert 0.99 < modes["bf16"]["cosine"] < 1.0  # bf16 autocast really is lossy here
        assert modes["bf16"]["cosine_mean_pooled"] < 1.0
        if modes["fp32-bf16mm"]["cosine"] < 1.0:  # reduced matmuls changed the numbers
            assert record["used"]["grid"] == "fp32"
            assert "kept fp32" in record["trials"]["grid"]["reason"]
    if record["used"]["grid"] == "fp32":  # the batch the trial ran is the fp32 one
        np.testing.assert_array_equal(values, fp32.embed(vit_pixels, OutputSpec.grid()))
    assert torch.get_float32_matmul_precision() == "highest"


def test_auto_keeps_the_fastest_mode_that_passes(vit_pixels: np.ndarray) -> None:
    auto = get_embedder(VIT, device="cpu", weights="random", batch_size=2, precision="auto")
    auto.embed(vit_pixels, OutputSpec.pooled())
    auto.embed(vit_pixels, OutputSpec.pooled())  # chosen once, on the first batch
    record = auto.metadata()["precision"]
    if not bf16_is_fast("cpu"):
        assert record["used"] == {"pooled-cls": "fp32"}
        return
    assert set(record["used"]) == {"pooled-cls"}  # the ViT's published pooling
    trial = record["trials"]["pooled-cls"]
    modes, chosen = trial["modes"], record["used"]["pooled-cls"]
    passing = {
        m: t for m, t in modes.items()
        if m == "fp32" or (t["cosine"] >= 0.999
                           and modes["fp32"]["seconds"] / t["seconds"] >= MIN_SPEEDUP)
    }
    assert chosen == min(passing, key=lambda m: passing[m]["seconds"])
    assert trial["batch"] == 2 and trial["device"] == "cpu"


def test_choose_mode_weighs_fidelity_then_speed() -> None:
    fp32 = ModeTrial("fp32", 1.0)
    fast_lossy = ModeTrial("bf16", 0.3, cosine=0.66, cosine_mean_pooled=0.9)
    mm = ModeTrial("fp32-bf16mm", 0.6, cosine=0.99999)
    assert choose_mode([fp32, mm, fast_lossy], 0.999)[0] == "fp32-bf16mm"
    assert choose_mode([fp32, mm, fast_lossy], 0.5)[0] == "bf16"  # the fastest that passes
    cells_ok_mean_not = ModeTrial("bf16", 0.3, cosine=0.9995, cosine_mean_pooled=0.99)
    assert choose_mode([fp32, mm, cells_ok_mean_not], 0.999)[0] == "fp32-bf16mm"
    mode, reason = choose_mode([fp32, ModeTrial("bf16", 0.95, cosine=1.0)], 0.999)
    assert mode == "fp32" and "1.05x" in reason  # within timing noise of fp32
    mode, reason = choose_mode([fp32, ModeTrial("bf16", 0.1, cosine=None)], 0.999)
    assert mode == "fp32" and "not finite" in reason


def test_min_cosine_per_sample_and_per_grid_cell() -> None:
    a = np.ones((2, 3, 2, 2), np.float32)
    b = a.copy()
    b[1, :, 0, 1] = (1, -1, 0)  # one cell of one sample points elsewhere
    assert min_cosine(a, b) == pytest.approx(0.0)
    assert min_cosine(a.mean((2, 3)), b.mean((2, 3))) > 0.9
    assert min_cosine(np.zeros((1, 3)), np.zeros((1, 3))) == 1.0
    assert min_cosine(a, np.full_like(a, np.nan)) is None


def test_precision_options_are_checked_and_enter_the_fingerprint() -> None:
    from eoembed import TemporalSpec
    from eoembed.pipeline.plan import model_request

    with pytest.raises(ModelArgumentError, match="precision_min_cosine"):
        get_embedder(CNN, device="cpu", weights="random", precision_min_cosine=1.5)
    with pytest.raises(ModelArgumentError, match="precision"):
        get_embedder(CNN, device="cpu", weights="random", precision="fp16")
    sensor = SensorSpec("sentinel-2-l1c", bands=describe_model(CNN).input.band_names)
    requests = {
        json.dumps(model_request(get_embedder(CNN, device="cpu", weights="random", **args),
                                 sensor, TemporalSpec.range("2020-01-01", "2020-02-01"),
                                 OutputSpec.pooled(), "sample", None, "0"), sort_keys=True)
        for args in ({}, {"precision": "auto"}, {"precision": "auto", "precision_min_cosine": 0.99},
                     {"precision": "bf16"}, {"precision": "fp32-bf16mm"})
    }
    assert len(requests) == 5


def test_cli_and_job_files_offer_the_library_precisions() -> None:
    from typing import get_args

    from eoembed.cli.options import PrecisionMode
    from eoembed.embedders.precision import Precision

    assert [m.value for m in PrecisionMode] == list(get_args(Precision))


def test_job_precision_reaches_the_neural_models_without_their_own(tmp_path: Path) -> None:
    pytest.importorskip("pydantic")
    from eoembed.errors import SpecError
    from eoembed.pipeline.config import ExportConfig

    job = {"regions": [{"lon": -75.7, "lat": 37.7}], "buffer_m": 320,
           "models": ["mosaiks", CNN, {"id": VIT, "args": {"precision": "bf16"}}],
           "temporal": {"year": 2016}, "out": str(tmp_path / "out"), "precision": "auto"}
    kwargs = ExportConfig.from_dict(job).to_kwargs()
    assert kwargs["model_args"] == {CNN: {"precision": "auto"}, VIT: {"precision": "bf16"}}
    with pytest.raises(SpecError, match="precision"):
        ExportConfig.from_dict({**job, "precision": "fp16"})


def test_cli_precision_is_recorded_with_the_embedding(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from eoembed.cli.main import app

    out = tmp_path / "v.json"
    result = CliRunner().invoke(app, [
        "embed", "--model", CNN, "--arg", "weights=random", "--precision", "fp32-bf16mm",
        "--provider", "sample", "--lon", "-75.70", "--lat", "37.70", "--buffer-m", "320",
        "--start", "2015-06-23", "--end", "2016-06-11", "--out", str(out), "--quiet",
    ])
    assert result.exit_code == 0, result.output
    meta = json.loads(out.read_text())["meta"]
    assert meta["options"]["precision"] == "fp32-bf16mm"
    assert meta["precision"] == {"requested": "fp32-bf16mm", "used": {"pooled-mean": "fp32-bf16mm"}}


def test_an_export_records_the_mode_auto_chose(tmp_path: Path, sample_window) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    from eoembed import PointBuffer, export_batch

    spatials = [PointBuffer(-75.70 + 0.01 * i, 37.70, 320) for i in range(3)]
    result = export_batch(
        spatials, CNN, temporal=sample_window, out=tmp_path / "out", device="cpu",
        model_args={CNN: {"weights": "random", "precision": "auto"}}, progress=False,
    )
    assert result.ok == 3
    (part,) = sorted((tmp_path / "out").rglob("*.parquet"))
    schema = json.loads(pq.read_schema(part).metadata[b"eoembed"])
    record = schema["model_meta"]["precision"]
    assert record["requested"] == "auto"
    assert record["used"]["pooled-mean"] in ("fp32", "fp32-bf16mm", "bf16")
    assert "reason" in record["trials"]["pooled-mean"]
    assert schema["request"]["options"]["precision"] == "auto"
