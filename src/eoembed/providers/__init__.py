"""Providers: (region, time, sensor) -> pixels on a declared grid."""

from eoembed.providers.base import CollectionInfo, Provider, Scene
from eoembed.providers.registry import get_provider, list_providers, register_provider

__all__ = (
    "CachedProvider",
    "CollectionInfo",
    "EarthEngineProvider",
    "LocalProvider",
    "Provider",
    "SampleProvider",
    "Scene",
    "StacProvider",
    "get_provider",
    "list_providers",
    "register_provider",
)


def __getattr__(name: str) -> object:
    # Reading classes pull in rasterio; import them only when asked for.
    if name == "CachedProvider":
        from eoembed.providers.cache import CachedProvider

        return CachedProvider
    if name == "EarthEngineProvider":
        from eoembed.providers.earthengine import EarthEngineProvider

        return EarthEngineProvider
    if name == "LocalProvider":
        from eoembed.providers.local import LocalProvider

        return LocalProvider
    if name == "SampleProvider":
        from eoembed.providers.sample import SampleProvider

        return SampleProvider
    if name == "StacProvider":
        from eoembed.providers.stac import StacProvider

        return StacProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
