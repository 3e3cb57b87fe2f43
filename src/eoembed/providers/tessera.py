"""TESSERA annual embeddings through the maintained ``geotessera`` client.

geotessera owns the product's layout: its Parquet registry (which 0.1 degree tiles exist per
year, with sha256 hashes), tile naming (``grid_{lon:.2f}_{lat:.2f}``), downloads with hash
checks into its embeddings folder, and the landmask GeoTIFF that gives each tile's UTM CRS
and transform. eoembed asks it for those files and does only what it lacks: it reads just
the window of a tile under a region (memory-mapped; a whole tile dequantised is ~0.5 GB),
dequantises that window with geotessera's ``dequantize_embedding`` (int8 x float32 scale),
marks water (landmask 0) and pixels whose scale is not in (0, 1) as no data, as
geotessera's Zarr builder does (0.7.5 itself masks nothing), and resamples onto
the request grid (nearest; TESSERA's tile grids are anchored at each tile's projected
corner, so no common grid aligns with them all).

The registry files are downloaded once into eoembed's product cache (revalidated weekly)
and handed to geotessera as a local folder, and tiles stay in that cache: a second request
for the same place makes no request at all. Another server (a mirror, a test server) is
given as ``tessera:URL``; geotessera reads its server from a module constant, which is set
for the duration of each call under a lock and restored after.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eoembed.bands import embedding_bands
from eoembed.errors import ChecksumError, DependencyNotFoundError, ProviderUnavailableError
from eoembed.providers.products import ProductProvider, ProductTile, product_collection

if TYPE_CHECKING:
    from eoembed.grid import Grid
    from eoembed.providers.base import CollectionInfo
    from eoembed.specs import SpatialSpec, TemporalSpec

__all__ = ["TESSERA_BANDS", "TESSERA_COLLECTION", "TESSERA_URL", "TesseraProvider"]

TESSERA_URL = "https://dl2.geotessera.org"
"""geotessera's default server (``geotessera.registry.TESSERA_BASE_URL``)."""
TESSERA_COLLECTION = "tessera-annual"
TESSERA_BANDS = embedding_bands("T", 128, 10.0, width=3)
MAX_VALID_SCALE = 1.0
"""Scales at or above this (published files carry huge finite sentinels), like those not
finite or not positive, mark pixels without data; so does landmask 0 (water). As
geotessera's own Zarr builder decides validity (real scales lie near 0.06-0.14)."""
_SERVER_LOCK = threading.RLock()
"""Held while geotessera's module-level server URL is pointed elsewhere."""


def _geotessera() -> Any:
    try:
        import geotessera
    except ImportError:
        raise DependencyNotFoundError("geotessera", "tessera") from None
    return geotessera


@contextlib.contextmanager
def _server(base_url: str) -> Iterator[None]:
    """Geotessera's downloads go to ``base_url`` inside the block (restored after).

    Every caller holds the lock, whatever its server: a thread reading from the default
    server must not start while another has pointed the module elsewhere. Files already
    downloaded return at once, so only downloads wait for each other.
    """
    registry = _geotessera().registry
    with _SERVER_LOCK:
        previous = registry.TESSERA_BASE_URL
        registry.TESSERA_BASE_URL = base_url
        try:
            yield
        finally:
            registry.TESSERA_BASE_URL = previous


class TesseraProvider(ProductProvider):
    """TESSERA tiles from geotessera's server (or ``base_url``), cached on disk.

    Args:
        base_url: the server root holding ``{version}/registry.parquet`` and the tile folders.
        version: the dataset version (geotessera's ``dataset_version``).
        cache_dir: where registry and tiles are kept (default: eoembed's product cache).
    """

    name = "tessera"
    years = (2017, 2024)

    def __init__(
        self, base_url: str | None = None, *, version: str = "v1",
        cache_dir: str | Path | None = None,
    ) -> None:
        from eoembed.providers.downloads import products_cache_dir

        self.base_url = (base_url or TESSERA_URL).rstrip("/")
        self.version = version
        key = hashlib.sha256(f"{self.base_url}/{version}".encode()).hexdigest()[:16]
        self._cache = Path(cache_dir) if cache_dir else products_cache_dir() / "tessera" / key
        self._client: Any = None
        self._lock = threading.Lock()
        self._in_use: dict[Path, int] = {}
        """Tile files being read, by how many threads: never evicted meanwhile."""
        self._collections = {
            TESSERA_COLLECTION: product_collection(
                TESSERA_COLLECTION, TESSERA_BANDS, "TESSERA annual embeddings, 128-d, 10 m"
            )
        }

    @classmethod
    def from_url(cls, url: str | None = None) -> TesseraProvider:
        """Provider ``"tessera"`` or ``"tessera:BASE_URL"``."""
        return cls(url or None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r}, version={self.version!r})"

    @property
    def cache_identity(self) -> str:
        """What a patch cache in front of this provider keys on: the server and version."""
        return f"tessera:{self.base_url}/{self.version}"

    def collections(self) -> Mapping[str, CollectionInfo]:
        """The one collection served."""
        return self._collections

    def client(self) -> Any:
        """Geotessera's ``GeoTessera`` on the cached registry (built once per provider)."""
        from eoembed.providers.downloads import cached_download

        with self._lock:
            if self._client is None:
                registry = self._cache / "registry"
                root = f"{self.base_url}/{self.version}"
                for name in ("registry.parquet", "landmasks.parquet"):
                    cached_download(f"{root}/{name}", registry / name)
                with _server(self.base_url):
                    self._client = _geotessera().GeoTessera(
                        dataset_version=self.version, embeddings_dir=self._cache / "tiles",
                        registry_dir=registry, cache_dir=registry,
                    )
            return self._client

    def tiles(
        self, spatial: SpatialSpec, year: int | None, *, collection: str = "",
        temporal: TemporalSpec | None = None,
    ) -> Sequence[ProductTile]:
        """The registry's tiles of ``year`` whose 0.1 degree box meets the region."""
        import shapely

        region = spatial.lonlat_geometry()
        found = self.client().registry.iter_tiles_in_region(region.bounds, year)
        return [
            ProductTile(id=f"grid_{lon:.2f}_{lat:.2f}_{year}", year=year, source=(lon, lat))
            for _, lon, lat in found
            if shapely.box(lon - 0.05, lat - 0.05, lon + 0.05, lat + 0.05).intersects(region)
        ]

    def read_tile(self, tile: ProductTile, grid: Grid, dims: Sequence[int]) -> np.ndarray:
        """The tile's window under ``grid``, dequantised, onto ``grid`` by nearest neighbour."""
        from eoembed.providers.downloads import products_cache_bytes, trim_cache

        files, downloaded = self._files(tile)
        try:
            return self._window(files, grid, dims)
        finally:
            with self._lock:
                for path in files:
                    self._in_use[path] -= 1
                    if not self._in_use[path]:
                        del self._in_use[path]
                if downloaded:  # a tile came in: keep the folder under its limit
                    trim_cache(self._cache / "tiles", products_cache_bytes(),
                               protect=list(self._in_use))

    def _files(self, tile: ProductTile) -> tuple[tuple[Path, Path, Path], bool]:
        """The tile's codes, scales and landmask, downloaded if missing, marked in use."""
        from eoembed.embedders.weights import offline

        lon, lat = tile.source
        registry = self.client().registry
        known = _geotessera().registry
        cached = (self._cache / "tiles" / known.EMBEDDINGS_DIR_NAME
                  / known.tile_to_embedding_paths(lon, lat, tile.year)[0]).is_file()
        if not cached and offline():
            raise ProviderUnavailableError(
                f"TESSERA tile {tile.id} is not cached in {self._cache / 'tiles'} and "
                "downloads are off (EOEMBED_OFFLINE / HF_HUB_OFFLINE is set)"
            )
        try:
            with _server(self.base_url):
                paths = (
                    Path(registry.fetch(year=tile.year, lon=lon, lat=lat, progressbar=False)),
                    Path(registry.fetch(year=tile.year, lon=lon, lat=lat, is_scales=True,
                                        progressbar=False)),
                    Path(registry.fetch_landmask(lon=lon, lat=lat, progressbar=False)),
                )
                with self._lock:
                    for path in paths:  # recently used: evicted last; in use: not at all
                        with contextlib.suppress(OSError):
                            os.utime(path)
                        self._in_use[path] = self._in_use.get(path, 0) + 1
        except ValueError as exc:  # geotessera's wording of a hash mismatch
            raise ChecksumError(f"TESSERA tile {tile.id}: {exc}") from None
        return paths, not cached

    def _window(
        self, files: tuple[Path, Path, Path], grid: Grid, dims: Sequence[int]
    ) -> np.ndarray:
        """The files' window under ``grid``, dequantised and resampled onto it."""
        import rasterio
        from rasterio.warp import Resampling, reproject, transform_bounds
        from rasterio.windows import Window, from_bounds

        codes_path, scales_path, landmask = files
        with rasterio.open(landmask) as src:
            crs, transform = src.crs, src.transform
        codes = np.load(codes_path, mmap_mode="r")
        scales = np.load(scales_path, mmap_mode="r")
        height, width = codes.shape[:2]
        out = np.full((len(dims), *grid.shape), np.nan, np.float32)
        bounds = transform_bounds(grid.crs, crs, *grid.bounds, densify_pts=21)
        window = from_bounds(*bounds, transform=transform)  # fractional: widened by a pixel
        row0 = max(int(np.floor(window.row_off)) - 1, 0)
        col0 = max(int(np.floor(window.col_off)) - 1, 0)
        row1 = min(int(np.ceil(window.row_off + window.height)) + 1, height)
        col1 = min(int(np.ceil(window.col_off + window.width)) + 1, width)
        if row0 >= row1 or col0 >= col1:
            return out
        dequantise = _geotessera().core.dequantize_embedding
        window = Window(col0, row0, col1 - col0, row1 - row0)
        values = dequantise(np.asarray(codes[row0:row1, col0:col1]),
                            np.asarray(scales[row0:row1, col0:col1]))[..., list(dims)]
        scale = np.asarray(scales[row0:row1, col0:col1], np.float32)
        with rasterio.open(landmask) as src:
            land = src.read(1, window=window) != 0
        valid = land & ((np.isfinite(scale) & (scale > 0) & (scale < MAX_VALID_SCALE))
                        .reshape(*scale.shape[:2], -1).all(axis=-1))
        values = np.moveaxis(values, -1, 0).astype(np.float32)
        values[:, ~valid] = np.nan
        reproject(
            values, out, src_transform=rasterio.windows.transform(window, transform),
            src_crs=crs, src_nodata=np.nan, dst_transform=grid.transform, dst_crs=grid.crs,
            dst_nodata=np.nan, resampling=Resampling.nearest,
        )
        del codes, scales  # the memory maps, before any file may be evicted
        return out
