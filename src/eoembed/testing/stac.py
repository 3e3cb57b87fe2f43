"""Static STAC items and catalogues pointing at local band files.

Like odc-stac's ``mk_parsed_item``, but written to disk, so providers read them the way they
read users' catalogues.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

__all__ = ["make_stac_catalog", "make_stac_item"]


def _day(value: str | dt.date) -> dt.datetime:
    day = value if isinstance(value, dt.date) else dt.date.fromisoformat(value)
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _footprint(path: str) -> dict[str, Any]:
    """The lon/lat footprint of a raster file as a GeoJSON polygon (8 vertices per edge)."""
    import rasterio
    from pyproj import Transformer
    from shapely import segmentize, transform
    from shapely.geometry import box, mapping

    with rasterio.open(path) as src:
        left, bottom, right, top = src.bounds
        crs = src.crs.to_string()
    outline = segmentize(box(left, bottom, right, top), max(right - left, top - bottom) / 8)
    to_lonlat = Transformer.from_crs(crs, "OGC:CRS84", always_xy=True)
    return dict(mapping(transform(outline, to_lonlat.transform, interleaved=False)))


def make_stac_item(
    item_id: str,
    assets: Mapping[str, str | os.PathLike[str]],
    *,
    date: str | dt.date | None = None,
    start: str | dt.date | None = None,
    end: str | dt.date | None = None,
    cloud_cover: float | None = None,
    collection: str | None = "sentinel-2-l1c",
    eo_bands: Mapping[str, str] | None = None,
    geometry: Mapping[str, Any] | None = None,
) -> Any:
    """A ``pystac.Item`` with one asset per band file.

    Args:
        item_id: the item id.
        assets: asset key -> file path (absolute, or relative to where the item will live).
        date: the acquisition day; or give ``start`` and ``end`` (half-open) instead.
        start: first possible acquisition day, when the day is not known.
        end: first day after the possible acquisition days.
        cloud_cover: ``eo:cloud_cover`` in percent, or ``None`` to leave it out.
        collection: the collection id written to the item, or ``None`` for none.
        eo_bands: asset key -> ``eo:bands`` name, for assets keyed by something other than
            the band name (``{"red": "B04"}``).
        geometry: the footprint as GeoJSON in lon/lat; by default the bounds of the first
            asset's file, which must then exist (relative paths resolve from the cwd).
    """
    import pystac

    if (date is None) == (start is None and end is None):
        raise ValueError("give either date or both start and end")
    if date is None and (start is None or end is None):
        raise ValueError("give both start and end")
    if not assets:
        raise ValueError("an item needs at least one asset")
    geom = dict(geometry) if geometry is not None else _footprint(str(next(iter(assets.values()))))
    from shapely.geometry import shape

    bbox = list(shape(geom).bounds)
    properties: dict[str, Any] = {}
    if date is None:
        assert start is not None and end is not None
        properties["start_datetime"] = _day(start).isoformat().replace("+00:00", "Z")
        properties["end_datetime"] = _day(end).isoformat().replace("+00:00", "Z")
    if cloud_cover is not None:
        properties["eo:cloud_cover"] = float(cloud_cover)
    item = pystac.Item(
        id=item_id,
        geometry=geom,
        bbox=bbox,
        datetime=_day(date) if date is not None else None,
        properties=properties,
        collection=collection,
    )
    for key, href in assets.items():
        extra: dict[str, Any] = {}
        if eo_bands and key in eo_bands:
            extra["eo:bands"] = [{"name": eo_bands[key]}]
        item.add_asset(
            key,
            pystac.Asset(
                href=str(href), media_type=pystac.MediaType.COG, roles=["data"],
                extra_fields=extra,
            ),
        )
    return item


def make_stac_catalog(
    root: str | os.PathLike[str],
    items: Sequence[Any],
    *,
    kind: Literal["catalog", "collection", "item_collection"] = "catalog",
    catalog_id: str | None = None,
) -> Path:
    """Write ``items`` under ``root`` as a static STAC catalogue and return its root file.

    Args:
        root: the folder to write into (created if needed).
        items: ``pystac.Item`` objects, e.g. from :func:`make_stac_item`.
        kind: ``"catalog"`` writes a self-contained ``catalog.json`` with one JSON file per
            item; ``"collection"`` the same under a ``collection.json``; ``"item_collection"``
            one GeoJSON FeatureCollection, ``items.json``.
        catalog_id: id of the catalogue or collection; a collection defaults to the
            items' collection id (adding an item to a collection overwrites the item's).
    """
    import pystac

    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "item_collection":
        path = folder / "items.json"
        pystac.ItemCollection([item.clone() for item in items]).save_object(
            dest_href=str(path)
        )
        return path
    catalog: pystac.Catalog
    if kind == "collection":
        geoms = [item.bbox for item in items]
        extent = pystac.Extent(
            pystac.SpatialExtent(
                [[
                    min(b[0] for b in geoms), min(b[1] for b in geoms),
                    max(b[2] for b in geoms), max(b[3] for b in geoms),
                ]]
            ),
            pystac.TemporalExtent([[_day("1970-01-01"), None]]),
        )
        ids = {item.collection_id for item in items} - {None}
        collection_id = catalog_id or (ids.pop() if len(ids) == 1 else "eoembed-test")
        catalog = pystac.Collection(collection_id, "eoembed test collection", extent)
    elif kind == "catalog":
        catalog = pystac.Catalog(catalog_id or "eoembed-test", "eoembed test catalogue")
    else:
        raise ValueError(f"kind must be catalog, collection or item_collection, not {kind!r}")
    for item in items:
        catalog.add_item(item.clone())
    catalog.normalize_hrefs(str(folder))
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return folder / ("collection.json" if kind == "collection" else "catalog.json")
