"""etcd discovery: watch ``<prefix><service>/<instance id>`` keys that sidecars keep alive.

Each instance's ``manage.py register_service`` puts a key with a lease and
refreshes the lease only while the instance's ``/ready/`` passes; revoking
or letting the lease expire deletes the key. This side lists the prefix once,
then follows the changes with a watch starting at the listed revision, so no
change between the two is missed, and keeps the result in memory.

The watch is read here from etcd's HTTP gateway stream (``POST /v3/watch``)
with etcd3gw's client and session rather than through ``watch_prefix``:
etcd3gw reads that stream in an executor thread and drops the end of the
stream and any error on the floor, so its iterator blocks forever once etcd
restarts, and the gateway would keep a stale list without knowing it.
Reading the stream ourselves lets every failure end in a re-list with backoff.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import socket
import threading
from typing import Any
from urllib.parse import urlsplit

import etcd3gw
import requests
import urllib3

from common.backoff import Backoff
from common.discovery import Instance, Subscriber
from common.discovery.base import InstanceTable

logger = logging.getLogger("common.discovery.etcd")


class WatchFailed(Exception):
    """The watch stream ended or reported an error: list again and watch anew."""


def etcd_client(url: str, *, timeout: float = 5.0) -> etcd3gw.Etcd3Client:
    """An etcd3gw client for ``http://host:port`` (the v3 API path is discovered on first use)."""
    parts = urlsplit(url)
    return etcd3gw.client(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 2379,
        protocol=parts.scheme or "http",
        timeout=timeout,
    )


def instance_key(prefix: str, service: str, instance_id: str) -> str:
    """Where one instance is registered: ``/services/catalog/catalog-127.0.0.1-8001``."""
    return f"{prefix}{service}/{instance_id}"


def prefix_range_end(prefix: str) -> bytes:
    """The first key after every key that starts with ``prefix`` (etcd's range end)."""
    end = bytearray(prefix.encode())
    end[-1] += 1
    return bytes(end)


def _b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def _unb64(data: str) -> bytes:
    return base64.b64decode(data)


def instance_from_entry(prefix: str, key: str, value: bytes) -> Instance | None:
    """The instance a key and its JSON value describe, or None (logged) when malformed.

    The service and id come from the key, which the registry's layout
    guarantees; the value only has to carry the URL. A bad entry written by
    hand must not take the watcher down, so it is skipped.
    """
    service, _, instance_id = key.removeprefix(prefix).partition("/")
    try:
        url = json.loads(value)["url"]
        parts = urlsplit(url)
        if not service or not instance_id or parts.scheme not in ("http", "https"):
            raise ValueError(url)
    except (ValueError, KeyError, TypeError) as exc:
        logger.warning("discovery: ignoring malformed etcd entry %s: %r", key, exc)
        return None
    return Instance(service=service, id=instance_id.rsplit("/", 1)[-1], url=url.rstrip("/"))


def _is_idle_timeout(exc: BaseException) -> bool:
    """True for the read timeout that ends a quiet watch (requests wraps it in ConnectionError)."""
    cause = exc.args[0] if exc.args else None
    return isinstance(exc, requests.exceptions.ConnectionError) and isinstance(
        cause, urllib3.exceptions.ReadTimeoutError
    )


class EtcdDiscovery:
    """Instances from etcd, followed by a watch in a daemon thread.

    Never raises to its callers: while etcd is unreachable the last known
    instances stay in memory (the gateway's breakers deal with dead ones)
    and the thread retries with exponential backoff and jitter. A watch that
    has seen nothing for ``idle_seconds`` is reopened (with a re-list), which
    bounds how long a silently dropped connection can leave the list stale.
    """

    def __init__(
        self,
        *,
        url: str,
        prefix: str = "/services/",
        timeout: float = 5.0,
        idle_seconds: float = 60.0,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
        startup_wait: float = 2.0,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self._timeout = timeout
        self._idle_seconds = idle_seconds
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._startup_wait = startup_wait
        self._table = InstanceTable()
        self._by_key: dict[str, Instance] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._first_round = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: requests.Response | None = None
        self._connected = False

    @property
    def connected(self) -> bool:
        """Whether the watch is established right now (for status pages and tests)."""
        return self._connected

    def instances(self, service: str) -> list[Instance]:
        """The registered, ready instances of ``service`` as last seen."""
        return self._table.instances(service)

    def subscribe(self, callback: Subscriber) -> None:
        """Called from the watcher thread when a service's instances change."""
        self._table.subscribe(callback)

    def start(self) -> None:
        """Start the watcher thread and wait (briefly) for the first listing.

        The wait lets the first requests find instances; it is bounded so an
        unreachable etcd delays start-up by seconds, not forever.
        """
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._first_round.clear()
            self._thread = threading.Thread(target=self._run, name="discovery-etcd", daemon=True)
            self._thread.start()
        self._first_round.wait(self._startup_wait)

    def stop(self) -> None:
        """Stop watching; the last known instances stay readable."""
        self._stop.set()
        self._interrupt_stream()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=self._timeout + 1)

    def _run(self) -> None:
        backoff = Backoff(initial=self._backoff_initial, maximum=self._backoff_max)
        failing = False
        while not self._stop.is_set():
            # A fresh client (and HTTP session) per round: nothing carries over
            # from a connection that just broke.
            client = etcd_client(self.url, timeout=self._timeout)
            try:
                revision = self._list(client)
                if failing:
                    logger.info("discovery: etcd at %s answers again", self.url)
                failing = False
                backoff.reset()
                self._first_round.set()
                self._watch(client, start_revision=revision + 1)
                continue  # a quiet watch timed out: reopen at once
            except Exception as exc:
                if self._stop.is_set():
                    break
                if not failing:  # one warning per outage, then quiet retries
                    logger.warning(
                        "discovery: etcd watch at %s failed (%s: %s); keeping the last "
                        "instances and retrying",
                        self.url,
                        type(exc).__name__,
                        exc,
                    )
                failing = True
            finally:
                self._connected = False
                client.session.close()
            self._first_round.set()
            # Jittered, so that many gateway workers do not reconnect in lockstep.
            self._stop.wait(backoff.next())

    def _list(self, client: etcd3gw.Etcd3Client) -> int:
        """Replace the table with what etcd holds now; returns the revision read."""
        result = client.post(
            client.get_url("/kv/range"),
            json={"key": _b64(self.prefix), "range_end": _b64(prefix_range_end(self.prefix))},
        )
        by_key: dict[str, Instance] = {}
        for kv in result.get("kvs", []):
            key = _unb64(kv["key"]).decode()
            instance = instance_from_entry(self.prefix, key, _unb64(kv.get("value", "")))
            if instance is not None:
                by_key[key] = instance
        with self._lock:
            self._by_key = by_key
            # Services that vanished while the watch was down empty out too.
            self._table.replace_all(by_key.values())
        return int(result["header"]["revision"])

    def _watch(self, client: etcd3gw.Etcd3Client, *, start_revision: int) -> None:
        """Apply watch events until the stream times out idle (returns) or fails (raises)."""
        request = {
            "create_request": {
                "key": _b64(self.prefix),
                "range_end": _b64(prefix_range_end(self.prefix)),
                "start_revision": start_revision,
            }
        }
        response = client.session.post(
            client.get_url("/watch"),
            json=request,
            stream=True,
            timeout=(self._timeout, self._idle_seconds),
        )
        self._response = response
        try:
            # stop() sets the flag before it looks for a response to interrupt:
            # checking after publishing ours means one of the two always sees the other.
            if self._stop.is_set():
                return
            if response.status_code != 200:
                raise WatchFailed(f"HTTP {response.status_code}: {response.text[:200]}")
            pending = b""
            for chunk in response.iter_content(chunk_size=None):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if self._stop.is_set():
                        return
                    if line.strip():
                        self._handle(json.loads(line))
            if self._stop.is_set():
                return
            raise WatchFailed("etcd closed the watch stream")
        except requests.exceptions.ConnectionError as exc:
            if _is_idle_timeout(exc) and not self._stop.is_set():
                logger.debug("discovery: etcd watch idle for %ss, reopening", self._idle_seconds)
                return
            raise
        finally:
            self._response = None
            response.close()

    def _handle(self, message: dict[str, Any]) -> None:
        if "error" in message:
            raise WatchFailed(f"etcd: {message['error']}")
        result = message.get("result", {})
        if result.get("canceled"):
            # E.g. compacted past our revision: only a fresh listing is trustworthy.
            raise WatchFailed(
                f"watch canceled: {result.get('cancel_reason', '')} "
                f"(compact revision {result.get('compact_revision', '-')})"
            )
        if result.get("created"):
            self._connected = True
            logger.debug("discovery: watching %s at %s", self.prefix, self.url)
        for event in result.get("events", []):
            self._apply(event)

    def _apply(self, event: dict[str, Any]) -> None:
        kv = event["kv"]
        try:
            key = _unb64(kv["key"]).decode()
            value = _unb64(kv.get("value", ""))
        except (binascii.Error, UnicodeDecodeError):
            logger.warning("discovery: ignoring an undecodable etcd event %r", kv)
            return
        service = key.removeprefix(self.prefix).partition("/")[0]
        with self._lock:
            if event.get("type") == "DELETE":  # revoked, expired or deleted by hand
                self._by_key.pop(key, None)
            elif (instance := instance_from_entry(self.prefix, key, value)) is not None:
                self._by_key[key] = instance
            else:
                self._by_key.pop(key, None)
            members = [i for i in self._by_key.values() if i.service == service]
            self._table.replace(service, members)

    def _interrupt_stream(self) -> None:
        """Wake the watcher thread blocked reading the stream, so stop() is prompt.

        Closing a socket does not interrupt a read blocked on it in another
        thread; shutting it down does. This reaches into urllib3's response
        for the file descriptor (as etcd3gw's own Watcher.stop does), and
        falls back to the idle timeout if that ever changes.
        """
        response = self._response
        if response is None:
            return
        try:
            fd = response.raw._fp.fileno()  # type: ignore[union-attr]
            sock = socket.socket(fileno=os.dup(fd))
            try:
                sock.shutdown(socket.SHUT_RDWR)
            finally:
                sock.close()
        except Exception:  # noqa: S110 - best effort; the read timeout ends it anyway
            pass
