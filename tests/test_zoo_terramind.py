"""TerraMind 1.0 adapters: released checkpoints load, and match TerraTorch's own backbone.

The published ``TerraMind_v1_<size>.pt`` is a flat state dict of the whole pretraining model:
every raw modality's patch embedding, the encoder, and the decoder (which a backbone drops).
The test builds it from TerraTorch's ViT with all raw modalities (seeded random weights,
perturbed so that norms and biases are not trivially 1 and 0) plus decoder entries named as
in TerraTorch's ``TerraMind`` pretraining model, puts it in an offline Hugging Face cache both
where eoembed looks and where TerraTorch looks (``ibm-esa-geospatial/TerraMind-1.0-<size>``
at ``main``), and compares eoembed's embeddings with
``BACKBONE_REGISTRY.build("terramind_v1_<size>", modalities=[...], pretrained=True)`` (TerraTorch
downloads, filters with ``checkpoint_filter_fn`` and loads strictly) on standardised pixels.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from eoembed.embedders.torch_state import preserved_torch_state

with preserved_torch_state():  # TerraTorch sets the float32 matmul precision when imported
    pytest.importorskip("terratorch")

from eoembed import OutputSpec
from eoembed.embedders import describe_model, get_embedder
from eoembed.errors import WeightsNotFoundError
from zoo import (
    assert_parity,
    checkpoint_bytes,
    offline_hub,  # noqa: F401
    publish,
    sample_pixels,
    shallow,  # noqa: F401
)

# TerraTorch 1.2.11 terramind_register.py: v1_pretraining_mean / v1_pretraining_std.
L2A_MEAN = (1390.458, 1503.317, 1718.197, 1853.91, 2199.1, 2779.975, 2987.011, 3083.234,
            3132.22, 3162.988, 2424.884, 1857.648)
L2A_STD = (2106.761, 2141.107, 2038.973, 2134.138, 2085.321, 1889.926, 1820.257, 1871.918,
           1753.829, 1797.379, 1434.261, 1334.311)
L1C_MEAN = (2357.089, 2137.385, 2018.788, 2082.986, 2295.651, 2854.537, 3122.849, 3040.56,
            3306.481, 1473.847, 506.07, 2472.825, 1838.929)
L1C_STD = (1624.683, 1675.806, 1557.708, 1833.702, 1823.738, 1733.977, 1732.131, 1679.732,
           1727.26, 1024.687, 442.165, 1331.411, 1160.419)
STATS = {"S2L2A": (L2A_MEAN, L2A_STD), "S2L1C": (L1C_MEAN, L1C_STD)}
KEYS = {"S2L2A": "untok_sen2l2a@224", "S2L1C": "untok_sen2l1c@224"}
# TerraTorch's PRETRAINED_BANDS names -> Sentinel-2 band names.
BAND_NAMES = {
    "COASTAL_AEROSOL": "B01", "BLUE": "B02", "GREEN": "B03", "RED": "B04", "RED_EDGE_1": "B05",
    "RED_EDGE_2": "B06", "RED_EDGE_3": "B07", "NIR_BROAD": "B08", "NIR_NARROW": "B8A",
    "WATER_VAPOR": "B09", "CIRRUS": "B10", "SWIR_1": "B11", "SWIR_2": "B12",
}
DIMS = {"tiny": 192, "small": 384, "base": 768, "large": 1024}
MODELS = {
    f"terramind-v1-{size}{suffix}": (size, modality)
    for modality, suffix in (("S2L2A", ""), ("S2L1C", "-s2l1c"))
    for size in DIMS
}
RAW_MODALITIES = ["S2L2A", "S2L1C", "S1GRD", "S1RTC", "DEM"]
"""Raw input modalities whose patch embeddings the released checkpoints hold."""


def _released_state(size: str) -> dict[str, Any]:
    """Seeded weights in the release's layout: all raw modalities' embeddings, the encoder
    and (dropped by both loaders) decoder entries named as in TerraTorch's ``TerraMind``."""
    from terratorch.registry import BACKBONE_REGISTRY

    torch.manual_seed(0)
    vit = BACKBONE_REGISTRY.build(f"terramind_v1_{size}", modalities=RAW_MODALITIES)
    state = dict(vit.state_dict())
    del vit
    gen = torch.Generator().manual_seed(1)
    for key, value in state.items():
        if not key.endswith("pos_emb"):  # fixed sin-cos buffers stay as released
            value.add_(0.05 * torch.randn(value.shape, generator=gen))
    dim = DIMS[size]
    state.update({
        "mask_token": torch.randn(1, 1, dim, generator=gen),
        "decoder_proj_context.weight": torch.randn(dim, dim, generator=gen),
        "decoder.0.norm1.weight": torch.randn(dim, generator=gen),
        "decoder_norm.weight": torch.randn(dim, generator=gen),
        "decoder_embeddings.tok_sen1grd@224.token_emb.weight": torch.randn(16, dim, generator=gen),
    })
    return state


def _publish_for_terratorch(cache: Path, size: str, payload_path: Path) -> None:
    """The same file where TerraTorch's ``hf_hub_download`` finds it offline (``main``)."""
    repo = cache / f"models--ibm-esa-geospatial--TerraMind-1.0-{size}"
    commit = "d" * 40
    target = repo / "snapshots" / commit / f"TerraMind_v1_{size}.pt"
    target.parent.mkdir(parents=True)
    target.symlink_to(payload_path)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def _standardise(pixels: np.ndarray, modality: str) -> Any:
    mean, std = STATS[modality]
    x = torch.from_numpy(pixels).float()
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


@pytest.mark.parametrize("model_id", list(MODELS))
def test_parity_with_terratorch(
    model_id: str, offline_hub: Path, monkeypatch: pytest.MonkeyPatch, sample_provider: Any,  # noqa: F811
    shallow: Callable[[str], None],  # noqa: F811
) -> None:
    from terratorch.registry import BACKBONE_REGISTRY

    shallow(model_id)
    size, modality = MODELS[model_id]
    card = describe_model(model_id)
    pixels = sample_pixels(sample_provider, card.input.band_names, 224, n=2)
    payload = checkpoint_bytes(_released_state(size))
    source = publish(offline_hub, monkeypatch, model_id, payload)
    del payload
    gc.collect()
    released = next(offline_hub.glob(f"models--test-org--{model_id}/snapshots/*/*.pt"))
    _publish_for_terratorch(offline_hub, size, released)

    embedder = get_embedder(model_id, device="cpu")
    assert embedder.weights_meta["sha256"] == source.sha256
    grid = embedder.embed(pixels, OutputSpec.grid())
    pooled = embedder.embed(pixels, OutputSpec.pooled())
    del embedder
    gc.collect()

    ref = BACKBONE_REGISTRY.build(
        f"terramind_v1_{size}", modalities=[modality], pretrained=True
    ).eval()
    with torch.inference_mode():
        tokens = ref({modality: _standardise(pixels, modality)})[-1]  # after encoder_norm
    ref_grid = tokens.reshape(2, 14, 14, -1).permute(0, 3, 1, 2)
    assert grid.shape == (2, card.embedding_dim, 14, 14)
    assert_parity(grid, ref_grid)
    assert_parity(pooled, tokens.mean(dim=1))


def test_missing_encoder_entries_are_an_error(tmp_path: Path) -> None:
    """TerraTorch fills missing entries with random weights and warns; eoembed refuses."""
    state = _released_state("tiny")
    del state["encoder.3.mlp.fc1.weight"]
    path = tmp_path / "TerraMind_v1_tiny.pt"
    path.write_bytes(checkpoint_bytes(state))
    with pytest.raises(WeightsNotFoundError, match=r"encoder\.3\.mlp\.fc1\.weight"):
        get_embedder("terramind-v1-tiny", device="cpu", weights=str(path))


@pytest.mark.parametrize("model_id", list(MODELS))
def test_cards_are_consistent(model_id: str) -> None:
    from terratorch.models.backbones.terramind.model import terramind_register as register

    size, modality = MODELS[model_id]
    card = describe_model(model_id)
    key = KEYS[modality]
    norm = card.input.normalisation
    bands = tuple(BAND_NAMES[b] for b in register.PRETRAINED_BANDS[key])
    assert card.input.band_names == bands
    assert len(bands) == (12 if modality == "S2L2A" else 13)
    assert norm.scale == 1.0 and len(norm.mean) == len(norm.std) == len(bands)
    assert norm.mean == STATS[modality][0] == tuple(register.v1_pretraining_mean[key])
    assert norm.std == STATS[modality][1] == tuple(register.v1_pretraining_std[key])
    assert card.embedding_dim == DIMS[size]
    assert (card.input.image_size, card.input.patch_size) == (224, 16)
    assert card.input.side_inputs == () and card.outputs == ("pooled", "grid")
    assert card.input.processing_level == modality[2:]
    hub = register.pretrained_weights[f"terramind_v1_{size}"]
    assert card.weights is not None
    assert (card.weights.repo_id, card.weights.filename) == (
        hub["hf_hub_id"], hub["hf_hub_filename"]
    )


def test_release_layout_matches_terratorch_filter() -> None:
    """The keys eoembed keeps are exactly those TerraTorch's checkpoint filter keeps."""
    from terratorch.models.backbones.terramind.model import terramind_register as register

    from eoembed.embedders.terramind import TerraMindV1TinyS2L1C

    state = _released_state("tiny")
    embedder = get_embedder("terramind-v1-tiny-s2l1c", device="cpu", weights="random")
    assert isinstance(embedder, TerraMindV1TinyS2L1C)
    ours = embedder.convert_checkpoint(state)
    theirs = register.checkpoint_filter_fn(state, embedder.model)
    assert set(ours) == set(theirs)
    assert all(ours[k] is theirs[k] for k in ours)
