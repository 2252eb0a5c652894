from collections.abc import Iterator
from pathlib import Path

import pytest

from common.discovery.testing import EtcdServer
from tests.harness import ServiceLauncher


@pytest.fixture(scope="module")
def module_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceLauncher]:
    """Like ``services``, shared by the tests of one module (starting services takes seconds)."""
    launcher = ServiceLauncher(tmp_path_factory.mktemp("services"))
    try:
        yield launcher
    finally:
        launcher.stop_all()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[ServiceLauncher]:
    """Start named services as real processes; all are stopped and their databases dropped."""
    launcher = ServiceLauncher(tmp_path)
    try:
        yield launcher
    finally:
        launcher.stop_all()


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    """A real etcd on free loopback ports (``.url``); ``.stop()`` then ``.start()`` restarts it."""
    with EtcdServer(data_dir=tmp_path / "etcd") as server:
        yield server


@pytest.fixture(scope="module")
def module_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """Like ``etcd``, shared by the tests of one module."""
    with EtcdServer(data_dir=tmp_path_factory.mktemp("etcd") / "data") as server:
        yield server
