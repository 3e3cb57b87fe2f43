"""OlmoEarth v1 adapters: parity with olmoearth-pretrain-minimal's own model, normaliser and
pooling, on released-layout checkpoints (the whole LatentMIM state dict, ``weights.pth``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
opm = pytest.importorskip("olmoearth_pretrain_minimal")

from olmoearth_pretrain_minimal import model_loader
from olmoearth_pretrain_minimal.olmoearth_pretrain_v1.nn.flexi_vit import (
    EncoderConfig,
    PoolingType,
    PredictorConfig,
)
from olmoearth_pretrain_minimal.olmoearth_pretrain_v1.nn.latent_mim import LatentMIMConfig
from olmoearth_pretrain_minimal.olmoearth_pretrain_v1.olmoearth_pretrain_v1 import (
    DEFAULT_MODALITIES,
    MODEL_SIZE_CONFIGS,
)
from olmoearth_pretrain_minimal.olmoearth_pretrain_v1.utils.constants import (
    Modality,
)
from olmoearth_pretrain_minimal.olmoearth_pretrain_v1.utils.datatypes import (
    MaskedOlmoEarthSample,
    MaskValue,
)

from conftest import SAMPLE_POINT, SAMPLE_WINDOW
from eoembed import OutputSpec, SensorSpec, get_embedding
from eoembed.embedders import describe_model, get_embedder
from eoembed.embedders.context import SampleContext
from eoembed.errors import CapabilityError, ModelArgumentError
from zoo import (
    CONTEXT,
    assert_parity,
    checkpoint_bytes,
    offline_hub,  # noqa: F401
    publish,
    sample_pixels,
)

SIZES = {
    "olmoearth-v1-nano": "nano",
    "olmoearth-v1-tiny": "tiny",
    "olmoearth-v1-base": "base",
    "olmoearth-v1-large": "large",
}
SIZE_PX = {"olmoearth-v1-nano": 64, "olmoearth-v1-tiny": 64, "olmoearth-v1-base": 32,
           "olmoearth-v1-large": 32}
"""Native sizes (any multiple of 8): smaller for the big encoders to keep the test short."""
PATCH = 8


def _release_config(size: str, **encoder: Any) -> dict[str, Any]:
    """A release ``config.json``: the v1 model of ``size`` (``encoder`` overrides its encoder
    settings), serialised as olmo-core writes it (``_CLASS_`` names under
    ``olmoearth_pretrain.``, which the package maps onto its own modules)."""
    sizes = MODEL_SIZE_CONFIGS[f"{size}_shallow_decoder"]
    settings = {
        "embedding_size": sizes["encoder_embedding_size"], "num_heads": sizes["encoder_num_heads"],
        "depth": sizes["encoder_depth"], "mlp_ratio": sizes["mlp_ratio"],
        "supported_modality_names": list(DEFAULT_MODALITIES), "max_patch_size": PATCH,
        "drop_path": 0.1, "max_sequence_length": 12,
    } | encoder
    model = LatentMIMConfig(
        encoder_config=EncoderConfig(**settings),
        decoder_config=PredictorConfig(
            encoder_embedding_size=settings["embedding_size"],
            decoder_embedding_size=settings["embedding_size"], depth=sizes["decoder_depth"],
            mlp_ratio=sizes["mlp_ratio"], num_heads=sizes["decoder_num_heads"],
            supported_modality_names=list(DEFAULT_MODALITIES), max_sequence_length=12,
        ),
    ).as_config_dict()
    decode_only = [m for m in DEFAULT_MODALITIES if m not in ("sentinel2_l2a", "sentinel1",
                                                               "landsat")]
    masking = {"masking_config": {"strategy_config": {"only_decode_modalities": decode_only}}}
    text = json.dumps({"model": model, "train_module": masking}).replace(
        '"olmoearth_pretrain_minimal.olmoearth_pretrain_v1.', '"olmoearth_pretrain.')
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _reference(size: str, seed: int) -> Any:
    """The package's v1 model of ``size`` with seeded random weights (a LatentMIM)."""
    torch.manual_seed(seed)
    return opm.OlmoEarthPretrain_v1(model_size=size, model_version="v1").model.eval()


def _reference_run(encoder: Any, pixels: np.ndarray, date: dt.date, gsd: float) -> tuple[Any, Any]:
    """Grid and pooled embeddings the package's way: its v1 normaliser, encoder and pooling."""
    data = pixels.transpose(0, 2, 3, 1)[:, :, :, None, :]  # (B, H, W, T=1, C)
    normalised = opm.NormalizerV1().normalize(Modality.SENTINEL2_L2A, data)
    b, h, w = data.shape[:3]
    stamps = torch.tensor([[[date.day, date.month - 1, date.year]]] * b, dtype=torch.long)
    sample = MaskedOlmoEarthSample(
        timestamps=stamps,
        sentinel2_l2a=torch.from_numpy(normalised).float(),
        sentinel2_l2a_mask=torch.zeros(b, h, w, 1, 12, dtype=torch.long),
    )
    with torch.no_grad():
        out = encoder(sample, patch_size=PATCH, input_res=gsd, fast_pass=True)
    tokens = out["tokens_and_masks"]
    grid = tokens.pool_unmasked_tokens(PoolingType.MEAN, spatial_pooling=True)
    pooled = tokens.pool_unmasked_tokens(PoolingType.MEAN)
    return grid.permute(0, 3, 1, 2), pooled


@pytest.mark.parametrize("model_id", list(SIZES))
def test_parity_with_olmoearth_pretrain_minimal(
    model_id: str, offline_hub: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
    sample_provider: Any,
) -> None:
    reference = _reference(SIZES[model_id], seed=0)
    payload = checkpoint_bytes(reference.state_dict())  # weights.pth: encoder/decoder/target
    config = json.dumps(_release_config(SIZES[model_id])).encode()
    publish(offline_hub, monkeypatch, model_id, payload, extra={"config.json": config})
    encoder = reference.encoder
    del reference
    gc.collect()

    embedder = get_embedder(model_id, device="cpu")
    assert embedder.weights_meta["sha256"] == hashlib.sha256(payload).hexdigest()
    assert embedder.weights_meta["config"]["sha256"] == hashlib.sha256(config).hexdigest()
    del payload
    gc.collect()

    card = describe_model(model_id)
    size = SIZE_PX[model_id]
    pixels = sample_pixels(sample_provider, card.input.band_names, size, n=2)
    ctx = [CONTEXT, CONTEXT]
    grid = embedder.embed(pixels, OutputSpec.grid(), ctx)
    pooled = embedder.embed(pixels, OutputSpec.pooled(), ctx)
    assert CONTEXT.date is not None
    ref_grid, ref_pooled = _reference_run(encoder, pixels, CONTEXT.date, CONTEXT.gsd_m)
    assert grid.shape == (2, card.embedding_dim, size // PATCH, size // PATCH)
    assert_parity(grid, ref_grid)
    assert_parity(pooled, ref_pooled)

    # Side inputs are wired: another month (sample 0) and another GSD (sample 1, in the same
    # batch: one encoder call per GSD) change the embedding, as they change the reference's.
    june = dataclasses.replace(CONTEXT, date=dt.date(2015, 6, 16))
    coarse = dataclasses.replace(CONTEXT, gsd_m=20.0)
    other = embedder.embed(pixels, OutputSpec.pooled(), [june, coarse])
    for i in range(2):
        assert not np.allclose(other[i], pooled[i], rtol=1e-4, atol=1e-5)
    assert_parity(other[:1], _reference_run(encoder, pixels[:1], dt.date(2015, 6, 16), 10.0)[1])
    assert_parity(other[1:], _reference_run(encoder, pixels[1:], CONTEXT.date, 20.0)[1])


def test_builds_the_model_its_config_json_describes(
    offline_hub: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,  # noqa: F811
    sample_provider: Any,
) -> None:
    """A ``config.json`` unlike the package's Nano defaults (2 blocks, 4 heads, QK-norm):
    eoembed builds that encoder and loads the weights strictly, matching the upstream loader
    (``model_loader.load_model_from_path``) on the same release folder."""
    config = _release_config("nano", depth=2, num_heads=4, qk_norm=True)
    torch.manual_seed(3)
    trained = model_loader._build_model_from_config(config)
    release = tmp_path / "release"
    release.mkdir()
    (release / "config.json").write_text(json.dumps(config))
    torch.save(trained.state_dict(), release / "weights.pth")
    reference = model_loader.load_model_from_path(release).eval()  # upstream, strict
    del trained

    publish(offline_hub, monkeypatch, "olmoearth-v1-nano", (release / "weights.pth").read_bytes(),
            extra={"config.json": (release / "config.json").read_bytes()})
    embedder = get_embedder("olmoearth-v1-nano", device="cpu")
    assert len(embedder.model.blocks) == 2
    assert embedder.model.blocks[0].attn.num_heads == 4
    assert embedder.weights_meta["config"]["source"] == "config.json"
    pixels = sample_pixels(sample_provider, describe_model("olmoearth-v1-nano").input.band_names,
                           32, n=1)
    ref_grid = _reference_run(reference.encoder, pixels, dt.date(2015, 12, 16), 10.0)[0]
    assert_parity(embedder.embed(pixels, OutputSpec.grid(), [CONTEXT]), ref_grid)
    # The package's defaults cannot hold these weights: the file is what decides.
    with pytest.raises(RuntimeError):
        _reference("nano", seed=0).load_state_dict(torch.load(release / "weights.pth"))
    # A local weights file takes the config.json beside it, as load_model_from_path does.
    local = get_embedder("olmoearth-v1-nano", device="cpu",
                         weights=str(release / "weights.pth"))
    assert len(local.model.blocks) == 2


def test_config_json_is_part_of_the_download(
    offline_hub: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    """``eoembed weights download`` fetches the config.json with the weights; a cache without
    it is refused (offline) with a message naming the file, not built from defaults."""
    from eoembed.embedders.weights import download_weights
    from eoembed.errors import WeightsNotFoundError

    source = publish(offline_hub, monkeypatch, "olmoearth-v1-nano", b"not loaded")
    assert source.companions == ("config.json",)
    with pytest.raises(WeightsNotFoundError, match=r"config\.json"):
        download_weights("olmoearth-v1-nano", source)
    with pytest.raises(WeightsNotFoundError, match=r"config\.json"):
        get_embedder("olmoearth-v1-nano", device="cpu")


def test_grid_is_georeferenced_on_l1c_pixels() -> None:
    """The generic contract test reads the card's default (L2A) collection, which the sample
    provider does not serve; here the same check reads its L1C bands by name."""
    card = describe_model("olmoearth-v1-nano")
    emb = get_embedding(
        "olmoearth-v1-nano", spatial=SAMPLE_POINT, temporal=SAMPLE_WINDOW,
        sensor=SensorSpec("sentinel-2-l1c", card.input.band_names, 10.0),
        output=OutputSpec.grid(), device="cpu", weights="random",
    )
    left, bottom, right, top = emb.data.rio.bounds()
    assert (right - left) == pytest.approx(2560) and (top - bottom) == pytest.approx(2560)
    assert emb.data.shape == (128, 32, 32)
    assert emb.meta["input_grid"]["bounds"] == pytest.approx([left, bottom, right, top])


@pytest.mark.parametrize("model_id", list(SIZES))
def test_card_matches_the_package(model_id: str) -> None:
    card = describe_model(model_id)
    config = MODEL_SIZE_CONFIGS[f"{SIZES[model_id]}_shallow_decoder"]
    assert card.embedding_dim == config["encoder_embedding_size"]
    assert list(card.input.band_names) == Modality.SENTINEL2_L2A.band_order
    norm = card.input.normalisation
    assert len(norm.mean) == len(norm.std) == len(card.input.bands) == 12
    assert card.input.patch_size == PATCH and card.input.image_size is None
    assert set(card.input.side_inputs) == {"gsd", "time"}
    assert card.weights is not None and card.weights.pinned
    assert card.weights.filename == "weights.pth"
    # Constants as written in computed.json (B02 mean/std), mapped to (x - lo) / (4 std).
    b02 = card.input.band_names.index("B02")
    assert norm.mean[b02] == pytest.approx(1188.9412572078477 - 2 * 1859.1923971769581)
    assert norm.std[b02] == pytest.approx(4 * 1859.1923971769581)
    # The card's affine map is the package's Normalizer.
    x = np.random.default_rng(0).uniform(0, 10000, (5, 12)).astype(np.float64)
    ours = (x * norm.scale - np.array(norm.mean)) / np.array(norm.std)
    np.testing.assert_allclose(ours, opm.Normalizer().normalize(Modality.SENTINEL2_L2A, x))


def test_non_square_regions_and_options() -> None:
    embedder = get_embedder("olmoearth-v1-nano", device="cpu", weights="random")
    rng = np.random.default_rng(0)
    pixels = rng.uniform(500, 3000, (2, 12, 48, 64)).astype(np.float32)
    grid = embedder.embed(pixels, OutputSpec.grid())
    assert grid.shape == (2, 128, 6, 8) and np.isfinite(grid).all()
    # The padding is masked MISSING: as the package's encoder does with that mask.
    x = torch.from_numpy(embedder.normalise(pixels)).permute(0, 2, 3, 1)[:, :, :, None, :]
    x = torch.nn.functional.pad(x, (0, 0, 0, 0, 0, 0, 0, 16))
    mask = torch.zeros(2, 64, 64, 1, 3, dtype=torch.long)
    mask[:, 48:] = MaskValue.MISSING.value
    stamps = torch.tensor([[[1, 0, 2020]]] * 2, dtype=torch.long)
    sample = MaskedOlmoEarthSample(timestamps=stamps, sentinel2_l2a=x, sentinel2_l2a_mask=mask)
    with torch.no_grad():
        tokens = embedder.model(sample, patch_size=8)["tokens_and_masks"].sentinel2_l2a
    assert_parity(grid, tokens[:, :6].mean(dim=(3, 4)).permute(0, 3, 1, 2))
    # Without a context: the card's GSD and month index 0.
    unknown = SampleContext.unknown(10.0)
    np.testing.assert_allclose(
        embedder.embed(pixels, OutputSpec.pooled()),
        embedder.embed(pixels, OutputSpec.pooled(), [unknown, unknown]), rtol=1e-6,
    )
    with pytest.raises(CapabilityError, match="multiples of 8"):
        embedder.embed(pixels[..., :60], OutputSpec.grid())
    fine = get_embedder("olmoearth-v1-nano", device="cpu", weights="random", patch_size=4)
    assert fine.embed(pixels, OutputSpec.grid()).shape == (2, 128, 12, 16)
    with pytest.raises(ModelArgumentError, match="patch_size"):
        get_embedder("olmoearth-v1-nano", device="cpu", weights="random", patch_size=16)
