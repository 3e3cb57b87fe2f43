"""Clay v1 base and v1.5 against TerraTorch's Clay code, on checkpoints in the released
Lightning layout (``state_dict`` with ``model.encoder.*``, decoder and teacher entries), and a
checkpoint written by Lightning itself (optimizer, scheduler, callbacks, hyper-parameters)."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import math
import os
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from eoembed.embedders.torch_state import preserved_torch_state

with preserved_torch_state():  # TerraTorch sets the float32 matmul precision when imported
    pytest.importorskip("terratorch")

from eoembed import OutputSpec
from eoembed.embedders import describe_model, get_embedder
from zoo import (
    CONTEXT,
    assert_parity,
    checkpoint_bytes,
    offline_hub,  # noqa: F401
    publish,
    sample_pixels,
    shallow,  # noqa: F401
)

# Clay configs/metadata.yaml, sentinel-2-l2a: band_order, mean, std, wavelength.
CLAY_BANDS = ["blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08",
              "swir16", "swir22"]
S2_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
MEAN = [1105.0, 1355.0, 1552.0, 1887.0, 2422.0, 2630.0, 2743.0, 2785.0, 2388.0, 1835.0]
STD = [1809.0, 1757.0, 1888.0, 1870.0, 1732.0, 1697.0, 1742.0, 1648.0, 1470.0, 1379.0]
WAVES = [0.493, 0.56, 0.665, 0.704, 0.74, 0.783, 0.842, 0.865, 1.61, 2.19]


def normalize_timestamp(date: dt.datetime) -> tuple[tuple[float, float], tuple[float, float]]:
    """As Clay's tutorials."""
    week = date.isocalendar().week * 2 * np.pi / 52
    hour = date.hour * 2 * np.pi / 24
    return (math.sin(week), math.cos(week)), (math.sin(hour), math.cos(hour))


def normalize_latlon(lat: float, lon: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """As Clay's tutorials."""
    lat, lon = lat * np.pi / 180, lon * np.pi / 180
    return (math.sin(lat), math.cos(lat)), (math.sin(lon), math.cos(lon))


ACQUIRED = dt.datetime(2015, 12, 16, 15, 52, tzinfo=dt.UTC)
"""A Sentinel-2 overpass time at the sample point (about 10:50 local solar time)."""
TIMED = dataclasses.replace(CONTEXT, date=ACQUIRED)


@pytest.fixture(autouse=True)
def _process_state() -> Iterator[None]:
    """TerraTorch's ``clay_v15.model`` import changes torch's matmul precision and an env var."""
    cudnn_env = os.environ.get("TORCH_CUDNN_V8_API_DISABLED")
    with preserved_torch_state():
        yield
    if cudnn_env is None:
        os.environ.pop("TORCH_CUDNN_V8_API_DISABLED", None)
    else:
        os.environ["TORCH_CUDNN_V8_API_DISABLED"] = cudnn_env


def _embedder_module() -> Any:
    from terratorch.models.backbones.clay_v1 import embedder

    return embedder


def _side(context: Any, n: int) -> tuple[Any, Any]:
    """(time, latlon) as Clay's tutorials build them from a scene's datetime and centre."""
    week, hour = normalize_timestamp(context.date)
    lat, lon = normalize_latlon(context.lat, context.lon)
    time = torch.tensor([[*week, *hour]] * n, dtype=torch.float32)
    latlon = torch.tensor([[*lat, *lon]] * n, dtype=torch.float32)
    return time, latlon


def _normalised(pixels: np.ndarray) -> Any:
    return torch.from_numpy((pixels - np.array(MEAN, np.float32)[:, None, None])
                            / np.array(STD, np.float32)[:, None, None])


def test_clay_matches_terratorch(
    offline_hub: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,  # noqa: F811
    sample_provider: Any, shallow: Callable[[str], None],  # noqa: F811
) -> None:
    shallow("clay-v1-base")
    embedder_mod = _embedder_module()
    torch.manual_seed(0)
    net = embedder_mod.Embedder(img_size=256, bands=CLAY_BANDS)
    state = {"model.encoder." + k.removeprefix("clay_encoder."): v
             for k, v in net.state_dict().items()}
    state["model.decoder.embed_to_pixels.weight"] = torch.randn(4, 4)  # dropped by the filter
    state["model.teacher.cls_token"] = torch.randn(1, 1, 8)
    payload = checkpoint_bytes({"state_dict": state, "epoch": 3, "global_step": 100})
    del net, state

    # Reference: TerraTorch's Embedder with its transform_state_dict filter, strictly.
    ckpt = tmp_path / "clay.ckpt"
    ckpt.write_bytes(payload)
    reference = embedder_mod.Embedder(img_size=256, bands=CLAY_BANDS)
    loaded = torch.load(ckpt, map_location="cpu", weights_only=True)
    reference.load_state_dict(embedder_mod.Embedder.transform_state_dict(loaded, reference))
    pixels = sample_pixels(sample_provider, S2_BANDS, 256, n=2)
    time, latlon = _side(TIMED, 2)
    with torch.inference_mode():
        tokens = reference.eval().forward_features(
            _normalised(pixels), time=time, latlon=latlon, waves=torch.tensor(WAVES),
            gsd=10.0)[-1][:, 1:]
    ref = tokens.reshape(2, 32, 32, -1).permute(0, 3, 1, 2).numpy()
    del reference, loaded
    gc.collect()

    source = publish(offline_hub, monkeypatch, "clay-v1-base", payload)
    embedder = get_embedder("clay-v1-base", device="cpu")
    assert embedder.weights_meta["sha256"] == source.sha256
    grid = embedder.embed(pixels, OutputSpec.grid(), [TIMED, TIMED])
    pooled = embedder.embed(pixels, OutputSpec.pooled("mean"), [TIMED, TIMED])
    assert_parity(grid, ref)
    assert_parity(pooled, ref.mean(axis=(2, 3)))

    # Side inputs are wired: place, date and GSD each move the embedding.
    for other in (dataclasses.replace(TIMED, lat=-10.0, lon=120.0),
                  dataclasses.replace(TIMED, date=dt.datetime(2016, 6, 1, 15, 52)),
                  dataclasses.replace(TIMED, date=ACQUIRED.replace(hour=3)),
                  dataclasses.replace(TIMED, gsd_m=30.0)):
        changed = embedder.embed(pixels[:1], OutputSpec.pooled("mean"), [other])
        assert not np.allclose(changed, pooled[:1], rtol=1e-3, atol=1e-4)
    # Mixed GSDs in one batch: each sample as if alone.
    mixed = embedder.embed(pixels, OutputSpec.pooled("mean"),
                           [TIMED, dataclasses.replace(TIMED, gsd_m=30.0)])
    np.testing.assert_allclose(mixed[0], pooled[0], rtol=1e-4, atol=1e-5)


def test_clay_card_is_consistent() -> None:
    card = describe_model("clay-v1-base")
    assert card.input.band_names == S2_BANDS
    norm = card.input.normalisation
    assert list(norm.mean) == MEAN and list(norm.std) == STD and norm.scale == 1.0
    assert card.input.image_size == 256 and card.input.patch_size == 8
    assert card.embedding_dim == 768
    assert set(card.input.side_inputs) == {"wavelengths", "gsd", "latlon", "time"}
    # The wavelengths as TerraTorch's Clay module defines them for the pretrained model.
    from terratorch.models.backbones.clay_v1.modules import WAVELENGTHS

    from eoembed.embedders.clay import CLAY_S2

    assert [CLAY_S2[b][0] for b in S2_BANDS] == CLAY_BANDS
    assert [CLAY_S2[b][3] for b in S2_BANDS] == [WAVELENGTHS[n] for n in CLAY_BANDS] == WAVES


def test_building_clay_leaves_the_process_as_it_was() -> None:
    """TerraTorch's Clay imports change torch's matmul precision and an env var: undone."""
    import sys

    for name in ("terratorch.models.backbones.clay_v15.model",
                 "terratorch.models.backbones.clay_v1.embedder"):
        sys.modules.pop(name, None)  # so the import (and its side effects) runs again
    precision = torch.get_float32_matmul_precision()
    cudnn_env = os.environ.get("TORCH_CUDNN_V8_API_DISABLED")
    for model_id in ("clay-v1-base", "clay-v1.5"):
        get_embedder(model_id, device="cpu", weights="random")
        assert torch.get_float32_matmul_precision() == precision
        assert os.environ.get("TORCH_CUDNN_V8_API_DISABLED") == cudnn_env


def test_clay_time_of_day() -> None:
    """The hour is the scene's UTC hour when known (a datetime); a bare day gives week only."""
    from eoembed.embedders.clay import clay_time

    week, hour = normalize_timestamp(ACQUIRED)
    assert clay_time(TIMED) == pytest.approx((*week, *hour))
    local = dataclasses.replace(
        TIMED, date=ACQUIRED.astimezone(dt.timezone(dt.timedelta(hours=-5))))
    assert clay_time(local) == pytest.approx((*week, *hour))
    assert clay_time(CONTEXT) == pytest.approx((*week, 0.0, 0.0))
    assert clay_time(dataclasses.replace(CONTEXT, date=None)) == (0.0, 0.0, 0.0, 0.0)


def _v15_module() -> Any:
    from terratorch.models.backbones.clay_v15 import model

    return model


def test_clay_v15_matches_terratorch(
    offline_hub: Path, monkeypatch: pytest.MonkeyPatch, sample_provider: Any,  # noqa: F811
    shallow: Callable[[str], None],  # noqa: F811
) -> None:
    """v1.5 (ViT-L) against TerraTorch's ``clay_v15`` encoder run as Clay's tutorials do."""
    shallow("clay-v1.5")
    v15 = _v15_module()
    # claymodel/model.py clay_mae_large, as TerraTorch ships it.
    large = {"dim": 1024, "depth": 24, "heads": 16, "dim_head": 64, "mlp_ratio": 4}
    torch.manual_seed(0)
    reference = v15.Encoder(mask_ratio=0.0, patch_size=8, shuffle=False, **large).eval()
    state = {"model.encoder." + k: v for k, v in reference.state_dict().items()}
    state["model.proj.weight"] = torch.randn(4, 1024)  # the teacher projection: dropped
    state["model.decoder.mask_patch"] = torch.randn(512)
    state["model.teacher.cls_token"] = torch.randn(1, 1, 8)
    payload = checkpoint_bytes({"state_dict": state, "epoch": 76, "global_step": 10,
                                "hyper_parameters": {"model_size": "large", "patch_size": 8}})
    del state
    pixels = sample_pixels(sample_provider, S2_BANDS, 256, n=1)
    time, latlon = _side(TIMED, 1)
    cube = {"pixels": _normalised(pixels), "time": time, "latlon": latlon,
            "waves": torch.tensor(WAVES), "gsd": torch.tensor(10.0)}
    with torch.inference_mode():
        tokens, unmasked, masked, _ = reference(cube)
    assert masked.numel() == 0 and torch.equal(unmasked[0], torch.arange(1024))
    ref = tokens[:, 1:].reshape(1, 32, 32, -1).permute(0, 3, 1, 2).numpy()
    del reference, tokens
    gc.collect()

    source = publish(offline_hub, monkeypatch, "clay-v1.5", payload)
    del payload
    embedder = get_embedder("clay-v1.5", device="cpu")
    assert embedder.weights_meta["sha256"] == source.sha256
    assert embedder.weights_meta["filename"] == "v1.5/clay-v1.5.ckpt"
    grid = embedder.embed(pixels, OutputSpec.grid(), [TIMED])
    assert_parity(grid, ref)
    card = describe_model("clay-v1.5")
    assert card.embedding_dim == 1024 and card.input.band_names == S2_BANDS
    assert list(card.input.normalisation.mean) == MEAN
    assert list(card.input.normalisation.std) == STD


def test_clay_loads_a_checkpoint_written_by_lightning(
    offline_hub: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,  # noqa: F811
    sample_provider: Any, shallow: Callable[[str], None],  # noqa: F811
) -> None:
    """One ``Trainer.fit`` step with an optimizer, LR scheduler, ``ModelCheckpoint`` and
    ``save_hyperparameters`` (paths and a namespace among them): the ``.ckpt`` loads through
    eoembed's loader (``weights_only=True``) into the weights the module ended with."""
    shallow("clay-v1.5")
    lightning = pytest.importorskip("lightning")
    from lightning.pytorch.callbacks import ModelCheckpoint
    from torch.utils.data import DataLoader, TensorDataset

    embedder_mod = _embedder_module()

    class ClayModule(lightning.LightningModule):  # type: ignore[misc]
        """Clay's ``ClayMAEModule`` layout: ``model.encoder`` (+ a decoder) under Lightning."""

        def __init__(self, metadata_path: Path, opt: argparse.Namespace, lr: float = 1e-5,
                     dolls: tuple[int, ...] = (16, 32, 64)) -> None:
            super().__init__()
            self.save_hyperparameters()
            net = embedder_mod.Embedder(img_size=256, bands=CLAY_BANDS)
            self.model = torch.nn.Module()
            self.model.encoder = net.clay_encoder
            self.model.decoder = torch.nn.Linear(768, 4)
            object.__setattr__(self, "net", net)  # shares the encoder; not a second module

        def training_step(self, batch: list[Any], batch_idx: int) -> Any:
            (x,) = batch
            time, latlon = _side(TIMED, len(x))
            feats = self.net.forward_features(x, time=time, latlon=latlon,
                                              waves=torch.tensor(WAVES), gsd=10.0)[-1]
            loss = self.model.decoder(feats).pow(2).mean()
            self.log("train/loss", loss)
            return loss

        def configure_optimizers(self) -> Any:
            optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr,
                                          betas=(0.9, 0.95))
            scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=5)
            return {"optimizer": optimizer,
                    "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    torch.manual_seed(0)
    module = ClayModule(Path("configs/metadata.yaml"), argparse.Namespace(platform="s2"))
    saver = ModelCheckpoint(dirpath=tmp_path, filename="clay", monitor="train/loss")
    trainer = lightning.Trainer(
        max_epochs=1, limit_train_batches=1, callbacks=[saver], logger=False,
        accelerator="cpu", enable_progress_bar=False, enable_model_summary=False,
    )
    data = TensorDataset(torch.randn(1, 10, 256, 256))  # the Embedder's chip size
    trainer.fit(module, DataLoader(data, batch_size=1))
    ckpt = Path(saver.best_model_path)
    raw = torch.load(ckpt, map_location="cpu", weights_only=False)  # our own file: inspected
    assert {"optimizer_states", "lr_schedulers", "callbacks", "hyper_parameters",
            "loops"} <= set(raw)
    assert isinstance(raw["hyper_parameters"]["metadata_path"], Path)
    with pytest.raises(pickle.UnpicklingError, match="PosixPath"):
        torch.load(ckpt, map_location="cpu", weights_only=True)  # torch's defaults refuse it
    del raw

    pixels = sample_pixels(sample_provider, S2_BANDS, 256, n=1)
    time, latlon = _side(TIMED, 1)
    net = module.net.eval()
    with torch.inference_mode():
        tokens = net.forward_features(_normalised(pixels), time=time, latlon=latlon,
                                      waves=torch.tensor(WAVES), gsd=10.0)[-1][:, 1:]
    ref = tokens.reshape(1, 32, 32, -1).permute(0, 3, 1, 2).numpy()
    del module, net, trainer
    gc.collect()

    publish(offline_hub, monkeypatch, "clay-v1-base", ckpt.read_bytes())
    embedder = get_embedder("clay-v1-base", device="cpu")
    assert_parity(embedder.embed(pixels, OutputSpec.grid(), [TIMED]), ref)


def test_clay_refuses_checkpoints_that_pickle_code(tmp_path: Path) -> None:
    """Only inert types are allowed: a callable in the hyper-parameters is never unpickled."""
    import functools

    from eoembed.errors import UnsafeWeightsError

    path = tmp_path / "clay.ckpt"
    torch.save({"state_dict": {"model.encoder.cls_token": torch.zeros(1)},
                "hyper_parameters": {"metadata_path": Path("m.yaml"),
                                     "hook": functools.partial(print, "pickled code")}}, path)
    with pytest.raises(UnsafeWeightsError, match="partial"):
        get_embedder("clay-v1-base", device="cpu", weights=str(path))
