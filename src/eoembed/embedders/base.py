"""The embedder contract: a batch of pixels in, pooled vectors or feature grids out.

Embedders see numpy arrays ``(N, C, H, W)`` already on the request grid, in the model's band
order and in provider units; they normalise, resize, run the network in batches and return
numpy. Only this layer imports torch, and only when an embedder is built; embedders that can
run without it (MOSAIKS, published products) never import it where it is not installed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from eoembed.embedders.card import ModelCard
from eoembed.embedders.context import SampleContext
from eoembed.embedders.options import EmbedderOptions
from eoembed.embedders.tiling import stitch_tiles, tile_starts
from eoembed.embedders.tokens import class_token, grid_shape, tokens_to_grid
from eoembed.errors import CapabilityError, DependencyNotFoundError, ModelArgumentError

if TYPE_CHECKING:
    import torch

    from eoembed.bands import BandInfo
    from eoembed.specs import OutputSpec

__all__ = ["Embedder", "pool_grid", "resolve_device", "torch_available"]


def import_torch() -> Any:
    """Import torch, or say which extra installs it."""
    try:
        import torch
    except ImportError:
        raise DependencyNotFoundError("torch", "torch") from None
    return torch


def torch_available() -> bool:
    """Whether torch is installed, without importing it (a core install has none)."""
    return importlib.util.find_spec("torch") is not None


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``.

    Raises:
        CapabilityError: a device torch does not know, or one this machine does not have
            (``cuda:7`` with fewer GPUs, ``mps`` off Apple silicon), before a model is built.
    """
    torch = import_torch()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise CapabilityError(f"invalid device={device!r}: {exc}") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (parsed.index or 0) >= count:
            raise CapabilityError(
                f"device {device!r} is not on this machine ({count} CUDA device(s) visible); "
                "use device 'auto' or 'cpu'"
            )
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise CapabilityError(f"device {device!r} is not on this machine (no MPS); use device "
                              "'auto' or 'cpu'")
    return device


def pool_grid(grid: np.ndarray, pooling: str) -> np.ndarray:
    """Reduce ``(N, D, h, w)`` over its spatial cells."""
    flat = grid.reshape(*grid.shape[:2], -1)
    reducer = {
        "mean": np.mean,
        "max": np.max,
        "min": np.min,
        "std": np.std,
        "median": np.median,
    }[pooling]
    return np.asarray(reducer(flat, axis=-1), dtype=np.float32)  # type: ignore[operator]


class Embedder(ABC):
    """Base class: subclasses set ``card`` and ``Options`` and implement ``forward_grid``."""

    card: ClassVar[ModelCard]
    Options: ClassVar[type[EmbedderOptions]] = EmbedderOptions
    needs_torch: ClassVar[bool] = True
    """False for embedders that run without torch: published products (no network, no
    device) and those with a numpy forward (:meth:`forward_grid_numpy`, MOSAIKS)."""

    def __init__(self, *, device: str = "auto", batch_size: int = 16, **model_args: Any) -> None:
        self.options = self.Options.parse(self.card.id, model_args)
        self.device = self.device_for(device)
        self.batch_size = batch_size
        self.weights_meta: dict[str, Any] = {}
        t0 = time.perf_counter()
        try:
            self.build()
        except MemoryError:  # arguments that size the model (num_features=10**9, ...)
            raise ModelArgumentError(
                f"model {self.card.id!r} with arguments {model_args or '(defaults)'} does not "
                "fit in this machine's memory; use smaller values"
            ) from None
        self.load_seconds = time.perf_counter() - t0

    @classmethod
    def device_for(cls, device: str) -> str:
        """The device instances run on (checked before a model is built, see ``check_models``).

        :func:`resolve_device` for torch models; ``"cpu"`` for those that never run torch.
        """
        return resolve_device(device) if cls.needs_torch else "cpu"

    @property
    def uses_torch(self) -> bool:
        """Whether :meth:`embed` runs the torch route (else :meth:`run_batch_numpy`)."""
        return self.needs_torch

    # -- what subclasses provide -------------------------------------------------------

    @abstractmethod
    def build(self) -> None:
        """Create the network on ``self.device`` and load its weights."""

    def forward_grid_numpy(
        self, x: np.ndarray, context: Sequence[SampleContext] = ()
    ) -> np.ndarray:
        """:meth:`forward_grid` without torch, for embedders whose ``uses_torch`` is False."""
        raise NotImplementedError(f"{type(self).__name__} has no numpy forward")

    def forward_tokens(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """Token models: normalised input -> ``(n, prefix + h*w, D)`` output tokens.

        Adapters that provide it and declare the card's :class:`TokenLayout` get
        :meth:`forward_grid` and the ``"cls"`` pooling from the base class.
        """
        raise NotImplementedError(f"{type(self).__name__} has no forward_tokens")

    def forward_grid(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """Normalised input ``(n, C, H, W)`` -> spatial features ``(n, D, h, w)``.

        ``context`` holds one :class:`SampleContext` per sample (empty when unknown). The
        default lays out :meth:`forward_tokens` by the card's :class:`TokenLayout`.
        """
        layout = self.card.tokens
        if layout is None:
            raise NotImplementedError(f"{type(self).__name__} has no forward_grid")
        tokens = self.forward_tokens(x, context)
        return tokens_to_grid(
            tokens, grid_shape(x, self.card.input.patch_size), layout.prefix_tokens
        )

    def forward_cls(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """The class token ``(n, D)`` of :meth:`forward_tokens` (the card's ``cls_index``)."""
        layout = self.card.tokens
        if layout is None or layout.cls_index is None:
            raise CapabilityError(f"model {self.card.id!r} has no class token")
        return class_token(self.forward_tokens(x, context), layout.cls_index)

    native_pooling: ClassVar[bool] = False
    """Whether the model has its own global embedding (``forward_pooled``, the ``"native"``
    pooling) besides reductions of its grid (CLIP's projected image embedding, ...)."""

    def forward_pooled(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """Model-defined global embedding ``(n, D)``: the ``"native"`` pooling."""
        raise NotImplementedError

    # -- shared behaviour ---------------------------------------------------------------

    def normalise(self, pixels: np.ndarray) -> np.ndarray:
        """Provider pixels -> the card's unit -> model input, per its :class:`Normalisation`."""
        return self.normalise_as(pixels, None)

    def normalise_as(self, pixels: np.ndarray, bands: Sequence[BandInfo] | None) -> np.ndarray:
        """:meth:`normalise` for pixels of ``bands`` (None: the card's).

        ``bands``: an ``"any"`` model's bands when not its card's; each takes the constants
        of its nearest card band (:func:`eoembed.bandmatch.stand_ins`).
        """
        norm = self.card.input.normalisation
        x = pixels.astype(np.float32) * np.float32(self.card.input.provider_scale)
        index = list(self.stand_ins(bands))
        if norm.mean:
            x -= np.asarray(norm.mean, np.float32)[index][:, None, None]
        if norm.std:
            x /= np.asarray(norm.std, np.float32)[index][:, None, None]
        return x

    def stand_ins(self, bands: Sequence[BandInfo] | None) -> tuple[int, ...]:
        """The card band lending its constants to each of ``bands`` (all of them when None)."""
        from eoembed.bandmatch import stand_ins

        own = self.card.input.bands
        return tuple(range(len(own))) if bands is None else stand_ins(bands, own)

    def call_notes(self) -> list[dict[str, Any]]:
        """Per sample of this thread's last :meth:`embed`: metadata decided from its input.

        The statistics it was normalised with, ``"warnings"``; empty for models whose
        preprocessing is fixed.
        """
        return []

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Resize to the model's image size when it has one (bilinear, as rs-embed's resize)."""
        size = self.card.input.image_size
        if size is None or tuple(x.shape[-2:]) == (size, size):
            return x
        th = import_torch()
        flat = x.reshape(-1, *x.shape[-3:])  # frames (N, T, C, H, W) resize as N*T images
        resized: torch.Tensor = th.nn.functional.interpolate(
            flat, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
        return resized.reshape(*x.shape[:-2], size, size)

    @property
    def grid_patch_size(self) -> int:
        """Input pixels per grid cell side (the card's, unless an option changes it)."""
        return self.card.input.patch_size

    @property
    def input_prep(self) -> str:
        """``"resize"`` (whole region to the native size) or ``"tile"`` (native-size tiles)."""
        prep: str = getattr(self.options, "input_prep", "resize")
        return prep if self.card.input.image_size else "resize"

    def precision_scope(self, kind: str) -> contextlib.AbstractContextManager[Any]:
        """Context of the forward passes for ``kind`` output (:attr:`OutputSpec.kind`).

        A no-op here; neural adapters set their precision mode.
        """
        return contextlib.nullcontext()

    def resolve_precision(
        self, batch: torch.Tensor, context: Sequence[SampleContext], output: OutputSpec
    ) -> np.ndarray | None:
        """Called before each batch; ``None``, or the batch's embeddings if it ran them.

        Embedders that choose their precision by measuring (``"auto"``) do it on the first batch.
        """
        return None

    def run_batch(
        self, batch: torch.Tensor, context: Sequence[SampleContext], output: OutputSpec
    ) -> np.ndarray:
        """One normalised batch -> float32 ``(n, D)`` or ``(n, D, h, w)`` numpy."""
        if output.mode == "grid":
            return np.asarray(self._grid(batch, context).float().cpu().numpy())
        assert output.pooling is not None, "embed() resolves the pooling first"
        return self._pooled(batch, context, output.pooling)

    def run_batch_numpy(
        self, batch: np.ndarray, context: Sequence[SampleContext], output: OutputSpec
    ) -> np.ndarray:
        """:meth:`run_batch` without torch: the numpy grid, or a reduction of its cells."""
        grid = self.forward_grid_numpy(batch, context)
        if output.mode == "grid":
            return grid
        assert output.pooling is not None, "embed() resolves the pooling first"
        if output.pooling in ("native", "cls"):
            raise CapabilityError(f"model {self.card.id!r} has no {output.pooling!r} pooling "
                                  "without torch")
        return pool_grid(grid, output.pooling)

    def _grid(self, x: torch.Tensor, context: Sequence[SampleContext]) -> torch.Tensor:
        size = self.card.input.image_size
        if self.input_prep != "tile" or size is None:
            return self.forward_grid(self.prepare(x), context)
        grids = []
        for i in range(len(x)):
            ctx = list(context[i : i + 1])
            grids.append(stitch_tiles(
                x[i : i + 1], size, self.grid_patch_size,
                lambda t, ctx=ctx: self.forward_grid(t, ctx * len(t)),  # type: ignore[misc]
                self.batch_size,
            ))
        stitched: torch.Tensor = import_torch().cat(grids)
        return stitched

    def _global(
        self, x: torch.Tensor, context: Sequence[SampleContext],
        forward: Callable[[torch.Tensor, Sequence[SampleContext]], torch.Tensor],
    ) -> np.ndarray:
        """A per-image global embedding (class token, native); tiled: the mean over tiles."""
        size = self.card.input.image_size
        if self.input_prep != "tile" or size is None:
            return np.asarray(forward(self.prepare(x), context).float().cpu().numpy())
        # Tiled global embeddings: the model's own embedding of each native-size tile, pooled.
        out = []
        for i in range(len(x)):
            image = x[i : i + 1]
            pad_h, pad_w = max(0, size - image.shape[-2]), max(0, size - image.shape[-1])
            if pad_h or pad_w:
                # Padding modes take 4-d input: frames (1, T, C, H, W) fold into the batch.
                flat = image.reshape(-1, *image.shape[-3:])
                flat = import_torch().nn.functional.pad(flat, (0, pad_w, 0, pad_h), mode="replicate")
                image = flat.reshape(*image.shape[:-2], *flat.shape[-2:])
            tiles = [
                image[..., y : y + size, c : c + size]
                for y in tile_starts(image.shape[-2], size, 1)
                for c in tile_starts(image.shape[-1], size, 1)
            ]
            ctx = list(context[i : i + 1])
            emb = import_torch().cat([forward(t, ctx) for t in tiles])
            out.append(pool_grid(emb.float().cpu().numpy().T[None, :, :, None], "mean"))
        return np.concatenate(out)

    def _pooled(
        self, x: torch.Tensor, context: Sequence[SampleContext], pooling: str
    ) -> np.ndarray:
        if pooling == "native":
            return self._global(x, context, self.forward_pooled)
        if pooling == "cls":
            return self._global(x, context, self.forward_cls)
        return pool_grid(self._grid(x, context).float().cpu().numpy(), pooling)

    def embed(
        self,
        pixels: np.ndarray,
        output: OutputSpec,
        context: Sequence[SampleContext] | None = None,
        *,
        bands: Sequence[BandInfo] | None = None,
    ) -> np.ndarray:
        """``(N, C, H, W)`` provider pixels -> ``(N, D)`` pooled or ``(N, D, h, w)`` grids.

        Temporal models (``card.input.frames > 1``) also take ``(N, T, C, H, W)`` frames.
        ``context`` gives each sample's location, date(s) and GSD for models that take them.
        ``bands``: the channels' bands when they are not the card's, for models whose
        ``band_rule`` is ``"any"`` (they reach the model through each context's ``bands``).
        """
        torch = import_torch() if self.uses_torch else None
        bands = self._check_bands(bands)
        channels, frames = len(self.card.input.bands), self.card.input.frames
        if bands is not None:
            channels = len(bands)
        elif self._any_count and pixels.ndim >= 3:
            channels = pixels.shape[-3]  # any channel count, no wavelengths needed (MOSAIKS)
        if pixels.ndim == 5 and frames > 1:
            if pixels.shape[2] != channels or not 1 <= pixels.shape[1] <= frames:
                raise CapabilityError(
                    f"model {self.card.id!r} takes (N, T <= {frames}, {channels}, H, W) frames, "
                    f"got shape {pixels.shape}"
                )
        elif pixels.ndim != 4 or pixels.shape[1] != channels:
            takes = f"(N, {channels}, H, W) pixels" + (
                f" or (N, T <= {frames}, {channels}, H, W) frames" if frames > 1 else ""
            )
            raise CapabilityError(
                f"model {self.card.id!r} takes {takes}, got shape {pixels.shape}"
            )
        if output.mode not in self.card.outputs:
            raise CapabilityError(
                f"model {self.card.id!r} gives {', '.join(self.card.outputs)} output, "
                f"not {output.mode!r}"
            )
        output = self.card.resolve_output(output)
        contexts = list(context) if context is not None else []
        if contexts and len(contexts) != len(pixels):
            raise CapabilityError(f"{len(contexts)} contexts for {len(pixels)} samples")
        if bands is not None:  # the bands reach the adapter with each sample's context
            given = tuple(bands)
            contexts = [dataclasses.replace(c, bands=given) for c in contexts] or [
                dataclasses.replace(SampleContext.unknown(self.card.input.gsd_m), bands=given)
            ] * len(pixels)
        chunks = []
        with torch.inference_mode() if torch is not None else contextlib.nullcontext():
            for start in range(0, len(pixels), self.batch_size):
                stop = start + self.batch_size
                chunk = pixels[start:stop]
                normalised = self.normalise(chunk) if bands is None else self.normalise_as(chunk, bands)
                ctx = contexts[start:stop]
                if torch is None:
                    chunks.append(self.run_batch_numpy(normalised, ctx, output))
                    continue
                batch = torch.from_numpy(normalised).to(self.device)
                values = self.resolve_precision(batch, ctx, output)
                if values is None:
                    with self.precision_scope(output.kind):
                        values = self.run_batch(batch, ctx, output)
                chunks.append(values)
        return np.concatenate(chunks).astype(np.float32, copy=False)

    @property
    def _any_count(self) -> bool:
        """Whether any channel count works without knowing the bands (no wavelength input)."""
        contract = self.card.input
        return contract.band_rule == "any" and "wavelengths" not in contract.side_inputs

    def _check_bands(self, bands: Sequence[BandInfo] | None) -> tuple[BandInfo, ...] | None:
        """``bands`` when they are not the card's (None when they are, or not given)."""
        own = self.card.input.bands
        if bands is None or tuple(bands) == own:
            return None
        if self.card.input.band_rule != "any":
            raise CapabilityError(
                f"model {self.card.id!r} takes only its own bands ({', '.join(b.name for b in own)})"
                f", not {', '.join(b.name for b in bands)}"
            )
        if any(b.is_quality or b.is_radar for b in bands):
            raise CapabilityError(
                f"model {self.card.id!r} takes optical bands only, not "
                + ", ".join(b.name for b in bands if b.is_quality or b.is_radar)
            )
        return tuple(bands)

    @property
    def embedding_dim(self) -> int:
        """Length of each embedding with these options (the card's, unless options change it)."""
        return self.card.embedding_dim

    def metadata(self) -> dict[str, Any]:
        """What to record about this embedder next to every embedding."""
        return {
            "model": self.card.id,
            "family": self.card.family,
            "options": self.options.to_dict(),
            "device": self.device,
            "weights": self.weights_meta,
            "load_seconds": self.load_seconds,
        }
