"""Providers by name: ``get_provider("sample")``, ``get_provider("local:catalog.json")``."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from eoembed.errors import UnknownProviderError
from eoembed.providers.base import Provider

__all__ = ["get_provider", "list_providers", "register_provider"]

ProviderFactory = Callable[..., Provider]

_FACTORIES: dict[str, str | ProviderFactory] = {
    "sample": "eoembed.providers.sample:SampleProvider",
    "local": "eoembed.providers.local:LocalProvider.from_path",
    "stac": "eoembed.providers.stac:StacProvider.from_url",
    "earth-search": "eoembed.providers.stac:earth_search",
    "planetary-computer": "eoembed.providers.stac:planetary_computer",
    "usgs-landsat": "eoembed.providers.stac:usgs_landsat",
    "earthengine": "eoembed.providers.earthengine:EarthEngineProvider.from_project",
    "cached": "eoembed.providers.cache:CachedProvider.from_name",
    "alphaearth": "eoembed.providers.alphaearth:AlphaEarthProvider.from_url",
    "tessera": "eoembed.providers.tessera:TesseraProvider.from_url",
    "copernicus-embed": "eoembed.providers.copernicus_embed:CopernicusEmbedProvider.from_path",
    "majortom": "eoembed.providers.majortom:MajorTomProvider.from_url",
}
_INSTANCES: dict[str, Provider] = {}


def register_provider(name: str, factory: str | ProviderFactory) -> None:
    """Register ``factory`` (a callable or ``"pkg.mod:attr"``) under ``name``."""
    _FACTORIES[name] = factory
    _INSTANCES.pop(name, None)


def list_providers() -> list[str]:
    """Registered provider names."""
    return sorted(_FACTORIES)


def _resolve(factory: str | ProviderFactory) -> ProviderFactory:
    if callable(factory):
        return factory
    module, _, attr = factory.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[no-any-return]


def get_provider(provider: str | Provider) -> Provider:
    """A provider instance from an instance, a name, or ``"name:argument"``.

    ``"local:/data/catalog.json"`` builds a :class:`LocalProvider` from that catalogue.
    Instances built from a bare name are reused within the process.
    """
    if not isinstance(provider, str):
        if isinstance(provider, Provider):
            return provider
        raise UnknownProviderError(repr(provider), _FACTORIES)
    name, sep, argument = provider.partition(":")
    if name not in _FACTORIES:
        raise UnknownProviderError(name, _FACTORIES)
    if sep:
        return _resolve(_FACTORIES[name])(argument)
    if name not in _INSTANCES:
        _INSTANCES[name] = _resolve(_FACTORIES[name])()
    return _INSTANCES[name]
