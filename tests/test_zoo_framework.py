"""What every zoo adapter shares: seamless tiling, layout options, side inputs,
unpinned weights recorded, and the docs' model table generated from the cards (precision:
test_precision.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from eoembed import OutputSpec, get_embedding
from eoembed.embedders import describe_model, get_embedder, list_models
from eoembed.embedders.context import SIDE_INPUTS, SampleContext
from eoembed.embedders.model_table import README_MARKERS, markdown_table
from eoembed.embedders.registry import embedder_class
from eoembed.embedders.tiling import stitch_tiles, tile_starts
from eoembed.errors import CapabilityError
from zoo import checkpoint_bytes, offline_hub, rel_error  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("length", "size", "patch"), [(224, 224, 16), (240, 224, 16),
                                                       (512, 224, 16), (1000, 120, 8)])
def test_tiles_cover_the_region_on_patch_boundaries(length: int, size: int, patch: int) -> None:
    starts = tile_starts(length, size, patch)
    assert starts[0] == 0 and starts[-1] == length - size
    assert all(s % patch == 0 for s in starts)
    assert all(b - a <= size for a, b in itertools.pairwise(starts))


@pytest.mark.parametrize("shape", [(512, 320), (160, 96), (224, 224), (464, 240)])
def test_stitching_a_local_operator_has_no_seams(shape: tuple[int, int]) -> None:
    """A per-patch operator tiled and stitched equals the operator on the whole region."""
    x = torch.rand(2, 3, *shape)

    def patch_means(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(t, 16)

    stitched = stitch_tiles(x, 224, 16, patch_means, batch_size=3)
    torch.testing.assert_close(stitched, patch_means(x))


def test_tiling_needs_patch_multiples() -> None:
    with pytest.raises(CapabilityError, match="multiples of the model's patch size"):
        stitch_tiles(torch.rand(1, 3, 250, 250), 224, 16, lambda t: t, 4)


def test_tiled_vit_takes_each_cell_from_its_own_tile() -> None:
    """input_prep='tile': a 448 x 320 region gives a 28 x 20 token grid; every cell equals the
    token of a native 224 px forward on the tile it came from (no resizing anywhere)."""
    embedder = get_embedder("ssl4eo-s12-vit-s16-dino", device="cpu", weights="random",
                            input_prep="tile")
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 4000, (1, 13, 448, 320)).astype(np.float32)
    grid = embedder.embed(pixels, OutputSpec.grid())
    assert grid.shape == (1, 384, 28, 20)
    x = torch.from_numpy(embedder.normalise(pixels))
    with torch.inference_mode():
        top_left = embedder.forward_grid(x[..., :224, :224]).numpy()
        bottom_right = embedder.forward_grid(x[..., 224:, 96:]).numpy()
    # Rows 0..13 come from the first tile row; columns 0..6 are nearest the first column's
    # centre (tile starts 0 and 96 -> cells 0..6 own by the first, 7..19 by the second).
    np.testing.assert_allclose(grid[..., :7, :7], top_left[..., :7, :7], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grid[..., 14:, 13:], bottom_right[..., :, 7:], rtol=1e-4, atol=1e-4)
    pooled = embedder.embed(pixels, OutputSpec.pooled("mean"))
    np.testing.assert_allclose(pooled, grid.mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)
    # The class token of a tiled region: the mean of each native tile's class token.
    tiles = [x[..., y : y + 224, c : c + 224] for y in (0, 224) for c in (0, 96)]
    with torch.inference_mode():
        cls = torch.cat([embedder.forward_cls(t) for t in tiles]).mean(dim=0)
    np.testing.assert_allclose(embedder.embed(pixels, OutputSpec.pooled()), cls[None].numpy(),
                               rtol=1e-4, atol=1e-5)


def test_tiled_grid_is_georeferenced_cell_for_cell(sample_point: object) -> None:
    from eoembed import PointBuffer, TemporalSpec

    region = PointBuffer(lon=-75.70, lat=37.70, buffer_m=2240)  # 448 px at 10 m
    emb = get_embedding(
        "ssl4eo-s12-vit-s16-dino", spatial=region,
        temporal=TemporalSpec.range("2015-06-23", "2016-06-11"), output=OutputSpec.grid(),
        device="cpu", weights="random", input_prep="tile",
    )
    assert emb.data.shape == (384, 28, 28)
    assert emb.data.rio.resolution() == pytest.approx((160.0, -160.0))
    assert emb.meta["options"]["input_prep"] == "tile"


def test_channels_last_gives_the_same_embeddings() -> None:
    torch.manual_seed(0)
    plain = get_embedder("ssl4eo-s12-resnet50-dino", device="cpu", weights="random")
    nhwc = get_embedder("ssl4eo-s12-resnet50-dino", device="cpu", weights="random",
                        channels_last=True)
    nhwc.model.load_state_dict(plain.model.state_dict())
    pixels = np.random.default_rng(2).uniform(0, 4000, (2, 13, 96, 96)).astype(np.float32)
    assert rel_error(nhwc.embed(pixels, OutputSpec.grid()), plain.embed(pixels, OutputSpec.grid())) < 1e-5


def test_context_from_specs_is_the_centroid_and_window_middle() -> None:
    from eoembed import PointBuffer, TemporalSpec

    ctx = SampleContext.from_specs(
        PointBuffer(lon=-75.7, lat=37.7, buffer_m=1000), TemporalSpec.year(2021), 10.0
    )
    assert ctx.lon == pytest.approx(-75.7, abs=1e-6) and ctx.lat == pytest.approx(37.7, abs=1e-6)
    assert ctx.date is not None and ctx.date.isoformat() == "2021-07-02"
    assert math.isnan(SampleContext.unknown(10.0).lat)


def test_unpinned_weights_record_what_was_loaded(
    offline_hub: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811 (fixture)
) -> None:
    import timm

    cls = embedder_class("ssl4eo-s12-resnet50-dino")
    torch.manual_seed(4)
    payload = checkpoint_bytes(timm.create_model("resnet50", in_chans=13).state_dict())
    commit = "d" * 40
    folder = offline_hub / "models--test-org--unpinned"
    (folder / "snapshots" / commit).mkdir(parents=True)
    (folder / "snapshots" / commit / "w.pth").write_bytes(payload)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    source = dataclasses.replace(cls.card.weights, repo_id="test-org/unpinned", revision="main",
                                 filename="w.pth", sha256="")
    assert not source.pinned
    monkeypatch.setattr(cls, "card", dataclasses.replace(cls.card, weights=source))
    meta = get_embedder("ssl4eo-s12-resnet50-dino", device="cpu").weights_meta
    assert meta["pinned"] is False and meta["commit"] == commit
    assert meta["sha256"] == hashlib.sha256(payload).hexdigest()


def test_cards_are_consistent() -> None:
    for model in list_models():
        card = describe_model(model)
        norm = card.input.normalisation
        n = len(card.input.bands)
        assert len(norm.mean) in (0, 1, n) and len(norm.std) in (0, 1, n), model
        assert set(card.input.side_inputs) <= set(SIDE_INPUTS), model
        assert set(card.outputs) <= {"pooled", "grid"} and card.outputs, model
        if card.weights is not None:
            assert card.weights.repo_id or card.weights.download_url.startswith("https://"), model
            assert card.weights.filename and card.weights.licence, model
            assert not card.weights.pinned or all(
                c in "0123456789abcdef" for c in card.weights.revision + card.weights.sha256.lower()
            ), model


def test_readme_model_table_is_generated_from_the_cards() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from update_readme import render
    finally:
        sys.path.pop(0)
    text = (ROOT / "README.md").read_text()
    assert all(marker in text for marker in README_MARKERS)
    assert render(text) == text, "README model table is stale: run scripts/update_readme.py"
    table = markdown_table()
    assert all(f"`{m}`" in table for m in list_models())


def test_frames_are_refused_for_single_image_models_before_any_io() -> None:
    from eoembed import PointBuffer, TemporalSpec

    class NoReads:
        name = "no-reads"

        def collections(self) -> object:
            raise AssertionError("the provider was asked before the frames check")

    with pytest.raises(CapabilityError, match="takes one image, not frames=3"):
        get_embedding(
            "ssl4eo-s12-vit-s16-dino", spatial=PointBuffer(lon=-75.7, lat=37.7, buffer_m=640),
            temporal=TemporalSpec.year(2021), frames=3, device="cpu", weights="random",
        )
    embedder = get_embedder("ssl4eo-s12-vit-s16-dino", device="cpu", weights="random")
    with pytest.raises(CapabilityError, match=r"takes \(N, 13, H, W\) pixels"):
        embedder.embed(np.zeros((1, 2, 13, 32, 32), np.float32), OutputSpec.pooled())
