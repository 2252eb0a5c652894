"""The register_service sidecar against a real catalog process and a real etcd.

The sidecar is what makes etcd discovery honest: an instance is in etcd
only while its /ready/ passes, and leaves at once when it stops being ready
or the sidecar is told to stop.
"""

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from etcd3gw.lease import Lease

from common.discovery.testing import EtcdServer
from tests.harness import RunningService, ServiceLauncher, Sidecar

pytestmark = pytest.mark.system

TTL = 2  # seconds; the sidecar checks every TTL/3


def wait_until(condition: Callable[[], Any], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def holds_for(condition: Callable[[], Any], seconds: float) -> bool:
    """True if ``condition`` stays true, checked every 50 ms, for ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not condition():
            return False
        time.sleep(0.05)
    return True


@pytest.fixture(scope="module")
def catalog(module_services: ServiceLauncher) -> RunningService:
    return module_services.start("catalog")


@pytest.fixture
def sidecar(catalog: RunningService, etcd: EtcdServer) -> Iterator[Sidecar]:
    running = Sidecar(catalog, etcd, ttl=TTL)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()
        if catalog.process is None or catalog.process.poll() is not None:
            catalog.start()  # leave the module's catalog running for the next test


def test_an_instance_is_registered_only_while_ready_and_leaves_on_sigterm(
    catalog: RunningService, sidecar: Sidecar
) -> None:
    assert wait_until(sidecar.entry, timeout=20), sidecar.log()
    value, metadata = sidecar.entry()
    assert (value["url"], value["service"]) == (catalog.url, "catalog")
    assert value["registered_at"]
    assert int(metadata["lease"]) != 0
    # Longer than one TTL: only the sidecar's refreshes keep the key alive.
    assert holds_for(sidecar.entry, TTL * 1.5), sidecar.log()

    catalog.stop()
    assert wait_until(lambda: sidecar.entry() is None, timeout=TTL), sidecar.log()

    catalog.start()
    assert wait_until(sidecar.entry, timeout=TTL * 2), sidecar.log()

    assert sidecar.terminate() == 0, sidecar.log()
    assert sidecar.entry() is None
    assert "SIGTERM received, stopping" in sidecar.log()
    assert "deregistered (stopping)" in sidecar.log()


def test_the_registration_survives_a_lost_lease_and_an_etcd_restart(
    sidecar: Sidecar, etcd: EtcdServer
) -> None:
    assert wait_until(sidecar.entry, timeout=20), sidecar.log()
    lost = int(sidecar.entry()[1]["lease"])

    Lease(lost, client=etcd.client()).revoke()  # as if etcd had lost it
    assert wait_until(
        lambda: (entry := sidecar.entry()) is not None and int(entry[1]["lease"]) != lost,
        timeout=TTL * 2,
    ), sidecar.log()

    etcd.stop()
    etcd.start()
    assert wait_until(sidecar.entry, timeout=TTL * 2), sidecar.log()
    assert holds_for(sidecar.entry, TTL * 1.5), sidecar.log()
