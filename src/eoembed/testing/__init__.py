"""Test helpers that ship with eoembed: tiny rasters, static STAC catalogues, fake providers.

Everything here works offline and writes only where it is told to, so downstream projects can
test code built on eoembed without a network or a catalogue::

    from eoembed.testing import make_cog, make_stac_item, make_stac_catalog

    tif = make_cog(tmp_path / "B04.tif", array, "EPSG:32618", transform, nodata=0)
    item = make_stac_item("scene-1", {"B04": tif}, date="2021-06-01", cloud_cover=5)
    catalog = make_stac_catalog(tmp_path / "stac", [item])
    provider = LocalProvider.from_stac(catalog)

Heavy dependencies (rasterio, pystac, xarray) load when a helper is called, not on import.
"""

from __future__ import annotations

from eoembed.testing.providers import CountingProvider, FakeProvider
from eoembed.testing.raster import make_cog
from eoembed.testing.stac import make_stac_catalog, make_stac_item

__all__ = (
    "CountingProvider",
    "FakeProvider",
    "make_cog",
    "make_stac_catalog",
    "make_stac_item",
)
