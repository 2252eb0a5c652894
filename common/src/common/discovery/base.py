"""The in-memory instance table every backend fills, and its change notifications."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from urllib.parse import urlsplit

from common.discovery import Instance, Subscriber

logger = logging.getLogger("common.discovery")


def instance_id_for(service: str, url: str) -> str:
    """A stable id from an address: ``catalog-127.0.0.1-8001``.

    Stable across restarts and across gateway processes, so per-instance
    state kept by the gateway (a circuit breaker) follows the address.
    """
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{service}-{parts.hostname}-{port}"


class InstanceTable:
    """Instances per service, replaced whole; readers never wait on writers.

    Each service maps to an immutable tuple and a write swaps the whole dict,
    so ``instances()`` takes no lock (reading one dict entry is atomic in
    CPython) and stays cheap on the gateway's request path. Writers hold a
    re-entrant lock while they compare and notify, so subscribers see changes
    once each and in order, and may call back into the table.
    """

    def __init__(self) -> None:
        self._by_service: dict[str, tuple[Instance, ...]] = {}
        self._subscribers: list[Subscriber] = []
        self._write_lock = threading.RLock()

    def instances(self, service: str) -> list[Instance]:
        """The instances of ``service`` in id order ([] for an unknown one)."""
        return list(self._by_service.get(service, ()))

    def services(self) -> list[str]:
        """Every service that has, or had, instances in this table."""
        return list(self._by_service)

    def subscribe(self, callback: Subscriber) -> None:
        """Register ``callback(service, instances)``, called after every change."""
        with self._write_lock:
            self._subscribers = [*self._subscribers, callback]

    def replace(self, service: str, instances: Iterable[Instance]) -> bool:
        """Set the instances of one service; notifies and returns True if they changed."""
        new = tuple(sorted(set(instances), key=lambda instance: instance.id))
        with self._write_lock:
            if self._by_service.get(service, ()) == new:
                return False
            self._by_service = {**self._by_service, service: new}
            logger.info(
                "discovery: %s now has %d instance(s): %s",
                service,
                len(new),
                ", ".join(instance.url for instance in new) or "none",
                extra={"discovered_service": service},
            )
            self._notify(self._subscribers, service, list(new))
        return True

    def replace_all(self, instances: Iterable[Instance], *, services: Iterable[str] = ()) -> None:
        """Set every service at once: services now absent (or listed in ``services``) empty out."""
        with self._write_lock:
            grouped: dict[str, list[Instance]] = {service: [] for service in self._by_service}
            grouped.update({service: [] for service in services})
            for instance in instances:
                grouped.setdefault(instance.service, []).append(instance)
            for service, members in grouped.items():
                self.replace(service, members)

    @staticmethod
    def _notify(subscribers: list[Subscriber], service: str, instances: list[Instance]) -> None:
        # A subscriber's bug must not stop the watcher thread that calls it.
        for callback in subscribers:
            try:
                callback(service, list(instances))
            except Exception:
                logger.exception("discovery: subscriber %r failed for %s", callback, service)
