"""RemoteCLIP adapters: released open_clip state dicts load, and match open_clip's encode_image.

The reference is open_clip's own CLIP model loaded with the same (seeded, random) whole-model
state dict the publisher releases (``model.load_state_dict(torch.load(...))`` in the
RemoteCLIP README), run through ``encode_image`` and, for the grid, open_clip's
``forward_intermediates`` feature API, on preprocessing written out here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")

from eoembed import OutputSpec
from eoembed.embedders import describe_model, get_embedder
from eoembed.errors import CapabilityError, ModelArgumentError
from zoo import (
    assert_parity,
    cap_model_depth,
    checkpoint_bytes,
    offline_hub,  # noqa: F401
    publish,
    sample_pixels,
    shallow,  # noqa: F401
)

# OpenAI CLIP preprocessing constants (open_clip/constants.py OPENAI_DATASET_MEAN/STD).
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
RGB = ("B04", "B03", "B02")
MODELS = {"remoteclip-rn50": "RN50", "remoteclip-vit-b32": "ViT-B-32", "remoteclip-vit-l14": "ViT-L-14"}


def _reference(name: str, seed: int, quick_gelu: bool = True) -> Any:
    torch.manual_seed(seed)
    return open_clip.create_model(name, pretrained=None, force_quick_gelu=quick_gelu).eval()


def _preprocess(pixels: np.ndarray, rgb_max: float = 3000.0) -> Any:
    """S2 DN -> 0..1 RGB (clipped) -> OpenAI CLIP mean/std, as the adapter documents."""
    x = torch.from_numpy(pixels).float().div(rgb_max).clamp(0, 1)
    return (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def _ref_outputs(model: Any, pixels: np.ndarray, grid: bool) -> tuple[Any, Any]:
    x = _preprocess(pixels)
    with torch.inference_mode():
        pooled = model.encode_image(x, normalize=True)
        if not grid:
            return pooled, None
        feats = model.visual.forward_intermediates(x, indices=1, normalize_intermediates=True)
        tokens = feats["image_intermediates"][-1]  # (n, width, h, w) after ln_post
        cells = torch.einsum("nchw,cd->ndhw", tokens, model.visual.proj)
        return pooled, torch.nn.functional.normalize(cells, dim=1)


@pytest.mark.parametrize("model_id", list(MODELS))
def test_parity_with_open_clip(
    model_id: str, offline_hub: Path, monkeypatch: pytest.MonkeyPatch, sample_provider: Any,  # noqa: F811
    shallow: Callable[[str], None],  # noqa: F811
) -> None:
    shallow(model_id)
    card = describe_model(model_id)
    has_grid = "grid" in card.outputs
    pixels = sample_pixels(sample_provider, RGB, 224, n=2)
    ref = _reference(MODELS[model_id], seed=0)
    ref_pooled, ref_grid = _ref_outputs(ref, pixels, has_grid)
    # The release is the whole CLIP model's state dict (text tower and logit_scale included).
    payload = checkpoint_bytes(ref.state_dict())
    del ref
    source = publish(offline_hub, monkeypatch, model_id, payload)
    del payload

    embedder = get_embedder(model_id, device="cpu")
    assert embedder.weights_meta["sha256"] == source.sha256
    pooled = embedder.embed(pixels, OutputSpec.pooled())
    assert_parity(pooled, ref_pooled)
    np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1.0, rtol=1e-5)
    if has_grid:
        grid = embedder.embed(pixels, OutputSpec.grid())
        side = 224 // card.input.patch_size
        assert grid.shape == (2, card.embedding_dim, side, side)
        assert_parity(grid, ref_grid)
    else:
        with pytest.raises(CapabilityError, match="pooled"):
            embedder.embed(pixels, OutputSpec.grid())


def test_text_tower_never_needed_and_options(
    tmp_path: Path, sample_provider: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image-tower-only file loads; quick_gelu=False is open_clip's plain config (GELU);
    rgb_max is the stretch; normalize=False gives the raw encode_image. (Five builds: shallow.)"""
    cap_model_depth(monkeypatch, "remoteclip-vit-b32")
    pixels = sample_pixels(sample_provider, RGB, 224, n=2)
    ref = _reference("ViT-B-32", seed=1, quick_gelu=False)
    state = {k: v for k, v in ref.state_dict().items() if k.startswith("visual.")}
    path = tmp_path / "visual-only.pt"
    path.write_bytes(checkpoint_bytes(state))
    gelu = get_embedder(
        "remoteclip-vit-b32", device="cpu", weights=str(path), quick_gelu=False, normalize=False
    )
    with torch.inference_mode():
        ref_raw = ref.encode_image(_preprocess(pixels))
        ref_bright = ref.encode_image(_preprocess(pixels, rgb_max=1500.0))
    assert_parity(gelu.embed(pixels, OutputSpec.pooled()), ref_raw)
    bright = get_embedder(
        "remoteclip-vit-b32", device="cpu", weights=str(path), quick_gelu=False, normalize=False,
        rgb_max=1500.0,
    )
    assert_parity(bright.embed(pixels, OutputSpec.pooled()), ref_bright)
    assert bright.metadata()["options"]["rgb_max"] == 1500.0
    quick = get_embedder("remoteclip-vit-b32", device="cpu", weights=str(path), normalize=False)
    assert not np.allclose(quick.embed(pixels, OutputSpec.pooled()), ref_raw.numpy(), atol=1e-4)
    with pytest.raises(ModelArgumentError, match="rgb_max"):
        get_embedder("remoteclip-vit-b32", device="cpu", weights="random", rgb_max=0.0)


@pytest.mark.parametrize("model_id", list(MODELS))
def test_cards_are_consistent(model_id: str) -> None:
    card = describe_model(model_id)
    norm = card.input.normalisation
    assert card.input.band_names == RGB
    assert len(norm.mean) == len(norm.std) == 3
    assert norm.mean == MEAN and norm.std == STD
    assert card.input.image_size == 224 and card.input.side_inputs == ()
    cfg = open_clip.get_model_config(MODELS[model_id])
    assert card.embedding_dim == cfg["embed_dim"]
    vision = cfg["vision_cfg"]
    assert card.input.patch_size == (vision["patch_size"] or 32)
    assert card.outputs == (("pooled", "grid") if vision["patch_size"] else ("pooled",))
    assert card.weights is not None and card.weights.repo_id == "chendelong/RemoteCLIP"
    assert len(card.weights.revision) == 40
    assert card.weights.filename == f"RemoteCLIP-{MODELS[model_id]}.pt"
