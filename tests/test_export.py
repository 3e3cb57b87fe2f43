"""export_batch on the real sample scene: dedupe, shared fetches, faults, crash and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from eoembed import (
    OutputSpec,
    PointBuffer,
    SensorSpec,
    TemporalSpec,
    export_batch,
    get_embeddings_batch,
    load_export,
)
from eoembed.errors import (
    CapabilityError,
    ExportConflictError,
    IncompleteExportWarning,
    NoDataError,
    SpecError,
    UnknownFormatError,
    UnknownModelError,
)
from eoembed.pipeline import read_manifest
from eoembed.testing import CountingProvider

WINDOW = TemporalSpec.range("2015-06-23", "2016-06-11")
S2_13 = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11",
         "B12")


def points(n: int, buffer_m: float = 160.0) -> list[PointBuffer]:
    """``n`` distinct small squares inside the sample scene (32 px at 10 m by default)."""
    side = int(np.ceil(np.sqrt(n)))
    lons = np.linspace(-75.70, -75.56, side)
    lats = np.linspace(37.62, 37.74, side)
    return [PointBuffer(float(lo), float(la), buffer_m) for lo in lons for la in lats][:n]


def by_id(frame) -> dict[str, np.ndarray]:
    return {row.id: np.asarray(row.embedding, dtype=np.float32) for row in frame.itertuples()}


@pytest.fixture(scope="module")
def provider(sample_provider):
    return sample_provider


# -- the basic contract -------------------------------------------------------------------


def test_pooled_export_equals_the_one_call_api_and_dedupes(tmp_path, provider):
    regions = points(6)
    listed = regions + regions[:2]  # duplicates are neither fetched nor written twice
    counting = CountingProvider(provider)
    result = export_batch(
        listed, "mosaiks", temporal=WINDOW, out=tmp_path / "x", provider=counting,
        device="cpu", batch_size=4, progress=False,
    )
    assert (result.total, result.ok, result.failed, result.reused) == (6, 6, 0, 0)
    assert len(counting.calls) == result.fetches == result.unique_requests == 6
    frame = load_export(tmp_path / "x")
    assert len(frame) == 6 and frame["id"].is_unique
    direct = get_embeddings_batch(
        "mosaiks", spatials=regions, temporal=WINDOW, provider=provider, device="cpu"
    )
    stored = by_id(frame)
    entries = {e.region: e for e in read_manifest(tmp_path / "x")}
    for index, emb in enumerate(direct):
        np.testing.assert_allclose(stored[entries[index].id], emb.numpy(), rtol=1e-6, atol=1e-6)
    # Footprints are the regions', in lon/lat, valid.
    assert frame.crs.to_epsg() == 4326 or "CRS84" in frame.crs.to_string()
    assert frame.geometry.is_valid.all()
    first = frame.set_index("id").loc[entries[0].id]
    assert first.geometry.equals_exact(regions[0].lonlat_geometry(), 1e-9)


def test_ids_are_deterministic_and_rerun_reuses_everything(tmp_path, provider):
    regions = points(4)
    kwargs = {"temporal": WINDOW, "provider": provider, "device": "cpu", "progress": False}
    interval = sys.getswitchinterval()
    first = export_batch(regions, "mosaiks", out=tmp_path / "a", **kwargs)
    assert sys.getswitchinterval() == interval  # shortened only while the export runs
    again = export_batch(regions, "mosaiks", out=tmp_path / "a", **kwargs)
    other = export_batch(regions[::-1], "mosaiks", out=tmp_path / "b", **kwargs)
    assert first.ok == 4 and again.ok == 0 and again.reused == 4 and again.fetches == 0
    ids_a = sorted(load_export(tmp_path / "a")["id"])
    assert ids_a == sorted(load_export(tmp_path / "b")["id"])
    assert other.ok == 4


def test_models_sharing_a_sensor_share_fetches_and_overrides_get_their_own(tmp_path, provider):
    regions = points(3)
    shared = SensorSpec("sentinel-2-l1c", S2_13, 10)
    counting = CountingProvider(provider)
    models = ["mosaiks", "ssl4eo-s12-vit-s16-dino"]
    args = {"ssl4eo-s12-vit-s16-dino": {"weights": "random"}}
    result = export_batch(
        regions, models, temporal=WINDOW, sensor=shared, model_args=args,
        out=tmp_path / "shared", provider=counting, device="cpu", progress=False,
    )
    assert result.ok == 6 and len(counting.calls) == 3
    both = load_export(tmp_path / "shared")
    assert sorted(both["model"].unique()) == sorted(models)
    dims = {m: len(both[both["model"] == m]["embedding"].iloc[0]) for m in models}
    assert dims == {"mosaiks": 512, "ssl4eo-s12-vit-s16-dino": 384}

    counting.calls.clear()
    own = {"mosaiks": SensorSpec("sentinel-2-l1c", ("B02", "B03", "B04", "B08"), 10)}
    export_batch(
        regions, models, temporal=WINDOW, sensor=shared, sensors=own, model_args=args,
        out=tmp_path / "own", provider=counting, device="cpu", progress=False,
    )
    assert len(counting.calls) == 6
    assert {c.sensor.bands for c in counting.calls} == {shared.bands, own["mosaiks"].bands}


def test_grid_export_to_zarr_is_georeferenced_like_the_api(tmp_path, provider):
    regions = points(2, buffer_m=320)
    export_batch(
        regions, "mosaiks", temporal=WINDOW, out=tmp_path / "g", output=OutputSpec.grid(),
        format="zarr", provider=provider, device="cpu", progress=False,
    )
    tree = load_export(tmp_path / "g")
    direct = get_embeddings_batch(
        "mosaiks", spatials=regions, temporal=WINDOW, output=OutputSpec.grid(),
        provider=provider, device="cpu",
    )
    entries = {e.region: e.id for e in read_manifest(tmp_path / "g")}
    assert sorted(tree.children) == sorted(entries.values())
    for index, emb in enumerate(direct):
        node = tree[entries[index]].to_dataset()
        (name,) = [v for v in node.data_vars if node[v].ndim == 3]
        got = node[name]
        np.testing.assert_allclose(got.values, emb.data.values, rtol=1e-6, atol=1e-6)
        assert got.rio.crs.to_epsg() == 32618
        assert tuple(got.rio.transform())[:6] == pytest.approx(
            tuple(emb.data.rio.transform())[:6]
        )


def test_model_options_that_change_the_dimension_are_written(tmp_path, provider):
    export_batch(points(2), "mosaiks", temporal=WINDOW, out=tmp_path / "x", provider=provider,
                 model_args={"mosaiks": {"num_features": 64}}, device="cpu", progress=False)
    assert {len(v) for v in by_id(load_export(tmp_path / "x")).values()} == {64}


def test_int8_quantisation_keeps_direction(tmp_path, provider):
    regions = points(4)
    kwargs = {"temporal": WINDOW, "provider": provider, "device": "cpu", "progress": False}
    export_batch(regions, "mosaiks", out=tmp_path / "f", **kwargs)
    export_batch(regions, "mosaiks", out=tmp_path / "q", quantize="int8", **kwargs)
    exact, approx = by_id(load_export(tmp_path / "f")), by_id(load_export(tmp_path / "q"))
    for key, vector in exact.items():
        got = approx[key]
        cosine = vector @ got / np.linalg.norm(vector) / np.linalg.norm(got)
        assert cosine > 0.999
        assert np.abs(got - vector).max() <= np.abs(vector).max() / 127 / 2 * 1.0001


# -- checked before any I/O ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"format": "shapefile"}, UnknownFormatError, "geoparquet"),
        ({"format": "geoparquet", "output": OutputSpec.grid()}, CapabilityError, "pooled"),
        ({"on_error": "ignore"}, SpecError, "continue"),
        ({"quantize": "int4"}, SpecError, "int8"),
        ({"batch_size": 0}, SpecError, "batch_size"),
        ({"models": "no-such-model"}, UnknownModelError, "mosaiks"),
        ({"sensors": {"other": SensorSpec("sentinel-2-l1c", ("B04",))}}, SpecError, "mosaiks"),
        ({"sensor": SensorSpec("sentinel-2-l1c", ("B04",)),  # bands= it does not request
          "model_args": {"mosaiks": {"bands": ("B02", "B04")}}}, CapabilityError, "B02"),
        ({"sensor": SensorSpec("landsat-c2-l2", ("B02", "B03", "B04", "B08"))},
         CapabilityError, "sentinel-2-l1c"),
    ],
)
def test_bad_requests_fail_before_any_fetch(tmp_path, provider, kwargs, error, words):
    counting = CountingProvider(provider)
    call = {"models": "mosaiks", "temporal": WINDOW, "out": tmp_path / "x",
            "provider": counting, "device": "cpu", "progress": False, **kwargs}
    models = call.pop("models")
    with pytest.raises(error, match=words):
        export_batch(points(2), models, **call)
    assert counting.calls == []
    assert not (tmp_path / "x" / "manifest.jsonl").exists()


def test_a_changed_request_is_not_silently_reused(tmp_path, provider):
    regions = points(3)
    kwargs = {"temporal": WINDOW, "provider": provider, "device": "cpu", "progress": False}
    export_batch(regions, "mosaiks", out=tmp_path / "x", **kwargs)
    with pytest.raises(ExportConflictError, match=r"options\.seed"):
        export_batch(regions, "mosaiks", out=tmp_path / "x",
                     model_args={"mosaiks": {"seed": 1}}, **kwargs)
    with pytest.raises(ExportConflictError, match="geoparquet"):
        export_batch(regions, "mosaiks", out=tmp_path / "x", format="npz", **kwargs)
    with pytest.raises(ExportConflictError, match="resume"):
        export_batch(regions, "mosaiks", out=tmp_path / "x", resume=False, **kwargs)
    before = by_id(load_export(tmp_path / "x"))
    redone = export_batch(regions, "mosaiks", out=tmp_path / "x", overwrite=True,
                          model_args={"mosaiks": {"seed": 1}}, **kwargs)
    after = by_id(load_export(tmp_path / "x"))
    assert redone.ok == 3 and after.keys() == before.keys()
    assert all(not np.allclose(after[k], before[k]) for k in before)


# -- faults ---------------------------------------------------------------------------------


class FlakyProvider(CountingProvider):
    """Fails chosen regions: some for a few tries (transient), some always, some with no data."""

    def __init__(self, inner, *, transient=(), permanent=(), nodata=(), failures=1):
        super().__init__(inner)
        self.transient = {r.fingerprint for r in transient}
        self.permanent = {r.fingerprint for r in permanent}
        self.nodata = {r.fingerprint for r in nodata}
        self.failures = failures
        self.tries: dict[str, int] = {}

    def fetch(self, spatial, temporal, sensor, *, grid=None):
        key = spatial.fingerprint
        with self._lock:
            self.tries[key] = self.tries.get(key, 0) + 1
            tries = self.tries[key]
        if key in self.nodata:
            raise NoDataError("no scene here (test)")
        if key in self.permanent or (key in self.transient and tries <= self.failures):
            raise ConnectionResetError(f"HTTP 503 from the test provider (try {tries})")
        return super().fetch(spatial, temporal, sensor, grid=grid)


def test_faults_are_retried_isolated_recorded_and_resumed(tmp_path, provider):
    regions = points(10)
    flaky = FlakyProvider(provider, transient=regions[:3], permanent=regions[3:5],
                          nodata=regions[5:6], failures=2)
    kwargs = {"temporal": WINDOW, "out": tmp_path / "x", "device": "cpu", "progress": False,
                  "batch_size": 4, "retry_backoff_s": 0.0}
    result = export_batch(regions, "mosaiks", provider=flaky, on_error="continue",
                          max_retries=2, **kwargs)
    assert (result.ok, result.failed, result.skipped) == (7, 2, 1)
    entries = {e.region: e for e in read_manifest(tmp_path / "x")}
    for i in range(3):
        assert entries[i].status == "ok" and entries[i].attempts["fetch"] == 3
    for i in (3, 4):
        assert entries[i].status == "failed" and entries[i].stage == "fetch"
        assert entries[i].attempts["fetch"] == 3 and "503" in entries[i].error
    assert entries[5].status == "skipped" and flaky.tries[regions[5].fingerprint] == 1
    with pytest.warns(IncompleteExportWarning, match="7 result.*loaded.*2 result.*failed"):
        assert len(load_export(tmp_path / "x")) == 7

    healed = CountingProvider(provider)
    again = export_batch(regions, "mosaiks", provider=healed, **kwargs)
    assert (again.ok, again.reused, again.failed) == (2, 8, 0)  # 7 written, 1 skipped
    assert {c.spatial for c in healed.calls} == set(regions[3:5])
    frame = load_export(tmp_path / "x")
    assert len(frame) == 9 and frame["id"].is_unique


def test_embed_failures_are_isolated_per_region(tmp_path, provider):
    # MOSAIKS pools 8 x 8 px cells: a 65 px square cannot be embedded, the others can.
    regions = [*points(3), PointBuffer(-75.61, 37.66, 325)]
    result = export_batch(regions, "mosaiks", temporal=WINDOW, out=tmp_path / "x",
                          provider=provider, device="cpu", progress=False, on_error="continue")
    assert (result.ok, result.failed) == (3, 1)
    (bad,) = [e for e in read_manifest(tmp_path / "x") if e.status == "failed"]
    assert bad.stage == "embed" and bad.region == 3 and "cell" in bad.error


def test_on_error_raise_stops_but_keeps_what_was_done(tmp_path, provider):
    regions = points(8)
    flaky = FlakyProvider(provider, permanent=regions[6:7])
    with pytest.raises(ConnectionResetError, match="503"):
        export_batch(regions, "mosaiks", temporal=WINDOW, out=tmp_path / "x", provider=flaky,
                     device="cpu", progress=False, batch_size=2, max_retries=1,
                     retry_backoff_s=0.0, fetch_workers=1)
    statuses = {e.region: e.status for e in read_manifest(tmp_path / "x")}
    assert statuses[6] == "failed"
    done = [r for r, s in statuses.items() if s == "ok"]
    assert len(done) >= 4  # the batches embedded before the failure were written
    with pytest.warns(IncompleteExportWarning, match="did not finish"):
        assert len(load_export(tmp_path / "x")) == len(done)


def test_write_failures_are_retried(tmp_path, provider, monkeypatch):
    from eoembed.writers.geoparquet import GeoParquetWriter

    real = GeoParquetWriter.write
    calls = {"n": 0}

    def flaky_write(self, records):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk hiccup (test)")
        return real(self, records)

    monkeypatch.setattr(GeoParquetWriter, "write", flaky_write)
    result = export_batch(points(3), "mosaiks", temporal=WINDOW, out=tmp_path / "x",
                          provider=provider, device="cpu", progress=False, retry_backoff_s=0.0)
    assert result.ok == 3 and calls["n"] == 2
    assert {e.attempts["write"] for e in read_manifest(tmp_path / "x")} == {2}


# -- crash and resume -------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    from eoembed import PointBuffer, TemporalSpec, export_batch
    import numpy as np
    lons, lats = np.linspace(-75.70, -75.56, 6), np.linspace(37.62, 37.74, 6)
    regions = [PointBuffer(float(a), float(b), 160) for a in lons for b in lats]
    export_batch(regions, "mosaiks", temporal=TemporalSpec.range("2015-06-23", "2016-06-11"),
                 out=sys.argv[1], provider="sample", device="cpu", progress=False,
                 batch_size=2, rows_per_part=2, fetch_workers=1, prefetch=2)
    """
)


def _ok_lines(out: Path) -> int:
    path = out / "manifest.jsonl"
    return path.read_bytes().count(b'"status":"ok"') if path.exists() else 0


def _run_and_kill(out: Path, after_ok: int) -> None:
    """Start the export in a child process and SIGKILL it once ``after_ok`` results are in."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(out)])
    deadline = time.monotonic() + 120
    try:
        while _ok_lines(out) < after_ok and child.poll() is None:
            assert time.monotonic() < deadline, "child export made no progress"
            time.sleep(0.005)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


@pytest.mark.parametrize("kills", [(6,), (3, 20)])
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path, kills):
    reference = tmp_path / "reference"
    subprocess.run([sys.executable, "-c", CHILD, str(reference)], check=True)
    out = tmp_path / "killed"
    for after in kills:
        _run_and_kill(out, after)
        assert _ok_lines(out) < 36, "the child finished before it was killed"
    subprocess.run([sys.executable, "-c", CHILD, str(out)], check=True)
    want, got = load_export(reference), load_export(out)
    assert len(got) == 36 and got["id"].is_unique
    assert sorted(got["id"]) == sorted(want["id"])
    expected = by_id(want)
    for key, vector in by_id(got).items():
        np.testing.assert_array_equal(vector, expected[key])
    assert not list(out.rglob(".tmp-*"))


def test_resume_cleans_torn_manifest_lines_orphans_and_partial_files(tmp_path, provider):
    regions = points(6)
    kwargs = {"temporal": WINDOW, "out": tmp_path / "x", "provider": provider, "device": "cpu",
                  "progress": False, "rows_per_part": 2}
    export_batch(regions, "mosaiks", **kwargs)
    reference = by_id(load_export(tmp_path / "x"))
    manifest = tmp_path / "x" / "manifest.jsonl"
    lines = manifest.read_bytes().splitlines(keepends=True)
    # A crash after a part file was renamed into place but before its lines were recorded,
    # another in the middle of a manifest line, and another in the middle of a file.
    manifest.write_bytes(b"".join(lines[:4]) + lines[4][:25])
    (tmp_path / "x" / "mosaiks" / ".tmp-part-crashed.parquet").write_bytes(b"PAR1 garbage")
    counting = CountingProvider(provider)
    result = export_batch(regions, "mosaiks", **{**kwargs, "provider": counting})
    assert (result.ok, result.reused) == (2, 4) and len(counting.calls) == 2
    frame = load_export(tmp_path / "x")
    assert len(frame) == 6 and frame["id"].is_unique
    for key, vector in by_id(frame).items():
        np.testing.assert_array_equal(vector, reference[key])
    assert not list((tmp_path / "x").rglob(".tmp-*"))
    parts = sorted(p.name for p in (tmp_path / "x" / "mosaiks").glob("*.parquet"))
    assert len(parts) == 3, parts  # the orphaned part was removed, a new one written
    assert all(json.loads(line) for line in manifest.read_bytes().splitlines())


# -- UI --------------------------------------------------------------------------------------


def test_quiet_mode_prints_nothing_and_progress_reports_on_stderr(tmp_path, provider, capfd):
    export_batch(points(2), "mosaiks", temporal=WINDOW, out=tmp_path / "q", provider=provider,
                 device="cpu", progress=False)
    quiet = capfd.readouterr()
    assert quiet.out == "" and quiet.err == ""
    export_batch(points(2), "mosaiks", temporal=WINDOW, out=tmp_path / "p", provider=provider,
                 device="cpu", progress=True)
    shown = capfd.readouterr()
    assert shown.out == "" and "2/2" in shown.err


def test_memory_is_bounded_by_the_prefetch_window(tmp_path, provider):
    """The model thread never has more than ``prefetch`` fetched regions waiting."""
    in_flight, peak = 0, 0
    lock = threading.Lock()

    class Watching(CountingProvider):
        def fetch(self, *args, **kwargs):
            nonlocal in_flight, peak
            with lock:
                in_flight += 1
                peak = max(peak, in_flight)
            return super().fetch(*args, **kwargs)

    from eoembed.pipeline import engine

    real = engine._ModelStage.add

    def consumed(self, item):
        nonlocal in_flight
        with lock:
            in_flight -= 1
        return real(self, item)

    engine._ModelStage.add = consumed
    try:
        export_batch(points(24), "mosaiks", temporal=WINDOW, out=tmp_path / "m",
                     provider=Watching(provider), device="cpu", progress=False, batch_size=2,
                     prefetch=4, fetch_workers=2)
    finally:
        engine._ModelStage.add = real
    assert 1 <= peak <= 4 + 1, peak
    assert os.path.exists(tmp_path / "m" / "export.json")
