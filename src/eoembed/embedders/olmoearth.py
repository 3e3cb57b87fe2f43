"""OlmoEarth v1 encoders (Ai2, 2025) for Sentinel-2 L2A, built with olmoearth-pretrain-minimal.

The encoder is the package's own ``Encoder`` (``nn/flexi_vit.py``), built from the release's
``config.json`` as the upstream loader does (``model_loader.load_model_from_id``:
``Config.from_dict(config["model"])``, then the encoder inputs restricted to the modalities it
was trained on, then a strict load): here ``config["model"]["encoder_config"]``, downloaded
from the same repository and revision as the weights (its sha256 recorded in the metadata).
``weights="random"`` builds the v1 defaults of the size (``MODEL_SIZE_CONFIGS`` and
``EncoderConfig`` in ``olmoearth_pretrain_v1.py``); a local ``weights=`` file uses the
``config.json`` beside it when there is one (``load_model_from_path``), else those defaults.
``weights.pth`` is the whole pretraining ``LatentMIM`` state dict; the ``encoder.`` entries are
kept (strictly), the decoder and the EMA target encoder are dropped.

Input: the 12 Sentinel-2 L2A bands in the model's order, one frame (``T = 1``), normalised
as the package's ``Normalizer(std_multiplier=2)`` does: ``(x - (mean - 2 std)) / (4 std)``
with the pretraining band statistics (``data/norm_configs/computed.json``). Tokens are
``patch_size`` x ``patch_size`` pixel patches per band set (10 m, 20 m, 60 m bands); the grid
is the package's ``pool_unmasked_tokens(MEAN, spatial_pooling=True)`` (mean over time and
band sets), and the pooled vector its instance-wise mean, which equals the grid mean.

Side inputs: the month of ``SampleContext.date`` (v1 adds a month encoding; day and year are
passed but unused by v1) and ``gsd_m`` as the encoder's ``input_res`` (its spatial encoding
is scaled by ``input_res * patch_size / 10``). Without a context: January (month index 0, the
zero-filled timestamps of the package README) and the card's 10 m.

Any square size that is a multiple of ``patch_size`` works; a non-square region (both sides
multiples) is padded to a square whose padding is marked ``MaskValue.MISSING`` (the encoder
does not attend to it) and cropped from the grid.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from eoembed.bands import sentinel2
from eoembed.embedders.base import import_torch
from eoembed.embedders.card import InputContract, ModelCard, Normalisation, WeightsSource
from eoembed.embedders.torch_embedder import TorchEmbedder, TorchOptions, require
from eoembed.embedders.weights import fetch_companion, file_sha256
from eoembed.errors import CapabilityError, ModelArgumentError, WeightsNotFoundError

if TYPE_CHECKING:
    import torch

    from eoembed.embedders.context import SampleContext

__all__ = [
    "OlmoEarthOptions",
    "OlmoEarthV1Base",
    "OlmoEarthV1Large",
    "OlmoEarthV1Nano",
    "OlmoEarthV1Tiny",
]

_BANDS = ("B02", "B03", "B04", "B08", "B05", "B06", "B07", "B8A", "B11", "B12", "B01", "B09")
"""``Modality.SENTINEL2_L2A.band_order`` (band sets: 10 m, 20 m, 60 m)."""

# Per-band mean and std of the pretraining data (L2A digital numbers), from
# olmoearth_pretrain_minimal/olmoearth_pretrain_v1/data/norm_configs/computed.json.
_STATS = {
    "B01": (1115.8494388252218, 1955.6991794280914),
    "B02": (1188.9412572078477, 1859.1923971769581),
    "B03": (1407.7739105458452, 1727.7387413631088),
    "B04": (1513.0573882432757, 1740.7757298757895),
    "B05": (1890.9893042634167, 1754.7320388511766),
    "B06": (2483.7812315422448, 1622.1172720635755),
    "B07": (2722.728248756412, 1621.8226170190276),
    "B08": (2755.481305028308, 1612.2565699990187),
    "B09": (3269.812554170875, 2651.088425085525),
    "B11": (2562.852607796968, 1441.5471830655151),
    "B12": (1914.1383249044113, 1328.8914382756407),
    "B8A": (2885.570263047681, 1611.3587521042082),
}
_STD_MULTIPLIER = 2.0
"""``Normalizer(std_multiplier=2.0)``: [mean - 2 std, mean + 2 std] -> [0, 1]."""

_MODALITIES = (
    "sentinel2_l2a", "sentinel1", "landsat", "worldcover", "srtm", "openstreetmap_raster",
    "wri_canopy_height_map", "cdl", "worldcereal",
)
"""v1 ``DEFAULT_MODALITIES``: the checkpoint holds patch embeddings for all of them."""
_ENCODER_INPUTS = ("sentinel2_l2a", "sentinel1", "landsat")
"""``ENCODER_INPUT_MODALITY_NAMES`` for v1 (the others were decode-only)."""
_CONFIG_FILE = "config.json"
"""The release's training configuration (``model_loader.CONFIG_FILENAME``)."""
_MAX_PATCH_SIZE = 8
_BASE_GSD = 10.0
_UNKNOWN_MONTH = 0

_CITATION = (
    "OlmoEarth Team (Ai2). OlmoEarth: Stable Latent Image Modeling for Multimodal Earth "
    "Observation. arXiv:2511.13655 (2025). https://arxiv.org/abs/2511.13655"
)


@dataclass(frozen=True)
class OlmoEarthOptions(TorchOptions):
    """OlmoEarth options.

    ``patch_size``: input pixels per token side, 1..8. 8 is the size the patch embeddings
    were trained at (the card's); smaller sizes give finer grids by resampling the input
    (FlexiViT, bicubic) and cost quadratically more attention.
    """

    patch_size: int = _MAX_PATCH_SIZE

    def validate(self, model_id: str) -> None:
        """``patch_size`` within what the FlexiViT patch embedding supports."""
        if not 1 <= self.patch_size <= _MAX_PATCH_SIZE:
            raise ModelArgumentError(
                f"model {model_id!r} argument patch_size={self.patch_size} must be 1..8"
            )


def _normalisation() -> Normalisation:
    lo = [_STATS[b][0] - _STD_MULTIPLIER * _STATS[b][1] for b in _BANDS]
    width = [2 * _STD_MULTIPLIER * _STATS[b][1] for b in _BANDS]
    return Normalisation(
        scale=1.0, mean=tuple(lo), std=tuple(width),
        note=(
            "olmoearth_pretrain_minimal Normalizer(std_multiplier=2.0): (x - (mean - 2 std))"
            " / (4 std), band statistics from olmoearth_pretrain_v1/data/norm_configs/"
            "computed.json (sentinel2_l2a)"
        ),
    )


def _hub(size: str, revision: str, sha256: str) -> WeightsSource:
    repo = f"allenai/OlmoEarth-v1-{size}"
    return WeightsSource(
        repo_id=repo, filename="weights.pth", revision=revision, sha256=sha256,
        licence="OlmoEarth Artifact License", url=f"https://huggingface.co/{repo}",
        companions=(_CONFIG_FILE,),
    )


def _card(model_id: str, size: str, dim: int, weights: WeightsSource) -> ModelCard:
    return ModelCard(
        id=model_id,
        family="olmoearth",
        summary=(
            f"OlmoEarth v1 {size} ViT encoder, S2 L2A (12 bands, 1 frame); 8-px patch-token "
            "grid (mean over band sets), any square size; month and GSD side inputs."
        ),
        input=InputContract(
            collections=("sentinel-2-l2a",),
            processing_level="L2A",
            bands=sentinel2(*_BANDS),
            gsd_m=_BASE_GSD,
            image_size=None,
            patch_size=_MAX_PATCH_SIZE,
            normalisation=_normalisation(),
            side_inputs=("gsd", "time"),
        ),
        embedding_dim=dim,
        outputs=("pooled", "grid"),
        weights=weights,
        licence="OlmoEarth Artifact License (weights); Apache-2.0 (code)",
        citation=_CITATION,
        reference=(
            "olmoearth_pretrain_minimal.OlmoEarthPretrain_v1(model_version='v1').encoder + "
            "Normalizer + TokensAndMasks.pool_unmasked_tokens (olmoearth-pretrain-minimal 0.1.5)"
        ),
    )


class _OlmoEarthV1(TorchEmbedder):
    """The v1 encoder; subclasses set ``card`` and the size's width, depth and heads."""

    Options = OlmoEarthOptions
    options: OlmoEarthOptions
    embedding_size: ClassVar[int]
    depth: ClassVar[int]
    num_heads: ClassVar[int]
    ignored_keys: ClassVar[tuple[str, ...]] = ("decoder.", "target_encoder.")

    def create_model(self) -> torch.nn.Module:
        """The package's ``Encoder`` as the release's ``config.json`` says (or v1 defaults)."""
        config, self._config_meta = self._release_config()
        if config is None:
            encoder = self._default_encoder()
            inputs = list(_ENCODER_INPUTS)
        else:
            encoder = self._encoder_from_config(config)
            inputs = self._encoder_inputs(config)
        built: Any = encoder
        if built.embedding_size != self.card.embedding_dim:
            raise WeightsNotFoundError(
                f"{_CONFIG_FILE} for {self.card.id!r} describes a {built.embedding_size}-d "
                f"encoder, the model card a {self.card.embedding_dim}-d one"
            )
        built.restrict_input_modalities(inputs)
        model: torch.nn.Module = built
        return model

    def build(self) -> None:
        """Build and load as the base class does; record which configuration was used."""
        super().build()
        self.weights_meta["config"] = self._config_meta

    def _release_config(self) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """The release's ``config.json`` (parsed) and where it came from; None: defaults."""
        weights = self.options.weights
        if weights == "random":
            return None, {"source": "olmoearth_pretrain_v1 defaults (random weights)"}
        if weights is not None:
            beside = Path(weights).expanduser().parent / _CONFIG_FILE
            if not beside.is_file():
                return None, {"source": f"olmoearth_pretrain_v1 defaults (no {_CONFIG_FILE} "
                                        "beside the weights file)"}
            path, digest = beside, file_sha256(beside)
        else:
            assert self.card.weights is not None
            path, digest = fetch_companion(self.card.id, self.card.weights, _CONFIG_FILE)
        with open(path, encoding="utf-8") as f:
            config: dict[str, Any] = json.load(f)
        return config, {"source": _CONFIG_FILE, "path": str(path), "sha256": digest}

    def _encoder_from_config(self, config: dict[str, Any]) -> torch.nn.Module:
        """``Config.from_dict(config["model"]["encoder_config"]).build()``, as upstream."""
        config_mod = require("olmoearth_pretrain_minimal.olmoearth_pretrain_v1.utils.config",
                             "olmoearth")
        try:
            encoder_config = config["model"]["encoder_config"]
        except (KeyError, TypeError):
            raise WeightsNotFoundError(
                f"{_CONFIG_FILE} for {self.card.id!r} has no model.encoder_config"
            ) from None
        encoder: torch.nn.Module = config_mod.Config.from_dict(encoder_config).build()
        return encoder

    @staticmethod
    def _encoder_inputs(config: dict[str, Any]) -> list[str]:
        """The modalities the encoder was trained on, as the upstream loader derives them.

        From the training config's ``only_decode_modalities`` where recorded, else the v1
        family's ``ENCODER_INPUT_MODALITY_NAMES`` (what ``load_model_from_id`` uses).
        """
        loader = require("olmoearth_pretrain_minimal.model_loader", "olmoearth")
        try:
            inputs: list[str] = loader._encoder_input_modalities_from_config(config)
        except (ValueError, KeyError):
            return list(_ENCODER_INPUTS)
        return inputs

    def _default_encoder(self) -> torch.nn.Module:
        """The package's ``Encoder`` with the v1 configuration of this size."""
        flexi_vit = require("olmoearth_pretrain_minimal.olmoearth_pretrain_v1.nn.flexi_vit",
                            "olmoearth")
        config = flexi_vit.EncoderConfig(
            supported_modality_names=list(_MODALITIES),
            embedding_size=self.embedding_size,
            num_heads=self.num_heads,
            depth=self.depth,
            mlp_ratio=4.0,
            max_patch_size=_MAX_PATCH_SIZE,
            drop_path=0.1,
            max_sequence_length=12,
        )
        encoder: torch.nn.Module = config.build()
        return encoder

    def convert_checkpoint(self, state: dict[str, Any]) -> dict[str, Any]:
        """``LatentMIM`` state dict -> encoder keys (decoder and target encoder dropped)."""
        return {
k.removeprefix("encoder."): v for k, v in state.items()}

    def forward_grid(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """``(n, 12, H, W)`` -> ``(n, D, H/p, W/p)``, one encoder call per distinct GSD."""
        th = import_torch()
        p = self.options.patch_size
        n, _, h, w = x.shape
        if h % p or w % p:
            raise CapabilityError(
                f"model {self.card.id!r} with patch_size={p} needs a height and width that "
                f"are multiples of {p}, got {h} x {w}; choose a buffer of a multiple of {p} px"
            )
        gsds = [c.gsd_m for c in context] if context else [self.card.input.gsd_m] * n
        out: torch.Tensor = th.empty(n, self.embedding_dim, h // p, w // p, device=x.device)
        for gsd in sorted(set(gsds)):
            rows = [i for i, g in enumerate(gsds) if g == gsd]
            ctx = [context[i] for i in rows] if context else []
            grid = self._encode(x[rows], ctx, len(rows), float(gsd))
            out[rows] = grid.to(out.dtype)
        return out

    def _encode(
        self, x: torch.Tensor, context: Sequence[SampleContext], n: int, gsd: float
    ) -> torch.Tensor:
        """One encoder pass over samples that share a GSD."""
        th = import_torch()
        datatypes = require("olmoearth_pretrain_minimal.olmoearth_pretrain_v1.utils.datatypes",
                            "olmoearth")
        p = self.options.patch_size
        h, w = x.shape[-2:]
        side = max(h, w)
        pixels = x.permute(0, 2, 3, 1)[:, :, :, None, :]  # (n, H, W, T=1, C)
        mask = th.zeros(n, side, side, 1, 3, dtype=th.long, device=x.device)
        if h != w:
            # Pad to a square (the v1 spatial encoding is square) and hide the padding.
            pixels = th.nn.functional.pad(pixels, (0, 0, 0, 0, 0, side - w, 0, side - h))
            mask[:, h:] = datatypes.MaskValue.MISSING.value
            mask[:, :, w:] = datatypes.MaskValue.MISSING.value
        stamps = [
            (c.date.day, c.date.month - 1, c.date.year) if c.date else (1, _UNKNOWN_MONTH, 2020)
            for c in context
        ] or [(1, _UNKNOWN_MONTH, 2020)] * n
        timestamps = th.tensor(stamps, dtype=th.long, device=x.device)[:, None, :]
        sample = datatypes.MaskedOlmoEarthSample(
            timestamps=timestamps, sentinel2_l2a=pixels, sentinel2_l2a_mask=mask
        )
        out = self.model(sample, patch_size=p, input_res=gsd, fast_pass=h == w)
        tokens = out["tokens_and_masks"].sentinel2_l2a  # (n, side/p, side/p, T, sets, D)
        grid: torch.Tensor = tokens[:, : h // p, : w // p].mean(dim=(3, 4))
        return grid.permute(0, 3, 1, 2)


class OlmoEarthV1Nano(_OlmoEarthV1):
    """OlmoEarth v1 Nano: 128-wide, 4 blocks (1.4M encoder parameters)."""

    embedding_size, depth, num_heads = 128, 4, 8
    card = _card(
        "olmoearth-v1-nano", "Nano", 128,
        _hub("Nano", "529248a4dc3c54014c56b7504641cec98de31d1c",
             "795c68419a658fd22ccf8f2e020607675f963e9ef3b93d8e368bb17646765347"),
    )


class OlmoEarthV1Tiny(_OlmoEarthV1):
    """OlmoEarth v1 Tiny: 192-wide, 12 blocks (6.2M encoder parameters)."""

    embedding_size, depth, num_heads = 192, 12, 3
    card = _card(
        "olmoearth-v1-tiny", "Tiny", 192,
        _hub("Tiny", "885784437d4e2d632b7bf51b4233426c6f4479dc",
             "66b9827af383bc444d7909a406a5b62c072bb08d6804ff47a247c2dce8fad9a4"),
    )


class OlmoEarthV1Base(_OlmoEarthV1):
    """OlmoEarth v1 Base: 768-wide, 12 blocks (89M encoder parameters)."""

    embedding_size, depth, num_heads = 768, 12, 12
    card = _card(
        "olmoearth-v1-base", "Base", 768,
        _hub("Base", "4bd1392a4539404d2c74276c39f3cb4cfff466cc",
             "551c1cc53337c6faaddead88071d7ebd2bd53ec271600fa6f0ee0a518c8b6e11"),
    )


class OlmoEarthV1Large(_OlmoEarthV1):
    """OlmoEarth v1 Large: 1024-wide, 24 blocks (308M encoder parameters)."""

    embedding_size, depth, num_heads = 1024, 24, 16
    card = _card(
        "olmoearth-v1-large", "Large", 1024,
        _hub("Large", "b2c9f41de3d8454cb37f0cd9cc3e79ec7c4af435",
             "1adb5026bd520c54bc415a1282386954927623bab81d01be2f5b6379cc039035"),
    )
