"""Two catalog instances found through etcd: losing one costs nothing but its breaker."""

from __future__ import annotations

import re
import signal

import httpx
import pytest

from tests.harness import Sidecar, wait_until

pytestmark = pytest.mark.system

TTL = 6  # the sidecars check readiness every 2 s
FROZEN_TTL = 30


def breaker_state(gateway_url: str, instance_id: str) -> float | None:
    metrics = httpx.get(f"{gateway_url}/metrics").text
    match = re.search(
        rf'gateway_breaker_state\{{instance="{re.escape(instance_id)}",upstream="catalog"\}} (\S+)',
        metrics,
    )
    return float(match.group(1)) if match else None


def served_requests(service) -> int:
    return service.log_path.read_text(errors="replace").count("GET /api/catalog/products/")


def test_a_stopped_instance_is_ejected_while_its_sibling_serves(services, etcd):
    first = services.start("catalog", seed=True)
    second = services.start("catalog", instance_of=first)
    # The second's lease outlasts the time its frozen sidecar (below) leaves it unrefreshed.
    sidecars = [Sidecar(first, etcd, ttl=TTL), Sidecar(second, etcd, ttl=FROZEN_TTL)]
    gateway = services.start(
        "gateway",
        env={
            "DISCOVERY": "etcd",
            "ETCD_URL": etcd.url,
            "GATEWAY_BREAKER_FAIL_MAX": "3",
            "GATEWAY_BREAKER_RESET_TIMEOUT": "1",
            "GATEWAY_RATE_LIMIT_ANONYMOUS": "100000/min",
        },
    )
    second_id = sidecars[1].key.rsplit("/", 1)[1]
    try:
        with httpx.Client(base_url=gateway.url, timeout=10) as client:

            def both_registered() -> bool:
                client.get("/api/catalog/products/1/")
                return served_requests(first) > 0 and served_requests(second) > 0

            assert wait_until(both_registered, timeout=30, interval=0.2)

            # A crash its sidecar has not noticed yet: the sidecar is frozen first, so the
            # registration stays for at least FROZEN_TTL * 2/3 s. Left running, its next
            # check could deregister the dead instance before the gateway meets it thrice.
            sidecars[1].process.send_signal(signal.SIGSTOP)
            second.stop(signal.SIGKILL)
            during = [client.get("/api/catalog/products/1/").status_code for _ in range(60)]
            assert during.count(200) == len(during)  # GETs retry on the live sibling
            assert breaker_state(gateway.url, second_id) == 2.0  # open

            second.start()
            sidecars[1].process.send_signal(signal.SIGCONT)

            def closed_again() -> bool:
                client.get("/api/catalog/products/1/")
                return breaker_state(gateway.url, second_id) == 0.0

            assert wait_until(closed_again, timeout=30, interval=0.2)
            before = served_requests(second)
            for _ in range(10):
                assert client.get("/api/catalog/products/1/").status_code == 200
            assert served_requests(second) > before  # back in the rotation
    finally:
        for sidecar in sidecars:
            sidecar.process.send_signal(signal.SIGCONT)  # a stopped process leaves SIGTERM pending
            sidecar.process.terminate()
            sidecar.process.wait(timeout=10)
