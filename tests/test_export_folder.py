"""One export folder, one request: identity, the run lock, verified resume, paths kept inside.

Real exports of the sample scene with MOSAIKS (fast, no weights) on small regions; each damage
case starts from a copy of a clean export and must resume to exactly the clean output.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from eoembed import OutputSpec, PointBuffer, TemporalSpec, export_batch, load_export
from eoembed.errors import (
    CorruptExportError,
    ExportConflictError,
    ExportLockedError,
    UnsafeExportPathError,
)
from eoembed.pipeline import read_manifest
from eoembed.testing import CountingProvider

WINDOW = TemporalSpec.range("2015-06-23", "2016-06-11")


def points(n: int, buffer_m: float = 160.0) -> list[PointBuffer]:
    lons = np.linspace(-75.70, -75.56, n)
    return [PointBuffer(float(lon), 37.68, buffer_m) for lon in lons]


def run(out: Path, provider, regions=None, **kwargs):
    args = {"temporal": WINDOW, "out": out, "provider": provider, "device": "cpu",
            "progress": False, "rows_per_part": 2, **kwargs}
    return export_batch(points(4) if regions is None else regions, "mosaiks", **args)


def values(data) -> dict[str, np.ndarray]:
    """Each result's numbers by id, for pooled frames and grid trees alike."""
    if hasattr(data, "geometry"):
        return {r.id: np.asarray(r.embedding, dtype=np.float32) for r in data.itertuples()}
    return {name: child["embedding"].values for name, child in data.children.items()}


def rows_on_disk(folder: Path) -> list[str]:
    """Every id in every part file, read raw (as DuckDB would), duplicates included."""
    return [i for p in sorted(folder.glob("part-*.parquet"))
            for i in pq.read_table(p, columns=["id"])["id"].to_pylist()]


GRID = {"output": OutputSpec.grid()}


@pytest.fixture(scope="module")
def clean(tmp_path_factory, sample_provider):
    """One clean export per format, made on first use."""
    made: dict[str, Path] = {}

    def get(fmt: str) -> Path:
        if fmt not in made:
            out = tmp_path_factory.mktemp("clean") / fmt
            run(out, sample_provider, format=fmt, **({} if fmt == "geoparquet" else GRID))
            made[fmt] = out
        return made[fmt]

    return get


# -- one identity -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"temporal": TemporalSpec.range("2015-06-01", "2016-06-11")}, ("temporal.start",)),
        ({"model_args": {"mosaiks": {"seed": 1}}}, ("options.seed", "weights.seed")),
        ({"format": "npz"}, ("format",)),
        ({"quantize": "int8"}, ("quantize",)),
        ({"regions": points(4, buffer_m=320)}, ("buffer_m",)),
    ],
)
def test_another_request_is_refused_naming_exactly_what_changed(
    tmp_path, sample_provider, change, fields
):
    out = tmp_path / "x"
    run(out, sample_provider)
    manifest = (out / "manifest.jsonl").read_bytes()
    with pytest.raises(ExportConflictError) as caught:
        run(out, sample_provider, **change)
    assert caught.value.fields == fields
    assert all(name in str(caught.value) for name in fields)
    assert (out / "manifest.jsonl").read_bytes() == manifest  # nothing added or mixed
    assert len(load_export(out)) == 4
    redone = run(out, sample_provider, overwrite=True, **change)
    assert redone.ok == 4 and redone.reused == 0


def test_another_model_set_is_another_request(tmp_path, sample_provider):
    run(tmp_path / "x", sample_provider)
    with pytest.raises(ExportConflictError) as caught:
        export_batch(points(4), ["mosaiks", "ssl4eo-s12-vit-s16-dino"], temporal=WINDOW,
                     out=tmp_path / "x", provider=sample_provider, device="cpu", progress=False,
                     model_args={"ssl4eo-s12-vit-s16-dino": {"weights": "random"}})
    assert caught.value.fields == ("models",)


def test_regions_can_be_added_and_reruns_reuse(tmp_path, sample_provider):
    out = tmp_path / "x"
    run(out, sample_provider, regions=points(4))
    more = [*points(4), PointBuffer(-75.62, 37.70, 160), PointBuffer(-75.66, 37.64, 320)]
    added = run(out, sample_provider, regions=more)
    assert (added.ok, added.reused) == (2, 4)
    frame = load_export(out)
    assert len(frame) == 6 and frame["id"].is_unique


# -- one run at a time --------------------------------------------------------------------


class Gate(CountingProvider):
    """Blocks every fetch until released, so a run can be held open."""

    def __init__(self, inner):
        super().__init__(inner)
        self.entered = threading.Event()
        self.release = threading.Event()

    def fetch(self, *args, **kwargs):
        self.entered.set()
        assert self.release.wait(60)
        return super().fetch(*args, **kwargs)


def test_a_second_concurrent_export_into_the_folder_is_refused(tmp_path, sample_provider):
    out = tmp_path / "x"
    gate = Gate(sample_provider)
    first: dict[str, object] = {}
    thread = threading.Thread(
        target=lambda: first.setdefault("result", run(out, gate)), daemon=True
    )
    thread.start()
    try:
        assert gate.entered.wait(60)
        counting = CountingProvider(sample_provider)
        for kwargs in ({}, {"overwrite": True}, {"format": "npz"}):
            with pytest.raises(ExportLockedError, match="another export"):
                run(out, counting, **kwargs)
        assert counting.calls == []
    finally:
        gate.release.set()
        thread.join(60)
    assert first["result"].ok == 4  # type: ignore[attr-defined]
    assert len(load_export(out)) == 4
    assert run(out, sample_provider).reused == 4  # the lock is free again


HOLDER = """
import sys
from filelock import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
sys.stdin.read()
"""


def test_a_lock_held_by_another_process_refuses_and_dies_with_it(tmp_path, sample_provider):
    out = tmp_path / "x"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out / ".eoembed.lock")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(ExportLockedError, match=r"\.eoembed\.lock"):
            run(out, sample_provider)
        assert not (out / "manifest.jsonl").exists()
    finally:
        holder.kill()  # like kill -9: the kernel releases the lock with the process
        holder.wait()
    assert run(out, sample_provider).ok == 4


# -- resume checks the files ---------------------------------------------------------------


def _first_file(out: Path, suffix: str) -> Path:
    return next(p for p in sorted((out / "mosaiks").rglob(f"*{suffix}")) if p.is_file())


def _delete_part(out: Path) -> None:
    _first_file(out, ".parquet").unlink()


def _truncate_part(out: Path) -> None:
    path = _first_file(out, ".parquet")
    path.write_bytes(path.read_bytes()[:-100])


def _flip_byte(out: Path) -> None:
    path = _first_file(out, ".parquet")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _tear_middle_manifest_line(out: Path) -> None:
    manifest = out / "manifest.jsonl"
    lines = manifest.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1][:40] + b"\n"  # a line torn in the middle, complete lines after it
    manifest.write_bytes(b"".join(lines))


def _truncate_cog(out: Path) -> None:
    path = _first_file(out, ".tif")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty_zarr_group(out: Path) -> None:
    store = out / "mosaiks" / "embeddings.zarr"
    group = next(p for p in sorted(store.iterdir()) if p.is_dir())
    shutil.rmtree(group)
    group.mkdir()  # a crash left the group's folder, empty


def _unrecorded_empty_zarr_group(out: Path) -> None:
    manifest = out / "manifest.jsonl"
    lines = manifest.read_bytes().splitlines(keepends=True)
    lost = json.loads(lines[-1])["id"]
    manifest.write_bytes(b"".join(lines[:-1]))
    group = out / "mosaiks" / "embeddings.zarr" / lost
    shutil.rmtree(group)
    group.mkdir()


def _delete_nc(out: Path) -> None:
    _first_file(out, ".nc").unlink()


def _truncate_npz(out: Path) -> None:
    path = _first_file(out, ".npz")
    path.write_bytes(path.read_bytes()[:-10])


@pytest.mark.parametrize(
    ("fmt", "damage", "redone", "load_raises"),
    [
        ("geoparquet", _delete_part, 2, True),
        ("geoparquet", _truncate_part, 2, True),
        ("geoparquet", _flip_byte, 2, False),  # same size: only resume's sha256 sees it
        ("geoparquet", _tear_middle_manifest_line, 2, True),  # a part with an unrecorded row
        ("cog", _truncate_cog, 1, True),
        ("zarr", _empty_zarr_group, 1, True),
        ("zarr", _unrecorded_empty_zarr_group, 1, False),
        ("netcdf", _delete_nc, 1, True),
        ("npz", _truncate_npz, 1, True),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_resume_redoes_damaged_files_to_the_clean_output(
    tmp_path, sample_provider, clean, fmt, damage, redone, load_raises
):
    reference = clean(fmt)
    out = tmp_path / "x"
    shutil.copytree(reference, out)
    damage(out)
    if load_raises:
        with pytest.raises(CorruptExportError, match="Run the same export again"):
            load_export(out)
    else:
        try:  # sizes match: load reads what it can, or says the file is damaged
            assert len(values(load_export(out))) == 4 - (fmt == "zarr")
        except CorruptExportError as exc:
            assert damage is _flip_byte and "Run the same export again" in str(exc)
    counting = CountingProvider(sample_provider)
    result = run(out, counting, format=fmt, **({} if fmt == "geoparquet" else GRID))
    assert (result.ok, result.reused, result.failed) == (redone, 4 - redone, 0)
    assert len(counting.calls) == redone
    want, got = values(load_export(reference)), values(load_export(out))
    assert sorted(got) == sorted(want)
    for key, vector in got.items():
        np.testing.assert_array_equal(vector, want[key])
    if fmt == "geoparquet":
        assert sorted(rows_on_disk(out / "mosaiks")) == sorted(want)  # no duplicate rows
    assert run(out, sample_provider, format=fmt,
               **({} if fmt == "geoparquet" else GRID)).reused == 4


def test_a_truncated_export_json_is_a_clear_error_and_resume_rebuilds_it(
    tmp_path, sample_provider, clean
):
    out = tmp_path / "x"
    shutil.copytree(clean("geoparquet"), out)
    job = out / "export.json"
    job.write_bytes(job.read_bytes()[:50])
    with pytest.raises(CorruptExportError, match=r"export\.json is unreadable.*again"):
        load_export(out)
    # Another request cannot pass for the lost one: each manifest line carries its fingerprint.
    with pytest.raises(ExportConflictError, match="another request"):
        run(out, sample_provider, model_args={"mosaiks": {"seed": 1}})
    with pytest.raises(ExportConflictError, match="another format"):
        run(out, sample_provider, format="npz")
    resumed = run(out, sample_provider)
    assert (resumed.ok, resumed.reused) == (0, 4)
    assert any("export.json was unreadable" in w for w in resumed.warnings)
    want = values(load_export(clean("geoparquet")))
    got = values(load_export(out))
    assert sorted(got) == sorted(want)
    assert json.loads(job.read_text())["format"] == "geoparquet"


# -- paths stay inside ----------------------------------------------------------------------


@pytest.fixture
def guarded_rmtree(monkeypatch, tmp_path):
    """Make any rmtree outside the test's folder fail loudly instead of deleting it."""
    real = shutil.rmtree

    def rmtree(path, *args, **kwargs):
        assert Path(path).resolve().is_relative_to(tmp_path.resolve()), path
        return real(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", rmtree)


@pytest.mark.parametrize("edited", ["/", "{victim}", "../victim", "mosaiks/../../victim"])
def test_folders_named_outside_the_export_are_refused_and_nothing_is_deleted(
    tmp_path, sample_provider, clean, guarded_rmtree, edited
):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    out = tmp_path / "x"
    shutil.copytree(clean("geoparquet"), out)
    job = json.loads((out / "export.json").read_text())
    job["models"]["mosaiks"]["dir"] = edited.format(victim=victim)
    (out / "export.json").write_text(json.dumps(job))
    for call in (lambda: load_export(out), lambda: run(out, sample_provider),
                 lambda: run(out, sample_provider, overwrite=True)):
        with pytest.raises(UnsafeExportPathError, match="outside"):
            call()
    assert (victim / "keep.txt").read_text() == "precious"
    assert len(list((out / "mosaiks").glob("*.parquet"))) == 2


def test_manifest_paths_outside_the_export_are_refused(tmp_path, sample_provider, clean):
    victim = tmp_path / "victim.parquet"
    victim.write_bytes(b"precious")
    out = tmp_path / "x"
    shutil.copytree(clean("geoparquet"), out)
    manifest = out / "manifest.jsonl"
    entries = [json.loads(line) for line in manifest.read_text().splitlines()]
    entries[0]["files"] = ["../../victim.parquet"]
    manifest.write_text("".join(json.dumps(e) + "\n" for e in entries))
    for call in (lambda: load_export(out), lambda: run(out, sample_provider)):
        with pytest.raises(UnsafeExportPathError, match="outside"):
            call()
    assert victim.read_bytes() == b"precious"
    assert {e.status for e in read_manifest(out)} == {"ok"}


def test_load_export_of_a_folder_without_an_export(tmp_path: Path) -> None:
    from eoembed.errors import EoembedError, ExportNotFoundError

    with pytest.raises(ExportNotFoundError, match="holds no eoembed export") as info:
        load_export(tmp_path)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, EoembedError)
