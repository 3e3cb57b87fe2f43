"""A GDAL VRT mosaic over a COG export's region files, so GDAL/QGIS open it as one raster.

One VRT per CRS (regions in different UTM zones cannot share a raster): ``mosaic.vrt`` when
the export has one CRS, else ``mosaic-EPSG_32618.vrt``... Each VRT is derived, like
consolidated metadata: rebuilt from every complete ``<id>.tif`` whenever the writer closes
(written atomically; stale ones removed), so a resumed export's VRT lists all its regions.

Regions of one CRS whose cells differ in size or whose origins are not aligned still share a
VRT: its cell is the finest of them and GDAL resamples the others (nearest neighbour) onto
it; aligned regions of one cell size map pixel for pixel. Every band is float32 with NaN
nodata and described ``dim_000``...; int8 sources are dequantised per region and band by
their ComplexSource's ``ScaleRatio`` (the file's own scale; -128 skipped as nodata), since one
VRT band cannot carry the different scales of many files. Reading int8 sources needs GDAL's
Int8 type (GDAL >= 3.7). Where regions overlap, the later file (by name) wins.

Each source is listed once per band, so the XML grows as regions x dims (about 350 bytes
per entry): past :data:`MAX_VRT_ENTRIES` (about 350 MB of XML, slower to open than to read
the files one by one) a CRS gets no VRT, and a warning says to open the STAC catalogue or a
Zarr export instead.

Cost: a rebuild opens every region file's header (about 3 ms each: some 5 minutes per close
for 100,000 regions). Each VRT records a stamp of the files it was built from (names, sizes,
modification times: ``eoembed_sources`` in its EOEMBED metadata), and a close that finds
every VRT stamped with the files as they are skips the rebuild (a stat per file), so
re-running a finished export, or a resume that wrote nothing, reads no header. A CRS past
the limit has no VRT to hold the stamp, so its headers are read on every close.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from eoembed.writers.base import atomic_path, list_complete
from eoembed.writers.gdal_metadata import DOMAIN

__all__ = ["MAX_VRT_ENTRIES", "MOSAIC_PATTERN", "STAMP_KEY", "write_mosaic_vrts"]

_LOG = logging.getLogger(__name__)

MAX_VRT_ENTRIES = 1_000_000
"""Most (region, band) sources one VRT lists: 1,300 regions of a 768-dim model."""

MOSAIC_PATTERN = "mosaic*.vrt"
"""Glob of the VRTs this module writes (not data files: never listed as results)."""

STAMP_KEY = "eoembed_sources"
"""EOEMBED item of a VRT: the stamp of the region files it was built from."""
_STAMP = re.compile(rf'<MDI key="{STAMP_KEY}">([0-9a-f]{{64}})</MDI>')
_HEAD_BYTES = 1 << 16
"""Where a VRT's stamp is looked for: its metadata precedes the bands."""

_SCHEMA_KEYS = re.compile(r"^(emb_.*|data_type|eoembed|links)$")
"""EOEMBED items every region shares (the schema), copied to the VRT's own metadata."""


@dataclass(frozen=True)
class _Source:
    name: str
    crs: str
    wkt: str
    left: float
    top: float
    res_x: float
    res_y: float
    width: int
    height: int
    count: int
    dtype: str
    block: tuple[int, int]
    scales: tuple[float, ...] | None
    descriptions: tuple[str | None, ...]
    metadata: dict[str, str]


def _read_source(path: Path) -> _Source | None:
    import rasterio

    with rasterio.open(path) as src:
        t = src.transform
        if src.crs is None or t.b != 0 or t.d != 0 or t.e >= 0:
            return None  # not north-up or not georeferenced: cannot be placed in a mosaic
        quantised = src.dtypes[0] == "int8"
        return _Source(
            name=path.name, crs=src.crs.to_string(), wkt=src.crs.to_wkt(), left=t.c, top=t.f,
            res_x=t.a, res_y=-t.e, width=src.width, height=src.height, count=src.count,
            dtype=src.dtypes[0], block=src.block_shapes[0],
            scales=tuple(float(s) for s in src.scales) if quantised else None,
            descriptions=tuple(src.descriptions), metadata=src.tags(ns=DOMAIN),
        )


def _gdal_type(dtype: str) -> str:
    return {"int8": "Int8", "float32": "Float32", "float64": "Float64"}.get(dtype, dtype)


def _num(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def _stamp(directory: Path, names: Sequence[str]) -> str:
    """What the mosaics depend on: every file's name, size and modification time."""
    digest = hashlib.sha256(str(MAX_VRT_ENTRIES).encode())
    for name in sorted(names):
        try:
            st = os.stat(directory / name)
        except OSError:
            continue  # gone since listed: the rebuild skips it too
        digest.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _stamped(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            head = f.read(_HEAD_BYTES).decode("utf-8", "replace")
    except OSError:
        return None
    match = _STAMP.search(head)
    return match.group(1) if match else None


def _vrt_xml(sources: Sequence[_Source], stamp: str = "") -> ET.ElementTree:
    """The VRT for ``sources`` (one CRS): the finest cell over their union."""
    res_x = min(s.res_x for s in sources)
    res_y = min(s.res_y for s in sources)
    left = min(s.left for s in sources)
    top = max(s.top for s in sources)
    right = max(s.left + s.width * s.res_x for s in sources)
    bottom = min(s.top - s.height * s.res_y for s in sources)
    width = max(1, math.ceil((right - left) / res_x - 1e-6))
    height = max(1, math.ceil((top - bottom) / res_y - 1e-6))

    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    ET.SubElement(root, "SRS").text = sources[0].wkt
    ET.SubElement(root, "GeoTransform").text = ", ".join(
        _num(v) for v in (left, res_x, 0.0, top, 0.0, -res_y)
    )
    shared = {k: v for k, v in sources[0].metadata.items() if _SCHEMA_KEYS.match(k)}
    items = [*([(STAMP_KEY, stamp)] if stamp else []), *sorted(shared.items())]
    if items:  # the stamp first: a close looks for it in the file's first bytes
        md = ET.SubElement(root, "Metadata", domain=DOMAIN)
        for key, value in items:
            ET.SubElement(md, "MDI", key=key).text = value

    rects = []
    for s in sources:
        dst = [(s.left - left) / res_x, (top - s.top) / res_y,
               s.width * s.res_x / res_x, s.height * s.res_y / res_y]
        if all(abs(v - round(v)) < 1e-6 for v in dst):
            dst = [float(round(v)) for v in dst]  # aligned: pixel for pixel
        rects.append(dst)

    count = sources[0].count
    digits = len(str(count - 1))
    for band in range(1, count + 1):
        vb = ET.SubElement(root, "VRTRasterBand", dataType="Float32", band=str(band))
        desc = sources[0].descriptions[band - 1] or f"dim_{band - 1:0{digits}d}"
        ET.SubElement(vb, "Description").text = desc
        ET.SubElement(vb, "NoDataValue").text = "nan"
        for s, dst in zip(sources, rects, strict=True):
            cs = ET.SubElement(vb, "ComplexSource")
            ET.SubElement(cs, "SourceFilename", relativeToVRT="1").text = s.name
            ET.SubElement(cs, "SourceBand").text = str(band)
            ET.SubElement(
                cs, "SourceProperties", RasterXSize=str(s.width), RasterYSize=str(s.height),
                DataType=_gdal_type(s.dtype), BlockXSize=str(s.block[1]),
                BlockYSize=str(s.block[0]),
            )
            ET.SubElement(cs, "SrcRect", xOff="0", yOff="0", xSize=str(s.width),
                          ySize=str(s.height))
            ET.SubElement(cs, "DstRect", xOff=_num(dst[0]), yOff=_num(dst[1]),
                          xSize=_num(dst[2]), ySize=_num(dst[3]))
            if s.scales is not None:
                ET.SubElement(cs, "NODATA").text = "-128"
                ET.SubElement(cs, "ScaleOffset").text = "0"
                ET.SubElement(cs, "ScaleRatio").text = repr(s.scales[band - 1])
            else:
                ET.SubElement(cs, "NODATA").text = "nan"
    tree = ET.ElementTree(root)
    ET.indent(tree, space=" ")
    return tree


def _vrt_name(crs: str, single: bool) -> str:
    return "mosaic.vrt" if single else f"mosaic-{re.sub(r'[^A-Za-z0-9]+', '_', crs)}.vrt"


def write_mosaic_vrts(directory: Path, names: Iterable[str]) -> list[str]:
    """(Re)write the VRT mosaics over the COGs ``names`` in ``directory``; return their names.

    Every ``mosaic*.vrt`` not rewritten (a CRS no longer present) is removed. Nothing is
    read or written when every existing VRT is stamped with ``names`` as they are now.
    """
    directory = Path(directory)
    names = list(names)
    stamp = _stamp(directory, names)
    existing = list_complete(directory, MOSAIC_PATTERN)
    if existing and all(_stamped(directory / n) == stamp for n in existing):
        return existing
    by_crs: dict[str, list[_Source]] = {}
    for name in names:
        try:
            source = _read_source(directory / name)
        except OSError:
            continue  # removed since listed (rasterio's errors are OSErrors)
        if source is not None:
            by_crs.setdefault(source.crs, []).append(source)
    written = []
    for crs, sources in sorted(by_crs.items()):
        name = _vrt_name(crs, len(by_crs) == 1)
        entries = sum(s.count for s in sources)
        if entries > MAX_VRT_ENTRIES:
            _LOG.warning(
                "%s: no %s over %d regions x %d bands (more than %d sources); open the"
                " export's STAC catalogue (catalog.json) or export to Zarr for a mosaic",
                directory, name, len(sources), sources[0].count, MAX_VRT_ENTRIES,
            )
            continue
        tree = _vrt_xml(sources, stamp)
        with atomic_path(directory / name) as tmp:
            tree.write(tmp, encoding="utf-8", xml_declaration=False)
        written.append(name)
    for stale in set(list_complete(directory, MOSAIC_PATTERN)) - set(written):
        (directory / stale).unlink(missing_ok=True)
    return written
