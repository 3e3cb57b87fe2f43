"""Scenes from any STAC API (earth-search, Planetary Computer, ...), read as COG windows.

The search goes through pystac-client; each item is translated once into a
:class:`~eoembed.providers.base.Scene` (band names in eoembed's vocabulary, see
:mod:`eoembed.providers._stac_bands`), and the pixels are read and composited by
:class:`~eoembed.providers.scenes.SceneProvider`, so they land on exactly the grid the local
provider uses. GDAL reads only the COG blocks under the region, over HTTP range requests.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from eoembed.errors import (
    DependencyNotFoundError,
    NoDataError,
    ProviderError,
    ProviderUnavailableError,
    SpecError,
    close_names,
    did_you_mean,
)
from eoembed.providers._stac_bands import (
    EARTH_SEARCH_COLLECTIONS,
    KNOWN_STAC_COLLECTIONS,
    PLANETARY_COMPUTER_COLLECTIONS,
    USGS_COLLECTIONS,
    StacCollection,
)
from eoembed.providers.base import CollectionInfo, Scene
from eoembed.providers.radiometry import scene_radiometry
from eoembed.providers.scenes import SceneProvider
from eoembed.redact import RedactingFilter, redact
from eoembed.retrying import RETRY_STATUSES, RetryPolicy, http_status, is_transient

if TYPE_CHECKING:
    import xarray as xr

    from eoembed.grid import Grid
    from eoembed.specs import SensorSpec, SpatialSpec, TemporalSpec

__all__ = [
    "EARTH_SEARCH_URL",
    "PLANETARY_COMPUTER_URL",
    "USGS_LANDSATLOOK_URL",
    "PlanetaryComputerSigner",
    "StacProvider",
    "earth_search",
    "planetary_computer",
    "usgs_landsat",
    "scene_from_item",
    "stac_datetime",
]

EARTH_SEARCH_URL = "https://earth-search.aws.element84.com/v1"
PLANETARY_COMPUTER_URL = "https://planetarycomputer.microsoft.com/api/stac/v1"
USGS_LANDSATLOOK_URL = "https://landsatlook.usgs.gov/stac-server"

Signer = Callable[[str], str]
"""Turns an asset href into one that can be read (e.g. ``planetary_computer.sign``)."""

T = TypeVar("T")

_AUTH_FAILURES = ("HTTP response code: 401", "HTTP response code: 403")
_EXPIRY_MARGIN = dt.timedelta(minutes=1)
"""A signature this close to expiry is renewed before reading: reads take a while."""


def stac_datetime(temporal: TemporalSpec) -> str:
    """The STAC ``datetime`` search interval for a half-open day interval ``[start, end)``.

    STAC intervals include both ends, so the last instant searched is the microsecond before
    ``end`` (``2021-01-01/2022-01-01`` searches ``2021-01-01T00:00:00Z/2021-12-31T23:59:59.999999Z``).
    """
    last = dt.datetime.combine(temporal.end_date, dt.time(), dt.UTC) - dt.timedelta(
        microseconds=1
    )
    return f"{temporal.start}T00:00:00Z/{last.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"


def _utc(value: str) -> dt.datetime:
    """An RFC 3339 timestamp as an aware UTC datetime (naive ones are taken as UTC)."""
    stamp = dt.datetime.fromisoformat(value)
    return stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp.astimezone(dt.UTC)


def _day(value: str) -> dt.date:
    return _utc(value).date()


def scene_from_item(item: Any, collection: StacCollection) -> Scene:
    """Translate a ``pystac.Item`` once; nothing past the provider sees pystac.

    An item with only ``start_datetime``/``end_datetime`` (acquisition day unknown) keeps that
    range; STAC's ``end_datetime`` is inclusive, the scene's ``end`` is the day after it.
    Sentinel-2 and Landsat items get the per-band conversion to their collection's unit that
    their metadata calls for (:func:`~eoembed.providers.radiometry.scene_radiometry`).
    """
    from shapely.geometry import shape

    props = item.properties
    if item.datetime is not None:
        start = item.datetime.astimezone(dt.UTC).date()
        end = start + dt.timedelta(days=1)
    elif props.get("start_datetime") and props.get("end_datetime"):
        start = _day(props["start_datetime"])
        end = _day(props["end_datetime"]) + dt.timedelta(days=1)
    else:
        raise ProviderError(f"STAC item {item.id!r} has neither datetime nor a datetime range")
    if item.geometry is None:
        raise ProviderError(f"STAC item {item.id!r} has no geometry")
    assets = collection.band_assets(item.assets)
    return Scene(
        id=item.id,
        collection=collection.info.id,
        start=start,
        end=end,
        footprint_wkt=shape(item.geometry).wkt,
        assets={b: a.get_absolute_href() or a.href for b, a in assets.items()},
        cloud_cover=props.get("eo:cloud_cover"),
        radiometry=scene_radiometry(
            collection.info, props, {b: a.extra_fields for b, a in assets.items()}
        ),
    )


def _signature_expired(href: str) -> bool:
    """Whether an Azure SAS ``se=`` expiry in ``href`` has passed (or is about to)."""
    values = parse_qs(urlsplit(href).query).get("se")
    if not values:
        return False
    try:
        expiry = _utc(values[0])
    except ValueError:
        return False
    return expiry <= dt.datetime.now(dt.UTC) + _EXPIRY_MARGIN


def _error_text(err: BaseException) -> str:
    """Messages of an error and its causes: GDAL's HTTP status is often in a cause."""
    parts, seen = [], set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(str(current))
        current = current.__cause__ or current.__context__
    return " | ".join(parts)


def _may_be_auth_failure(err: BaseException) -> bool:
    """Whether renewing signatures could help: HTTP 401/403, or a read with no status given.

    GDAL names the status when opening a file fails, but a block read that fails later says
    only "IReadBlock failed"; a signature expiring between the two looks like that.
    """
    text = _error_text(err)
    return any(s in text for s in _AUTH_FAILURES) or "HTTP response code" not in text


class PlanetaryComputerSigner:
    """``planetary_computer.sign`` for hrefs, able to drop cached tokens when Azure refuses them."""

    def __call__(self, href: str) -> str:
        """The href with a SAS token (cached by planetary_computer until close to expiry)."""
        try:
            import planetary_computer
        except ImportError:
            raise DependencyNotFoundError("planetary_computer", "stac") from None
        signed: str = planetary_computer.sign(href)
        return signed

    def refresh(self) -> None:
        """Forget cached tokens, so the next call fetches new ones."""
        from planetary_computer import sas

        sas.TOKEN_CACHE.clear()


_HTTP_LOCK = threading.Lock()
_HTTP_USERS = 0
_HTTP_SAVED: dict[str, str | None] = {}
_GDAL_LOGGERS = ("rasterio._env", "rasterio._err", "rasterio.env", "rasterio._base")
"""Where rasterio logs GDAL's messages and the options and paths it opens."""
_LOG_FILTER = RedactingFilter()


@contextmanager
def _gdal_http_options(options: Mapping[str, str]) -> Iterator[None]:
    """Set GDAL's HTTP retry/timeout options while any StacProvider reads.

    GDAL configuration is process-wide, and SceneProvider reads in worker threads while other
    fetches may run at once; a per-thread ``rasterio.Env`` would let one fetch's exit unset
    options under another. So the first reader sets them and the last one restores them.
    Meanwhile GDAL's messages that rasterio logs (which may quote signed URLs) are redacted.
    """
    from rasterio._env import del_gdal_config  # not re-exported by rasterio.env
    from rasterio.env import get_gdal_config, set_gdal_config

    global _HTTP_USERS
    with _HTTP_LOCK:
        if _HTTP_USERS == 0:
            for name in _GDAL_LOGGERS:
                logging.getLogger(name).addFilter(_LOG_FILTER)
            for key, value in options.items():
                _HTTP_SAVED[key] = get_gdal_config(key, normalize=False)
                set_gdal_config(key, value, normalize=False)
        _HTTP_USERS += 1
    try:
        yield
    finally:
        with _HTTP_LOCK:
            _HTTP_USERS -= 1
            if _HTTP_USERS == 0:
                for name in _GDAL_LOGGERS:
                    logging.getLogger(name).removeFilter(_LOG_FILTER)
                for key, saved in _HTTP_SAVED.items():
                    if saved is None:
                        del_gdal_config(key)
                    else:
                        set_gdal_config(key, saved, normalize=False)
                _HTTP_SAVED.clear()


def _resolve_collections(
    collections: Iterable[str] | Mapping[str, str] | None,
) -> dict[str, str]:
    """``{eoembed collection id: STAC collection id}`` from what the user gave."""
    known = ", ".join(sorted(KNOWN_STAC_COLLECTIONS))
    if collections is None:
        return {cid: c.stac_ids[0] for cid, c in KNOWN_STAC_COLLECTIONS.items()}
    if isinstance(collections, str):
        collections = [collections]
    if isinstance(collections, Mapping):
        unknown = [c for c in collections if c not in KNOWN_STAC_COLLECTIONS]
        if unknown:
            raise SpecError("StacProvider.collections", unknown[0], allowed=known,
                            reason=did_you_mean(close_names(unknown[0], KNOWN_STAC_COLLECTIONS))
                            or None)
        return dict(collections)
    by_stac_id = {
        sid: cid for cid, c in KNOWN_STAC_COLLECTIONS.items() for sid in (cid, *c.stac_ids)
    }
    out: dict[str, str] = {}
    for stac_id in collections:
        if stac_id not in by_stac_id:
            raise SpecError(
                "StacProvider.collections", stac_id,
                reason=did_you_mean(close_names(stac_id, by_stac_id)) or None,
                allowed=f"STAC collection ids of {known} "
                f"(e.g. {', '.join(sorted(by_stac_id)[:6])}, ...), or a mapping "
                "{eoembed id: STAC id}",
            )
        out[by_stac_id[stac_id]] = stac_id
    return out


class StacProvider:
    """Provider over a STAC API: search with pystac-client, read COG windows with GDAL.

    Example::

        provider = StacProvider("https://earth-search.aws.element84.com/v1")
        patch = provider.fetch(
            PointBuffer(lon=6.6, lat=46.5, buffer_m=1280),
            TemporalSpec.range("2023-06", "2023-09"),
            SensorSpec("sentinel-2-l2a", ("B02", "B03", "B04", "B08")),
        )

    Args:
        url: root of the STAC API.
        collections: which collections to serve: ``None`` for every collection eoembed
            knows (under its usual STAC id), STAC collection ids (``["hls2-s30"]``), or
            ``{eoembed id: STAC id}`` for an API that names them differently.
        sign: applied to each asset href right before it is read (``planetary_computer.sign``
            style: ``str -> str``). Signing at read time, not at search time, lets an expired
            signature be renewed without searching again: an href whose ``se=`` expiry has
            passed is signed again before reading, and a read refused with HTTP 401/403 (or
            failing mid-file, where GDAL reports no status) is read once more with fresh
            signatures; ``sign.refresh()`` is called first when the signer has one.
        headers: HTTP headers for the STAC API requests (not sent to asset storage).
        max_items: most items one search returns; least cloudy first where the API sorts.
        timeout: seconds before an API request or an asset read is given up and retried.
        retries: retries of API requests and asset reads after a connection error (reset,
            closed, refused), a timeout or HTTP 408/425/429/500/502/503/504 (see
            :mod:`eoembed.retrying`); other HTTP errors fail at once. GDAL retries each
            HTTP request as often, and a file whose open failed is reopened past GDAL's
            cache, so every retry reaches the server.
        backoff: base delay between retries in seconds; it doubles with every retry, plus
            a random jitter of up to ``backoff``.
        deadline: seconds after the first try of a request or read when no further retry
            starts (None: no limit).
        name: the provider's name in results (``attrs["provider"]``).
    """

    def __init__(
        self,
        url: str,
        *,
        collections: Iterable[str] | Mapping[str, str] | None = None,
        sign: Signer | None = None,
        headers: Mapping[str, str] | None = None,
        max_items: int = 100,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        deadline: float | None = 300.0,
        name: str = "stac",
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise SpecError("StacProvider.url", url, allowed="an http(s) URL of a STAC API")
        if max_items < 1:
            raise SpecError("StacProvider.max_items", max_items, allowed="an integer >= 1")
        if timeout <= 0 or retries < 0 or backoff < 0 or (deadline is not None and deadline <= 0):
            raise SpecError(
                "StacProvider",
                {"timeout": timeout, "retries": retries, "backoff": backoff, "deadline": deadline},
                allowed="timeout > 0, retries >= 0, backoff >= 0, deadline > 0 or None",
            )
        self.url = url
        self.name = name
        self._stac_ids = _resolve_collections(collections)
        self._collections = {
            cid: KNOWN_STAC_COLLECTIONS[cid].info for cid in self._stac_ids
        }
        self._sign = sign
        self._headers = dict(headers or {})
        self._max_items = max_items
        self._timeout = timeout
        self._retries = retries
        self._backoff = backoff
        self._policy = RetryPolicy(retries, backoff, deadline_s=deadline)
        self._client: Any = None
        self._client_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str | None = None) -> StacProvider:
        """Provider ``"stac:URL"``: a StacProvider for the API at ``URL``."""
        if not url:
            raise SpecError("provider", "stac", allowed="'stac:<url of a STAC API>'")
        return cls(url)

    @property
    def sign(self) -> Signer | None:
        """The signer applied to asset hrefs before reading, if any."""
        return self._sign

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, collections={self._stac_ids!r})"

    # ------------------------------------------------------------------ contract

    def collections(self) -> Mapping[str, CollectionInfo]:
        """The collections served, by eoembed id; known without contacting the API."""
        return self._collections

    def check(self, sensor: SensorSpec) -> CollectionInfo:
        """The collection info for ``sensor``; CapabilityError before any I/O if unservable."""
        return self._scene_provider([]).check(sensor)

    def search(
        self, spatial: SpatialSpec, temporal: TemporalSpec, sensor: SensorSpec
    ) -> list[Scene]:
        """Scenes over the region in the window under the cloud limit, least cloudy first.

        The API narrows the search (region, window, and cloud cover where it supports the
        filter or query extension); :meth:`SceneProvider.search` then applies eoembed's exact
        rules, e.g. a scene whose possible acquisition days stick out of the window is dropped.
        """
        self.check(sensor)
        scenes = self._query(spatial, temporal, sensor)
        if not scenes:
            raise NoDataError(
                f"STAC API {self.url} has no {self._stac_ids[sensor.collection]!r} item over "
                f"the region (lon/lat bounds "
                f"{tuple(round(v, 5) for v in spatial.lonlat_geometry().bounds)}) in {temporal}"
                + (f" with eo:cloud_cover <= {sensor.cloudy_pct:g}" if self._filters_cloud(
                    sensor) else "")
            )
        return self._scene_provider(scenes).search(spatial, temporal, sensor)

    def fetch(
        self,
        spatial: SpatialSpec,
        temporal: TemporalSpec,
        sensor: SensorSpec,
        *,
        grid: Grid | None = None,
    ) -> xr.DataArray:
        """Pixels ``(band, y, x)`` on ``grid``, composited over the matching scenes.

        Raises:
            CapabilityError: the collection or a band is not served (before any I/O).
            NoDataError: no item covers the region in the window.
            ProviderError: an item lacks an asset for a requested band, or reading failed.
            ProviderUnavailableError: the STAC API cannot be reached (a ConnectionError).
        """
        scenes = self.search(spatial, temporal, sensor)
        self._check_assets(scenes, sensor)
        return self._read_with_retries(
            scenes,
            lambda refresh: self._read(scenes, spatial, temporal, sensor, grid, refresh=refresh),
        )

    def fetch_series(
        self,
        spatial: SpatialSpec,
        temporal: TemporalSpec,
        sensor: SensorSpec,
        *,
        frames: int | None = None,
        grid: Grid | None = None,
    ) -> xr.DataArray:
        """Frames ``(time, band, y, x)``: see :func:`eoembed.providers.series.fetch_series`.

        One search for the whole window, then the per-request SceneProvider reads the frames;
        signing, retries and errors work as in :meth:`fetch`.
        """
        from eoembed.providers.series import check_frames

        check_frames(frames, temporal)  # a bad value fails before the API is contacted
        scenes = self.search(spatial, temporal, sensor)
        self._check_assets(scenes, sensor)

        def read(refresh: bool) -> xr.DataArray:
            signed = (
                self._signed(scenes, self._bands_to_sign(sensor), renew=refresh)
                if self._sign is not None
                else scenes
            )
            data = self._scene_provider(signed).fetch_series(
                spatial, temporal, sensor, frames=frames, grid=grid
            )
            data.attrs["stac_api"] = self.url
            return data

        return self._read_with_retries(scenes, read)

    # ------------------------------------------------------------------ search

    def _open(self) -> Any:
        """The pystac-client Client, opened on first use (so construction needs no network)."""
        with self._client_lock:
            if self._client is None:
                from pystac import STACError, STACTypeError
                from pystac_client import Client
                from pystac_client.exceptions import APIError
                from pystac_client.stac_api_io import StacApiIO

                # Retries are the policy's (self._api_call), not urllib3's.
                stac_io = StacApiIO(headers=self._headers, timeout=self._timeout, max_retries=0)
                try:
                    client = self._api_call(lambda: Client.open(
                        self.url, headers=self._headers, stac_io=stac_io, timeout=self._timeout
                    ))
                except APIError as err:
                    raise self._api_error(err) from err
                except (STACError, STACTypeError, ValueError, KeyError, TypeError) as err:
                    raise ProviderError(
                        f"{self.url} did not answer like a STAC API: {err}"
                    ) from err
                if not client.conforms_to("ITEM_SEARCH"):
                    raise ProviderError(
                        f"{self.url} does not offer STAC item search; for a static catalogue "
                        "use LocalProvider.from_stac"
                    )
                self._client = client
            return self._client

    def _filters_cloud(self, sensor: SensorSpec) -> bool:
        return KNOWN_STAC_COLLECTIONS[sensor.collection].cloud_cover and sensor.cloudy_pct < 100

    def _query(
        self, spatial: SpatialSpec, temporal: TemporalSpec, sensor: SensorSpec
    ) -> list[Scene]:
        from pystac_client.exceptions import APIError
        from shapely.geometry import mapping

        client = self._open()
        table = KNOWN_STAC_COLLECTIONS[sensor.collection]
        params: dict[str, Any] = {
            "collections": [self._stac_ids[sensor.collection]],
            "intersects": mapping(spatial.lonlat_geometry()),
            "datetime": stac_datetime(temporal),
            "max_items": self._max_items,
        }
        if self._filters_cloud(sensor):
            # Server-side narrowing only; SceneProvider.search applies the limit exactly.
            # (Items without eo:cloud_cover, which eoembed lets pass, are dropped here.)
            if client.conforms_to("FILTER"):
                params["filter"] = {
                    "op": "<=", "args": [{"property": "eo:cloud_cover"}, sensor.cloudy_pct]
                }
                params["filter_lang"] = "cql2-json"
            elif client.conforms_to("QUERY"):
                params["query"] = {"eo:cloud_cover": {"lte": sensor.cloudy_pct}}
        if table.cloud_cover and client.conforms_to("SORT"):
            params["sortby"] = [{"field": "properties.eo:cloud_cover", "direction": "asc"}]
        try:
            items = self._api_call(lambda: list(client.search(**params).items()))
        except APIError as err:
            raise self._api_error(err) from err
        if len(items) >= self._max_items:
            warnings.warn(
                f"the search of {self.url} stopped at max_items={self._max_items}; "
                "the composite uses only those items (raise max_items or narrow the window)",
                stacklevel=3,
            )
        return [scene_from_item(item, table) for item in items]

    def _api_call(self, call: Callable[[], T]) -> T:
        """A STAC API request under the retry policy.

        pystac-client's APIError carries the HTTP status; one without a status is a
        connection failure or a timeout.
        """
        from pystac_client.exceptions import APIError

        def worth(err: BaseException) -> bool:
            return isinstance(err, APIError) and (
                http_status(err) in RETRY_STATUSES or http_status(err) is None
            )

        return self._policy.call(call, retry_if=worth).value

    def _api_error(self, err: Exception) -> ProviderError:
        status = getattr(err, "status_code", None)
        text = redact(str(err).strip())
        detail = text.splitlines()[0][:300] if text else type(err).__name__
        if status is None or status in RETRY_STATUSES:
            return ProviderUnavailableError(
                f"STAC API {self.url} is unreachable or failing"
                f"{f' (HTTP {status})' if status else ''} after {self._retries} "
                f"retries: {detail}"
            )
        return ProviderError(f"STAC API {self.url} refused the request (HTTP {status}): {detail}")

    # ------------------------------------------------------------------ reading

    def _scene_provider(self, scenes: list[Scene]) -> SceneProvider:
        """SceneProvider over this request's scenes: its reading and compositing, our name."""
        provider = SceneProvider(scenes, self._collections)
        provider.name = self.name
        return provider

    def _check_assets(self, scenes: list[Scene], sensor: SensorSpec) -> None:
        table = KNOWN_STAC_COLLECTIONS[sensor.collection]
        for scene in scenes:
            missing = [b for b in sensor.bands if b not in scene.assets]
            if missing:
                looked = "; ".join(f"{b}: {', '.join(table.names_for(b))}" for b in missing)
                raise ProviderError(
                    f"STAC item {scene.id!r} ({self._stac_ids[sensor.collection]!r} at "
                    f"{self.url}) has no asset for band(s) {', '.join(missing)} (asset keys or "
                    f"eo:bands names looked for: {looked}); bands it has: "
                    f"{', '.join(sorted(scene.assets)) or 'none'}"
                )

    def _gdal_options(self) -> dict[str, str]:
        """GDAL's /vsicurl/ retries of each request: the policy's statuses, doubling delays."""
        seconds = str(max(1, math.ceil(self._timeout)))  # GDAL takes whole seconds
        return {
            "GDAL_HTTP_MAX_RETRY": str(self._retries),
            "GDAL_HTTP_RETRY_DELAY": str(self._backoff),
            # GDAL >= 3.10 (older ones ignore it and retry 429/500/502/503/504).
            "GDAL_HTTP_RETRY_CODES": ",".join(str(c) for c in sorted(RETRY_STATUSES)),
            "GDAL_HTTP_TIMEOUT": seconds,
            "GDAL_HTTP_CONNECTTIMEOUT": seconds,
        }

    def _bands_to_sign(self, sensor: SensorSpec) -> tuple[str, ...]:
        """The requested bands and, when the request is masked, the mask band."""
        mask = self._scene_provider([]).mask_for(sensor)
        if mask is None or mask.band in sensor.bands:
            return sensor.bands
        return (*sensor.bands, mask.band)

    def _signed(self, scenes: list[Scene], bands: tuple[str, ...], *, renew: bool) -> list[Scene]:
        """The scenes with the hrefs of ``bands`` signed now.

        ``renew`` (after a refused read) refreshes the signer first; otherwise a signature
        that is already expired is renewed on the spot. ``sign.refresh()`` runs at most once.
        """
        sign = self._sign
        assert sign is not None
        refresher = getattr(sign, "refresh", None)
        refresh: Callable[[], object] = refresher if callable(refresher) else (lambda: None)
        if renew:
            refresh()
        refreshed = renew
        out = []
        for scene in scenes:
            assets = {}
            for band in bands:
                if band not in scene.assets:  # a mask band some scenes lack (checked later)
                    continue
                signed = sign(scene.assets[band])
                if _signature_expired(signed):
                    if not refreshed:
                        refresh()
                        refreshed = True
                    signed = sign(scene.assets[band])
                assets[band] = signed
            out.append(dataclasses.replace(scene, assets=assets))
        return out

    def _read(
        self,
        scenes: list[Scene],
        spatial: SpatialSpec,
        temporal: TemporalSpec,
        sensor: SensorSpec,
        grid: Grid | None,
        *,
        refresh: bool,
    ) -> xr.DataArray:
        """Read through SceneProvider, with hrefs of the requested bands signed now."""
        if self._sign is not None:
            scenes = self._signed(scenes, self._bands_to_sign(sensor), renew=refresh)
        data = self._scene_provider(scenes).fetch(spatial, temporal, sensor, grid=grid)
        data.attrs["stac_api"] = self.url
        return data

    def _read_with_retries(self, scenes: list[Scene], read: Callable[[bool], T]) -> T:
        """``read(refresh)`` under the retry policy, with GDAL's HTTP options set.

        A failure with a retryable status or none at all (a reset or closed connection, a
        block read that failed mid-file) is tried again; with a signer, a failure that may be
        a refused signature (HTTP 401/403, or no status) is tried with fresh signatures, and
        a refusal after renewing is final. Anything else fails at once.
        """
        from rasterio.errors import RasterioError

        renewed = False
        refresh = False

        def attempt() -> T:
            nonlocal renewed, refresh
            renewed = renewed or refresh
            try:
                return read(refresh)
            except RasterioError as err:
                # The storage may have refused the signature (expired or revoked): sign afresh.
                refresh = self._sign is not None and _may_be_auth_failure(err)
                raise

        def worth(err: BaseException) -> bool:
            if not isinstance(err, RasterioError):
                return False
            status = http_status(err)
            if status in (401, 403):
                return self._sign is not None and not renewed
            return status is None or is_transient(err)

        with _gdal_http_options(self._gdal_options()):
            try:
                return self._policy.call(attempt, retry_if=worth).value
            except RasterioError as err:
                raise self._read_error(scenes, err) from None

    def _read_error(self, scenes: list[Scene], err: Exception) -> ProviderError:
        """The error to show for a failed read: no signature or token of any URL in it."""
        hint = (
            "; the storage refused access: pass sign= (e.g. planetary_computer.sign)"
            if self._sign is None and any(s in _error_text(err) for s in _AUTH_FAILURES)
            else ""
        )
        tries = getattr(err, "eoembed_attempts", None)
        after = f"after {tries} tries" if tries else f"after {self._retries} retries"
        return ProviderError(redact(
            f"reading assets of STAC item(s) {', '.join(s.id for s in scenes[:5])} from "
            f"{self.url} failed {after}: {_error_text(err)}{hint}"
        ))


def earth_search(**kwargs: Any) -> StacProvider:
    """Provider ``"earth-search"``: Element 84's earth-search v1 (public COGs on AWS)."""
    kwargs.setdefault("collections", EARTH_SEARCH_COLLECTIONS)
    return StacProvider(EARTH_SEARCH_URL, name="earth-search", **kwargs)


def planetary_computer(**kwargs: Any) -> StacProvider:
    """Provider ``"planetary-computer"``: Microsoft Planetary Computer, assets SAS-signed."""
    kwargs.setdefault("collections", PLANETARY_COMPUTER_COLLECTIONS)
    kwargs.setdefault("sign", PlanetaryComputerSigner())
    return StacProvider(PLANETARY_COMPUTER_URL, name="planetary-computer", **kwargs)


def usgs_landsat(**kwargs: Any) -> StacProvider:
    """Provider ``"usgs-landsat"``: USGS's LandsatLook STAC server (Landsat Collection 2).

    Serves ``landsat-c2-l1`` (its ``landsat-c2l1``) and ``landsat-c2-l2`` (``landsat-c2l2-sr``,
    reflectance only). Its assets need a USGS ERS login: GDAL reads them with the session
    cookies of ``GDAL_HTTP_COOKIEFILE``/``GDAL_HTTP_COOKIEJAR``.
    """
    kwargs.setdefault("collections", USGS_COLLECTIONS)
    return StacProvider(USGS_LANDSATLOOK_URL, name="usgs-landsat", **kwargs)
