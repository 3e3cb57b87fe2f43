"""WildSAT (Daroya et al., ICCV 2025): satellite encoders fine-tuned on wildlife observations.

Architecture. WildSAT fine-tunes ImageNet-pretrained torchvision classifiers (``vit_b_16``,
``resnet50``, ``swin_t``; ``models/get_model.py`` in github.com/cvl-umass/wildsat) by
contrastive learning against species-distribution, text and augmented-image embeddings. The
ImageNet-initialised releases (README table, "ImageNet1k" rows, trained with ``--use_bnft
--is_tunefc``: norm layers and the classifier tuned) are the three ids here; torchvision
builds the network, nothing is copied.

Checkpoints. The releases are Google Drive files written by ``train.py``'s
``torch.save({...})``: ``satellite_state_dict`` (DistributedDataParallel ``module.`` prefix;
``backbone.*`` is the whole torchvision model, classifier included; ``decoder.*`` the three
linear heads onto the 256-d text / location / image spaces, not used here), the location and
text models, the optimizer, ``opt`` (an ``argparse.Namespace``) and, for runs with a
learning-rate schedule, the ``StepLR`` object itself. They load with
``torch.load(weights_only=True)``: for this load only, ``argparse.Namespace`` is allow-listed
and the pickled training-state objects (``StepLR``, ``Adam`` and the ``defaultdict`` of its
state) are rebuilt as inert stand-ins that keep nothing, so no torch or user code runs. The
files' sha256 is not published: each is recorded in the embedding metadata when loaded.

Input. WildSAT trained on SatlasPretrain's Sentinel-2 true-colour tiles (8-bit TCI PNGs,
512 x 512 at ~10 m) and evaluates the same way (``dataset/classification.py``,
``quickstart.ipynb``): ``ToTensor`` (TCI / 255), resize to 224 for the ViT (512 px kept for
the CNN and Swin), then per image ``x - min(x)`` and a division by ``max(max, 1)``; no
ImageNet mean/std. From L1C digital numbers the TCI is approximated as in eoembed's Satlas
adapters: B04/B03/B02 / 2000 clipped to 0..1 (ESA maps DN 0..2000 onto the TCI's 8 bits; the
8-bit rounding is not reproduced). The per-image shift is applied to each image the network
sees (each tile under ``input_prep="tile"``).

Outputs. ``pooled`` is WildSAT's image feature: the whole torchvision network's output
(``SingleTaskModel.forward``'s ``feats`` / ``embed``, 1000-d: the tuned classifier's logits,
which WildSAT's decoder heads take as input). ``grid`` puts every spatial cell through the
same classifier so cells live in the pooled space: the ViT's 14 x 14 patch tokens after the
encoder's final LayerNorm through ``heads``; the ResNet's ``layer4`` map through ``fc``; the
Swin's final-norm map through ``head``. For the ResNet and Swin (average pool, then a linear
layer) the grid's mean is exactly the pooled vector; the ViT pools with its class token.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from eoembed.bands import sentinel2
from eoembed.embedders.base import import_torch
from eoembed.embedders.card import (
    InputContract,
    ModelCard,
    Normalisation,
    WeightsSource,
    native_rule,
)
from eoembed.embedders.torch_embedder import TorchEmbedder, require, submodule_state

if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from eoembed.embedders.context import SampleContext

__all__ = ["WildSATEmbedder", "WildSATResNet50", "WildSATSwinT", "WildSATViTB16"]

TCI_DN = 2000.0
"""L1C digital number an 8-bit TCI value of 255 stands for (ESA TCI scaling, approximation)."""

_CITATION = (
    "Daroya, R., Cole, E., Mac Aodha, O., Van Horn, G., Maji, S. WildSAT: Learning Satellite "
    "Image Representations from Wildlife Observations. IEEE/CVF International Conference on "
    "Computer Vision (ICCV) 2025. https://github.com/cvl-umass/wildsat"
)
_LICENCE = "not stated (cvl-umass/wildsat has no licence file)"


class _Discarded:
    """Stand-in for pickled training state (optimizer, LR scheduler): built empty, kept empty."""

    def __setstate__(self, state: object) -> None:
        """Drop the pickled state: nothing of it is used or executed."""


def _plain_dict(*_args: object) -> dict[Any, Any]:
    """Stand-in for ``collections.defaultdict(factory)``: a plain dict, the factory ignored."""
    return {}


def _checkpoint_globals() -> list[Any]:
    """What WildSAT's ``torch.save`` pickles besides tensors, as ``safe_globals`` entries."""
    import argparse

    return [
        argparse.Namespace,  # `opt`: the training arguments (plain attributes, no code)
        (_Discarded, "torch.optim.lr_scheduler.StepLR"),
        (_Discarded, "torch.optim.adam.Adam"),
        (_plain_dict, "collections.defaultdict"),
        (dict, "builtins.dict"),  # the defaultdict's factory argument
    ]


_LOAD_LOCK = threading.Lock()


@contextlib.contextmanager
def checkpoint_globals() -> Iterator[None]:
    """Allow WildSAT's non-tensor checkpoint entries in ``torch.load(weights_only=True)``.

    Scoped to the ``with`` block (``torch.serialization.safe_globals``, torch >= 2.5); with an
    older torch nothing is allowed and such files are refused as unsafe.
    """
    serialization = import_torch().serialization
    scope = getattr(serialization, "safe_globals", None)
    if scope is None:
        yield
        return
    # torch's allow-list is process-wide: one WildSAT load at a time. Other threads' loads
    # meanwhile could only ever get the inert stand-ins above, never the real classes.
    with _LOAD_LOCK, scope(_checkpoint_globals()):
        yield


def _drive(file_id: str, filename: str) -> WeightsSource:
    return WeightsSource(
        repo_id="",
        filename=filename,
        revision="",
        sha256="",
        licence=_LICENCE,
        url=f"https://drive.google.com/file/d/{file_id}/view",
        download_url=(
            f"https://drive.usercontent.google.com/download?id={file_id}&export=download"
            "&confirm=t"
        ),
    )


def _card(
    model_id: str, arch: str, tv_name: str, image_size: int, patch: int, weights: WeightsSource
) -> ModelCard:
    side = image_size // patch
    return ModelCard(
        id=model_id,
        family="wildsat",
        summary=(
            f"WildSAT {arch} (ImageNet init) on S2 RGB; 1000-d image feature and a "
            f"{side} x {side} grid of cells through the same classifier."
        ),
        input=InputContract(
            collections=("sentinel-2-l1c",),
            processing_level="L1C",
            bands=sentinel2("B04", "B03", "B02"),
            gsd_m=10.0,
            image_size=image_size,
            patch_size=patch,
            normalisation=Normalisation(
                scale=1.0, mean=(0.0, 0.0, 0.0), std=(TCI_DN,) * 3,
                note=(
                    "DN / 2000 clipped to 0..1 (the 8-bit TCI / 255 WildSAT trained on; ESA "
                    "TCI scaling), then per image x - min(x), / max(max, 1) "
                    "(cvl-umass/wildsat dataset/classification.py); no ImageNet mean/std"
                ),
            ),
        ),
        embedding_dim=1000,
        outputs=("pooled", "grid"),
        pooling=native_rule("WildSAT's image embedding: the encoder's pooled output through its heads"),
        weights=weights,
        licence=_LICENCE,
        citation=_CITATION,
        reference=(
            f"torchvision.models.{tv_name}(weights=None) + load_state_dict(satellite_state_dict "
            "backbone.*), forward (torchvision 0.29.1)"
        ),
    )


class WildSATEmbedder(TorchEmbedder):
    """Base: subclasses set ``card`` and ``tv_name`` (the torchvision constructor)."""

    native_pooling = True
    tv_name: ClassVar[str]

    def create_model(self) -> torch.nn.Module:
        """The torchvision classifier, randomly initialised (its head is part of WildSAT)."""
        models = require("torchvision.models", "torch")
        model: torch.nn.Module = getattr(models, self.tv_name)(weights=None)
        return model

    def load_checkpoint(self, path: Path) -> None:
        """Load under :func:`checkpoint_globals` (WildSAT files pickle ``opt`` and more)."""
        with checkpoint_globals():
            super().load_checkpoint(path)

    def convert_checkpoint(self, state: dict[str, Any]) -> dict[str, Any]:
        """``satellite_state_dict``'s ``[module.]backbone.*`` -> torchvision keys.

        A plain torchvision state dict (``weights="/path"``) passes through unchanged.
        """
        inner = state.get("satellite_state_dict")
        weights: dict[str, Any] = inner if isinstance(inner, dict) else state
        return submodule_state({k.removeprefix("module."): v for k, v in weights.items()},
                               "backbone.")

    def normalise(self, pixels: np.ndarray) -> np.ndarray:
        """DN / 2000 clipped to 0..1: the TCI / 255 (the per-image shift runs in the forward)."""
        clipped: np.ndarray = np.clip(super().normalise(pixels), 0.0, 1.0)
        return clipped

    @staticmethod
    def shift(x: torch.Tensor) -> torch.Tensor:
        """WildSAT's per-image normalisation: ``x - min(x)``, then ``/ max(max, 1)``."""
        lo = x.flatten(1).amin(dim=1).view(-1, 1, 1, 1)
        x = x - lo
        hi = x.flatten(1).amax(dim=1).clamp(min=1.0).view(-1, 1, 1, 1)
        return x / hi

    def forward_pooled(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """The torchvision network's output: WildSAT's 1000-d image feature."""
        out: torch.Tensor = self.model(self.shift(x))
        return out

    @staticmethod
    def _cells(head: torch.nn.Module, fmap: torch.Tensor) -> torch.Tensor:
        """``head`` applied to each cell of a channels-last map ``(n, h, w, C)`` -> (n, D, h, w)."""
        out: torch.Tensor = head(fmap).permute(0, 3, 1, 2)
        return out


class WildSATViTB16(WildSATEmbedder):
    """WildSAT ViT-B/16 (torchvision ``vit_b_16``), 224 px, 14 x 14 patch grid."""

    tv_name = "vit_b_16"
    card = _card(
        "wildsat-vit-b16", "ViT-B/16", "vit_b_16", 224, 16,
        _drive("1IxBpf3nbEMzny4YJWS6stMBxel6gMiYE", "vitb16-imagenet-bnfc.pth"),
    )

    def create_model(self) -> torch.nn.Module:
        """The torchvision ViT with its classifier initialised like any ``nn.Linear``.

        torchvision zero-initialises ``heads.head``, which would make ``weights="random"``
        embed every image as zeros; loaded checkpoints overwrite it either way.
        """
        model: Any = super().create_model()
        model.heads.head.reset_parameters()
        built: torch.nn.Module = model
        return built

    def forward_grid(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """Patch tokens after the encoder (and its final LayerNorm) through ``heads``."""
        torch = import_torch()
        m = self.model
        tokens = m._process_input(self.shift(x))
        tokens = torch.cat([m.class_token.expand(len(tokens), -1, -1), tokens], dim=1)
        patches = m.encoder(tokens)[:, 1:]
        side = x.shape[-1] // self.card.input.patch_size
        return self._cells(m.heads, patches.reshape(len(x), side, side, patches.shape[-1]))


class WildSATResNet50(WildSATEmbedder):
    """WildSAT ResNet-50 (torchvision ``resnet50``), 512 px, 16 x 16 grid of ``layer4`` cells."""

    tv_name = "resnet50"
    channels_last_ok = True
    card = _card(
        "wildsat-resnet50", "ResNet-50", "resnet50", 512, 32,
        _drive("1LwCjzT1p0yFOtv1m0YD-rl7tP0eYXTb2", "resnet50-imagenet-bnfc.pth"),
    )

    def forward_grid(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """``layer4`` features, each cell through ``fc`` (their mean is the pooled output)."""
        m = self.model
        x = m.maxpool(m.relu(m.bn1(m.conv1(self.shift(x)))))
        fmap = m.layer4(m.layer3(m.layer2(m.layer1(x))))
        return self._cells(m.fc, fmap.permute(0, 2, 3, 1))


class WildSATSwinT(WildSATEmbedder):
    """WildSAT Swin-T (torchvision ``swin_t``), 512 px, 16 x 16 grid of last-stage cells."""

    tv_name = "swin_t"
    card = _card(
        "wildsat-swin-t", "Swin-T", "swin_t", 512, 32,
        _drive("12rfb3ES9-RuIAk_RjzYrMQJG_5J1Iq5H", "swint-imagenet-bnfc.pth"),
    )

    def forward_grid(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """Last stage after the final LayerNorm, each cell through ``head``."""
        m = self.model
        return self._cells(m.head, m.norm(m.features(self.shift(x))))
