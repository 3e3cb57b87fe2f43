"""THOR v1: the release layout loads, and matches the vendored original THOR code.

No maintained package provides THOR, so the reference is the original code vendored in
``eoembed.embedders._vendor.thor`` (FM4CS/THOR v1.0.2 and thor_terratorch_ext): the network
built by the extension's ``load_thor_model`` with seeded random weights, run the way the
extension runs it (``THOREncoderWrapper``: per-band resample to native GSD, the encoder,
``merge_method="mean"``) on preprocessing written out here. The checkpoint is written in the
layout the extension's loader reads (``extract_model_state_dict_from_ckpt(ckpt)["encoder"]``:
a ``state_dict`` of ``encoder.*`` and other sub-models' entries) into the offline hub cache.
(Outside the suite, the vendored model was checked to give bit-identical outputs to rs-embed
0.3.1's own vendored runtime with its timm monkey-patch.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from eoembed import OutputSpec
from eoembed.embedders import describe_model, get_embedder
from eoembed.embedders._vendor.thor import terratorch_ext
from eoembed.embedders.thor import THOR_BANDS, THOR_NAMES
from eoembed.errors import WeightsNotFoundError
from zoo import (
    assert_parity,
    checkpoint_bytes,
    offline_hub,  # noqa: F401
    publish,
    sample_pixels,
)

MODEL = "thor-v1-tiny"
# rs-embed onthefly_thor._THOR_S2_MEAN/_STD ("thor_stats"), reflectance units.
MEAN = (0.176620, 0.195923, 0.213948, 0.263378, 0.300818, 0.313144, 0.308133, 0.320993,
        0.221550, 0.175772)
STD = (0.264520, 0.252949, 0.259180, 0.272771, 0.248175, 0.235432, 0.226434, 0.223274,
       0.171606, 0.156223)
INPUT_PARAMS = {"ground_covers": [2880], "flexivit_patch_size_seqs": [8]}
SIZES = {"tiny": 192, "small": 384, "base": 768, "large": 1024}


def _reference(variant: str, seed: int) -> Any:
    torch.manual_seed(seed)
    return terratorch_ext.load_thor_model(
        variant, model_bands=list(THOR_NAMES), out_indices=[-1], pretrained=False,
        input_params=dict(INPUT_PARAMS), merge_method="mean",
    ).eval()


def _preprocess(pixels: np.ndarray) -> Any:
    """DN clipped to [0, 10000], / 10000, z-scored (rs-embed's "thor_stats")."""
    x = torch.from_numpy(np.clip(pixels, 0, 10000)).float() / 10000.0
    return (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def _release(encoder: Any) -> dict[str, Any]:
    """Encoder entries under ``encoder.``, beside another sub-model's, in a ``state_dict``."""
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    state["decoder.decoder_embed.weight"] = torch.randn(8, 192)
    return {"state_dict": state}


def test_parity_with_vendored_thor(
    offline_hub: Path, monkeypatch: pytest.MonkeyPatch, sample_provider: Any, tmp_path: Path,  # noqa: F811
) -> None:
    pixels = sample_pixels(sample_provider, THOR_BANDS, 288, n=2)
    ref = _reference("thor_v1_tiny", seed=0)
    x = _preprocess(pixels)
    with torch.inference_mode():
        # The encoder's own forward (final LayerNorm), merged as the extension merges.
        tokens, params = ref.model(ref._preprocess_input(x), return_channel_params=True)
        ref_grid = ref._merge_tokens_to_image_features([tokens], params)[0]
        ref_pooled = tokens.mean(dim=1)
        # The extension's wrapper forward: last block, no final norm (rs-embed's features).
        ref_grid_raw = ref(x[:1])[0]
    assert tokens.shape == (2, 36 * 36 + 18 * 18, 192)
    release = _release(ref.model)
    source = publish(offline_hub, monkeypatch, MODEL, checkpoint_bytes(release))

    embedder = get_embedder(MODEL, device="cpu")
    assert embedder.weights_meta["sha256"] == source.sha256
    grid = embedder.embed(pixels, OutputSpec.grid())
    assert grid.shape == (2, 192, 36, 36)
    assert_parity(grid, ref_grid)
    assert_parity(embedder.embed(pixels, OutputSpec.pooled()), ref_pooled)

    # Entries derived from the configuration (ALiBi slopes, group embeddings) may be absent.
    state = release["state_dict"]
    for key in [k for k in state if k.endswith("encoder_slopes") or ".band_embed." in k]:
        del state[key]
    path = tmp_path / "thor_v1_vit_tiny.pt"
    path.write_bytes(checkpoint_bytes(release))
    raw = get_embedder(MODEL, device="cpu", weights=str(path), final_norm=False)
    assert_parity(raw.embed(pixels[:1], OutputSpec.grid()), ref_grid_raw)


def test_missing_learned_weights_are_an_error(tmp_path: Path) -> None:
    ref = _reference("thor_v1_tiny", seed=1)
    release = _release(ref.model)
    del release["state_dict"]["encoder.blocks.0.attn.qkv.weight"]
    path = tmp_path / "thor_v1_vit_tiny.pt"
    path.write_bytes(checkpoint_bytes(release))
    with pytest.raises(WeightsNotFoundError, match=r"blocks\.0\.attn\.qkv\.weight"):
        get_embedder(MODEL, device="cpu", weights=str(path))


@pytest.mark.parametrize("size", list(SIZES))
def test_cards(size: str) -> None:
    card = describe_model(f"thor-v1-{size}")
    assert card.embedding_dim == SIZES[size]
    assert card.input.band_names == THOR_BANDS
    assert card.input.normalisation.mean == MEAN and card.input.normalisation.std == STD
    assert card.input.unit == "reflectance"
    assert card.input.provider_scale == pytest.approx(1e-4)
    assert card.input.image_size == 288 and card.input.patch_size == 8
    assert card.input.gsd_m == 10.0
    hub = terratorch_ext.pretrained_weights[f"thor_v1_{size}"]  # the extension's own table
    assert card.weights is not None
    assert card.weights.repo_id == hub["hf_hub_id"]
    assert card.weights.filename == hub["hf_hub_filename"]
    # The extension maps the ten S2 bands to the 10 m and 20 m channel groups.
    channels, params = terratorch_ext.process_thor_bands(list(THOR_NAMES))
    gsds = [params[c]["GSD"] for c in channels]
    assert gsds == [10, 10, 10, 20, 20, 20, 10, 20, 20, 20]
