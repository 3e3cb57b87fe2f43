"""Pooling per request: the class token, the model's own embedding or a grid reduction, with
each card's published default resolved before any pixel is read and recorded in the metadata."""

from __future__ import annotations

import numpy as np
import pytest

from eoembed import OutputSpec, PointBuffer, TemporalSpec, get_embedding
from eoembed.embedders import describe_model, get_embedder, list_models
from eoembed.embedders.registry import embedder_class
from eoembed.embedders.torch_state import preserved_torch_state
from eoembed.errors import CapabilityError, SpecError
from eoembed.specs.output import REDUCTIONS

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

DINO = "ssl4eo-s12-vit-s16-dino"
PUBLISHED = {
    # model: the global embedding its authors' code or docs give (see each card's source)
    DINO: "cls",
    "ssl4eo-s12-vit-b16-mae": "cls",
    "ssl4eo-s12-resnet50-moco": "mean",
    "clay-v1-base": "cls",
    "scalemae-large": "cls",
    "panopticon-vitb14": "cls",
    "dofa-base": "mean",
    "copernicusfm-base": "mean",
    "satlas-swin-v2-t-s2-rgb": "mean",
    "remoteclip-vit-b32": "native",
    "galileo-nano": "native",
}


@pytest.mark.parametrize(("model", "pooling"), sorted(PUBLISHED.items()))
def test_default_resolves_to_the_published_pooling(model: str, pooling: str) -> None:
    card = describe_model(model)
    assert card.resolve_pooling(None) == card.resolve_pooling("default") == pooling
    assert card.resolve_output(OutputSpec.pooled()) == OutputSpec("pooled", pooling)
    assert card.resolve_output(OutputSpec.grid()) == OutputSpec.grid()


@pytest.mark.parametrize("model", list_models())
def test_cards_offer_what_their_adapters_compute(model: str) -> None:
    card, cls = describe_model(model), embedder_class(model)
    supported = card.pooling.supported
    assert card.pooling.default in supported, model
    assert card.pooling.source, model  # where the published default comes from
    assert ("native" in supported) == cls.native_pooling, model
    if "cls" in supported:
        assert card.tokens is not None and card.tokens.cls_index is not None, model
    if "grid" in card.outputs:
        assert set(REDUCTIONS) <= set(supported), model


def test_cls_and_mean_are_the_class_token_and_the_patch_mean() -> None:
    """On a real timm ViT (random weights): cls is token 0 of the final-norm tokens, mean the
    mean of the other 196, and the published default is the class token."""
    embedder = get_embedder(DINO, device="cpu", weights="random")
    pixels = np.random.default_rng(0).uniform(500, 3000, (2, 13, 224, 224)).astype(np.float32)
    with torch.inference_mode():
        tokens = embedder.model.forward_features(torch.from_numpy(pixels * np.float32(1e-4)))
    cls = embedder.embed(pixels, OutputSpec.pooled("cls"))
    mean = embedder.embed(pixels, OutputSpec.pooled("mean"))
    np.testing.assert_allclose(cls, tokens[:, 0].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mean, tokens[:, 1:].mean(dim=1).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(embedder.embed(pixels, OutputSpec.pooled()), cls)
    assert not np.allclose(cls, mean, atol=1e-3)
    grid = embedder.embed(pixels, OutputSpec.grid())
    np.testing.assert_array_equal(embedder.embed(pixels, OutputSpec.pooled("max")),
                                  grid.max(axis=(2, 3)))


def test_unsupported_pooling_is_refused_before_any_io() -> None:
    """A provider that does not exist is never reached: the card refuses the pooling first."""
    with pytest.raises(CapabilityError, match=r"'satlas-swin-v2-t-s2-rgb' has no 'cls'") as info:
        get_embedding(
            "satlas-swin-v2-t-s2-rgb", spatial=PointBuffer(lon=-75.7, lat=37.7, buffer_m=640),
            temporal=TemporalSpec.year(2021), output=OutputSpec.pooled("cls"),
            provider="no-such-provider", device="cpu", weights="random",
        )
    assert "supports mean, max, min, std, median (default 'mean')" in str(info.value)
    embedder = get_embedder("ssl4eo-s12-resnet18-moco", device="cpu", weights="random")
    with pytest.raises(CapabilityError, match="has no 'native' pooling"):
        embedder.embed(np.zeros((1, 13, 64, 64), np.float32), OutputSpec.pooled("native"))


def test_pooling_literal_is_checked_by_the_spec() -> None:
    with pytest.raises(SpecError, match=r"OutputSpec\.pooling") as info:
        OutputSpec.pooled("token")
    assert "'cls'" in str(info.value) and "'default'" in str(info.value)
    assert OutputSpec.pooled() == OutputSpec.pooled(None) == OutputSpec("pooled", "default")


def test_metadata_records_the_resolved_pooling(sample_point, sample_window) -> None:
    emb = get_embedding(DINO, spatial=sample_point, temporal=sample_window, provider="sample",
                        device="cpu", weights="random")
    assert OutputSpec.from_dict(emb.meta["output"]) == OutputSpec("pooled", "cls")


def test_export_fingerprints_record_the_resolved_pooling() -> None:
    """A default request is keyed by what it resolves to: same key as asking for it by name
    (so an explicit "mean" keeps the key it always had), another key than another pooling."""
    from eoembed.api import cached_embedder
    from eoembed.pipeline.plan import model_request
    from eoembed.specs import SensorSpec

    def key(model: str, output: OutputSpec) -> dict[str, object]:
        embedder = cached_embedder(model, "cpu", 16, {"weights": "random"})
        card = embedder.card
        sensor = SensorSpec(card.input.collections[0], card.input.band_names, card.input.gsd_m)
        return model_request(embedder, sensor, TemporalSpec.year(2021),
                             card.resolve_output(output), "sample", None, "0")

    cnn = "ssl4eo-s12-resnet18-moco"
    assert key(cnn, OutputSpec.pooled()) == key(cnn, OutputSpec.pooled("mean"))
    assert key(DINO, OutputSpec.pooled()) == key(DINO, OutputSpec.pooled("cls"))
    assert key(DINO, OutputSpec.pooled()) != key(DINO, OutputSpec.pooled("mean"))
    clip = "remoteclip-vit-b32"  # native default; its reductions now reduce the grid
    assert key(clip, OutputSpec.pooled()) == key(clip, OutputSpec.pooled("native"))
    assert key(clip, OutputSpec.pooled("mean"))["pooled_from"] == "grid"
    assert "pooled_from" not in key(clip, OutputSpec.pooled())
    # The unit is folded into the scale: the contract as fingerprints always saw it.
    pre = key(DINO, OutputSpec.pooled())["preprocessing"]
    assert isinstance(pre, dict) and pre["normalisation"]["scale"] == pytest.approx(1e-4)
    assert "unit" not in pre


def test_clay_pooled_is_the_token_terratorch_drops_from_its_grid() -> None:
    """Clay's card layout (class token first, then 32 x 32 patches) against TerraTorch's own
    ``prepare_features_for_image_model``: our grid is its grid, our default is token 0."""
    with preserved_torch_state():  # TerraTorch sets the float32 matmul precision when imported
        pytest.importorskip("terratorch")
    embedder = get_embedder("clay-v1-base", device="cpu", weights="random")
    pixels = np.random.default_rng(1).uniform(300, 4000, (1, 10, 256, 256)).astype(np.float32)
    with torch.inference_mode():
        tokens = embedder.forward_tokens(torch.from_numpy(embedder.normalise(pixels)))
        reference = embedder.model.prepare_features_for_image_model([tokens])[0]
    assert tokens.shape[1] == 1 + 32 * 32
    np.testing.assert_allclose(embedder.embed(pixels, OutputSpec.grid()), reference.numpy(),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(embedder.embed(pixels, OutputSpec.pooled()),
                               tokens[:, 0].numpy(), rtol=1e-5, atol=1e-5)
