"""AgriFM adapter: the publisher's checkpoint layout loads, and matches the original encoder.

The reference is the vendored original ``PretrainingSwinTransformer3DEncoder``
(github.com/flyakon/AgriFM, via rs-embed 0.3.1) built from the release's cropland config and
called as the AgriFM encoders call it, ``encoder(x, None, 'tensor')['encoder_features']``, on
real sample pixels preprocessed here as AgriFM's data pipeline does (``MapNormalize`` with the
config's S2 statistics, then ``MapResize``: torchvision's bilinear resize). Its (seeded,
random) weights are saved as the publisher's loader reads them (a ``state_dict`` entry, the S2
patch embedding under ``S2_patch_emd.``, the other sources' patch embeddings beside it) and
served over loopback HTTP, so eoembed's URL download, cache and loader are exercised.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("einops")
tvf = pytest.importorskip("torchvision.transforms.functional")

from eoembed import OutputSpec
from eoembed.embedders import describe_model, get_embedder
from eoembed.embedders.agrifm import BACKBONE_CFG, PATCH_EMBED_CFG, S2_MEAN, S2_STD, AgriFM
from eoembed.errors import CapabilityError
from zoo import (
    WeightsServer,
    assert_parity,
    checkpoint_bytes,
    publish_url,
    sample_pixels,
    shallow,  # noqa: F401
    weights_server,  # noqa: F401
)

MODEL = "agrifm"
BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")


def _preprocess(frames: np.ndarray) -> Any:
    """AgriFM's valid pipeline: MapNormalize (S2 mean/std), MapResize to 224 (bilinear)."""
    x = torch.from_numpy(frames).float().flatten(0, 1)  # (B * T, C, H, W)
    x = tvf.normalize(x, list(S2_MEAN), list(S2_STD))
    x = tvf.resize(x, [224, 224], tvf.InterpolationMode.BILINEAR, antialias=True)
    return x.reshape(*frames.shape[:3], 224, 224)


def _publisher_state(encoder: Any) -> dict[str, Any]:
    """The encoder's weights as the release's loader expects them (``S2_patch_emd``, extra
    ``HLSL30_``/``Modis_`` patch embeddings it skips), wrapped in ``state_dict``."""
    state = {k.replace("patch_emd.", "S2_patch_emd.", 1) if k.startswith("patch_emd.") else k: v
             for k, v in encoder.state_dict().items()}
    for source, chans in (("HLSL30", 6), ("Modis", 7)):
        state[f"{source}_patch_emd.proj.weight"] = torch.randn(128, chans, 4, 2, 2)
        state[f"{source}_patch_emd.proj.bias"] = torch.randn(128)
    return {"state_dict": state}


def test_parity_with_original_agrifm(
    weights_server: WeightsServer, monkeypatch: pytest.MonkeyPatch, sample_provider: Any,  # noqa: F811
    shallow: Callable[[str], None],  # noqa: F811
) -> None:
    from eoembed.embedders._vendor.agrifm.video_swin_transformer import (
        PretrainingSwinTransformer3DEncoder,
    )

    shallow(MODEL)

    # One series of three frames (three real 96 px patches of the sample scene, which has one
    # acquisition; resized to 224 px) and one single image. Each sample costs ~5 s of CPU per
    # call: batches are left to the contract test (batch == one at a time).
    frames = sample_pixels(sample_provider, BANDS, 96, n=3).reshape(1, 3, 10, 96, 96)
    torch.manual_seed(0)
    ref = PretrainingSwinTransformer3DEncoder(PATCH_EMBED_CFG, BACKBONE_CFG).eval()
    with torch.inference_mode():
        ref_grid = ref(_preprocess(frames), None, "tensor")["encoder_features"]
        ref_single = ref(_preprocess(frames[:, :1]), None, "tensor")["encoder_features"]
    source = publish_url(
        weights_server, monkeypatch, MODEL, checkpoint_bytes(_publisher_state(ref)), pinned=True
    )
    del ref

    embedder = get_embedder(MODEL, device="cpu")
    assert embedder.weights_meta["source"] == "url"
    assert embedder.weights_meta["sha256"] == source.sha256
    grid = embedder.embed(frames, OutputSpec.grid())
    assert grid.shape == (1, 1024, 14, 14)
    assert_parity(grid, ref_grid)
    # One image is a one-frame series (the patch embedding pads it to 4 frames itself).
    assert_parity(embedder.embed(frames[:, 0], OutputSpec.pooled()), ref_single.mean(dim=(2, 3)))


def test_checkpoint_layouts() -> None:
    """The publisher's loader's key revisions: ``module.`` dropped, ``S2_patch_emd`` ->
    ``patch_emd``, other sources' embeddings skipped; a missing relative_position_index is
    the model's own."""
    embedder = object.__new__(AgriFM)
    index = "backbone.layers.0.blocks.0.attn.relative_position_index"
    embedder.model = torch.nn.Module()
    embedder.model.state_dict = lambda: {index: 7, "patch_emd.proj.bias": 0}  # type: ignore[method-assign]
    state = {
        "module.S2_patch_emd.proj.bias": 1, "module.backbone.norm.weight": 2,
        "module.HLSL30_patch_emd.proj.bias": 3, "Modis_patch_emd.proj.bias": 4, "neck.w": 5,
    }
    assert embedder.convert_checkpoint(state) == {
        "patch_emd.proj.bias": 1, "backbone.norm.weight": 2, index: 7,
    }


def test_card_and_frames() -> None:
    card = describe_model(MODEL)
    assert card.input.band_names == BANDS
    assert card.input.frames == 32 and card.input.side_inputs == ()
    assert card.input.image_size == 224 and card.input.patch_size == 16
    assert card.input.normalisation.mean == S2_MEAN and card.input.normalisation.std == S2_STD
    assert card.weights is not None
    assert card.weights.download_url == "https://glass.hku.hk/casual/AgriFM/AgriFM.pth"
    assert card.licence == "Apache-2.0" and "2505.21357" in card.citation
    embedder = get_embedder(MODEL, device="cpu", weights="random")
    with pytest.raises(CapabilityError, match="T <= 32"):
        embedder.embed(np.zeros((1, 33, 10, 16, 16), np.float32), OutputSpec.pooled())
