"""Static discovery: the addresses written in the environment, fixed for the process's life."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from common.discovery import Instance, Subscriber
from common.discovery.base import InstanceTable, instance_id_for


class StaticDiscovery:
    """Instances from ``{service: [url, ...]}``; nothing to watch, so nothing ever changes.

    The embedded default: ``make run`` and tests need no registry, and several
    comma-separated URLs still give the gateway several instances to balance.
    """

    def __init__(self, *, urls: Mapping[str, Sequence[str]]) -> None:
        self._table = InstanceTable()
        for service, service_urls in urls.items():
            self._table.replace(
                service,
                [
                    Instance(service=service, id=instance_id_for(service, url), url=url.rstrip("/"))
                    for url in service_urls
                ],
            )

    def instances(self, service: str) -> list[Instance]:
        """The configured instances of ``service`` ([] for an unknown one)."""
        return self._table.instances(service)

    def start(self) -> None:
        """Nothing to start: the list is known from the settings."""

    def stop(self) -> None:
        """Nothing to stop."""

    def subscribe(self, callback: Subscriber) -> None:
        """Accepted for the interface's sake; a static list never changes, so it is never called."""
        self._table.subscribe(callback)
