"""The status page's snapshot: every service, instance and figure, read as operators' tools do.

Only what the services already expose is read: each instance's ``/ready/``
and ``/metrics``, orders' unfinished sagas (gRPC ``orders.v1``, through the
gateway's one client: rpc.calls), the gateway's own breakers and bulkheads (what
``/internal/status/`` answers) and its own ``/metrics``. No other service's
database. Instances are asked concurrently with short timeouts; one that does not
answer is DOWN with the error, never an error of the page.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from rpc.calls import unfinished_sagas
from rpc.client import RpcRefused, ServiceUnavailable

from common.discovery import Discovery, Instance
from statuspage.figures import Scrape, backbone_figures, metrics_parse, order_figures, saga_figures

READY, NOT_READY, DOWN, DEGRADED, NO_INSTANCE = (
    "READY",
    "NOT READY",
    "DOWN",
    "DEGRADED",
    "NO INSTANCE",
)
TIMEOUT = httpx.Timeout(2.0, connect=0.5)
SAGA_LIST_LIMIT = 50
# Past these an operator should look (the alert rules page on the same figures).
OUTBOX_LAG_WARN_SECONDS = 60.0


@dataclass
class Probe:
    """What one instance answered on ``/ready/`` and ``/metrics``."""

    instance: Instance
    ready: str  # READY, NOT READY or DOWN
    ready_detail: str = ""
    scrape: Scrape | None = None
    metrics_error: str = ""


def _error_text(error: Exception) -> str:
    text = str(error) or "no answer"
    return f"{type(error).__name__}: {text}"


def instance_probe(*, client: httpx.Client, instance: Instance) -> Probe:
    """Ask one instance whether it is ready and for its metrics."""
    try:
        response = client.get(f"{instance.url}/ready/", headers={"Accept": "application/json"})
    except httpx.HTTPError as error:
        # Nothing answers there: asking for /metrics would only wait again.
        return Probe(instance=instance, ready=DOWN, ready_detail=_error_text(error))
    probe = Probe(instance=instance, ready=READY if response.status_code == 200 else NOT_READY)
    if probe.ready == NOT_READY:
        try:
            checks = response.json()
            failing = [f"{name}: {value}" for name, value in checks.items() if value != "OK"]
            probe.ready_detail = "; ".join(failing) or f"HTTP {response.status_code}"
        except ValueError:
            probe.ready_detail = f"HTTP {response.status_code}"
    try:
        metrics = client.get(f"{instance.url}/metrics")
        metrics.raise_for_status()
        probe.scrape = metrics_parse(text=metrics.text)
    except (httpx.HTTPError, ValueError) as error:
        probe.metrics_error = _error_text(error)
    return probe


def saga_list_fetch(
    *, instances: Sequence[Instance]
) -> tuple[list[dict[str, Any]] | None, str, str]:
    """Orders' unfinished sagas: ``(sagas, error, base URL of a ready orders instance)``.

    The list comes over gRPC; ``instances`` (orders' ready HTTP instances) give the
    URL of the admin each saga links to, and with none the service is down: not asked.
    """
    if not instances:
        return None, "no orders instance is ready", ""
    try:
        return unfinished_sagas(limit=SAGA_LIST_LIMIT), "", instances[0].url
    except (ServiceUnavailable, RpcRefused) as failure:
        return None, _error_text(failure), ""


def _service_state(probes: list[Probe]) -> str:
    states = {probe.ready for probe in probes}
    if not probes:
        return NO_INSTANCE
    if states == {READY}:
        return READY
    if READY in states:
        return DEGRADED
    return DOWN if states == {DOWN} else NOT_READY


def _figures(scrape: Scrape | None) -> dict[str, Any]:
    return backbone_figures(scrape=scrape) if scrape is not None else {}


def snapshot_build(
    *,
    probes: dict[str, list[Probe]],
    runtime: dict[str, Any] | None,
    local: Scrape | None,
    sagas: list[dict[str, Any]] | None = None,
    sagas_error: str = "",
    orders_url: str = "",
    now: datetime | None = None,
) -> dict[str, Any]:
    """The page's data from what was read: plain dicts and lists, ready for a template or JSON."""
    moment = now or datetime.now(UTC)
    upstreams = (runtime or {}).get("upstreams", {})
    problems: list[str] = []
    services: list[dict[str, Any]] = [
        {
            "name": "gateway",
            "state": READY,
            "bulkhead": None,
            "instances": [
                {
                    "id": f"this worker (pid {os.getpid()})",
                    "url": "",
                    "ready": READY,
                    "detail": "serving this page",
                    "breaker": None,
                    "retry_after": 0,
                }
            ],
            "figures": _figures(local),
            "metrics_error": "" if local is not None else "its own metrics could not be read",
        }
    ]
    saga_scrape: Scrape | None = None
    for name, service_probes in probes.items():
        upstream = upstreams.get(name, {})
        breakers = {row["id"]: row for row in upstream.get("instances", [])}
        instances = []
        for probe in service_probes:
            breaker = breakers.get(probe.instance.id, {})
            instances.append(
                {
                    "id": probe.instance.id,
                    "url": probe.instance.url,
                    "ready": probe.ready,
                    "detail": probe.ready_detail or probe.metrics_error,
                    "breaker": breaker.get("breaker"),
                    "retry_after": breaker.get("retry_after", 0),
                }
            )
            if probe.ready != READY:
                problems.append(f"{name} {probe.instance.id} is {probe.ready}")
            if breaker.get("breaker") not in (None, "closed"):
                problems.append(f"{name} {probe.instance.id}: circuit {breaker['breaker']}")
        # The figures are the service's (database and broker), the same from any instance.
        scrape = next((probe.scrape for probe in service_probes if probe.scrape), None)
        if scrape is not None and "sagas_needing_attention" in scrape.samples:
            saga_scrape = scrape
        state = _service_state(service_probes)
        if state == NO_INSTANCE:
            problems.append(f"{name} has no instance registered")
        services.append(
            {
                "name": name,
                "state": state,
                "bulkhead": upstream.get("bulkhead"),
                "instances": instances,
                "figures": _figures(scrape),
                "metrics_error": ""
                if scrape is not None
                else next((p.metrics_error or p.ready_detail for p in service_probes), ""),
            }
        )
    for service in services:
        figures = service["figures"]
        if figures.get("broker_ok") is False:
            problems.append(f"{service['name']}: its queues could not be read from the broker")
        if figures.get("dead_letters"):
            problems.append(f"{service['name']}: {figures['dead_letters']} dead letters")
        if (figures.get("outbox_lag_seconds") or 0) > OUTBOX_LAG_WARN_SECONDS:
            problems.append(f"{service['name']}: outbox lag {figures['outbox_lag_seconds']:.0f} s")
    saga_counts = saga_figures(scrape=saga_scrape) if saga_scrape is not None else None
    if saga_counts and saga_counts["needing_attention"]:
        problems.append(f"{saga_counts['needing_attention']} sagas need attention")
    return {
        "generated_at": moment.isoformat(timespec="seconds"),
        "discovery": (runtime or {}).get("discovery", ""),
        "proxy_started": runtime is not None,
        "problems": problems,
        "services": services,
        "sagas": {
            "counts": saga_counts,
            "list": [
                {
                    **saga,
                    "history_url": _history_url(orders_url, saga["order_id"]),
                    "age_seconds": _age_seconds(saga.get("started_at"), now=moment),
                }
                for saga in sagas or []
            ],
            "list_error": sagas_error,
        },
        "orders": order_figures(scrape=saga_scrape) if saga_scrape is not None else None,
    }


def _age_seconds(started_at: str | None, *, now: datetime) -> float | None:
    try:
        return max(0.0, (now - datetime.fromisoformat(started_at or "")).total_seconds())
    except (TypeError, ValueError):
        return None


def _history_url(orders_url: str, order_id: str) -> str:
    """The order's events (its history: it is event-sourced) in the orders service's admin."""
    return f"{orders_url}/admin/orders/orderevent/?order_id={order_id}" if orders_url else ""


def status_snapshot(
    *,
    services: Iterable[str],
    discovery: Discovery,
    runtime: dict[str, Any] | None,
    local_metrics: Callable[[], str],
    client: httpx.Client | None = None,
) -> dict[str, Any]:
    """Read every instance of ``services`` concurrently, then build the page's data."""
    owned = client is None
    client = client or httpx.Client(timeout=TIMEOUT)
    try:
        found = {name: discovery.instances(name) for name in services}
        everyone = [instance for instances in found.values() for instance in instances]
        with ThreadPoolExecutor(max_workers=min(16, max(1, len(everyone)))) as pool:
            answers = list(
                pool.map(
                    lambda instance: instance_probe(client=client, instance=instance), everyone
                )
            )
        by_id = {(probe.instance.service, probe.instance.id): probe for probe in answers}
        probes = {
            name: [by_id[(name, instance.id)] for instance in instances]
            for name, instances in found.items()
        }
        sagas, sagas_error, orders_url = None, "", ""
        if "orders" in probes:
            ready = [probe.instance for probe in probes["orders"] if probe.ready == READY]
            sagas, sagas_error, orders_url = saga_list_fetch(instances=ready)
        try:
            local: Scrape | None = metrics_parse(text=local_metrics())
        except ValueError:
            local = None
        return snapshot_build(
            probes=probes,
            runtime=runtime,
            local=local,
            sagas=sagas,
            sagas_error=sagas_error,
            orders_url=orders_url,
        )
    finally:
        if owned:
            client.close()
