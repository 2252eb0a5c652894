"""DNS discovery: every address a service name resolves to is an instance.

Meant for Kubernetes: a headless Service resolves to the IPs of its ready
pods (the kubelet's readiness probe plays the part of the etcd sidecar), a
normal Service to one virtual IP that kube-proxy balances. Names are resolved
again every few seconds in a daemon thread, so scaling shows up without a
restart; a failed lookup keeps the last good answer, because a DNS hiccup
should not take every upstream away from the gateway.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any

from common.discovery import Instance, Subscriber
from common.discovery.base import InstanceTable

logger = logging.getLogger("common.discovery.dns")

# socket.getaddrinfo's signature; tests pass a wrapper to make lookups fail on demand.
Resolver = Callable[..., list[tuple[Any, ...]]]


def split_host_port(target: str) -> tuple[str, int]:
    """``catalog:8001`` or ``[::1]:8001`` -> (host, port)."""
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)


def url_for(scheme: str, address: str, port: int) -> str:
    """A base URL for an IP address; IPv6 literals need brackets in a URL."""
    host = f"[{address}]" if ":" in address else address
    return f"{scheme}://{host}:{port}"


class DnsDiscovery:
    """Instances from ``{service: "host:port"}``, resolved with ``getaddrinfo`` periodically."""

    def __init__(
        self,
        *,
        targets: Mapping[str, str],
        refresh_seconds: float = 5.0,
        scheme: str = "http",
        resolver: Resolver = socket.getaddrinfo,
        startup_wait: float = 2.0,
    ) -> None:
        self._targets = dict(targets)
        self._refresh_seconds = refresh_seconds
        self._scheme = scheme
        self._resolver = resolver
        self._startup_wait = startup_wait
        self._table = InstanceTable()
        self._failing: set[str] = set()
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._first_round = threading.Event()
        self._thread: threading.Thread | None = None

    def instances(self, service: str) -> list[Instance]:
        """The addresses of the last successful lookup of ``service``."""
        return self._table.instances(service)

    def subscribe(self, callback: Subscriber) -> None:
        """Called when a lookup gives a different set of addresses."""
        self._table.subscribe(callback)

    def start(self) -> None:
        """Start the refresh thread and wait (briefly) for the first round of lookups.

        The short wait means the first requests after start-up already have
        instances, without letting a slow resolver hold up the process.
        """
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="discovery-dns", daemon=True)
            self._thread.start()
        self._first_round.wait(self._startup_wait)

    def stop(self) -> None:
        """Stop refreshing; the last answers stay readable."""
        self._stop.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)

    def refresh(self) -> None:
        """Resolve every service once now (the thread calls this; tests may too)."""
        with self._refresh_lock:
            for service, target in self._targets.items():
                self._refresh_one(service, target)

    def _refresh_one(self, service: str, target: str) -> None:
        try:
            instances = self._resolve(service, target)
        except (OSError, ValueError) as exc:  # socket.gaierror is an OSError
            if service not in self._failing:  # one warning per outage, not one per round
                logger.warning(
                    "discovery: cannot resolve %s (%s): %s; keeping the last answer",
                    target,
                    service,
                    exc,
                )
                self._failing.add(service)
            return
        if service in self._failing:
            logger.info("discovery: %s (%s) resolves again", target, service)
            self._failing.discard(service)
        self._table.replace(service, instances)

    def _resolve(self, service: str, target: str) -> list[Instance]:
        host, port = split_host_port(target)
        answers = self._resolver(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(answer[4][0]) for answer in answers))
        if not addresses:
            raise ValueError(f"no addresses for {host}")
        return [
            Instance(
                service=service,
                id=f"{service}-{address}-{port}",
                url=url_for(self._scheme, address, port),
            )
            for address in addresses
        ]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:  # never let the thread die: the table would go stale silently
                logger.exception("discovery: DNS refresh failed")
            self._first_round.set()
            self._stop.wait(self._refresh_seconds)
