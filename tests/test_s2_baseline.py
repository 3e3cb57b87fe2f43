"""Sentinel-2 processing baseline 04.00: every catalogue layout gives the unshifted pixels.

The fixture rewrites a corner of the sample scene as a baseline-04.00 product (every valid DN
+ 1000, nodata kept 0, a block of nodata inside the region) and catalogues it the ways real
catalogues do, on a loopback STAC API (``rustac serve``) and range-request file server (the
ones of ``test_stac``):

- Planetary Computer's ``sentinel-2-l2a``: ``s2:processing_baseline``, no offset declared;
- Earth Search's ``sentinel-2-c1-l2a`` / ``-l1c``: ``raster:bands`` scale 0.0001, offset -0.1,
  pixels as ESA made them;
- Earth Search's older ``sentinel-2-l2a``: the same ``raster:bands`` offset, with
  ``earthsearch:boa_offset_applied`` true (pixels already unshifted) or false (shifted).

Each must give the patch, and the embeddings, of the unshifted files.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window, from_bounds

from eoembed import PointBuffer, SensorSpec, TemporalSpec, get_embedding
from eoembed.bands import SENTINEL2_BANDS
from eoembed.providers import CachedProvider, LocalProvider, StacProvider
from eoembed.providers import cache as cache_module
from eoembed.providers._stac_bands import KNOWN_STAC_COLLECTIONS
from eoembed.providers.radiometry import HARMONISED_DN, Radiometry
from eoembed.providers.stac import scene_from_item
from eoembed.testing import make_cog, make_stac_catalog, make_stac_item
from eoembed.testing.servers import serve_catalogue

pytest.importorskip("pystac_client")

L1C, L2A = "sentinel-2-l1c", "sentinel-2-l2a"
RGBN = ("B02", "B03", "B04", "B08")
ALL13 = tuple(SENTINEL2_BANDS)
REGION = PointBuffer(lon=-75.70, lat=37.70, buffer_m=320)  # 64 x 64 px at 10 m
DAY = "2023-06-01"
WINDOW = TemporalSpec.year(2023)
MIXED_WINDOW = TemporalSpec.range("2021-01-01", "2023-01-01")
RASTER_ES = {"nodata": 0, "data_type": "uint16", "bits_per_sample": 15, "scale": 0.0001,
             "offset": -0.1}
"""Earth Search's raster:bands of a reflectance asset (Element84/earth-search#66)."""
RASTER_PC = {"nodata": 0, "data_type": "uint16"}
"""Planetary Computer: no scale, no offset."""


@dataclass(frozen=True)
class Layout:
    """How one catalogue describes a scene."""

    stac_id: str
    """Collection id on the loopback API (one per layout: the API holds them all)."""
    collection: str
    """eoembed collection."""
    keys: str
    """``"id"``: assets keyed B02 (Planetary Computer); ``"common"``: blue (Earth Search)."""
    properties: dict[str, Any]
    raster: dict[str, Any]
    shifted: bool
    """Whether the files hold DN + 1000."""


LAYOUTS = {
    "planetary-computer": Layout(
        "pc-sentinel-2-l2a", L2A, "id", {"s2:processing_baseline": "05.10"}, RASTER_PC, True
    ),
    "earth-search-c1": Layout(
        "sentinel-2-c1-l2a", L2A, "common", {"s2:processing_baseline": "05.09"}, RASTER_ES, True
    ),
    "earth-search-l2a-applied": Layout(
        "es-sentinel-2-l2a-applied", L2A, "common",
        {"s2:processing_baseline": "04.00", "earthsearch:boa_offset_applied": True},
        RASTER_ES, False,
    ),
    "earth-search-l2a-not-applied": Layout(
        "es-sentinel-2-l2a-not-applied", L2A, "common",
        {"s2:processing_baseline": "04.00", "earthsearch:boa_offset_applied": False},
        RASTER_ES, True,
    ),
}
L1C_LAYOUT = Layout(
    "sentinel-2-c1-l1c", L1C, "common", {"s2:processing_baseline": "05.09"}, RASTER_ES, True
)


def _key(layout: Layout, band: str) -> str:
    return band if layout.keys == "id" else SENTINEL2_BANDS[band].common_name


def _cogs(sample_dir: Path, root: Path) -> dict[str, tuple[Path, Path]]:
    """Band -> (unshifted COG, shifted COG): a corner of the sample around REGION.

    Both hold a block of nodata (0) inside the region; the shifted one has + 1000 elsewhere.
    """
    left, bottom, right, top = REGION.grid(10.0).bounds
    out = {}
    for band in ALL13:
        with rasterio.open(sample_dir / f"s2_{band}.jp2") as src:
            window = from_bounds(left - 600, bottom - 600, right + 600, top + 600, src.transform)
            window = window.round_offsets().round_lengths()
            data = src.read(1, window=window)
            transform = src.window_transform(window)
            hole = from_bounds(left, top - 120, left + 120, top, transform)
            hole = Window(int(hole.col_off), int(hole.row_off),
                          max(1, round(hole.width)), max(1, round(hole.height)))
            data[hole.toslices()] = 0
            crs = src.crs.to_string()
        plain = make_cog(root / "plain" / f"{band}.tif", data, crs, transform, nodata=0)
        shifted_data = np.where(data > 0, data + 1000, 0).astype(np.uint16)
        shifted = make_cog(root / "pb04" / f"{band}.tif", shifted_data, crs, transform, nodata=0)
        out[band] = (plain, shifted)
    return out


def _item(item_id: str, layout: Layout, files: dict[str, Path], bands: tuple[str, ...],
          *, date: str = DAY, href: str | None = None, properties: dict[str, Any] | None = None,
          collection: str | None = None) -> Any:
    """A pystac Item in ``layout``'s style; hrefs under ``href`` (a URL) or local paths."""
    assets = {_key(layout, b): files[b] for b in bands}
    item = make_stac_item(item_id, assets, date=date, cloud_cover=1.0,
                          collection=collection or layout.stac_id)
    item.properties.update(properties if properties is not None else layout.properties)
    for band in bands:
        asset = item.assets[_key(layout, band)]
        name = SENTINEL2_BANDS[band].common_name if layout.keys == "common" else band
        asset.extra_fields["eo:bands"] = [
            {"name": name, "common_name": SENTINEL2_BANDS[band].common_name}
        ]
        asset.extra_fields["raster:bands"] = [dict(layout.raster)]
        if href is not None:
            asset.href = f"{href}/{Path(asset.href).parent.name}/{Path(asset.href).name}"
    return item


def _files(cogs: dict[str, tuple[Path, Path]], shifted: bool) -> dict[str, Path]:
    return {b: pair[1] if shifted else pair[0] for b, pair in cogs.items()}


@dataclass
class Catalogue:
    api: str
    cogs: dict[str, tuple[Path, Path]]
    root: Path


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Iterator[Catalogue]:
    """The layouts on a loopback STAC API, assets on a range-request file server."""
    pytest.importorskip("rustac", reason="the STAC API server is rustac's (test extra)")
    pytest.importorskip("RangeHTTPServer", reason="the file server (test extra)")
    root = tmp_path_factory.mktemp("baseline")
    cogs = _cogs(sample_dir, root / "cogs")

    def items(files: str) -> list[dict[str, Any]]:
        found = [
            _item(f"{name}-item", layout, _files(cogs, layout.shifted), RGBN, href=files)
            for name, layout in LAYOUTS.items()
        ]
        found.append(_item("c1-l1c-item", L1C_LAYOUT, _files(cogs, True), ALL13, href=files))
        pc = LAYOUTS["planetary-computer"]
        found += [  # one scene before baseline 04.00, one after: same footprint, two dates
            _item("mixed-2021", pc, _files(cogs, False), RGBN, date="2021-06-01", href=files,
                  properties={"s2:processing_baseline": "03.01"}, collection="pc-mixed"),
            _item("mixed-2022", pc, _files(cogs, True), RGBN, date="2022-06-01", href=files,
                  properties={"s2:processing_baseline": "04.00"}, collection="pc-mixed"),
        ]
        return [i.to_dict() for i in found]

    with serve_catalogue(root, root / "cogs", items) as (_, api):
        yield Catalogue(api, cogs, root)


def _unshifted(catalogue: Catalogue, collection: str) -> LocalProvider:
    """The plain files, read as stored (no metadata): the reference."""
    return LocalProvider.from_folder(
        catalogue.root / "cogs" / "plain", collection=collection, bands="{band}.tif",
        start=DAY,
    )


def _stac(catalogue: Catalogue, layout: Layout) -> StacProvider:
    return StacProvider(catalogue.api, collections={layout.collection: layout.stac_id})


# ------------------------------------------------------------------------ the fixture itself


def test_fixture_is_shifted_where_valid_and_nodata_stays_zero(catalogue: Catalogue) -> None:
    with rasterio.open(catalogue.cogs["B04"][0]) as p, rasterio.open(catalogue.cogs["B04"][1]) as s:
        plain, shifted = p.read(1).astype(int), s.read(1).astype(int)
        assert s.nodata == 0
    assert (plain == 0).sum() > 100 and np.array_equal(plain == 0, shifted == 0)
    assert np.all(shifted[plain > 0] - plain[plain > 0] == 1000)


def test_reference_is_the_sample_outside_the_nodata_block(
    catalogue: Catalogue, sample_provider: Any, sample_window: TemporalSpec
) -> None:
    sensor = SensorSpec(L1C, ALL13, fill_value=-1.0)
    ours = _unshifted(catalogue, L1C).fetch(REGION, WINDOW, sensor)
    sample = sample_provider.fetch(REGION, sample_window, sensor)
    hole = ours.clear_count.values == 0
    assert 0 < hole.sum() < hole.size / 4
    np.testing.assert_array_equal(ours.values[:, ~hole], sample.values[:, ~hole])


# ------------------------------------------------------------------------ patches


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_every_layout_gives_the_unshifted_patch(catalogue: Catalogue, name: str) -> None:
    layout = LAYOUTS[name]
    sensor = SensorSpec(L2A, RGBN, fill_value=-1.0)
    got = _stac(catalogue, layout).fetch(REGION, WINDOW, sensor)
    expected = _unshifted(catalogue, L2A).fetch(REGION, WINDOW, sensor)
    np.testing.assert_allclose(got.values, expected.values, rtol=0, atol=1e-3)
    # Nodata stays nodata: the same pixels hold no observation and the fill value.
    np.testing.assert_array_equal(got.clear_count.values, expected.clear_count.values)
    assert (got.values == -1.0).any()
    assert got.attrs["unit"] == HARMONISED_DN
    (record,) = got.attrs["radiometry"]
    assert record["scene_id"] == f"{name}-item" and record["bands"] == list(RGBN)
    assert record["offset"] == (-1000.0 if layout.shifted else 0.0) and record["scale"] == 1.0
    if name == "earth-search-l2a-applied":
        assert "earthsearch:boa_offset_applied is true" in record["reason"]
    elif name == "planetary-computer":
        assert "s2:processing_baseline 05.10 >= 04.00" in record["reason"]
    else:
        assert "raster:bands scale 0.0001, offset -0.1" in record["reason"]


def test_mixed_median_equals_the_unshifted_one(catalogue: Catalogue) -> None:
    sensor = SensorSpec(L2A, RGBN, composite="median")
    provider = StacProvider(catalogue.api, collections={L2A: "pc-mixed"})
    got = provider.fetch(REGION, MIXED_WINDOW, sensor)
    expected = _unshifted(catalogue, L2A).fetch(REGION, WINDOW, sensor)
    assert sorted(got.attrs["scene_ids"]) == ["mixed-2021", "mixed-2022"]
    assert int(got.clear_count.max()) == 2  # both scenes observed every valid pixel
    np.testing.assert_allclose(got.values, expected.values, rtol=0, atol=1e-3)
    offsets = {r["scene_id"]: r["offset"] for r in got.attrs["radiometry"]}
    assert offsets == {"mixed-2021": 0.0, "mixed-2022": -1000.0}


def test_time_series_frames_are_harmonised_per_scene(catalogue: Catalogue) -> None:
    sensor = SensorSpec(L2A, RGBN)
    provider = StacProvider(catalogue.api, collections={L2A: "pc-mixed"})
    series = provider.fetch_series(REGION, MIXED_WINDOW, sensor)
    expected = _unshifted(catalogue, L2A).fetch(REGION, WINDOW, sensor)
    assert series.sizes["time"] == 2
    for frame in series.values:
        np.testing.assert_allclose(frame, expected.values, rtol=0, atol=1e-3)


def test_local_stac_gives_the_same_patch(catalogue: Catalogue, tmp_path: Path) -> None:
    items = []
    for name, layout in LAYOUTS.items():
        items.append(_item(f"local-{name}", layout, _files(catalogue.cogs, layout.shifted),
                           RGBN, collection=layout.collection))
    catalog = make_stac_catalog(tmp_path / "stac", items)
    alias = {SENTINEL2_BANDS[b].common_name: b for b in RGBN}
    provider = LocalProvider.from_stac(catalog, band_alias=alias)
    sensor = SensorSpec(L2A, RGBN)
    expected = _unshifted(catalogue, L2A).fetch(REGION, WINDOW, sensor)
    for name, layout in LAYOUTS.items():
        one = LocalProvider([s for s in provider.scenes if s.id == f"local-{name}"],
                            provider.collections())
        got = one.fetch(REGION, WINDOW, sensor)
        np.testing.assert_allclose(got.values, expected.values, rtol=0, atol=1e-3, err_msg=name)
        via_api = _stac(catalogue, layout).fetch(REGION, WINDOW, sensor)
        np.testing.assert_array_equal(got.values, via_api.values)


def test_local_stac_reads_items_saved_from_an_api_as_they_are(
    catalogue: Catalogue, tmp_path: Path
) -> None:
    """Earth Search items saved to disk keep ``sentinel-2-c1-l2a`` and ``red``/``nir`` keys:
    no band_alias needed, and they are harmonised as from the API."""
    layout = LAYOUTS["earth-search-c1"]
    item = _item("saved-c1", layout, _files(catalogue.cogs, layout.shifted), RGBN)
    assert item.collection_id == "sentinel-2-c1-l2a"
    provider = LocalProvider.from_stac(make_stac_catalog(tmp_path / "stac", [item]))
    sensor = SensorSpec(L2A, RGBN)
    got = provider.fetch(REGION, WINDOW, sensor)
    expected = _unshifted(catalogue, L2A).fetch(REGION, WINDOW, sensor)
    np.testing.assert_allclose(got.values, expected.values, rtol=0, atol=1e-3)
    assert got.attrs["radiometry"]


def test_local_folder_with_a_declared_baseline(catalogue: Catalogue) -> None:
    sensor = SensorSpec(L1C, ALL13)
    folder = LocalProvider.from_folder(
        catalogue.root / "cogs" / "pb04", collection=L1C, bands="{band}.tif", start=DAY,
        processing_baseline="05.10",
    )
    got = folder.fetch(REGION, WINDOW, sensor)
    expected = _unshifted(catalogue, L1C).fetch(REGION, WINDOW, sensor)
    np.testing.assert_allclose(got.values, expected.values, rtol=0, atol=1e-3)
    assert {r["offset"] for r in got.attrs["radiometry"]} == {-1000.0}
    assert {r["offset"] for r in expected.attrs["radiometry"]} == {0.0}
    assert "no processing baseline" in expected.attrs["radiometry"][0]["reason"]


# ------------------------------------------------------------------------ embeddings


@pytest.mark.parametrize("name", ["planetary-computer", "earth-search-c1",
                                  "earth-search-l2a-applied"])
def test_mosaiks_embedding_equals_the_unshifted_one(catalogue: Catalogue, name: str) -> None:
    sensor = SensorSpec(L2A, RGBN)
    got = get_embedding("mosaiks", spatial=REGION, temporal=WINDOW, sensor=sensor,
                        provider=_stac(catalogue, LAYOUTS[name]))
    expected = get_embedding("mosaiks", spatial=REGION, temporal=WINDOW, sensor=sensor,
                             provider=_unshifted(catalogue, L2A))
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
    assert got.meta["pixel_unit"] == HARMONISED_DN
    assert got.meta["radiometry"][0]["scene_id"] == f"{name}-item"


def test_torch_model_embedding_equals_the_unshifted_one(catalogue: Catalogue) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("timm")
    sensor = SensorSpec(L1C, ALL13)
    model = "ssl4eo-s12-resnet18-moco"  # 13 L1C bands, as reflectance (DN / 10000)
    got = get_embedding(model, spatial=REGION, temporal=WINDOW, sensor=sensor,
                        provider=_stac(catalogue, L1C_LAYOUT), device="cpu", weights="random")
    expected = get_embedding(model, spatial=REGION, temporal=WINDOW, sensor=sensor,
                             provider=_unshifted(catalogue, L1C), device="cpu",
                             weights="random")
    assert got.meta["weights"] == expected.meta["weights"]  # the same (cached) random model
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)
    assert got.meta["radiometry"][0]["offset"] == -1000.0


# ------------------------------------------------------------------------ cache


def test_patches_cached_under_other_radiometry_are_not_reused(
    catalogue: Catalogue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = LAYOUTS["planetary-computer"]
    sensor = SensorSpec(L2A, RGBN)
    cached = CachedProvider(_stac(catalogue, layout), tmp_path / "cache")
    monkeypatch.setattr(cache_module, "RADIOMETRY_CONVENTION", 0)  # as before the fix
    old_key = cached.key(REGION, WINDOW, sensor)
    cached.fetch(REGION, WINDOW, sensor)
    monkeypatch.undo()
    assert cached.key(REGION, WINDOW, sensor) != old_key
    cached.fetch(REGION, WINDOW, sensor)
    assert (cached.stats.hits, cached.stats.misses) == (0, 2)


def test_scene_identity_includes_radiometry(catalogue: Catalogue, tmp_path: Path) -> None:
    layout = LAYOUTS["planetary-computer"]
    files = _files(catalogue.cogs, True)
    with_baseline = make_stac_catalog(
        tmp_path / "a", [_item("x", layout, files, RGBN, collection=L2A)]
    )
    without = make_stac_catalog(
        tmp_path / "b", [_item("x", layout, files, RGBN, collection=L2A, properties={})]
    )
    sensor = SensorSpec(L2A, RGBN)
    keys = {
        CachedProvider(LocalProvider.from_stac(c), tmp_path / "cache").key(REGION, WINDOW, sensor)
        for c in (with_baseline, without)
    }
    assert len(keys) == 2


# ------------------------------------------------------------------------ the rules


def _rules(properties: dict[str, Any], raster: dict[str, Any] | None = None,
           collection: str = L2A) -> dict[str, Radiometry]:
    assets: dict[str, dict[str, Any]] = {"red": {}, "scl": {}}
    item = make_stac_item("i", {"red": "/r.tif", "scl": "/scl.tif"}, date=DAY,
                          collection=collection, geometry={
                              "type": "Point", "coordinates": [0.0, 0.0]})
    item.properties.update(properties)
    for key, fields in assets.items():
        item.assets[key].extra_fields.update(fields)
    if raster is not None:
        item.assets["red"].extra_fields.update(raster)
    return dict(scene_from_item(item, KNOWN_STAC_COLLECTIONS[collection]).radiometry)


def test_rules_in_order() -> None:
    es = {"raster:bands": [dict(RASTER_ES)]}
    flag = "earthsearch:boa_offset_applied"
    # Quality bands never get one; the offset the catalogue applied is not applied again.
    rules = _rules({flag: True, "s2:processing_baseline": "04.00"}, es)
    assert set(rules) == {"B04"} and rules["B04"].identity
    # A baseline before 04.00 has no offset, whatever raster:bands says.
    rule = _rules({"s2:processing_baseline": "03.01"}, es)["B04"]
    assert rule.identity and "ignored" in rule.reason
    # A declared offset is applied (STAC 1.1 spelling too); else the baseline decides.
    assert _rules({}, es)["B04"].offset == -1000.0
    assert _rules({}, {"raster:scale": 0.0001, "raster:offset": -0.1})["B04"].offset == -1000.0
    assert _rules({"processing:version": "05.11"})["B04"].offset == -1000.0
    assert _rules({"s2:processing_baseline": "04.00"}, {"raster:bands": [{"offset": 0.0}]})[
        "B04"].identity
    unknown = _rules({"s2:processing_baseline": "N/A"})["B04"]
    assert unknown.identity and "unparseable" in unknown.reason
    assert _rules({})["B04"].identity
    # Other collections are served as stored (Landsat has its own rules: test_landsat).
    assert KNOWN_STAC_COLLECTIONS["hls-s30"].info.unit == ""


def test_values_below_the_offset_clamp_to_zero_and_nodata_stays_nan() -> None:
    rule = _rules({"s2:processing_baseline": "05.00"})["B04"]
    values = np.array([np.nan, 1.0, 999.0, 1000.0, 1234.0, 11000.0], np.float32)
    out = rule.apply(values.copy())
    np.testing.assert_array_equal(out, [np.nan, 0.0, 0.0, 0.0, 234.0, 10000.0])
