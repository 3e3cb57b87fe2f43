"""Google Earth Engine: composites computed server-side, pixels fetched on eoembed's grid.

A fetch makes two requests: ``value:compute`` lists the images that pass the filters (their
ids and times for the result's metadata; none means :class:`NoDataError` without asking for
pixels), and ``image:computePixels`` returns the composite on exactly the request
:class:`~eoembed.grid.Grid` (CRS, affine transform, size) as a NumPy array, so the pixels
land where every other provider puts them. Filtering, per-pixel cloud masking, compositing
and resampling all run on Earth Engine; requests larger than its size limit are split into
tiles.

Earth Engine's Python client keeps one session per process (credentials, Cloud project), so
eoembed initialises it once, lazily, on the first fetch, from the standard mechanisms
(``earthengine authenticate``, a service-account key in ``GOOGLE_APPLICATION_CREDENTIALS``,
application default credentials), or uses the session the caller already initialised.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from eoembed.bands import SENTINEL2_BANDS, SENTINEL2_MASK_BANDS, BandInfo, quality_band
from eoembed.errors import (
    CapabilityError,
    DependencyNotFoundError,
    NoDataError,
    ProviderError,
    ProviderUnavailableError,
    SpecError,
)
from eoembed.providers._stac_bands import KNOWN_STAC_COLLECTIONS
from eoembed.providers.alphaearth import ALPHAEARTH_BANDS, ALPHAEARTH_COLLECTION
from eoembed.providers.base import CollectionInfo, check_served, request_grid
from eoembed.providers.masks import (
    CLOUD_PROB_THRESHOLD,
    QA_PIXEL_BITS,
    SCL_MASKED,
    resolve_mask,
)
from eoembed.providers.products import check_product_sensor, product_collection, product_year
from eoembed.providers.radiometry import Radiometry, harmonised_collection, radiometry_record
from eoembed.providers.scenes import to_dataarray
from eoembed.redact import redact
from eoembed.retrying import RETRY_STATUSES, RetryPolicy
from eoembed.specs import TemporalSpec

if TYPE_CHECKING:
    import xarray as xr

    from eoembed.grid import Grid
    from eoembed.specs import SensorSpec, SpatialSpec

__all__ = [
    "EARTH_ENGINE_COLLECTIONS",
    "HIGH_VOLUME_URL",
    "MAX_REQUEST_BYTES",
    "MAX_REQUEST_SIDE",
    "EarthEngineCollection",
    "EarthEngineProvider",
]

T = TypeVar("T")

HIGH_VOLUME_URL = "https://earthengine-highvolume.googleapis.com"
"""Earth Engine's endpoint for many concurrent automated requests (no result caching)."""

MAX_REQUEST_BYTES = 48 * 2**20
"""Largest ``computePixels`` answer Earth Engine gives: 50331648 bytes."""
MAX_REQUEST_SIDE = 32768
"""Largest width or height of one ``computePixels`` request, in pixels."""

_MASKED = -3.0e38
"""What masked pixels are unmasked to on Earth Engine: NPY arrays carry no mask, and a
finite float32 far below any reflectance or backscatter stands in for NaN (JSON has none)."""
_MASKED_BELOW = -1.0e38
_COUNT_BAND = "eoembed_clear_count"
"""Extra band of each pixel request: the clear observations per pixel."""
_CLEAR_COUNT_ATTRS = {
    "long_name": "number of clear observations",
    "description": "Earth Engine images whose pixel has every band and passes the "
    "cloud/shadow mask",
}

_AUTH_HINT = (
    "run `earthengine authenticate` (or ee.Authenticate() in Python) once on this machine, "
    "or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file; then pass the "
    "Google Cloud project registered for Earth Engine: provider='earthengine:<project>' or "
    "EarthEngineProvider(project=...)"
)
_RETRY_MESSAGES = (
    "too many concurrent aggregations",
    "too many requests",
    "rate limit exceeded",
    "ratelimitexceeded",
)
"""Quota answers worth waiting out, whatever HTTP status they come with."""

# Cloud masks as Earth Engine expressions, dropping what eoembed.providers.masks drops.
_QA_PIXEL_BAD = sum(
    1 << QA_PIXEL_BITS[n] for n in ("fill", "dilated_cloud", "cirrus", "cloud", "cloud_shadow")
)
_QA60_BAD = (1 << 10) | (1 << 11)
"""Sentinel-2 QA60: bit 10 opaque clouds, bit 11 cirrus."""


def _clear_qa60(image: Any) -> Any:
    # QA60 is masked (not computed) for some periods (2022-01-25 to 2024-02-28): unknown
    # there, so clear; masking it would drop every pixel of those images.
    return image.select("QA60").bitwiseAnd(_QA60_BAD).eq(0).unmask(1)


def _clear_scl(image: Any) -> Any:
    return image.select("SCL").remap(list(SCL_MASKED), [0] * len(SCL_MASKED), 1)


def _clear_qa_pixel(image: Any) -> Any:
    return image.select("QA_PIXEL").bitwiseAnd(_QA_PIXEL_BAD).eq(0)


def _clear_cloud_prob(image: Any) -> Any:
    return image.select("MSK_CLDPRB").lt(CLOUD_PROB_THRESHOLD)


_MASKS: dict[str, Callable[[Any], Any]] = {
    "qa60": _clear_qa60,
    "scl": _clear_scl,
    "qa_pixel": _clear_qa_pixel,
    "cloud_prob": _clear_cloud_prob,
}
"""Mask name (``SensorSpec.mask``; ``qa60`` only here) -> image -> 1 where clear."""

_RESAMPLE_MODES = {"bilinear": "bilinear", "cubic": "bicubic"}
"""eoembed resampling -> ``Image.resample`` mode; the others use Earth Engine's default
(nearest neighbour, with mean pyramids when coarsening), which is what ``auto`` asks for."""


@dataclass(frozen=True)
class EarthEngineCollection:
    """How one eoembed collection is computed on Earth Engine."""

    info: CollectionInfo
    """What eoembed serves: collection id, bands (eoembed names), processing level."""
    ee_ids: tuple[str, ...]
    """Earth Engine image collections, merged in this order."""
    band_ids: Mapping[str, str] = field(hash=False)
    """eoembed band name -> Earth Engine band name."""
    cloud_property: str | None = None
    """Scene cloud cover property (percent) that ``SensorSpec.cloudy_pct`` filters on."""
    auto_mask: str | None = None
    """The mask ``mask="auto"`` uses where eoembed's own rule has none (Sentinel-2 L1C:
    ``QA60``, which only Earth Engine serves as a raster)."""
    polarisations: bool = False
    """Whether images hold only some bands (Sentinel-1): keep images holding every band."""


def _ee_s2_name(band: str) -> str:
    """Earth Engine's spelling of a Sentinel-2 band (``B04`` -> ``B4``; ``B8A`` stays)."""
    digits = band[1:]
    return f"B{int(digits)}" if digits.isdigit() else band


def _with_bands(info: CollectionInfo, *extra: BandInfo) -> CollectionInfo:
    """``info`` plus the quality bands Earth Engine serves that eoembed's STAC table lacks."""
    have = set(info.band_names)
    return CollectionInfo(
        info.id, (*info.bands, *(b for b in extra if b.name not in have)),
        info.processing_level, nodata=None, description=info.description, unit=info.unit,
    )


def _s2_collection(
    collection: str, ee_id: str, extra: tuple[BandInfo, ...], auto_mask: str | None = None
) -> EarthEngineCollection:
    info = _with_bands(KNOWN_STAC_COLLECTIONS[collection].info, *extra)
    names = {b: _ee_s2_name(b) for b in info.band_names if b in SENTINEL2_BANDS}
    names.update({"CLDPRB": "MSK_CLDPRB"})
    band_ids = {b: names.get(b, b) for b in info.band_names}
    return EarthEngineCollection(
        info, (ee_id,), band_ids, cloud_property="CLOUDY_PIXEL_PERCENTAGE", auto_mask=auto_mask
    )


_QA60 = quality_band("QA60", 60.0)
_LANDSAT_EE_BANDS = {
    "coastal": "SR_B1", "blue": "SR_B2", "green": "SR_B3", "red": "SR_B4",
    "nir08": "SR_B5", "swir16": "SR_B6", "swir22": "SR_B7", "lwir11": "ST_B10",
    "qa_pixel": "QA_PIXEL",
}
_C_BAND_UM = 55_465.8  # 5.405 GHz

EARTH_ENGINE_COLLECTIONS: dict[str, EarthEngineCollection] = {
    c.info.id: c
    for c in (
        _s2_collection("sentinel-2-l1c", "COPERNICUS/S2_HARMONIZED", (_QA60,), "qa60"),
        _s2_collection(
            "sentinel-2-l2a", "COPERNICUS/S2_SR_HARMONIZED",
            (_QA60, SENTINEL2_MASK_BANDS["CLDPRB"]),
        ),
        EarthEngineCollection(
            # Not converted here yet: Earth Engine's Landsat DN are served as stored.
            dataclasses.replace(_with_bands(KNOWN_STAC_COLLECTIONS["landsat-c2-l2"].info),
                                unit=""),
            ("LANDSAT/LC09/C02/T1_L2", "LANDSAT/LC08/C02/T1_L2"),
            _LANDSAT_EE_BANDS, cloud_property="CLOUD_COVER",
        ),
        EarthEngineCollection(
            CollectionInfo(
                "sentinel-1-grd",
                tuple(BandInfo(p, p, _C_BAND_UM, 10.0) for p in ("vv", "vh", "hh", "hv")),
                "GRD", nodata=None,
                description="Sentinel-1 GRD backscatter sigma0 in dB as Earth Engine serves "
                "it (COPERNICUS/S1_GRD: calibrated, noise-removed, orthorectified; not "
                "radiometrically terrain-flattened)",
            ),
            ("COPERNICUS/S1_GRD",),
            {p: p.upper() for p in ("vv", "vh", "hh", "hv")},
            polarisations=True,
        ),
        EarthEngineCollection(
            # AlphaEarth's annual embeddings as Earth Engine serves them: already floats
            # (the COGs' int8 dequantised), one image per UTM zone and year.
            product_collection(
                ALPHAEARTH_COLLECTION, ALPHAEARTH_BANDS,
                "AlphaEarth Foundations Satellite Embedding V1, annual, 10 m (Earth Engine "
                "GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL)",
            ),
            ("GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL",),
            {b.name: b.name for b in ALPHAEARTH_BANDS},
        ),
    )
}
"""Collections served from Earth Engine, by eoembed collection id.

Sentinel-2 comes from the harmonized collections (``COPERNICUS/S2_HARMONIZED``,
``COPERNICUS/S2_SR_HARMONIZED``: processing baselines >= 04.00 shifted back to the older
radiometry), which is the unit eoembed serves Sentinel-2 in from every provider
(:data:`~eoembed.providers.radiometry.HARMONISED_DN`), so nothing is applied here; Landsat 8
and 9 Collection 2 Level-2 are merged; values are Earth Engine's, unscaled (reflectance x 10000
for Sentinel-2, digital numbers for Landsat, dB for Sentinel-1).
"""


class _Session:
    """The process's Earth Engine session as eoembed knows it: initialised once, shared."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.project: str | None = None
        """The project eoembed initialised Earth Engine with (None: not by eoembed)."""

    def reset(self) -> None:
        """Forget what eoembed initialised (after ``ee.Reset()``)."""
        with self.lock:
            self.project = None


_SESSION = _Session()


def _import_ee() -> Any:
    try:
        import ee
    except ImportError:
        raise DependencyNotFoundError("earthengine-api", "ee") from None
    return ee


def _service_account_key(path: str | None) -> bool:
    """Whether ``path`` is a JSON service-account key (ee needs its scopes set explicitly)."""
    if not path or not os.path.isfile(path) or path.endswith(".pem"):
        return False
    try:
        with open(path, encoding="utf-8") as f:
            return bool(json.load(f).get("type") == "service_account")
    except (OSError, ValueError, AttributeError):
        return False


def _error_chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _http_status(err: BaseException) -> int | None:
    """The HTTP status behind an ee error.

    ``ee.data`` raises ``EEException`` with the message only, from inside the handler of
    googleapiclient's ``HttpError``, which keeps the response (and so the status).
    """
    for current in _error_chain(err):
        status = getattr(getattr(current, "resp", None), "status", None)
        if status is not None:
            try:
                return int(status)
            except (TypeError, ValueError):
                return None
    return None


def _message(err: BaseException) -> str:
    text = redact(" ".join(str(err).split()))
    return (text or type(err).__name__)[:500]


def _transport_error(err: BaseException) -> bool:
    """Whether ``err`` is a connection-level failure (worth retrying)."""
    if isinstance(err, ConnectionError | TimeoutError):
        return True
    names = {type(e).__name__ for e in _error_chain(err)}
    # httplib2's and google-auth's transport errors, without importing either here.
    return bool(names & {"HttpLib2Error", "ServerNotFoundError", "TransportError"})


def _auth_error(err: BaseException) -> bool:
    names = {type(e).__name__ for e in _error_chain(err)}
    text = str(err)
    return bool(names & {"RefreshError", "DefaultCredentialsError"}) or (
        "earthengine authenticate" in text
    )


def _tiles(grid: Grid, bands: int, max_bytes: int, max_side: int) -> list[tuple[int, int, Grid]]:
    """``(row, col, sub-grid)`` pieces of ``grid``, each within Earth Engine's request limits.

    Pieces are as equal as possible; their pixel edges are the grid's own, so the tiles put
    together are exactly the grid.
    """
    from eoembed.grid import Grid

    pixel_bytes = 4 * bands  # float32 per band
    if pixel_bytes > max_bytes:
        raise ProviderError(
            f"one pixel of {bands} float32 bands ({pixel_bytes} bytes) exceeds the request "
            f"size limit of {max_bytes} bytes"
        )
    nx = math.ceil(grid.width / max_side)
    ny = math.ceil(grid.height / max_side)
    while True:
        tw, th = math.ceil(grid.width / nx), math.ceil(grid.height / ny)
        if tw * th * pixel_bytes <= max_bytes:
            break
        if tw >= th:
            nx += 1
        else:
            ny += 1
    out = []
    for row in range(0, grid.height, th):
        for col in range(0, grid.width, tw):
            out.append((row, col, Grid(
                grid.crs,
                grid.left + col * grid.resolution,
                grid.top - row * grid.resolution,
                grid.resolution,
                min(tw, grid.width - col),
                min(th, grid.height - row),
            )))
    return out


def _pixel_grid(grid: Grid) -> dict[str, Any]:
    """The request grid as Earth Engine's ``PixelGrid``: the same CRS, transform and size."""
    crs: dict[str, str] = (
        {"crsCode": grid.crs} if re.fullmatch(r"[A-Za-z]+:\d+", grid.crs) else {"crsWkt": grid.crs}
    )
    return {
        "dimensions": {"width": grid.width, "height": grid.height},
        "affineTransform": {
            "scaleX": grid.resolution,
            "shearX": 0,
            "translateX": grid.left,
            "shearY": 0,
            "scaleY": -grid.resolution,
            "translateY": grid.top,
        },
        **crs,
    }


def _planes(array: Any, ee_bands: list[str], grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """A structured ``(y, x)`` answer as float32 ``(band, y, x)`` and uint16 ``(y, x)`` counts.

    Fields are the bands and the count; pixels unmasked to :data:`_MASKED` become NaN.
    """
    names = getattr(getattr(array, "dtype", None), "names", None) or ()
    expected = [*ee_bands, _COUNT_BAND]
    if any(b not in names for b in expected) or getattr(array, "shape", None) != grid.shape:
        raise ProviderError(
            f"Earth Engine answered an array of shape {getattr(array, 'shape', None)} with "
            f"fields {list(names)}; expected {grid.shape} with fields {expected}"
        )
    out = np.empty((len(ee_bands), *grid.shape), np.float32)
    for i, band in enumerate(ee_bands):
        out[i] = array[band]
    out[out <= _MASKED_BELOW] = np.nan
    count = np.clip(np.nan_to_num(array[_COUNT_BAND].astype(np.float64)), 0, 65535)
    return out, count.astype(np.uint16)


def _scene_time(millis: Any) -> dict[str, str | None]:
    """STAC-style time fields of an acquisition (as :meth:`Scene.time_dict` gives them)."""
    day = dt.datetime.fromtimestamp(float(millis) / 1000.0, dt.UTC).date()
    return {
        "datetime": day.isoformat(),
        "start_datetime": day.isoformat(),
        "end_datetime": (day + dt.timedelta(days=1)).isoformat(),
    }


class EarthEngineProvider:
    """Provider over Google Earth Engine: server-side filtering and compositing.

    Example (after ``earthengine authenticate``)::

        provider = EarthEngineProvider(project="my-ee-project")
        patch = provider.fetch(
            PointBuffer(lon=6.6, lat=46.5, buffer_m=1280),
            TemporalSpec.range("2023-06", "2023-09"),
            SensorSpec("sentinel-2-l2a", ("B02", "B03", "B04", "B08")),
        )

    Images are filtered by region (``filterBounds``), window (``filterDate``: half-open like
    eoembed's) and scene cloud cover (``<= sensor.cloudy_pct``), masked per pixel (Sentinel-2
    L1C ``QA60``, L2A ``SCL``, Landsat ``QA_PIXEL``, as :mod:`eoembed.providers.masks`
    describes; ``sensor.mask`` picks another or ``"none"``), then reduced by ``median()``, or
    ``mosaic()`` with the least cloudy image on top. As from every provider, the patch's
    ``clear_count`` coordinate counts each pixel's clear observations, and pixels without one
    hold ``sensor.fill_value``.

    Args:
        project: Google Cloud project registered for Earth Engine; None takes the one saved
            by ``earthengine set_project``, the credentials' quota project, or a service
            account's own project.
        credentials: google-auth credentials; None uses a service-account key named by
            ``GOOGLE_APPLICATION_CREDENTIALS``, else those of ``earthengine authenticate``,
            else application default credentials.
        url: Earth Engine API root; :data:`HIGH_VOLUME_URL` suits large exports.
        max_concurrent: requests this provider has in flight at once. Earth Engine allows a
            project about 40 concurrent interactive requests; the default leaves room for
            other work on the same project.
        retries: retries of a request after HTTP 429/5xx, "Too many concurrent
            aggregations" or a connection failure, on top of the Earth Engine client's own
            per-request retries (``ee.data.setMaxRetries``, 5 by default); HTTP 400 and other
            refusals are not retried.
        backoff: base delay in seconds between retries; it doubles each time, with jitter,
            and the request's concurrency slot is free while waiting.
        max_request_bytes: largest answer asked for in one request; larger grids are fetched
            as tiles (Earth Engine refuses answers over 48 MiB).
        http_transport: an ``httplib2.Http``-like object for the client's requests (proxies,
            tests); None uses the client's default.
        name: the provider's name in results (``attrs["provider"]``).

    Earth Engine's client holds one session per process: the first fetch initialises it
    with this provider's settings, or uses the session the caller initialised with
    ``ee.Initialize``; a provider for another project in the same process is refused.
    """

    def __init__(
        self,
        project: str | None = None,
        *,
        credentials: Any = None,
        url: str | None = None,
        max_concurrent: int = 8,
        retries: int = 3,
        backoff: float = 2.0,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        http_transport: Any = None,
        name: str = "earthengine",
    ) -> None:
        if project is not None and (not isinstance(project, str) or not project.strip()):
            raise SpecError(
                "EarthEngineProvider.project", project,
                allowed="a Google Cloud project id registered for Earth Engine",
            )
        if max_concurrent < 1 or retries < 0 or backoff < 0:
            raise SpecError(
                "EarthEngineProvider",
                {"max_concurrent": max_concurrent, "retries": retries, "backoff": backoff},
                allowed="max_concurrent >= 1, retries >= 0, backoff >= 0",
            )
        if not 0 < max_request_bytes <= MAX_REQUEST_BYTES:
            raise SpecError(
                "EarthEngineProvider.max_request_bytes", max_request_bytes,
                allowed=f"1..{MAX_REQUEST_BYTES} (Earth Engine's limit)",
            )
        self.project = project.strip() if project else None
        self.name = name
        self._credentials = credentials
        self._url = url
        self._max_concurrent = max_concurrent
        self._retries = retries
        self._backoff = backoff
        self._policy = RetryPolicy(retries, backoff, max_wait_s=60.0)
        self._max_request_bytes = max_request_bytes
        self._http_transport = http_transport
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._collections = {cid: c.info for cid, c in EARTH_ENGINE_COLLECTIONS.items()}

    @classmethod
    def from_project(cls, project: str | None = None) -> EarthEngineProvider:
        """Provider ``"earthengine"`` or ``"earthengine:<project>"``."""
        return cls(project or None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(project={self.project!r})"

    # ------------------------------------------------------------------ contract

    def collections(self) -> Mapping[str, CollectionInfo]:
        """The collections served, by eoembed id; known without contacting Earth Engine."""
        return self._collections

    def check(self, sensor: SensorSpec) -> CollectionInfo:
        """The collection info for ``sensor``; CapabilityError before any I/O if unservable."""
        return self._table(sensor).info

    def cache_identity(self) -> dict[str, Any]:
        """What this provider serves, for :class:`~eoembed.providers.cache.CachedProvider`.

        The project and endpoint do not change the pixels, so they are left out.
        """
        return {
            "earthengine": {cid: list(c.ee_ids) for cid, c in EARTH_ENGINE_COLLECTIONS.items()}
        }

    def _table(self, sensor: SensorSpec) -> EarthEngineCollection:
        """The Earth Engine table for ``sensor``, with bands and mask checked (no I/O)."""
        check_served(self.name, self._collections, sensor)
        table = EARTH_ENGINE_COLLECTIONS[sensor.collection]
        self._mask(table, sensor)
        return table

    def _mask(self, table: EarthEngineCollection, sensor: SensorSpec) -> str | None:
        """The mask ``sensor.mask`` means here (a :data:`_MASKS` name), or None.

        Raises:
            CapabilityError: a named mask whose band the collection does not serve.
        """
        if sensor.mask == "auto" and table.auto_mask:
            return table.auto_mask
        try:
            chosen = resolve_mask(sensor.collection, sensor.mask, table.info.band_names)
        except CapabilityError as err:
            raise CapabilityError(f"provider {self.name!r}: {err}") from None
        return chosen.name if chosen is not None else None

    def fetch(
        self,
        spatial: SpatialSpec,
        temporal: TemporalSpec,
        sensor: SensorSpec,
        *,
        grid: Grid | None = None,
    ) -> xr.DataArray:
        """Pixels ``(band, y, x)`` on ``grid``, composited on Earth Engine.

        Raises:
            CapabilityError: the collection, a band or the mask is not served (before I/O).
            NoDataError: no image passes the filters, or none has a clear pixel in the grid.
            ProviderError: Earth Engine refused the request, or credentials/project are
                missing (the message says what to run).
            ProviderUnavailableError: Earth Engine kept failing or could not be reached.
        """
        import xarray as xr

        t0 = time.perf_counter()
        table = self._table(sensor)
        if table.info.processing_level == "embedding":
            # One annual image per zone, dated 1 January: the window selects its calendar
            # year (a window inside 2020 finds the 2020 layer), and zones meet, not blend.
            check_product_sensor(sensor)
            year = product_year(temporal, sensor.collection, (1, 9999))
            assert year is not None
            temporal = TemporalSpec.year(year)
            sensor = dataclasses.replace(sensor, composite="mosaic", resampling="auto")
        mask = self._mask(table, sensor)
        grid = grid or request_grid(spatial, sensor)
        ee_bands = [table.band_ids[b] for b in sensor.bands]
        self._ensure_session()
        collection = self._collection(table, spatial, temporal, sensor)
        ids, times = self._scenes(collection, table, spatial, temporal, sensor)
        image = self._composite(collection, sensor, ee_bands, mask)
        data, count = self._pixels(image, ee_bands, grid)
        valid = (count > 0) & ~np.isnan(data).any(axis=0)
        if not valid.any():
            cause = "valid pixel" if mask is None else f"clear pixel (mask {mask!r})"
            raise NoDataError(
                f"the {len(ids)} Earth Engine image(s) found hold no {cause} inside the region"
            )
        if not valid.all():
            # Embedding products keep NaN, as their own providers give them: a filled
            # vector would pass for a real embedding.
            if table.info.processing_level != "embedding":
                data[:, ~valid] = sensor.fill_value
            count[~valid] = 0
        attrs = {
            "provider": self.name,
            "collection": sensor.collection,
            "processing_level": table.info.processing_level,
            "scene_ids": ids,
            "scene_times": [_scene_time(t) for t in times],
            "mask": mask or "none",
            "masked_scene_ids": list(ids) if mask else [],
            "valid_fraction": float(valid.mean()),
            "fetch_seconds": time.perf_counter() - t0,
            "earthengine_collections": list(table.ee_ids),
            "unit": table.info.unit,
            "radiometry": [
                entry for i in ids
                for entry in radiometry_record(i, self._radiometry(table), sensor.bands)
            ],
        }
        da = to_dataarray(data, sensor.bands, grid, attrs, copy=False)
        da.coords["clear_count"] = xr.Variable(("y", "x"), count, dict(_CLEAR_COUNT_ATTRS))
        return da

    @staticmethod
    def _radiometry(table: EarthEngineCollection) -> dict[str, Radiometry]:
        """What eoembed applies to this collection's images: nothing, and why."""
        if not harmonised_collection(table.info):
            return {}
        rule = Radiometry(
            reason=f"Earth Engine {' + '.join(table.ee_ids)}: harmonised server-side "
            "(baseline >= 04.00 shifted back by 1000 DN)"
        )
        return {b.name: rule for b in table.info.bands if not b.is_quality}

    # ------------------------------------------------------------------ session

    def _ensure_session(self) -> None:
        """Initialise Earth Engine once per process (thread-safe), or reuse its session."""
        ee = _import_ee()
        with _SESSION.lock:
            if ee.data.is_initialized():
                owner = _SESSION.project
                if self.project and owner and owner != self.project:
                    raise ProviderError(
                        f"Earth Engine is already initialised for project {owner!r} in this "
                        f"process, and its client holds one project per process; use "
                        f"project {owner!r} here too, or another process for "
                        f"{self.project!r}"
                    )
                return
            credentials = self._credentials
            key = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
            try:
                if credentials is None:
                    # ee's own fallback (application default credentials) would load a
                    # service-account key without Earth Engine's scopes.
                    credentials = (
                        ee.ServiceAccountCredentials(None, key_file=key)
                        if _service_account_key(key) else "persistent"
                    )
                ee.Initialize(
                    credentials=credentials,
                    url=self._url,
                    project=self.project,
                    http_transport=self._http_transport,
                )
            except Exception as err:
                # ee marks itself initialised before loading its API; a failure after that
                # would leave a session that looks ready but is not.
                ee.Reset()
                raise self._init_error(err, key) from err
            _SESSION.project = self.project

    def _init_error(self, err: Exception, key: str | None) -> ProviderError:
        detail = _message(err)
        status = _http_status(err)
        if _auth_error(err) or status == 401:
            where = f" (GOOGLE_APPLICATION_CREDENTIALS={key!r})" if key else ""
            return ProviderError(
                f"Earth Engine credentials are missing or invalid{where}: {_AUTH_HINT}. "
                f"Earth Engine said: {detail}"
            )
        if "no project found" in detail:
            return ProviderError(
                "Earth Engine needs a Google Cloud project: use "
                "provider='earthengine:<project>' or EarthEngineProvider(project=...), or run "
                "`earthengine set_project <project>` once; the project must be registered "
                "for Earth Engine (https://code.earthengine.google.com/register)"
            )
        if status == 403 or "permission" in detail.lower() or "not registered" in detail:
            return ProviderError(
                f"Earth Engine refused project {self.project!r}: {detail}. Check that the "
                "project is registered for Earth Engine and has the Earth Engine API enabled, "
                "and that your account may use it"
            )
        if _transport_error(err) or (status is not None and status in RETRY_STATUSES):
            return ProviderUnavailableError(
                f"Earth Engine could not be reached or is failing: {detail}"
            )
        return ProviderError(f"initialising Earth Engine failed: {detail}")

    # ------------------------------------------------------------------ expressions

    def _collection(
        self,
        table: EarthEngineCollection,
        spatial: SpatialSpec,
        temporal: TemporalSpec,
        sensor: SensorSpec,
    ) -> Any:
        """The filtered image collection, in composite order (mosaic: top image last)."""
        from shapely.geometry import mapping

        ee = _import_ee()
        # The footprint comes densified from reprojection (straight UTM edges curve in
        # lon/lat); vertices within 1e-7 degrees (1 cm) of a straight line add only bytes.
        footprint = spatial.lonlat_geometry().simplify(1e-7)
        region = ee.Geometry(mapping(footprint), None, False)
        collection = ee.ImageCollection(table.ee_ids[0])
        for ee_id in table.ee_ids[1:]:
            collection = collection.merge(ee.ImageCollection(ee_id))
        # filterDate's end is exclusive: the window [start, end) exactly.
        collection = collection.filterBounds(region).filterDate(temporal.start, temporal.end)
        if table.cloud_property:
            collection = collection.filter(
                ee.Filter.lte(table.cloud_property, sensor.cloudy_pct)
            )
        if table.polarisations:
            for band in sensor.bands:
                collection = collection.filter(
                    ee.Filter.listContains(
                        "transmitterReceiverPolarisation", table.band_ids[band]
                    )
                )
        collection = collection.sort("system:time_start")
        if sensor.composite == "mosaic" and table.cloud_property:
            # mosaic() draws the last image on top: most cloudy first, least cloudy last.
            collection = collection.sort(table.cloud_property, False)
        return collection

    def _composite(
        self, collection: Any, sensor: SensorSpec, ee_bands: list[str], mask: str | None
    ) -> Any:
        """The composite of ``ee_bands`` (float32) and its clear-observation count (uint16).

        As in :class:`~eoembed.providers.scenes.SceneProvider`, an observation is an image's
        pixel with every band present and clear under the mask; the others are masked before
        compositing. Pixels without one are unmasked to :data:`_MASKED` (NPY has no mask).
        """
        ee = _import_ee()
        clear = _MASKS[mask] if mask else None
        mode = _RESAMPLE_MODES.get(sensor.resampling)

        def prepare(image: Any) -> Any:
            if clear is not None:
                image = image.updateMask(clear(image))
            image = image.select(ee_bands)
            image = image.updateMask(image.mask().reduce(ee.Reducer.min()))  # whole only
            return image.resample(mode) if mode else image

        prepared = collection.map(prepare)
        composite = prepared.mosaic() if sensor.composite == "mosaic" else prepared.median()
        count = prepared.select([ee_bands[0]]).count().rename([_COUNT_BAND])
        return (
            composite.select(ee_bands).unmask(_MASKED, False).toFloat()
            .addBands(count.unmask(0, False).toUint16())
        )

    # ------------------------------------------------------------------ requests

    def _scenes(
        self,
        collection: Any,
        table: EarthEngineCollection,
        spatial: SpatialSpec,
        temporal: TemporalSpec,
        sensor: SensorSpec,
    ) -> tuple[list[str], list[Any]]:
        """Ids and start times of the images used, top image first for ``mosaic``."""
        ee = _import_ee()
        listing = ee.Dictionary({
            "ids": collection.aggregate_array("system:id"),
            "times": collection.aggregate_array("system:time_start"),
        })
        found = self._call("image search", listing.getInfo)
        ids = [str(i) for i in (found or {}).get("ids") or []]
        times = list((found or {}).get("times") or [])
        if len(times) != len(ids):
            raise ProviderError(
                f"Earth Engine listed {len(ids)} image ids but {len(times)} times"
            )
        if not ids:
            cloud = (
                f" with {table.cloud_property} <= {sensor.cloudy_pct:g}"
                if table.cloud_property else ""
            )
            raise NoDataError(
                f"Earth Engine has no {' + '.join(table.ee_ids)} image over the region "
                f"(lon/lat bounds "
                f"{tuple(round(v, 5) for v in spatial.lonlat_geometry().bounds)}) in "
                f"{temporal}{cloud}"
            )
        if sensor.composite == "mosaic":
            ids.reverse()
            times.reverse()
        return ids, times

    def _pixels(
        self, image: Any, ee_bands: list[str], grid: Grid
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pixels (float32, NaN gaps) and clear counts of ``image`` on ``grid``.

        Grids over Earth Engine's request size are fetched as tiles, concurrently.
        """
        # Counted as one more float32 band: the limit applies to the answer's size.
        tiles = _tiles(grid, len(ee_bands) + 1, self._max_request_bytes, MAX_REQUEST_SIDE)
        if len(tiles) == 1:
            return self._compute_pixels(image, ee_bands, grid)
        out = np.empty((len(ee_bands), *grid.shape), np.float32)
        count = np.empty(grid.shape, np.uint16)

        def fetch_tile(tile: tuple[int, int, Grid]) -> None:
            row, col, sub = tile
            window = np.s_[row:row + sub.height, col:col + sub.width]
            out[(slice(None), *window)], count[window] = self._compute_pixels(
                image, ee_bands, sub
            )

        pool = self._tile_pool()
        for future in [pool.submit(fetch_tile, t) for t in tiles]:
            future.result()
        return out, count

    def _compute_pixels(
        self, image: Any, ee_bands: list[str], grid: Grid
    ) -> tuple[np.ndarray, np.ndarray]:
        ee = _import_ee()
        request = {
            "expression": image,
            "fileFormat": "NUMPY_NDARRAY",
            "grid": _pixel_grid(grid),
            "bandIds": [*ee_bands, _COUNT_BAND],
        }
        array = self._call("pixel request", lambda: ee.data.computePixels(request))
        return _planes(array, ee_bands, grid)

    def _tile_pool(self) -> ThreadPoolExecutor:
        """Threads for the tiles of large requests, started once per provider."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self._max_concurrent, thread_name_prefix=f"eoembed-{self.name}"
                )
            return self._pool

    def _call(self, what: str, request: Callable[[], T]) -> T:
        """``request()`` within the concurrency limit, under eoembed's retry policy.

        The concurrency slot is held only while a request is in flight, not while waiting
        to retry; what is retried is decided by :meth:`_transient`.
        """

        def attempt() -> T:
            with self._slots:
                return request()

        try:
            return self._policy.call(attempt, retry_if=self._transient).value
        except Exception as err:
            raise self._classify(what, err) from err

    @staticmethod
    def _transient(err: BaseException) -> bool:
        """Worth retrying: HTTP 408/425/429/5xx, a quota answer, a connection failure."""
        status = _http_status(err)
        return (
            status in RETRY_STATUSES
            or any(m in _message(err).lower() for m in _RETRY_MESSAGES)  # whatever the status
            or (status is None and _transport_error(err))
        )

    def _classify(self, what: str, err: BaseException) -> ProviderError:
        """The eoembed error to raise for ``err`` once it is not (or no longer) retried."""
        status = _http_status(err)
        detail = _message(err)
        at = f" (HTTP {status})" if status is not None else ""
        if self._transient(err):
            return ProviderUnavailableError(
                f"Earth Engine {what} kept failing{at} after {self._retries} retries: {detail}"
            )
        if _auth_error(err) or status in (401, 403):
            return ProviderError(
                f"Earth Engine refused the {what}{at}: {detail}. If credentials or the "
                f"project are the problem: {_AUTH_HINT}"
            )
        if status is None:
            return ProviderError(f"Earth Engine {what} failed: {detail}")
        return ProviderError(f"Earth Engine refused the {what}{at}: {detail}")
