"""``import eoembed`` is light: no torch, xarray or rasterio, and fast."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "xarray", "rasterio", "rioxarray", "timm", "ee", "zarr")
IMPORT_BUDGET_S = 0.3


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_import_pulls_in_no_heavy_dependency() -> None:
    code = (
        "import sys, eoembed\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    loaded = _run(code).split()
    assert "torch" not in loaded and "xarray" not in loaded and "rasterio" not in loaded, loaded
    assert loaded == [], f"import eoembed loaded heavy modules: {loaded}"


def test_specs_work_without_heavy_dependencies() -> None:
    code = (
        "import sys\n"
        "from eoembed import BBox, PointBuffer, SensorSpec, TemporalSpec, OutputSpec\n"
        "specs = [BBox(0, 0, 1, 1), TemporalSpec.year(2021), SensorSpec('c', ('B04',)),\n"
        "         OutputSpec.grid(), PointBuffer(0.5, 0.5, 100)]\n"
        "assert all(len(s.fingerprint) == 64 for s in specs)\n"
        "print(' '.join(m for m in ('torch', 'xarray', 'rasterio') if m in sys.modules))\n"
    )
    assert _run(code).split() == []


def test_lazy_attributes_resolve() -> None:
    code = (
        "import eoembed\n"
        "assert callable(eoembed.get_embedding) and callable(eoembed.list_models)\n"
        "assert 'mosaiks' in eoembed.list_models()\n"
        "assert set(eoembed.__all__) <= set(dir(eoembed))\n"
        "import sys; print('torch' in sys.modules)\n"
    )
    # listing models reads model cards only; it must not import torch either
    assert _run(code).strip() == "False"
    import eoembed

    with pytest.raises(AttributeError, match="no_such_thing"):
        eoembed.no_such_thing  # noqa: B018


def test_import_is_fast() -> None:
    code = (
        "import time\n"
        "t = time.perf_counter()\n"
        "import eoembed\n"
        "print(time.perf_counter() - t)\n"
    )
    times = [float(_run(code)) for _ in range(3)]
    best = min(times)
    assert best < IMPORT_BUDGET_S, (
        f"'import eoembed' took {best:.3f} s at best of 3 (all: {times}); the budget is "
        f"{IMPORT_BUDGET_S} s. Something heavy is imported eagerly: run "
        "`python -X importtime -c 'import eoembed'` to find it."
    )


def test_tests_run_offline() -> None:
    """The conftest blocks internet connections (loopback stays open for local servers)."""
    import socket

    with pytest.raises(ConnectionRefusedError, match="blocked"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)  # TEST-NET-1, never routed
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        client = socket.create_connection(server.getsockname(), timeout=1)
        client.close()
    finally:
        server.close()
