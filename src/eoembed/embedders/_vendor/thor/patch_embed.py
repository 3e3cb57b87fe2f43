# ruff: noqa
# mypy: ignore-errors
"""Vendored from FM4CS/THOR v1.0.2 (thor/utils/patch_embed.py), via rs-embed.

Vendored into eoembed from rs-embed 0.3.1 (PyPI) _vendor/thor/utils/patch_embed.py.
Local changes (inference only): relative imports; einops.rearrange("(h w) -> h w") written as
reshape; dropped the training-time random patch-size sampler (random_partition_sizes_jit,
IndFlexiPatchEmbed.random_patch_sizes/min_patch_size_check), FlexiPatchEmbed,
FlexiPosResEmbed, pi_resize_patch_embed, interpolate_resize_patch_embed and the MAE decoders.
"""

# MiT License, from https://github.com/bwconrad/flexivit/blob/main/flexivit_pytorch/patch_embed.py

import logging
import math
from collections.abc import Iterable, Sequence
from itertools import repeat
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn, vmap

from .pos_embed import get_2d_sincos_pos_embed

logger = logging.getLogger(__name__)


def get_flexivit_grid_sizes(
    ground_covers: Sequence[int],
    channels: dict[str, dict[str, int]],
    patch_size_seqs: dict[str, Sequence[int]],
    flexivit_ref_patch_size: int = 32,
) -> tuple[int, list[int]]:
    gsd_sorted = [params["GSD"] for params in channels.values()]
    gsd_sorted = sorted(gsd_sorted)

    ref_grid_size = max(ground_covers) // flexivit_ref_patch_size // gsd_sorted[0]
    grid_sizes = []
    ground_cover_lookup = {}

    for ground_cover in ground_covers:
        if ground_cover not in ground_cover_lookup:
            ground_cover_lookup[ground_cover] = {}
        for product_band, patch_sizes in patch_size_seqs.items():
            product_band_gsd = channels[product_band]["GSD"]
            for patch_size in patch_sizes:
                grid_size = ground_cover // patch_size // product_band_gsd
                if grid_size * product_band_gsd * patch_size != ground_cover:
                    # Skip patch sizes that don't add up for the given ground cover
                    logger.debug(
                        f"Not a perfect grid size for {product_band} with GSD {product_band_gsd} and patch size {patch_size},"
                        f" got grid size {grid_size} which results in {grid_size * product_band_gsd * patch_size} instead of {ground_cover}"
                    )
                    continue
                if grid_size < 2 or grid_size > 32:
                    logger.debug(f"Grid size {grid_size} is not in the range of 2-32, skipping this grid size.")
                    continue
                if grid_size not in grid_sizes:
                    grid_sizes.append(grid_size)
                if grid_size not in ground_cover_lookup[ground_cover]:
                    ground_cover_lookup[ground_cover][grid_size] = []
                ground_cover_lookup[ground_cover][grid_size].append(
                    {
                        "product_band": product_band,
                        "patch_size": patch_size,
                        "gsd": product_band_gsd,
                    }
                )

    # Sort grid sizes
    grid_sizes = sorted(grid_sizes)
    return ref_grid_size, grid_sizes, ground_cover_lookup


def to_2tuple(x: Any) -> tuple:
    if isinstance(x, Iterable) and not isinstance(x, str):
        return tuple(x)
    return tuple(repeat(x, 2))


def resize_abs_pos_embed(
    pos_embed: torch.Tensor,
    new_size: int | tuple[int, int],
    old_size: int | tuple[int, int] | None = None,
    num_prefix_tokens: int = 1,
    interpolation: str = "bicubic",
    antialias: bool = True,
) -> torch.Tensor:
    """Resize absolute position embeddings to a target resolution via interpolation

    Modified from: https://github.com/huggingface/pytorch-image-models/blob/main/timm/layers/pos_embed.py

    Args:
        pos_embed: Position embeddings tensor of size [b, n, d]
        new_size: Target [height, width] of embedding
        old_size: Original [height, width] of embedding
        num_prefix_tokens: Number of non-spatial prefix tokens (eg. cls)
        interpolation: Resize interpolation type
        antialias: Whether to apply antialiasing resizing
    Returns:
        Resized pos_embed of size [b, n', d]
    """

    new_size = to_2tuple(new_size)
    new_ntok = new_size[0] * new_size[1]

    if not old_size:
        old_size = int(math.sqrt(pos_embed.shape[1] - num_prefix_tokens))  # type:ignore
    old_size = to_2tuple(old_size)

    # Return if no resize necessary
    if new_size == old_size:
        return pos_embed

    if num_prefix_tokens:
        posemb_prefix, pos_embed = (
            pos_embed[:, :num_prefix_tokens],
            pos_embed[:, num_prefix_tokens:],
        )
    else:
        posemb_prefix, pos_embed = None, pos_embed

    # Interpolate position embedding
    pos_embed = pos_embed.reshape(1, old_size[0], old_size[1], -1).permute(0, 3, 1, 2)
    pos_embed = F.interpolate(pos_embed, size=new_size, mode=interpolation, antialias=antialias)
    pos_embed = pos_embed.permute(0, 2, 3, 1).reshape(1, new_ntok, -1)

    # Add back extra prefix tokens
    if posemb_prefix is not None:
        pos_embed = torch.cat([posemb_prefix, pos_embed], dim=1)

    return pos_embed


class FlexiPosEmbed(nn.Module):
    def __init__(
        self,
        grid_size: int,
        pos_embed_dim: int = 768,
        grid_sizes: Sequence[int] | None = None,
        interpolation: str = "bicubic",
        antialias: bool = True,
    ) -> None:
        """2D resizable pos embedding, caching interpolated pos_embeds for different grid sizes

        Args:
            grid_size: Size of pos_embed buffer
            pos_embed_dim: positional embedding dimension size
            grid_sizes: List of grid sizes to cache interpolated pos_embeds for
            interpolation: Resize interpolation type
            antialias: Whether to apply antialiasing resizing
        """
        super().__init__()

        grid_size = to_2tuple(grid_size)

        self.grid_size = grid_size
        self.pos_embed_dim = pos_embed_dim
        logger.debug(f"flexible pos embed reference grid size: {grid_size}")
        self.ref_pos_embed = torch.from_numpy(
            get_2d_sincos_pos_embed(self.pos_embed_dim, grid_size[0], cls_token=False)
        ).float()

        self.ref_pos_embed = nn.Parameter(self.ref_pos_embed, requires_grad=False)

        # Flexi specific attributes
        self.interpolation = interpolation
        self.antialias = antialias

        self.grid_sizes = grid_sizes

        if self.grid_sizes is not None:
            self.pos_embeds = nn.ParameterDict(self._cache_pos_embeds()).requires_grad_(False)
        else:
            self.pos_embeds = {}

    def _cache_pos_embeds(self) -> dict[int, torch.Tensor]:
        pos_embeds = {}
        for grid_size in self.grid_sizes:
            grid_size = to_2tuple(grid_size)
            if grid_size == self.grid_size:
                continue
            pos_embeds[str(grid_size)] = resize_abs_pos_embed(
                self.ref_pos_embed[None, :, :],
                new_size=grid_size,
                old_size=self.grid_size,
                num_prefix_tokens=0,
                interpolation=self.interpolation,
                antialias=self.antialias,
            ).squeeze(0)
        return pos_embeds

    def forward(self, grid_size) -> torch.Tensor:
        grid_size = to_2tuple(grid_size)
        if self.grid_size == grid_size:
            return self.ref_pos_embed

        if str(grid_size) not in self.pos_embeds:
            logger.debug(f"interpolating new pos_embed for grid_size: {grid_size}, from {self.grid_size}")
            self.pos_embeds[str(grid_size)] = (
                resize_abs_pos_embed(
                    self.ref_pos_embed[None, :, :],
                    new_size=grid_size,
                    old_size=self.grid_size,
                    num_prefix_tokens=0,
                    interpolation=self.interpolation,
                    antialias=self.antialias,
                )
                .squeeze(0)
                .to(self.ref_pos_embed.device)
            )

        return self.pos_embeds[str(grid_size)]


class FlexiBase(nn.Module):
    def __init__(
        self,
        interpolation: str = "bicubic",
        antialias: bool = True,
    ) -> None:
        """Base class for flexible thor patch embedding modules and MAE decoders"""
        super().__init__()

        self.interpolation = interpolation
        self.antialias = antialias

    def _resize(self, x: Tensor, shape: tuple[int, int]) -> Tensor:
        x_resized = F.interpolate(
            x[None, None, ...],
            shape,
            mode=self.interpolation,
            antialias=self.antialias,
        )
        return x_resized[0, 0, ...]

    def _calculate_pinv(self, old_shape: tuple[int, int], new_shape: tuple[int, int]) -> Tensor:
        mat = []
        for i in range(np.prod(old_shape)):
            basis_vec = torch.zeros(old_shape)
            basis_vec[np.unravel_index(i, old_shape)] = 1.0
            mat.append(self._resize(basis_vec, new_shape).reshape(-1))
        resize_matrix = torch.stack(mat)
        return torch.linalg.pinv(resize_matrix)

    def resize_patch_embed(self, patch_embed: Tensor, patch_size: tuple[int, int], new_patch_size: tuple[int, int]):
        """Resize patch_embed to target resolution via pseudo-inverse resizing"""
        # Return original kernel if no resize is necessary
        if patch_size == new_patch_size:
            return patch_embed

        # Calculate pseudo-inverse of resize matrix
        if patch_size not in self.pinvs or new_patch_size not in self.pinvs[patch_size]:
            if patch_size not in self.pinvs:
                self.pinvs[patch_size] = {}
            self.pinvs[patch_size][new_patch_size] = self._calculate_pinv(patch_size, new_patch_size)
        pinv = self.pinvs[patch_size][new_patch_size]
        pinv = pinv.to(patch_embed.device)

        def resample_patch_embed(patch_embed: Tensor):
            h, w = new_patch_size
            resampled_kernel = pinv @ patch_embed.reshape(-1)
            return resampled_kernel.reshape(h, w)

        v_resample_patch_embed = vmap(vmap(resample_patch_embed, 0, 0), 1, 1)

        return v_resample_patch_embed(patch_embed)

    def get_pinv(self, patch_size: tuple[int, int], new_patch_size: tuple[int, int], device):
        # Return original kernel if no resize is necessary
        if patch_size == new_patch_size:
            return torch.eye(np.prod(patch_size)).to(device)

        # Calculate pseudo-inverse of resize matrix
        if patch_size not in self.pinvs or new_patch_size not in self.pinvs[patch_size]:
            logger.debug(f"getting and caching pinv for {patch_size} -> {new_patch_size}")
            if patch_size not in self.pinvs:
                self.pinvs[patch_size] = {}
            self.pinvs[patch_size][new_patch_size] = self._calculate_pinv(patch_size, new_patch_size)
        pinv = self.pinvs[patch_size][new_patch_size]
        pinv = pinv.to(device)
        return pinv


class IndFlexiPatchEmbed(FlexiBase):
    def __init__(
        self,
        ground_covers: list[int],
        channels: dict[str, dict[str, int]],
        groups: dict[str, list],
        channel_rename_map: dict[str, str] | None = None,
        min_patch_size: int = 6,
        embed_dim: int = 768,
        norm_layer: nn.Module | None = None,
        flatten: bool = True,
        bias: bool = True,
        patch_size_seqs: dict[str, Sequence[int]] | Sequence[int] = (8, 10, 12, 15, 16, 20, 24, 30, 40, 48),
        patch_size_probs: dict[str, Sequence[float]] | Sequence[float] | None = None,
        interpolation: str = "bicubic",
        antialias: bool = True,
    ) -> None:
        """2D image to patch embedding w/ flexible patch sizes, for multiple product bands
        Extended from: https://github.com/huggingface/pytorch-image-models/blob/main/timm/layers/patch_embed.py#L24

        Args:
            ground_cover: Ground cover size in meters
            channels: Dictionary of product bands and their parameters (GSD, num_patch)
            groups: Dictionary of channel groups and their members
            channel_rename_map: Dictionary of channel names to rename, to i.e., use same parameters for different bands
            min_patch_size: Minimum possible patch size to consider
            embed_dim: Network embedding dimension size
            norm_layer: Optional normalization layer
            flatten: Whether to flatten the spatial dimensions of the output
            bias: Whether to use bias in convolution
            patch_size_seqs: Dict of List of patch sizes for each band or list of patch sizes for all bands to
                randomly sample from, unvalidated patch sizes are dropped
            patch_size_probs: Optional Dict of list of probabilities for each band or list of probabilities for all
                bands to sample corresponding patch_size_seqs elements. If None, then uniform distribution is used
            interpolation: Resize interpolation type
            antialias: Whether to apply antialiasing resizing
        """
        super().__init__(
            interpolation=interpolation,
            antialias=antialias,
        )

        self.flatten = flatten
        self.channels = channels
        self.groups = groups
        self.channel_rename_map = channel_rename_map
        self.min_patch_size = min_patch_size
        self.embed_dim = embed_dim
        self.patch_sizes = {}
        proj_dict = {}
        for product_band, params in channels.items():
            kernel_size = params["patch_size"]
            self.patch_sizes[product_band] = to_2tuple(kernel_size)
            if channel_rename_map and product_band in channel_rename_map:
                product_band = channel_rename_map[product_band]
            if product_band in proj_dict:
                logger.debug(f"Product band {product_band} already added, skipping")
                continue
            proj_dict[product_band] = nn.Conv2d(1, embed_dim, kernel_size=kernel_size, stride=kernel_size, bias=bias)
        self.patch_embed = nn.ModuleDict(proj_dict)

        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

        if not isinstance(patch_size_seqs, dict):
            patch_size_seqs = dict.fromkeys(channels, patch_size_seqs)

        # filter valid patch size seqs
        missing_produc_bands = []
        for product_band in patch_size_seqs.keys():
            _patch_size_seq = []

            for patch_size in patch_size_seqs[product_band]:
                product_gsd = channels[product_band]["GSD"]
                for ground_cover in ground_covers:
                    product_num_patch = ground_cover // patch_size // product_gsd
                    if patch_size * product_num_patch * product_gsd != ground_cover:
                        # Skip patch sizes that don't add up for the given ground cover
                        continue
                    if patch_size not in _patch_size_seq:
                        _patch_size_seq.append(patch_size)

            if len(_patch_size_seq) == 0:
                msg = (
                    f"No valid patch sizes for {product_band} for ground cover {ground_covers} and GSD {product_gsd}"
                    f" with patch size seq {patch_size_seqs[product_band]}"
                )
                logger.debug(msg)
                missing_produc_bands.append(product_band)
                continue

            logger.debug(f"product_band: {product_band}, _patch_size_seq: {_patch_size_seq}")
            patch_size_seqs[product_band] = sorted(_patch_size_seq)
        logger.debug(f"Missing product bands due to no valid patch sizes: {missing_produc_bands}")

        self.patch_size_seqs = patch_size_seqs

        self.patch_size_probs = {}
        if self.patch_size_seqs:
            if not patch_size_probs:
                for product_band in self.patch_size_seqs.keys():
                    n = len(self.patch_size_seqs[product_band])
                    patch_size_probs = [1.0 / n] * n
                    self.patch_size_probs[product_band] = patch_size_probs
            elif isinstance(patch_size_probs, dict):
                self.patch_size_probs = {
                    product_band: [p / sum(patch_size_probs[product_band]) for p in patch_size_probs[product_band]]
                    for product_band in channels
                }
            else:
                patch_size_probs = [p / sum(patch_size_probs) for p in patch_size_probs]
                self.patch_size_probs = dict.fromkeys(channels, patch_size_probs)

        # Pre-calculate pinvs
        self.pinvs = self._cache_pinvs()

    def _cache_pinvs(self) -> dict[tuple[int, int], dict[tuple[int, int], Tensor]]:
        """Pre-calculate all pinv matrices"""
        pinvs = {}
        for product_band, patch_size in self.patch_sizes.items():
            if patch_size not in pinvs:
                pinvs[patch_size] = {}

            for ps in self.patch_size_seqs[product_band]:
                ps = to_2tuple(ps)
                if ps not in pinvs[patch_size] and ps != patch_size:
                    pinvs[patch_size][ps] = self._calculate_pinv(patch_size, ps)
        return pinvs

    def get_available_groups(self, original_input: dict[str, torch.Tensor]) -> dict[str, list[str]]:
        available_groups = {}
        for group_name, group_member in self.groups.items():
            for member in group_member:
                if member in original_input:
                    if group_name not in available_groups:
                        available_groups[group_name] = [member]
                    else:
                        available_groups[group_name].append(member)
        return available_groups

    def forward(
        self,
        x: dict[str, Tensor],
        patch_sizes: dict[str, tuple[int, int]] | None = None,
        token_budget: int | None = 1792,
        return_patch_size: bool = False,
        device: torch.device | None = None,
    ) -> Tensor | tuple[Tensor, tuple[int, int]]:
        if patch_sizes is None and not self.training:
            # During evaluation use base patch sizes if not specified
            patch_sizes = self.patch_sizes

        elif patch_sizes is None:
            # eoembed: the training-time random patch-size sampler is not vendored.
            raise NotImplementedError("random FlexiViT patch sizes (training) are not vendored")

        patch_embed_dict = {}
        patch_size_dict = {}
        for product_band, data in x.items():
            if product_band not in patch_sizes:
                logger.debug(f"Skipping product band: {product_band}\n")
                continue

            patch_size = patch_sizes[product_band]
            patch_size = to_2tuple(patch_size)

            patch_embed_name = self.channel_rename_map[product_band] if self.channel_rename_map else product_band

            # Resize conv weights
            if patch_size == self.patch_sizes[product_band]:
                weight = self.patch_embed[patch_embed_name].weight
            else:
                weight = self.resize_patch_embed(
                    self.patch_embed[patch_embed_name].weight, self.patch_sizes[product_band], patch_size
                )

            # Apply conv with resized weights
            data = F.conv2d(data, weight, bias=self.patch_embed[patch_embed_name].bias, stride=patch_size)

            if self.flatten:
                data = data.flatten(2).transpose(1, 2)  # BCHW -> BNC

            data = self.norm(data)
            patch_embed_dict[product_band] = data

            if return_patch_size:
                patch_size_dict[product_band] = patch_size

        if return_patch_size:
            return patch_embed_dict, patch_size_dict
        return patch_embed_dict


