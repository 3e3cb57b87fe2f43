"""Many regions x many models to files: plan, fetch ahead, batch, write, record, resume.

``export_batch`` is the entry point; ``load_export`` reads an export back and
``read_manifest`` lists every outcome;
``write_stac`` rebuilds its STAC catalogue.
"""

from __future__ import annotations

from eoembed.pipeline.catalog import write_stac
from eoembed.pipeline.export import ExportResult, export_batch, load_export
from eoembed.pipeline.manifest import ManifestEntry, read_manifest

__all__ = ["ExportResult", "ManifestEntry", "export_batch", "load_export", "read_manifest",
           "write_stac"]
