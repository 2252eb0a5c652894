"""Service discovery: settings, and the static, DNS and etcd backends against real servers."""

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import environ
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from etcd3gw.lease import Lease
from pytest_django.fixtures import Settings

from common.discovery import (
    Discovery,
    Instance,
    discovery_build,
    discovery_from_settings,
    discovery_reset,
)
from common.discovery.dns import DnsDiscovery
from common.discovery.etcd import EtcdDiscovery
from common.discovery.static import StaticDiscovery
from common.discovery.testing import EtcdServer, free_port
from common.settings import discovery_config

DISCOVERY_VARIABLES = (
    "DISCOVERY",
    "CATALOG_URL",
    "USERS_URL",
    "ORDERS_URL",
    "CATALOG_DNS",
    "USERS_DNS",
    "ORDERS_DNS",
    "ETCD_URL",
    "ETCD_PREFIX",
    "DISCOVERY_LEASE_TTL",
    "DNS_REFRESH_SECONDS",
)


def env_with(monkeypatch: pytest.MonkeyPatch, **values: str) -> environ.Env:
    for key in DISCOVERY_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return environ.Env()


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``condition`` every 20 ms; True as soon as it holds, False at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def urls(discovery: Discovery, service: str) -> set[str]:
    return {instance.url for instance in discovery.instances(service)}


# --- settings -------------------------------------------------------------------


def test_defaults_are_static_on_the_local_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    config = discovery_config(env=env_with(monkeypatch))

    assert config["BACKEND"] == "static"
    assert config["STATIC"] == {
        "catalog": ["http://127.0.0.1:8001"],
        "users": ["http://127.0.0.1:8002"],
        "orders": ["http://127.0.0.1:8003"],
    }
    assert config["DNS"] == {
        "catalog": "catalog:8001",
        "users": "users:8002",
        "orders": "orders:8003",
    }
    assert (config["ETCD_URL"], config["ETCD_PREFIX"]) == ("http://127.0.0.1:2379", "/services/")
    assert (config["LEASE_TTL"], config["DNS_REFRESH_SECONDS"]) == (10, 5.0)


def test_a_url_variable_may_list_several_instances(monkeypatch: pytest.MonkeyPatch) -> None:
    env = env_with(monkeypatch, CATALOG_URL="http://10.0.0.1:8001/, http://10.0.0.2:8001")

    config = discovery_config(env=env)

    assert config["STATIC"]["catalog"] == ["http://10.0.0.1:8001", "http://10.0.0.2:8001"]


def test_the_backend_name_is_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    assert discovery_config(env=env_with(monkeypatch, DISCOVERY="ETCD"))["BACKEND"] == "etcd"


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"DISCOVERY": "consul"}, "DISCOVERY='consul' is not a discovery backend"),
        ({"USERS_URL": "users:8002"}, "USERS_URL"),
        ({"ORDERS_DNS": "orders"}, "ORDERS_DNS"),
        ({"ETCD_URL": "127.0.0.1:2379"}, "ETCD_URL"),
        ({"DISCOVERY_LEASE_TTL": "1"}, "DISCOVERY_LEASE_TTL"),
        ({"DNS_REFRESH_SECONDS": "0"}, "DNS_REFRESH_SECONDS"),
    ],
)
def test_bad_discovery_settings_stop_boot_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        discovery_config(env=env_with(monkeypatch, **variables))


def test_every_service_gets_the_discovery_settings(settings: Settings) -> None:
    assert settings.DISCOVERY["BACKEND"] in ("static", "etcd", "dns")


def test_discovery_from_settings_builds_one_backend_per_process(settings: Settings) -> None:
    settings.DISCOVERY = {**settings.DISCOVERY, "BACKEND": "static"}
    discovery_reset()
    try:
        first = discovery_from_settings()
        assert first is discovery_from_settings()
        assert isinstance(first, StaticDiscovery)
        assert isinstance(first, Discovery)
    finally:
        discovery_reset()


# --- static ---------------------------------------------------------------------


def test_static_gives_one_instance_per_url_with_stable_ids() -> None:
    discovery = discovery_build(
        {
            "BACKEND": "static",
            "STATIC": {"catalog": ["http://10.0.0.1:8001/", "http://10.0.0.2:8001"]},
        }
    )
    discovery.start()

    assert discovery.instances("catalog") == [
        Instance(service="catalog", id="catalog-10.0.0.1-8001", url="http://10.0.0.1:8001"),
        Instance(service="catalog", id="catalog-10.0.0.2-8001", url="http://10.0.0.2:8001"),
    ]


def test_an_unknown_service_has_no_instances_rather_than_an_error() -> None:
    assert StaticDiscovery(urls={"catalog": ["http://a:1"]}).instances("nope") == []


def test_callers_cannot_change_the_table_through_the_returned_list() -> None:
    discovery = StaticDiscovery(urls={"catalog": ["http://a:1"]})
    discovery.instances("catalog").clear()
    assert len(discovery.instances("catalog")) == 1


# --- dns ------------------------------------------------------------------------

LOCALHOST_INSTANCES = {
    ("catalog-127.0.0.1-8001", "http://127.0.0.1:8001"),
    ("catalog-::1-8001", "http://[::1]:8001"),
}


def test_dns_makes_an_instance_of_every_address_a_name_resolves_to() -> None:
    discovery = DnsDiscovery(targets={"catalog": "localhost:8001"})
    discovery.refresh()

    found = discovery.instances("catalog")

    # localhost gives 127.0.0.1, ::1 or both depending on /etc/hosts: assert no more than that.
    assert found
    assert {(i.id, i.url) for i in found} <= LOCALHOST_INSTANCES


def test_dns_start_resolves_in_the_background_and_notifies() -> None:
    changes: list[tuple[str, list[Instance]]] = []
    discovery = DnsDiscovery(targets={"users": "localhost:8002"}, refresh_seconds=0.05)
    discovery.subscribe(lambda service, instances: changes.append((service, instances)))
    discovery.start()
    discovery.start()  # idempotent
    try:
        assert wait_until(lambda: bool(discovery.instances("users")))
        assert changes[0][0] == "users"
        assert {i.url for i in changes[0][1]} <= {"http://127.0.0.1:8002", "http://[::1]:8002"}
    finally:
        discovery.stop()


def test_a_name_that_does_not_resolve_gives_no_instances_and_no_error() -> None:
    discovery = DnsDiscovery(targets={"orders": "no-such-service.invalid:8003"})
    discovery.refresh()
    assert discovery.instances("orders") == []


def test_dns_keeps_the_last_good_answer_when_resolution_fails() -> None:
    calls = 0

    def flaky_resolver(*args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return socket.getaddrinfo(*args, **kwargs)

    discovery = DnsDiscovery(targets={"catalog": "localhost:8001"}, resolver=flaky_resolver)
    discovery.refresh()
    before = discovery.instances("catalog")
    discovery.refresh()

    assert before
    assert discovery.instances("catalog") == before


# --- etcd -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """One real etcd for the module; each test works under a prefix of its own."""
    with EtcdServer(data_dir=tmp_path_factory.mktemp("etcd") / "data") as server:
        yield server


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    return f"/t/{request.node.name}/"


@pytest.fixture
def watcher(etcd_server: EtcdServer, prefix: str) -> Iterator[EtcdDiscovery]:
    discovery = EtcdDiscovery(url=etcd_server.url, prefix=prefix, backoff_max=0.5)
    discovery.start()
    try:
        yield discovery
    finally:
        discovery.stop()


def register(
    server: EtcdServer, prefix: str, service: str, instance_id: str, url: str, ttl: int
) -> Lease:
    """What the sidecar does: a lease, and the instance's key attached to it."""
    client = server.client()
    lease = client.lease(ttl)
    value = {"url": url, "service": service, "registered_at": "2026-01-01T00:00:00+00:00"}
    client.put(f"{prefix}{service}/{instance_id}", json.dumps(value), lease=lease)
    return lease


def test_etcd_sees_every_registered_instance(
    etcd_server: EtcdServer, prefix: str, watcher: EtcdDiscovery
) -> None:
    register(etcd_server, prefix, "catalog", "c1", "http://127.0.0.1:9001", ttl=30)
    register(etcd_server, prefix, "catalog", "c2", "http://127.0.0.1:9002/", ttl=30)

    assert wait_until(lambda: len(watcher.instances("catalog")) == 2)
    assert watcher.instances("catalog") == [
        Instance(service="catalog", id="c1", url="http://127.0.0.1:9001"),
        Instance(service="catalog", id="c2", url="http://127.0.0.1:9002"),
    ]


def test_etcd_lists_what_was_registered_before_the_watcher_started(
    etcd_server: EtcdServer, prefix: str
) -> None:
    register(etcd_server, prefix, "users", "u1", "http://127.0.0.1:9101", ttl=30)
    discovery = EtcdDiscovery(url=etcd_server.url, prefix=prefix)
    discovery.start()
    try:
        assert urls(discovery, "users") == {"http://127.0.0.1:9101"}  # start() waited
    finally:
        discovery.stop()


def test_a_revoked_lease_removes_its_instance_within_a_second(
    etcd_server: EtcdServer, prefix: str, watcher: EtcdDiscovery
) -> None:
    keep = register(etcd_server, prefix, "catalog", "c1", "http://127.0.0.1:9001", ttl=30)
    gone = register(etcd_server, prefix, "catalog", "c2", "http://127.0.0.1:9002", ttl=30)
    assert wait_until(lambda: len(watcher.instances("catalog")) == 2)

    gone.revoke()

    assert wait_until(lambda: urls(watcher, "catalog") == {"http://127.0.0.1:9001"}, timeout=1)
    keep.revoke()


def test_an_expired_lease_removes_its_instance(
    etcd_server: EtcdServer, prefix: str, watcher: EtcdDiscovery
) -> None:
    register(etcd_server, prefix, "orders", "o1", "http://127.0.0.1:9201", ttl=2)
    assert wait_until(lambda: len(watcher.instances("orders")) == 1)

    assert wait_until(lambda: watcher.instances("orders") == [], timeout=6)


def test_subscribers_hear_of_every_change(
    etcd_server: EtcdServer, prefix: str, watcher: EtcdDiscovery
) -> None:
    changes: list[tuple[str, list[str]]] = []
    watcher.subscribe(lambda service, found: changes.append((service, [i.id for i in found])))

    lease = register(etcd_server, prefix, "catalog", "c1", "http://127.0.0.1:9001", ttl=30)
    assert wait_until(lambda: len(changes) == 1)
    lease.revoke()
    assert wait_until(lambda: len(changes) == 2)

    assert changes == [("catalog", ["c1"]), ("catalog", [])]


def test_a_failing_subscriber_does_not_stop_the_watcher(
    etcd_server: EtcdServer, prefix: str, watcher: EtcdDiscovery
) -> None:
    def broken(service: str, found: list[Instance]) -> None:
        raise RuntimeError("subscriber bug")

    watcher.subscribe(broken)
    register(etcd_server, prefix, "catalog", "c1", "http://127.0.0.1:9001", ttl=30)
    register(etcd_server, prefix, "catalog", "c2", "http://127.0.0.1:9002", ttl=30)

    assert wait_until(lambda: len(watcher.instances("catalog")) == 2)


def test_a_malformed_entry_is_ignored(
    etcd_server: EtcdServer, prefix: str, watcher: EtcdDiscovery
) -> None:
    client = etcd_server.client()
    client.put(f"{prefix}catalog/bad", "not json")
    client.put(f"{prefix}catalog/no-url", json.dumps({"service": "catalog"}))
    register(etcd_server, prefix, "catalog", "good", "http://127.0.0.1:9001", ttl=30)

    assert wait_until(lambda: [i.id for i in watcher.instances("catalog")] == ["good"])


def test_start_returns_promptly_when_etcd_is_down_and_nothing_raises() -> None:
    discovery = EtcdDiscovery(url=f"http://127.0.0.1:{free_port()}", startup_wait=2.0)
    started = time.monotonic()
    discovery.start()
    try:
        assert time.monotonic() - started < 2.5
        assert discovery.instances("catalog") == []
        assert not discovery.connected
    finally:
        discovery.stop()


def test_the_watcher_survives_an_etcd_restart(tmp_path: Path) -> None:
    server = EtcdServer(data_dir=tmp_path / "etcd")
    server.start()
    discovery = EtcdDiscovery(url=server.url, backoff_max=0.5)
    try:
        discovery.start()
        register(server, "/services/", "catalog", "before", "http://127.0.0.1:9001", ttl=30)
        assert wait_until(lambda: len(discovery.instances("catalog")) == 1)

        server.stop()
        assert wait_until(lambda: not discovery.connected)
        assert [i.id for i in discovery.instances("catalog")] == ["before"]  # last known kept
        server.start()
        register(server, "/services/", "users", "after", "http://127.0.0.1:9101", ttl=30)

        assert wait_until(lambda: urls(discovery, "users") == {"http://127.0.0.1:9101"}, 10)
        assert wait_until(lambda: discovery.connected)  # the listing can land before the watch
    finally:
        discovery.stop()
        server.stop()


# --- the sidecar command (its loop runs against real services in tests/) --------


def test_register_service_refuses_to_run_without_etcd_discovery(settings: Settings) -> None:
    settings.DISCOVERY = {**settings.DISCOVERY, "BACKEND": "static"}
    with pytest.raises(CommandError, match="DISCOVERY=etcd"):
        call_command("register_service", name="catalog", url="http://127.0.0.1:8001")


def test_register_service_rejects_a_lease_shorter_than_etcd_allows(
    settings: Settings,
) -> None:
    settings.DISCOVERY = {**settings.DISCOVERY, "BACKEND": "etcd"}
    with pytest.raises(CommandError, match="--ttl"):
        call_command("register_service", name="catalog", url="http://127.0.0.1:8001", ttl=1)


def test_stop_is_prompt_and_leaves_no_watcher_thread(etcd_server: EtcdServer, prefix: str) -> None:
    discovery = EtcdDiscovery(url=etcd_server.url, prefix=prefix)
    discovery.start()
    assert wait_until(lambda: discovery.connected)

    started = time.monotonic()
    discovery.stop()

    assert time.monotonic() - started < 1
    assert not any(thread.name == "discovery-etcd" for thread in threading.enumerate())
