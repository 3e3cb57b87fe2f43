"""``export_batch(..., frames=N)``: time series for temporal models, end to end.

The collection is a real multi-date local STAC catalogue built from the sample scene (as in
``test_series``): four dated copies of its B04/B08 pixels, each offset by a known value. No
registered model takes more than one frame yet, so the temporal model is a small CNN with
seeded random weights registered for these tests: it reads ``(N, T, C, H, W)`` frames and each
frame's date, so a wrong frame order, a missing frame or a wrong date changes its output.
Exports are checked against ``get_embedding(..., frames=N)`` on the same collection.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

pytest.importorskip("torch")

from eoembed import (
    OutputSpec,
    PointBuffer,
    SensorSpec,
    TemporalSpec,
    export_batch,
    get_embedding,
    get_embeddings_batch,
    load_export,
)
from eoembed.bands import sentinel2
from eoembed.embedders.base import Embedder, import_torch
from eoembed.embedders.card import InputContract, ModelCard, Normalisation
from eoembed.embedders.context import SampleContext
from eoembed.errors import CapabilityError, ExportConflictError, SpecError
from eoembed.pipeline import read_manifest
from eoembed.providers.local import LocalProvider
from eoembed.testing import FakeProvider, make_cog, make_stac_catalog, make_stac_item

L1C = "sentinel-2-l1c"
BANDS = ("B04", "B08")
MODEL = "test-series-cnn"
SMALL = PointBuffer(-75.70, 37.70, 320)  # 64 x 64 px at 10 m: the collection's extent
REGIONS = [
    SMALL,
    PointBuffer(-75.7015, 37.7010, 160),  # 32 x 32 px inside SMALL
    PointBuffer(-75.6985, 37.6990, 160),
]
SAMPLE_WINDOW = TemporalSpec.range("2015-06-23", "2016-06-11")
BINNED = TemporalSpec.range("2015-08-01", "2016-04-01")  # 244 days: four bins of 61 days
# Scenes: id -> (day, offset). Bins: [a], [b, c] (median), [] (empty, filled), [d].
SCENES = {"a": ("2015-08-05", 100), "b": ("2015-10-20", 300), "c": ("2015-11-10", 400),
          "d": ("2016-03-01", 500)}
FRAME_DATES = ["2015-08-31", "2015-10-31", "2015-12-31", "2016-03-01"]
"""The middle day of each bin (the frames' dates the model is given)."""


class SeriesCNN(Embedder):
    """8 x 8 patch features of every frame, plain and weighted by the frame's day of year."""

    card: ClassVar[ModelCard] = ModelCard(
        id=MODEL,
        family="test",
        summary="Temporal test model: seeded random 8 x 8 convolution over each frame.",
        input=InputContract(
            collections=(L1C,), processing_level="any", bands=sentinel2(*BANDS), gsd_m=10.0,
            image_size=None, patch_size=8,
            normalisation=Normalisation(mean=(1500.0, 2500.0), std=(800.0, 900.0)),
            frames=4, side_inputs=("time",),
        ),
        embedding_dim=16,
        outputs=("pooled", "grid"),
        weights=None,
        licence="test only",
        citation="none",
    )
    seen: ClassVar[list[SampleContext]] = []
    """Every context a forward pass received (to check what reached the model)."""
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def build(self) -> None:
        torch = import_torch()
        generator = torch.Generator().manual_seed(0)
        self.conv = torch.nn.Conv2d(len(BANDS), 8, 8, stride=8)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator))
            self.conv.bias.copy_(torch.randn(8, generator=generator))
        self.conv.to(self.device)

    def forward_grid(self, x: Any, context: Sequence[SampleContext] = ()) -> Any:
        torch = import_torch()
        with self._lock:
            self.seen.extend(context)
        if x.ndim == 4:  # one composite: one frame dated the middle of the window
            x = x[:, None]
            dates: list[Sequence[dt.date | None]] = [[c.date] for c in context]
        else:
            dates = [c.frame_dates for c in context]
        n, t = x.shape[:2]
        feats = self.conv(x.reshape(n * t, *x.shape[2:]))
        feats = feats.reshape(n, t, *feats.shape[1:])
        doy = torch.zeros(n, t, device=x.device)
        for i, row in enumerate(dates):
            for j, day in enumerate(row):
                if day is not None:
                    doy[i, j] = day.timetuple().tm_yday / 366
        weighted = feats * doy[:, :, None, None, None]
        return torch.cat([feats.mean(1), weighted.mean(1)], dim=1)


@pytest.fixture(scope="module", autouse=True)
def registered() -> Iterator[None]:
    """The test model, registered under MODEL for this module only."""
    from eoembed.embedders import registry

    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(registry._MODELS, MODEL, f"{__name__}:SeriesCNN")
        registry.embedder_class.cache_clear()
        yield
    registry.embedder_class.cache_clear()


@pytest.fixture(scope="module")
def collection(tmp_path_factory, sample_provider) -> tuple[LocalProvider, Path]:
    """A LocalProvider over four dated copies of the sample's pixels; and its catalogue."""
    root = tmp_path_factory.mktemp("frames")
    patch = sample_provider.fetch(SMALL, SAMPLE_WINDOW, SensorSpec(L1C, BANDS))
    base = np.nan_to_num(patch.values).astype(np.uint16)
    grid = SMALL.grid(10)
    items = []
    for scene_id, (day, offset) in SCENES.items():
        assets = {
            band: make_cog(root / scene_id / f"{band}.tif", base[i] + offset, grid.crs,
                           grid.transform, nodata=0)
            for i, band in enumerate(BANDS)
        }
        items.append(make_stac_item(scene_id, assets, date=day, cloud_cover=1.0))
    catalog = make_stac_catalog(root / "stac", items)
    return LocalProvider.from_stac(catalog), catalog


class SeriesSpy:
    """Wraps a provider: records ``fetch_series`` frames; refuses everything when ``closed``."""

    def __init__(self, inner: Any, *, closed: bool = False) -> None:
        self.inner = inner
        self.name = inner.name
        self.closed = closed
        self.series: list[int | None] = []
        self.fetches = 0
        self._lock = threading.Lock()

    def collections(self) -> Any:
        return self.inner.collections()

    def _io(self) -> None:
        if self.closed:
            raise AssertionError("I/O before the request was checked")

    def search(self, *args: Any, **kwargs: Any) -> Any:
        self._io()
        return self.inner.search(*args, **kwargs)

    def fetch(self, *args: Any, **kwargs: Any) -> Any:
        self._io()
        with self._lock:
            self.fetches += 1
        return self.inner.fetch(*args, **kwargs)

    def fetch_series(self, *args: Any, frames: int | None = None, **kwargs: Any) -> Any:
        self._io()
        with self._lock:
            self.series.append(frames)
        return self.inner.fetch_series(*args, frames=frames, **kwargs)


def run(regions: Sequence[PointBuffer], out: Path, provider: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("frames", 4)
    return export_batch(regions, MODEL, temporal=BINNED, out=out, provider=provider,
                        device="cpu", batch_size=2, progress=False, **kwargs)


def stored_by_region(out: Path) -> dict[int, Any]:
    """Pooled rows of an export, by the index of their region."""
    frame = load_export(out).set_index("id")
    return {e.region: frame.loc[e.id] for e in read_manifest(out) if e.status == "ok"}


# -- the numbers --------------------------------------------------------------------------


def test_pooled_export_with_frames_equals_get_embedding(tmp_path, collection) -> None:
    provider, _ = collection
    spy = SeriesSpy(provider)
    SeriesCNN.seen.clear()
    result = run(REGIONS, tmp_path / "x", spy)
    assert (result.total, result.ok, result.failed, result.reused) == (3, 3, 0, 0)
    assert spy.series == [4, 4, 4] and spy.fetches == 0  # each region read once, as a series
    # What reached the model: each region's place and the four frames' dates.
    assert sorted((round(c.lon, 6), round(c.lat, 6)) for c in SeriesCNN.seen) == sorted(
        (round(r.lonlat_geometry().centroid.x, 6), round(r.lonlat_geometry().centroid.y, 6))
        for r in REGIONS
    )
    assert {tuple(d.isoformat() for d in c.frame_dates) for c in SeriesCNN.seen} == {
        tuple(FRAME_DATES)
    }

    rows = stored_by_region(tmp_path / "x")
    direct = get_embeddings_batch(MODEL, spatials=REGIONS, temporal=BINNED, frames=4,
                                  provider=provider, device="cpu")
    for index, emb in enumerate(direct):
        row = rows[index]
        np.testing.assert_allclose(np.asarray(row.embedding, np.float32), emb.numpy(),
                                   rtol=1e-6, atol=1e-6)
        assert emb.meta["frames"] == 4
        assert list(row.frame_dates) == emb.meta["side_inputs"]["frame_dates"] == FRAME_DATES
        # every frame's scenes, frame after frame (the API lists them per frame)
        assert [sorted(f) for f in emb.meta["scene_ids"]] == [["a"], ["b", "c"], [], ["d"]]
        assert list(row.scene_ids) == [s for frame in emb.meta["scene_ids"] for s in frame]
    # The frames count: one composite of the same window gives other numbers.
    composite = get_embedding(MODEL, spatial=SMALL, temporal=BINNED, provider=provider,
                              device="cpu")
    assert not np.allclose(composite.numpy(), np.asarray(rows[0].embedding), atol=1e-3)

    # Recorded with the request: the job file and the data files' own metadata.
    job = json.loads((tmp_path / "x" / "export.json").read_text())
    assert job["frames"] == 4 and job["models"][MODEL]["request"]["frames"] == 4
    import pyarrow.parquet as pq

    (part,) = (tmp_path / "x" / MODEL).glob("part-*.parquet")
    schema = json.loads(pq.read_schema(part).metadata[b"eoembed"])
    assert schema["request"]["frames"] == 4


def test_grid_export_with_frames_equals_get_embedding(tmp_path, collection) -> None:
    provider, _ = collection
    run([SMALL], tmp_path / "g", provider, output=OutputSpec.grid(), format="zarr")
    tree = load_export(tmp_path / "g")
    (entry,) = read_manifest(tmp_path / "g")
    node = tree[entry.id].to_dataset()
    (name,) = [v for v in node.data_vars if node[v].ndim == 3]
    direct = get_embedding(MODEL, spatial=SMALL, temporal=BINNED, frames=4,
                           output=OutputSpec.grid(), provider=provider, device="cpu")
    np.testing.assert_allclose(node[name].values, direct.data.values, rtol=1e-6, atol=1e-6)
    attrs = {**node.attrs, **node[name].attrs}
    dates = attrs["frame_dates"]
    assert (json.loads(dates) if isinstance(dates, str) else list(dates)) == FRAME_DATES


# -- refused before any I/O ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("models", "frames", "error", "words"),
    [
        ("mosaiks", 3, CapabilityError, "takes one image, not frames=3"),
        ([MODEL, "mosaiks"], 4, CapabilityError, "'mosaiks' takes one image, not frames=4"),
        (MODEL, 5, CapabilityError, r"takes 1\.\.4 frames, not frames=5"),
        (MODEL, 0, SpecError, "frames"),
        (MODEL, True, SpecError, "frames"),
        (MODEL, "4", SpecError, "frames"),
    ],
)
def test_bad_frames_are_refused_before_any_io_as_the_api_does(
    tmp_path, sample_provider, models, frames, error, words
) -> None:
    closed = SeriesSpy(sample_provider, closed=True)  # every band mosaiks and MODEL read
    out = tmp_path / "x"
    with pytest.raises(error, match=words) as exported:
        export_batch(REGIONS, models, temporal=BINNED, out=out, provider=closed, frames=frames,
                     device="cpu", progress=False)
    assert not out.exists()  # not even the folder
    first = models if isinstance(models, str) else models[-1]
    with pytest.raises(error) as direct:
        get_embedding(first, spatial=SMALL, temporal=BINNED, frames=frames, provider=closed,
                      device="cpu")
    assert str(direct.value) == str(exported.value)


def test_a_provider_without_time_series_is_refused(tmp_path) -> None:
    with pytest.raises(CapabilityError, match="gives no time series"):
        export_batch([SMALL], MODEL, temporal=BINNED, out=tmp_path / "x", frames=4,
                     provider=FakeProvider(), device="cpu", progress=False)
    assert not (tmp_path / "x").exists()


# -- resume -------------------------------------------------------------------------------


def test_resume_reuses_only_results_of_the_same_frames(tmp_path, collection) -> None:
    provider, _ = collection
    out = tmp_path / "x"
    assert run(REGIONS[:2], out, provider).ok == 2
    spy = SeriesSpy(provider)
    more = run(REGIONS, out, spy)
    assert (more.ok, more.reused, more.fetches) == (1, 2, 1) and spy.series == [4]
    rows = stored_by_region(out)
    direct = get_embeddings_batch(MODEL, spatials=REGIONS, temporal=BINNED, frames=4,
                                  provider=provider, device="cpu")
    for index, emb in enumerate(direct):
        np.testing.assert_allclose(np.asarray(rows[index].embedding, np.float32), emb.numpy(),
                                   rtol=1e-6, atol=1e-6)
    assert run(REGIONS, out, spy).reused == 3 and spy.series == [4]

    # Another frames value, or none (one composite), is a different request: never reused.
    for other in (2, None):
        with pytest.raises(ExportConflictError, match=r"changed: frames"):
            run(REGIONS, out, provider, frames=other)
    redo = run(REGIONS, out, provider, frames=2, overwrite=True)
    assert (redo.ok, redo.reused) == (3, 0)
    assert {len(d) for d in load_export(out)["frame_dates"]} == {2}


# -- the command line ---------------------------------------------------------------------


def test_cli_export_with_frames_then_resume(tmp_path, collection) -> None:
    pytest.importorskip("pydantic")
    from typer.testing import CliRunner

    from eoembed.cli.main import app

    provider, catalog = collection
    out = tmp_path / "cli"
    argv = ["export", "-m", MODEL, "--lon", "-75.70", "--lat", "37.70", "--buffer-m", "320",
            "--start", "2015-08-01", "--end", "2016-04-01", "--frames", "4", "--device", "cpu",
            "--provider", f"local:{catalog}", "--out", str(out), "-q"]
    first = CliRunner().invoke(app, argv)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout.strip().splitlines()[-1])["ok"] == 1
    (row,) = load_export(out).itertuples()
    direct = get_embedding(MODEL, spatial=SMALL, temporal=BINNED, frames=4, provider=provider,
                           device="cpu")
    np.testing.assert_allclose(np.asarray(row.embedding, np.float32), direct.numpy(),
                               rtol=1e-6, atol=1e-6)
    assert list(row.frame_dates) == FRAME_DATES
    again = CliRunner().invoke(app, argv)
    assert json.loads(again.stdout.strip().splitlines()[-1])["reused"] == 1

    changed = CliRunner().invoke(app, [a if a != "4" else "2" for a in argv])
    assert changed.exit_code == 2 and "frames" in changed.stderr
    single = CliRunner().invoke(app, [
        "export", "-m", "mosaiks", "--lon", "-75.70", "--lat", "37.70", "--buffer-m", "320",
        "--year", "2016", "--frames", "3", "--provider", "sample", "--out", str(tmp_path / "m"),
    ])
    assert single.exit_code == 2
    assert "takes one image, not frames=3" in single.stderr
    assert not (tmp_path / "m").exists()
