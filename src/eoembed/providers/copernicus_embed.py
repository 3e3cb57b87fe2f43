"""Copernicus-Embed-025deg: one global map of 768-d Copernicus-FM embeddings on a 0.25 grid.

Published with the Copernicus-FM paper (Wang et al. 2025) as ``embed_map_310k.npz`` and
redistributed as a GeoTIFF by TorchGeo (Hugging Face dataset ``torchgeo/copernicus_embed``,
``embed_map_310k.tif``: 1440 x 721 pixels, 768 float32 bands, EPSG:4326, pixel centres on
the 0.25 degree lattice from 180 W, 90 N), which is the file read here: downloaded once
through ``huggingface_hub`` at a pinned revision and checked against its published md5, then
read locally. Cells the pretraining data did not cover (the oceans) hold all-zero vectors;
they are no data here. The map aggregates every Copernicus-Pretrain acquisition: it is
static, and a request's window selects nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from eoembed.bands import embedding_bands
from eoembed.errors import (
    ChecksumError,
    DependencyNotFoundError,
    ProviderUnavailableError,
)
from eoembed.providers.products import ProductProvider, ProductTile, product_collection

if TYPE_CHECKING:
    from eoembed.grid import Grid
    from eoembed.providers.base import CollectionInfo
    from eoembed.specs import SpatialSpec, TemporalSpec

__all__ = [
    "COPERNICUS_EMBED_BANDS",
    "COPERNICUS_EMBED_COLLECTION",
    "CopernicusEmbedProvider",
    "HUB_FILE",
]

HUB_REPO = "torchgeo/copernicus_embed"
HUB_REVISION = "435b4a7bdce6f6fdbf4272f9d6e54f2604f35fdb"
HUB_FILE = "embed_map_310k.tif"
HUB_MD5 = "63de14ab9f5eeffb785066f3013a40b4"
"""The md5 TorchGeo pins for this file (the only checksum published for it)."""
COPERNICUS_EMBED_COLLECTION = "copernicus-embed-025deg"
COPERNICUS_EMBED_BANDS = embedding_bands("E", 768, 1000.0, width=3)
"""768 dimensions, read at 1 km (see :class:`CopernicusEmbedProvider`)."""


def _file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verified_md5(path: Path) -> str:
    """``path``'s md5, computed once per file version (768 MB take seconds to hash).

    Remembered in the product cache by resolved path, size and modification time.
    """
    import json

    from eoembed.providers.downloads import products_cache_dir

    real = path.resolve()
    stat = real.stat()
    key = f"{real}|{stat.st_size}|{stat.st_mtime_ns}"
    record = products_cache_dir() / "copernicus-embed" / "md5.json"
    known: dict[str, str] = {}
    with contextlib.suppress(OSError, ValueError):
        known = json.loads(record.read_text())
    if key not in known:
        known[key] = _file_md5(real)
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp = record.with_name(f".md5.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(known))
        tmp.replace(record)
    return known[key]


class CopernicusEmbedProvider(ProductProvider):
    """The Copernicus-Embed map from the Hub (default) or a local copy.

    Requests are read at 1 km by default: nearest sampling of the 0.25 degree cells then
    weighs each cell under a region by the area it covers when pooled.

    Args:
        path: a local copy of ``embed_map_310k.tif`` (or any file in its layout); default:
            the pinned Hub file, downloaded once into the Hugging Face cache.
        md5: the checksum a Hub download must have (default: TorchGeo's pin).
    """

    name = "copernicus-embed"
    years = None

    def __init__(self, path: str | Path | None = None, *, md5: str = HUB_MD5) -> None:
        self.path = Path(path) if path else None
        self.md5 = md5
        self._checked: Path | None = None
        self._lock = threading.Lock()
        self._collections = {
            COPERNICUS_EMBED_COLLECTION: product_collection(
                COPERNICUS_EMBED_COLLECTION, COPERNICUS_EMBED_BANDS,
                "Copernicus-Embed-025deg: 768-d Copernicus-FM embeddings, 0.25 degree, static",
            )
        }

    @classmethod
    def from_path(cls, path: str | None = None) -> CopernicusEmbedProvider:
        """Provider ``"copernicus-embed"`` or ``"copernicus-embed:/path/embed_map_310k.tif"``."""
        return cls(path or None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path or HUB_REPO)!r})"

    @property
    def cache_identity(self) -> str:
        """What a patch cache in front of this provider keys on: the file's source."""
        return f"copernicus-embed:{self.path or f'{HUB_REPO}@{HUB_REVISION}'}"

    def collections(self) -> Mapping[str, CollectionInfo]:
        """The one collection served."""
        return self._collections

    def file(self) -> Path:
        """The map's local path: the given one, or the Hub file (downloaded, md5-checked once)."""
        if self.path is not None:
            return self.path
        with self._lock:
            if self._checked is None:
                path = self._hub_file()
                digest = _verified_md5(path)
                if digest != self.md5:
                    raise ChecksumError(
                        f"{HUB_REPO}/{HUB_FILE}@{HUB_REVISION[:12]} at {path} has md5 {digest}, "
                        f"not the published {self.md5}: delete it and download again"
                    )
                self._checked = path
            return self._checked

    @staticmethod
    def _hub_file() -> Path:
        from eoembed.embedders.weights import offline

        try:
            from huggingface_hub import hf_hub_download
            from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
        except ImportError:
            raise DependencyNotFoundError("huggingface_hub", "products") from None
        try:
            return Path(hf_hub_download(HUB_REPO, HUB_FILE, revision=HUB_REVISION,
                                        repo_type="dataset", local_files_only=offline()))
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
            raise ProviderUnavailableError(
                f"Copernicus-Embed ({HUB_REPO}/{HUB_FILE}, 768 MB) is not cached and could not "
                f"be downloaded: {type(exc).__name__}: {exc}"
            ) from None

    def tiles(
        self, spatial: SpatialSpec, year: int | None, *, collection: str = "",
        temporal: TemporalSpec | None = None,
    ) -> Sequence[ProductTile]:
        """The one global map."""
        return [ProductTile(id=HUB_FILE.rsplit(".", 1)[0], year=None, source=self.file())]

    def read_tile(self, tile: ProductTile, grid: Grid, dims: Sequence[int]) -> np.ndarray:
        """The map's cells under ``grid`` (nearest), NaN where a cell's vector is all zeros."""
        from eoembed.providers._raster import read_bands_onto_grid

        values = read_bands_onto_grid(str(tile.source), grid)
        empty = ~np.any(values != 0, axis=0) | np.isnan(values).any(axis=0)
        out = values[list(dims)]
        out[:, empty] = np.nan
        return out
