"""Dynamic backbone ids (timm:, torchgeo:, terratorch:) against each library's own forward.

Each parity test seeds the library's own network, saves its weights (safetensors, a
``torch.save`` file, or the Hugging Face cache layout) and loads them through eoembed's
real loader; both then embed the same real Sentinel-2 pixels of the sample scene.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("timm")
torch = pytest.importorskip("torch")

from tests.zoo import assert_parity, checkpoint_bytes, offline_hub, sample_pixels  # noqa: F401
from typer.testing import CliRunner

from eoembed import OutputSpec
from eoembed.embedders import describe_model, get_embedder
from eoembed.embedders.torch_embedder import require
from eoembed.embedders.torch_state import preserved_torch_state
from eoembed.errors import ModelArgumentError, UnknownModelError

RGB = ("B04", "B03", "B02")
needs_terratorch = pytest.mark.skipif(find_spec("terratorch") is None, reason="needs terratorch")
"""Not importorskip: importing TerraTorch changes torch's settings (eoembed restores them)."""


def _save(state: dict[str, Any], path: Path, fmt: str = "pth") -> Path:
    path.write_bytes(checkpoint_bytes(state, fmt))
    return path


def _hub_file(cache: Path, repo_id: str, filename: str, payload: bytes, ref: str = "") -> str:
    """Put a file in the Hugging Face cache layout; return its (fake) commit."""
    commit = "d" * 40
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / filename).write_bytes(payload)
    if ref:
        (repo / "refs").mkdir()
        (repo / "refs" / ref).write_text(commit)
    return commit


def _norm(pixels: np.ndarray, card: Any) -> Any:
    """Provider DN -> model input, from the card's published constants (checked separately)."""
    contract = card.input
    mean = torch.tensor(contract.normalisation.mean)[:, None, None]
    std = torch.tensor(contract.normalisation.std)[:, None, None]
    return (torch.from_numpy(pixels) * contract.provider_scale - mean) / std


def _vit_grid(tokens: Any, prefix: int, side: int) -> Any:
    return tokens[:, prefix:].reshape(len(tokens), side, side, -1).permute(0, 3, 1, 2)


# -- timm ---------------------------------------------------------------------------------


def test_timm_resnet18_matches_forward_features(tmp_path: Path, sample_provider: Any) -> None:
    import timm

    torch.manual_seed(0)
    reference = timm.create_model("resnet18", pretrained=False, in_chans=3, num_classes=0).eval()
    path = _save(reference.state_dict(), tmp_path / "resnet18.safetensors", "safetensors")
    embedder = get_embedder("timm:resnet18", device="cpu", bands="B04,B03,B02",
                            weights=str(path))
    card = embedder.card
    cfg = timm.models.get_pretrained_cfg("resnet18")
    assert card.input.band_names == RGB and card.input.unit == "reflectance"
    assert card.input.normalisation.mean == tuple(cfg.mean)
    assert card.input.normalisation.std == tuple(cfg.std)
    assert embedder.metadata()["weights"]["random"] is False

    pixels = sample_pixels(sample_provider, RGB, 224)
    with torch.inference_mode():
        ref_grid = reference.forward_features(_norm(pixels, card))
    grid = embedder.embed(pixels, OutputSpec.grid())
    assert grid.shape == (2, 512, 7, 7)
    assert_parity(grid, ref_grid)
    assert_parity(embedder.embed(pixels, OutputSpec.pooled("mean")), ref_grid.mean(dim=(2, 3)))


def test_timm_vit_tokens_and_class_token(tmp_path: Path, sample_provider: Any) -> None:
    import timm

    torch.manual_seed(1)
    reference = timm.create_model("vit_tiny_patch16_224", pretrained=False, in_chans=4,
                                  num_classes=0).eval()
    path = _save(reference.state_dict(), tmp_path / "vit.pth")
    bands = ("B02", "B03", "B04", "B08")
    embedder = get_embedder("timm:vit_tiny_patch16_224", device="cpu", bands=list(bands),
                            mean=[0.1, 0.1, 0.1, 0.2], std=0.2, weights=str(path))
    assert embedder.card.pooling.default == "cls"  # timm's global_pool="token"
    pixels = sample_pixels(sample_provider, bands, 224)
    with torch.inference_mode():
        x = (torch.from_numpy(pixels) * 1e-4 - torch.tensor([0.1, 0.1, 0.1, 0.2])[:, None, None]) / 0.2
        tokens = reference.forward_features(x)
    ref_grid = _vit_grid(tokens, reference.num_prefix_tokens, 14)
    assert_parity(embedder.embed(pixels, OutputSpec.grid()), ref_grid)
    assert_parity(embedder.embed(pixels, OutputSpec.pooled()), tokens[:, 0])
    assert_parity(embedder.embed(pixels, OutputSpec.pooled("mean")), ref_grid.mean(dim=(2, 3)))


def test_timm_pretrained_comes_from_the_hub_cache(
    offline_hub: Path, sample_provider: Any  # noqa: F811
) -> None:
    """pretrained=True: timm's hf_hub_id file, from the cache, commit recorded."""
    import timm

    torch.manual_seed(2)
    reference = timm.create_model("resnet18", pretrained=False, num_classes=0).eval()
    state = {**reference.state_dict(), "fc.weight": torch.zeros(1000, 512),
             "fc.bias": torch.zeros(1000)}  # timm's Hub file keeps the classifier
    repo = timm.models.get_pretrained_cfg("resnet18").hf_hub_id
    commit = _hub_file(offline_hub, repo, "model.safetensors",
                       checkpoint_bytes(state, "safetensors"), ref="main")
    embedder = get_embedder("timm:resnet18", device="cpu", pretrained=True)
    meta = embedder.metadata()["weights"]
    assert (meta["source"], meta["repo_id"], meta["commit"], meta["random"]) == (
        "huggingface", repo, commit, False)
    pixels = sample_pixels(sample_provider, RGB, 224, n=1)
    with torch.inference_mode():
        ref = reference.forward_features(_norm(pixels, embedder.card))
    assert_parity(embedder.embed(pixels, OutputSpec.grid()), ref)


def test_random_weights_are_recorded(sample_point: Any, sample_window: Any) -> None:
    from eoembed import get_embedding

    emb = get_embedding("timm:resnet18", spatial=sample_point, temporal=sample_window,
                        provider="sample", device="cpu", output=OutputSpec.grid(),
                        bands="B04,B03,B02")
    assert emb.meta["weights"]["random"] is True
    assert "pretrained=False" in emb.meta["weights"]["reason"]
    assert emb.data.shape[0] == 512 and emb.is_grid


# -- TorchGeo -----------------------------------------------------------------------------


def test_torchgeo_weights_match_their_builder(
    offline_hub: Path, sample_provider: Any  # noqa: F811
) -> None:
    """Contract from weights.meta/transforms; a hub pin; parity with TorchGeo's builder."""
    from torchgeo.models import api, get_weight

    name = "ResNet18_Weights.SENTINEL2_ALL_MOCO"
    weights = get_weight(name)
    builder = next(f for f, enum in api._model_weights.items()
                   if callable(f) and enum is type(weights))
    torch.manual_seed(3)
    reference = builder(weights=None, in_chans=weights.meta["in_chans"], num_classes=0).eval()
    commit = _hub_file(offline_hub, "test-org/tg", "w.pth", checkpoint_bytes(reference.state_dict()))

    card = describe_model(f"torchgeo:{name}")
    assert len(card.input.bands) == weights.meta["in_chans"] == 13
    assert card.input.band_names[8] == "B8A" and card.input.collections == ("sentinel-2-l1c",)
    assert card.weights is not None and card.weights.revision in weights.url
    embedder = get_embedder(f"torchgeo:{name}", device="cpu", weights=f"hf://test-org/tg/w.pth@{commit}")
    assert embedder.metadata()["weights"]["commit"] == commit

    pixels = sample_pixels(sample_provider, card.input.band_names, 224)
    x = weights.transforms[-1](torch.from_numpy(pixels.copy()))  # TorchGeo's own Normalize
    with torch.inference_mode():
        ref_grid = reference.forward_features(x)
    assert_parity(embedder.embed(pixels, OutputSpec.grid()), ref_grid)
    assert_parity(embedder.embed(pixels, OutputSpec.pooled()), ref_grid.mean(dim=(2, 3)))


def test_torchgeo_non_sentinel2_weights_need_bands() -> None:
    with pytest.raises(ModelArgumentError, match="bands="):
        describe_model("torchgeo:ResNet18_Weights.LANDSAT_TM_TOA_MOCO")


# -- TerraTorch ---------------------------------------------------------------------------


def _terratorch(name: str, **kwargs: Any) -> Any:
    """TerraTorch's own build (TerraTorch changes torch's settings on import: restored)."""
    registry = require("terratorch.registry", "terratorch").BACKBONE_REGISTRY
    with preserved_torch_state():
        return registry.build(f"terratorch_{name}", pretrained=False, **kwargs).eval()


@needs_terratorch
def test_terratorch_torchgeo_wrapper_matches_build(tmp_path: Path, sample_provider: Any) -> None:
    name = "ssl4eos12_resnet18_sentinel2_all_moco"
    card = describe_model(f"terratorch:{name}")
    torch.manual_seed(4)
    reference = _terratorch(name, model_bands=list(card.input.band_names))
    path = _save(reference.state_dict(), tmp_path / "tt.pth")
    embedder = get_embedder(f"terratorch:{name}", device="cpu", weights=str(path))
    pixels = sample_pixels(sample_provider, card.input.band_names, 224)
    with torch.inference_mode():
        ref_grid = reference(_norm(pixels, card))[-1]
    assert_parity(embedder.embed(pixels, OutputSpec.grid()), ref_grid)


@needs_terratorch
def test_terratorch_prithvi_matches_build(tmp_path: Path, sample_provider: Any) -> None:
    prithvi = require("terratorch.models.backbones.prithvi_vit", "terratorch")
    cfg = prithvi.prithvi_cfgs["prithvi_eo_tiny"]
    card = describe_model("terratorch:prithvi_eo_tiny")
    assert card.input.normalisation.mean == tuple(cfg["mean"]) and card.input.unit == "dn"
    assert card.input.band_names == ("B02", "B03", "B04", "B8A", "B11", "B12")
    torch.manual_seed(5)
    reference = _terratorch("prithvi_eo_tiny", num_frames=1)
    path = _save(reference.state_dict(), tmp_path / "prithvi.pth")
    embedder = get_embedder("terratorch:prithvi_eo_tiny", device="cpu", weights=str(path))
    pixels = sample_pixels(sample_provider, card.input.band_names, 224)
    with torch.inference_mode():
        tokens = reference(_norm(pixels, card))[-1]
    assert_parity(embedder.embed(pixels, OutputSpec.grid()), _vit_grid(tokens, 1, 14))
    assert_parity(embedder.embed(pixels, OutputSpec.pooled("cls")), tokens[:, 0])


# -- ids, contracts, CLI ------------------------------------------------------------------


def test_describe_reads_metadata_only() -> None:
    """No network (blocked by conftest), no weights; the card from pretrained_cfg + arch."""
    card = describe_model("timm:vit_small_patch16_224")
    assert (card.embedding_dim, card.input.image_size, card.input.patch_size) == (384, 224, 16)
    assert card.tokens is not None and card.tokens.prefix_tokens == 1
    assert card.input.band_names == RGB and card.family == "timm (dynamic)"


def test_registered_ids_import_no_torch() -> None:
    code = ("import sys, eoembed; eoembed.describe_model('mosaiks'); "
            "eoembed.describe_model('ssl4eo-s12-resnet18-moco'); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("model_id", "suggestion"), [
    ("timm:resnet181", "timm:resnet18"),
    ("torchgeo:ResNet18_Weights.SENTINEL2_ALL_MOC", "torchgeo:ResNet18_Weights.SENTINEL2_ALL_MOCO"),
    ("ssl4eo-s12-resnet18-mocco", "ssl4eo-s12-resnet18-moco"),
])
def test_unknown_names_suggest_close_ones(model_id: str, suggestion: str) -> None:
    with pytest.raises(UnknownModelError, match="did you mean") as info:
        describe_model(model_id)
    assert suggestion in info.value.close


@pytest.mark.parametrize(("args", "named"), [
    ({"bands": "B02,B03,B04,B08"}, "mean="),  # pretrained_cfg's mean is for 3 channels
    ({"bands": "B02,B03,B04,B08", "mean": 0.1, "std": [1, 2]}, "std must be one number or 4"),
    ({"bands": "B02,X7"}, "X7 is not a Sentinel-2 band"),
    ({"bands": 5}, "no preset for 5 bands"),
    ({"bands": "B04,B03,B02", "in_chans": 4}, "in_chans=4"),
    ({"bands": "B02,B03,B04,B08", "mean": 0.1, "std": 1.0, "pretrained": True}, "published"),
])
def test_missing_or_wrong_contract_names_the_argument(args: dict[str, Any], named: str) -> None:
    with pytest.raises(ModelArgumentError, match=named):
        describe_model("timm:resnet18", **args)


def test_models_command_shows_downloads(offline_hub: Path) -> None:  # noqa: F811
    from eoembed.cli.main import app

    card = describe_model("ssl4eo-s12-resnet18-moco")
    assert card.weights is not None
    _hub_file(offline_hub, card.weights.repo_id, card.weights.filename, b"x" * 2_000_000)
    # The fake commit is not the card's revision: the file is only cached at that revision.
    real = offline_hub / f"models--{card.weights.repo_id.replace('/', '--')}" / "snapshots"
    (real / ("d" * 40)).rename(real / card.weights.revision)
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines() if line.strip()}
    assert "download" in result.output.splitlines()[0]
    assert rows["mosaiks"].rstrip().endswith("none")
    assert rows["ssl4eo-s12-resnet18-moco"].rstrip().endswith("cached (2.0 MB)")
    assert rows["ssl4eo-s12-resnet50-moco"].rstrip().endswith("yes")
    assert "timm:<name>" in result.output and "torchgeo:" in result.output


def test_cli_embeds_with_a_timm_string() -> None:
    from eoembed.cli.main import app

    base = ["embed", "--model", "timm:resnet18", "--provider", "sample", "--device", "cpu",
            "--lon", "-75.70", "--lat", "37.70", "--buffer-m", "1280",
            "--start", "2015-06-23", "--end", "2016-06-11", "--output", "grid"]
    result = CliRunner().invoke(app, [*base, "--arg", "bands=B04,B03,B02"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "timm:resnet18 on cpu" in result.output and "(512, 7, 7)" in result.output
    refused = CliRunner().invoke(app, [*base, "--arg", "bands=B02,B03,B04,B08"])
    assert refused.exit_code == 2 and "mean=" in refused.output
