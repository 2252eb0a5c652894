"""Keep one service instance registered in etcd while it is ready (the sidecar's loop).

Run by ``manage.py register_service`` next to each instance. Every ``ttl/3``
seconds it asks the instance's ``/ready/``: while ready, it refreshes the
lease behind the instance's key (etcd3gw has no background keepalive, so the
refresh is this loop's job) and registers again if etcd lost the lease; when
not ready, it revokes the lease so the gateway stops sending traffic at once
instead of after the TTL. Stopping revokes too. etcd being unreachable is
logged and retried, never fatal: the instance is still there, and the
registration comes back when etcd does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from datetime import UTC, datetime

import etcd3gw
import httpx
from etcd3gw.lease import Lease

from common.discovery.base import instance_id_for
from common.discovery.etcd import etcd_client, instance_key

logger = logging.getLogger("common.discovery.registrar")


class ServiceRegistrar:
    """The registration of one instance: its key, its lease and whether it is ready."""

    def __init__(
        self,
        *,
        etcd_url: str,
        prefix: str,
        service: str,
        url: str,
        instance_id: str | None = None,
        ttl: int = 10,
        ready_path: str = "/ready/",
        ready_timeout: float = 2.0,
        etcd_timeout: float = 3.0,
    ) -> None:
        self.service = service
        self.url = url.rstrip("/")
        self.instance_id = instance_id or instance_id_for(service, self.url)
        self.key = instance_key(prefix, service, self.instance_id)
        self.ttl = ttl
        self.interval = ttl / 3
        self.ready_url = f"{self.url}/{ready_path.lstrip('/')}"
        self.etcd_url = etcd_url
        self._ready_timeout = ready_timeout
        self._client: etcd3gw.Etcd3Client = etcd_client(etcd_url, timeout=etcd_timeout)
        self._lease: Lease | None = None
        self._ready: bool | None = None  # unknown until the first check
        self._etcd_ok = True

    @property
    def registered(self) -> bool:
        """Whether this process holds a lease for the key (as far as it knows)."""
        return self._lease is not None

    def run(self, stop: threading.Event) -> None:
        """Check and register every ``interval`` seconds until ``stop`` is set, then revoke."""
        logger.info(
            "register_service: %s as %s (ttl %ss, checking %s every %.1fs) in etcd at %s",
            self.url,
            self.key,
            self.ttl,
            self.ready_url,
            self.interval,
            self.etcd_url,
        )
        try:
            while not stop.is_set():
                self.tick()
                stop.wait(self.interval)
        finally:
            self.deregister(reason="stopping")

    def tick(self) -> None:
        """One round: check readiness, then refresh, register or revoke to match it."""
        if self.check_ready():
            self.keep_registered()
        else:
            self.deregister(reason="not ready")

    def check_ready(self) -> bool:
        """GET the ready URL; anything but a 200 within the timeout counts as not ready."""
        try:
            response = httpx.get(
                self.ready_url,
                headers={"Accept": "application/json"},
                timeout=self._ready_timeout,
            )
            ready, detail = response.status_code == 200, f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            ready, detail = False, f"{type(exc).__name__}: {exc}"
        if ready != self._ready:
            log = logger.info if ready else logger.warning
            log(
                "register_service: %s is %s (%s)",
                self.url,
                "ready" if ready else "NOT ready",
                detail,
            )
            self._ready = ready
        return ready

    def keep_registered(self) -> None:
        """Refresh the lease, or create lease and key when there is none (any more)."""
        try:
            if self._lease is not None:
                if self._lease.refresh() > 0:
                    self._etcd_answers()
                    return
                logger.warning(
                    "register_service: lease of %s was lost; registering again", self.key
                )
                self._lease = None
            self._register()
            self._etcd_answers()
        except Exception as exc:  # etcd down or restarting: keep the lease id, retry next round
            self._etcd_fails(exc)

    def deregister(self, *, reason: str) -> None:
        """Revoke the lease so the key disappears now; if etcd is down it expires by itself."""
        lease, self._lease = self._lease, None
        if lease is None:
            return
        try:
            lease.revoke()
            logger.info("register_service: %s deregistered (%s)", self.key, reason)
        except Exception as exc:  # already expired or etcd unreachable: the TTL finishes the job
            logger.warning(
                "register_service: could not revoke the lease of %s (%s); it expires within %ss",
                self.key,
                exc,
                self.ttl,
            )

    def _register(self) -> None:
        lease = self._client.lease(self.ttl)
        value = json.dumps(
            {
                "url": self.url,
                "service": self.service,
                "registered_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        try:
            self._client.put(self.key, value, lease=lease)
        except Exception:
            with contextlib.suppress(Exception):
                lease.revoke()  # no unused lease left behind (it would expire anyway)
            raise
        self._lease = lease
        logger.info(
            "register_service: %s registered as %s (lease %x)", self.url, self.key, lease.id
        )

    def _etcd_answers(self) -> None:
        if not self._etcd_ok:
            logger.info("register_service: etcd at %s answers again", self.etcd_url)
            self._etcd_ok = True

    def _etcd_fails(self, exc: Exception) -> None:
        if self._etcd_ok:  # one warning per outage
            logger.warning(
                "register_service: etcd at %s unreachable (%s: %s); retrying every %.1fs",
                self.etcd_url,
                type(exc).__name__,
                exc,
                self.interval,
            )
            self._etcd_ok = False
