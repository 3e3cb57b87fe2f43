"""The Dask engine on a real ``distributed.LocalCluster`` of worker processes.

Same job, both engines: the same records, bit for bit; a worker killed mid-run: its
partitions finish elsewhere, nothing duplicated or lost; resume across engines; a scheduler
that goes away: a clear error and a folder either engine finishes.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from eoembed import OutputSpec, PointBuffer, TemporalSpec, export_batch
from eoembed.errors import ClusterUnavailableError
from eoembed.pipeline import load_export, read_manifest
from eoembed.testing.providers import DelayedProvider

distributed = pytest.importorskip("distributed")
pytest.importorskip("torch")

WINDOW = TemporalSpec.range("2015-06-23", "2016-06-11")
ARGS = {"mosaiks": {"num_features": 32, "cell_px": 4}}
POINTS = [PointBuffer(-75.72 + 0.012 * (i % 8), 37.66 + 0.012 * (i // 8), 320) for i in range(24)]


@pytest.fixture(scope="module")
def cluster() -> Any:
    """Two single-threaded worker processes, as a small cluster would have."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as local, \
            distributed.Client(local) as client:
        yield client


def _pooled(out: Path) -> dict[str, np.ndarray]:
    import pyarrow.parquet as pq

    # nothing written twice: counted in the files themselves (load_export drops duplicates)
    ids = [i for part in sorted((out / "mosaiks").glob("part-*.parquet"))
           for i in pq.read_table(part, columns=["id"]).column("id").to_pylist()]
    assert len(ids) == len(set(ids)), "a record written twice"
    frame = load_export(out)
    return {row["id"]: np.asarray(row["embedding"]) for _, row in frame.iterrows()}


def _recorded_files_only(out: Path) -> None:
    """Every data file in the model folder is one the manifest names."""
    recorded = {f for e in read_manifest(out) if e.status == "ok" for f in e.files}
    on_disk = {p.name for p in (out / "mosaiks").glob("part-*.parquet")}
    assert on_disk == recorded


def test_dask_equals_local_pooled_and_grid(cluster: Any, tmp_path: Path) -> None:
    local = export_batch(POINTS, "mosaiks", temporal=WINDOW, out=tmp_path / "local",
                         model_args=ARGS, progress=False)
    dask = export_batch(POINTS, "mosaiks", temporal=WINDOW, out=tmp_path / "dask",
                        model_args=ARGS, engine="dask", client=cluster, partition_size=4,
                        progress=False)
    assert (local.ok, dask.ok, dask.failed) == (24, 24, 0)
    assert dask.fetches == local.fetches
    a, b = _pooled(tmp_path / "local"), _pooled(tmp_path / "dask")
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)  # bit for bit
    _recorded_files_only(tmp_path / "dask")
    statuses = {e.id: e.status for e in read_manifest(tmp_path / "dask")}
    assert statuses == {e.id: e.status for e in read_manifest(tmp_path / "local")}

    grid_local = export_batch(POINTS[:6], "mosaiks", temporal=WINDOW, out=tmp_path / "gl",
                              model_args=ARGS, output=OutputSpec.grid(), format="zarr",
                              progress=False)
    grid_dask = export_batch(POINTS[:6], "mosaiks", temporal=WINDOW, out=tmp_path / "gd",
                             model_args=ARGS, output=OutputSpec.grid(), format="zarr",
                             engine="dask", client=cluster, partition_size=2, progress=False)
    assert grid_local.ok == grid_dask.ok == 6
    tl, td = load_export(tmp_path / "gl"), load_export(tmp_path / "gd")
    assert sorted(tl.children) == sorted(td.children)
    for name in tl.children:
        np.testing.assert_array_equal(tl[name].ds["embedding"].values,
                                      td[name].ds["embedding"].values)


def test_resume_across_engines(cluster: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = export_batch(POINTS[:10], "mosaiks", temporal=WINDOW, out=out, model_args=ARGS,
                         progress=False)
    on_dask = export_batch(POINTS, "mosaiks", temporal=WINDOW, out=out, model_args=ARGS,
                           engine="dask", client=cluster, partition_size=4, progress=False)
    assert (first.ok, on_dask.reused, on_dask.ok) == (10, 10, 14)
    back = export_batch(POINTS, "mosaiks", temporal=WINDOW, out=out, model_args=ARGS,
                        progress=False)
    assert (back.reused, back.ok, back.fetches) == (24, 0, 0)
    reference = export_batch(POINTS, "mosaiks", temporal=WINDOW, out=tmp_path / "ref",
                             model_args=ARGS, progress=False)
    assert reference.ok == 24
    a, b = _pooled(out), _pooled(tmp_path / "ref")
    assert all(np.array_equal(a[k], b[k]) for k in b)


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    slow = DelayedProvider("sample", 0.25)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as local, \
            distributed.Client(local) as client:
        result: dict[str, Any] = {}

        def run() -> None:
            result["export"] = export_batch(
                POINTS, "mosaiks", temporal=WINDOW, out=out, model_args=ARGS, engine="dask",
                client=client, partition_size=2, provider=slow, progress=False)

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 120
        busy: list[str] = []
        while time.monotonic() < deadline:  # a worker in the middle of a partition
            busy = [w for w, keys in client.processing().items() if keys]
            if len(read_manifest(out)) >= 4 and busy:
                break
            time.sleep(0.05)
        assert busy
        victim = client.run(os.getpid)[busy[0]]
        os.kill(victim, signal.SIGKILL)
        thread.join(timeout=300)
        assert not thread.is_alive()
        assert victim not in client.run(os.getpid).values()  # really gone (the nanny restarts)
    exported = result["export"]
    assert (exported.ok, exported.failed) == (24, 0)
    got = _pooled(out)
    assert len(got) == 24
    _recorded_files_only(out)
    reference = export_batch(POINTS, "mosaiks", temporal=WINDOW, out=tmp_path / "ref",
                             model_args=ARGS, progress=False)
    assert reference.ok == 24
    ref = _pooled(tmp_path / "ref")
    assert all(np.array_equal(got[k], ref[k]) for k in ref)


def test_a_scheduler_that_goes_away_leaves_a_resumable_folder(tmp_path: Path) -> None:
    import dask

    out = tmp_path / "out"
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}), \
            pytest.raises(ClusterUnavailableError, match="no Dask scheduler"):
        export_batch(POINTS, "mosaiks", temporal=WINDOW, out=tmp_path / "none",
                     model_args=ARGS, engine="dask", client="tcp://127.0.0.1:9",
                     progress=False)

    slow = DelayedProvider("sample", 0.25)
    local = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                     dashboard_address=":0")
    errors: list[BaseException] = []

    def run() -> None:  # by address, as the command line connects
        try:
            export_batch(POINTS, "mosaiks", temporal=WINDOW, out=out, model_args=ARGS,
                         engine="dask", client=local.scheduler_address, partition_size=2,
                         provider=slow, progress=False)
        except BaseException as exc:  # noqa: BLE001 (inspected below)
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 120
    while not read_manifest(out) and time.monotonic() < deadline:
        time.sleep(0.1)
    local.close()  # scheduler and worker gone mid-run
    thread.join(timeout=120)
    assert not thread.is_alive() and errors
    assert isinstance(errors[0], ClusterUnavailableError), repr(errors[0])
    assert "run the same export again" in str(errors[0])
    done = len([e for e in read_manifest(out) if e.status == "ok"])
    assert 0 < done < 24
    finish = export_batch(POINTS, "mosaiks", temporal=WINDOW, out=out, model_args=ARGS,
                          progress=False)
    assert (finish.reused, finish.ok) == (done, 24 - done)
    assert len(_pooled(out)) == 24
    _recorded_files_only(out)


def test_the_command_line_moves_an_export_onto_a_scheduler(cluster: Any, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from eoembed.cli.main import app

    regions = tmp_path / "points.csv"
    regions.write_text("lon,lat\n" + "".join(f"{p.lon},{p.lat}\n" for p in POINTS[:6]))
    common = ["export", "--model", "mosaiks", "--regions", str(regions), "--buffer-m", "320",
              "--start", "2015-06-23", "--end", "2016-06-11", "--arg", "num_features=32",
              "--arg", "cell_px=4", "-q"]
    result = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "cli"), "--engine",
                                      "dask", "--scheduler", cluster.scheduler.address])
    assert result.exit_code == 0, result.output + str(result.exception)
    assert json.loads(result.output.strip().splitlines()[-1])["ok"] == 6
    local = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "local")])
    assert local.exit_code == 0, local.output
    a, b = _pooled(tmp_path / "cli"), _pooled(tmp_path / "local")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_a_provider_that_cannot_travel_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    from eoembed.errors import SpecError
    from eoembed.providers import get_provider

    class Unshippable:
        name = "sample"

        def __init__(self) -> None:
            self.lock = threading.Lock()
            self.collections = get_provider("sample").collections

        def fetch(self, *args: Any, **kwargs: Any) -> Any:
            return get_provider("sample").fetch(*args, **kwargs)

    with pytest.raises(SpecError, match="does not pickle"):
        export_batch(POINTS[:2], "mosaiks", temporal=WINDOW, out=tmp_path / "out",
                     model_args=ARGS, engine="dask", provider=Unshippable(), progress=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(SpecError, match="engine"):
        export_batch(POINTS[:2], "mosaiks", temporal=WINDOW, out=tmp_path / "out",
                     engine="spark", progress=False)
    with pytest.raises(SpecError, match="mix precisions"):  # each worker would pick its own
        export_batch(POINTS[:2], "ssl4eo-s12-vit-s16-dino", temporal=WINDOW,
                     out=tmp_path / "out", engine="dask", progress=False,
                     model_args={"ssl4eo-s12-vit-s16-dino": {"precision": "auto",
                                                             "weights": "random"}})
    assert not (tmp_path / "out").exists()


def test_a_dask_export_numbers_vector_parts_after_the_last_and_writes_its_catalogue(
    cluster: Any, tmp_path: Path
) -> None:
    """FlatGeobuf parts of a resumed Dask run come after the earlier ones (any part suffix
    counts), and the client writes the STAC catalogue and the COG mosaic once, at the end."""
    import json
    import re

    out = tmp_path / "fgb"
    kwargs = {"temporal": WINDOW, "out": out, "model_args": ARGS, "format": "flatgeobuf",
              "engine": "dask", "client": cluster, "partition_size": 2, "progress": False}
    assert export_batch(POINTS[:4], "mosaiks", **kwargs).ok == 4
    first = sorted(p.name for p in (out / "mosaiks").glob("part-*.fgb"))
    assert export_batch(POINTS[:8], "mosaiks", **kwargs).ok == 4
    second = sorted(p.name for p in (out / "mosaiks").glob("part-*.fgb"))
    added = sorted(set(second) - set(first))
    seq = [int(re.match(r"part-(\d+)-", n)[1]) for n in (*first, *added)]  # type: ignore[index]
    assert added and min(seq[len(first):]) > max(seq[:len(first)])
    assert len(load_export(out)) == 8
    items = list((out / "stac/mosaiks/items").glob("*.json"))
    ids = {i for p in items for i in json.loads(p.read_text())["properties"]["eoembed:ids"]}
    assert ids == {e.id for e in read_manifest(out) if e.status == "ok"}

    cog = tmp_path / "cog"
    export_batch(POINTS[:4], "mosaiks", temporal=WINDOW, out=cog, model_args=ARGS,
                 format="cog", output=OutputSpec.grid(), engine="dask", client=cluster,
                 partition_size=2, progress=False)
    tifs = sorted(p.name for p in (cog / "mosaiks").glob("*.tif"))
    vrts = list((cog / "mosaiks").glob("mosaic*.vrt"))
    assert len(tifs) == 4 and vrts
    listed = {m for v in vrts for m in re.findall(r">([0-9a-f]{32}\.tif)<", v.read_text())}
    assert listed == set(tifs)
    assert len(list((cog / "stac/mosaiks/items").glob("*.json"))) == 4
