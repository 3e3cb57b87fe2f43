"""AlphaEarth Foundations annual embeddings from their public COG mirror (Source Cooperative).

The mirror (``https://data.source.coop/tge-labs/aef/v1/annual``) holds Google's Satellite
Embedding V1 as Cloud-Optimised GeoTIFFs: ``{year}/{zone}/{image}-{yoff}-{xoff}.tiff``, each
8192 x 8192 pixels of 10 m in its UTM zone, 64 int8 bands ``A00``..``A63``, -128 for no data,
stored *bottom-up* (positive pixel height; the mirror's README). ``aef_index.parquet``
(GeoParquet) lists every file with its year, CRS and lon/lat footprint; its ``path`` column
holds ``s3://`` URLs of the mirror's bucket, read here over HTTPS from ``base_url``.

Only the index is downloaded whole (cached, revalidated weekly); the tiles are read by HTTP
range requests for the blocks under each region, through the same reader (handle reuse,
retries of broken-off reads) as STAC assets, and come out north-up whatever their stored
orientation because GDAL's warper follows the geotransform. Values are dequantised as the
product documents: ``sign(x) * (x / 127.5) ** 2``.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eoembed.bands import embedding_bands
from eoembed.errors import CorruptFileError, ProductFileNotFoundError
from eoembed.providers.products import ProductProvider, ProductTile, product_collection

if TYPE_CHECKING:
    from eoembed.grid import Grid
    from eoembed.providers.base import CollectionInfo
    from eoembed.providers.cache import CachedProvider
    from eoembed.specs import SpatialSpec, TemporalSpec

__all__ = [
    "ALPHAEARTH_BANDS",
    "ALPHAEARTH_COLLECTION",
    "AlphaEarthProvider",
    "MIRROR_URL",
    "dequantise_alphaearth",
]

MIRROR_URL = "https://data.source.coop/tge-labs/aef/v1/annual"
"""The Source Cooperative mirror of the product's COGs (2018 onwards: 2017 is withheld)."""
INDEX_FILE = "aef_index.parquet"
ALPHAEARTH_COLLECTION = "alphaearth-annual"
"""eoembed's id of the product as a collection (Earth Engine: ``GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL``)."""
ALPHAEARTH_BANDS = embedding_bands("A", 64, 10.0)
NODATA = -128
_MARKER = "/v1/annual/"


def dequantise_alphaearth(codes: np.ndarray) -> np.ndarray:
    """int8 codes -> embedding values: ``sign(x) * (x / 127.5) ** 2`` (NaN stays NaN)."""
    x = np.asarray(codes, dtype=np.float32)
    out: np.ndarray = np.sign(x) * np.square(x / np.float32(127.5))
    return out


class AlphaEarthProvider(ProductProvider):
    """The AlphaEarth COG mirror, or any copy of it in the same layout.

    Args:
        base_url: the folder holding ``aef_index.parquet`` and the ``{year}/`` folders
            (default: the Source Cooperative mirror); a local folder works too.
        cache_dir: where the index is kept (default: eoembed's product cache).
    """

    name = "alphaearth"
    years = (2018, 2024)

    def __init__(self, base_url: str | None = None, cache_dir: str | Path | None = None) -> None:
        from eoembed.providers.downloads import products_cache_dir

        self.base_url = (base_url or MIRROR_URL).rstrip("/")
        key = hashlib.sha256(self.base_url.encode()).hexdigest()[:16]
        self._cache = Path(cache_dir) if cache_dir else products_cache_dir() / "alphaearth" / key
        self._index: Any = None
        self._lock = threading.Lock()
        self._collections = {
            ALPHAEARTH_COLLECTION: product_collection(
                ALPHAEARTH_COLLECTION, ALPHAEARTH_BANDS,
                "AlphaEarth Foundations Satellite Embedding V1, annual, 10 m (COG mirror)",
            )
        }

    @classmethod
    def from_url(cls, url: str | None = None) -> CachedProvider:
        """Provider ``"alphaearth"`` or ``"alphaearth:BASE_URL"``, behind the patch cache.

        A region read once is read from disk afterwards (no request at all); the index is
        downloaded once. Build :class:`AlphaEarthProvider` directly for no patch cache.
        """
        from eoembed.providers.cache import CachedProvider

        return CachedProvider(cls(url or None))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"

    @property
    def cache_identity(self) -> str:
        """What a patch cache in front of this provider keys on: the mirror."""
        return f"alphaearth:{self.base_url}"

    def collections(self) -> Mapping[str, CollectionInfo]:
        """The one collection served."""
        return self._collections

    def index(self) -> Any:
        """The mirror's index as a GeoDataFrame (downloaded once, then cached)."""
        import geopandas as gpd

        with self._lock:
            if self._index is None:
                path = self._index_path()
                if not path.is_file():
                    raise ProductFileNotFoundError(
                        f"no AlphaEarth index at {path}: base_url must be the folder holding "
                        f"{INDEX_FILE} and the year folders (the mirror's v1/annual)"
                    )
                try:
                    frame = gpd.read_parquet(path)
                except Exception as exc:  # noqa: BLE001 (any parse failure: a damaged file)
                    ours = path.is_relative_to(self._cache)
                    if ours:  # a download of ours: fetched again next time
                        path.unlink(missing_ok=True)
                    raise CorruptFileError(
                        f"the AlphaEarth index {path} could not be read ({exc})"
                        + ("; it was removed and is downloaded again on the next call"
                           if ours else "")
                    ) from None
                frame["year"] = frame["year"].astype(int)
                self._index = frame
            return self._index

    def _index_path(self) -> Path:
        if "://" not in self.base_url:
            return Path(self.base_url) / INDEX_FILE
        from eoembed.providers.downloads import cached_download

        return cached_download(f"{self.base_url}/{INDEX_FILE}", self._cache / INDEX_FILE)

    def tiles(
        self, spatial: SpatialSpec, year: int | None, *, collection: str = "",
        temporal: TemporalSpec | None = None,
    ) -> Sequence[ProductTile]:
        """The files of ``year`` whose footprint meets the region."""
        frame = self.index()
        region = spatial.lonlat_geometry()
        rows = frame[(frame["year"] == year) & frame.intersects(region)]
        return [
            ProductTile(id=Path(str(path)).stem, year=year, source=self.href(str(path)))
            for path in rows["path"]
        ]

    def href(self, path: str) -> str:
        """An index ``path`` (``s3://`` bucket URL, https URL or relative) -> where to read it."""
        if _MARKER in path:
            return f"{self.base_url}/{path.split(_MARKER, 1)[1]}"
        if "://" in path or path.startswith("/"):
            return path
        return f"{self.base_url}/{path}"

    def read_tile(self, tile: ProductTile, grid: Grid, dims: Sequence[int]) -> np.ndarray:
        """The file's bands ``dims`` on ``grid``, dequantised, NaN where -128 or outside."""
        from eoembed.providers._raster import read_bands_onto_grid

        codes = read_bands_onto_grid(str(tile.source), grid, nodata=NODATA)
        if codes.shape[0] != len(ALPHAEARTH_BANDS):
            raise CorruptFileError(
                f"AlphaEarth file {tile.source} has {codes.shape[0]} bands, not 64"
            )
        return dequantise_alphaearth(codes[list(dims)])
