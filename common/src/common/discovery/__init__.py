"""Service discovery: where the instances of a service answer, from one of three backends.

The gateway asks ``instances("catalog")`` on every request, so the answer
always comes from memory; the backends keep that memory current in the
background:

- ``static``: the URLs in the environment (``CATALOG_URL=http://a:8001,http://b:8001``);
- ``etcd``: the keys ``<prefix><service>/<instance id>`` that each instance's
  ``manage.py register_service`` sidecar keeps alive with a lease while the
  instance is ready, watched through etcd's HTTP gateway;
- ``dns``: every address a Service name resolves to (a headless Kubernetes
  Service gives one per pod).

    discovery = discovery_from_settings()
    discovery.start()
    discovery.instances("catalog")  # [Instance(service="catalog", id=..., url=...)]
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class Instance:
    """One running copy of a service, as the gateway needs it to send a request."""

    service: str  # "catalog"
    id: str  # stable: "catalog-127.0.0.1-8001", or the etcd key's last part
    url: str  # base URL without a trailing slash: "http://127.0.0.1:8001"


Subscriber = Callable[[str, list[Instance]], None]


@runtime_checkable
class Discovery(Protocol):
    """What every backend offers; the gateway depends on this and nothing else."""

    def instances(self, service: str) -> list[Instance]:
        """The live instances now: from memory, no I/O, thread-safe, never raises."""
        ...

    def start(self) -> None:
        """Begin watching or refreshing in the background; calling it again does nothing."""
        ...

    def stop(self) -> None:
        """Stop the background work; the last known instances stay readable."""
        ...

    def subscribe(self, callback: Subscriber) -> None:
        """Call ``callback(service, instances)`` from any thread when a service's list changes."""
        ...


def discovery_build(config: Mapping[str, Any]) -> Discovery:
    """A new, unstarted backend for a ``settings.DISCOVERY``-shaped mapping.

    Backends are imported here, not at module level, so a process on the
    static backend never loads the etcd client.
    """
    backend = config["BACKEND"]
    if backend == "static":
        from common.discovery.static import StaticDiscovery

        return StaticDiscovery(urls=config["STATIC"])
    if backend == "etcd":
        from common.discovery.etcd import EtcdDiscovery

        return EtcdDiscovery(url=config["ETCD_URL"], prefix=config["ETCD_PREFIX"])
    if backend == "dns":
        from common.discovery.dns import DnsDiscovery

        return DnsDiscovery(targets=config["DNS"], refresh_seconds=config["DNS_REFRESH_SECONDS"])
    raise ImproperlyConfigured(f"DISCOVERY={backend!r} is not a discovery backend.")


_cache_lock = threading.Lock()
_cached: tuple[int, Discovery] | None = None


def discovery_from_settings() -> Discovery:
    """The process's one backend, built from ``settings.DISCOVERY`` (not started: call start()).

    Cached per process id: threads do not survive ``fork``, so a gunicorn
    worker forked from a master that built one gets its own instead of a
    backend whose watcher thread stayed behind in the parent.
    """
    global _cached
    with _cache_lock:
        if _cached is None or _cached[0] != os.getpid():
            from django.conf import settings

            _cached = (os.getpid(), discovery_build(settings.DISCOVERY))
        return _cached[1]


def discovery_reset() -> None:
    """Stop and forget the cached backend (tests, or after changing settings)."""
    global _cached
    with _cache_lock:
        cached, _cached = _cached, None
    if cached is not None and cached[0] == os.getpid():
        cached[1].stop()


__all__ = [
    "Discovery",
    "Instance",
    "Subscriber",
    "discovery_build",
    "discovery_from_settings",
    "discovery_reset",
]
