"""The embedded broker of ``make run``: kombu's filesystem transport, made safe to share.

kombu's own ``filesystem://`` transport breaks under concurrent producers and
consumers (reproduced with 4 producer and 2 consumer processes: 2 of 2,000
messages read as empty files, a ``JSONDecodeError`` that ends a Celery worker,
and both messages lost):

- a producer creates the message file in the queue folder and only then writes
  it, so a consumer can take the file while it is still empty or half written;
- a message is deleted as soon as it is read, so one that its consumer had not
  acknowledged when it died (SIGKILL) is gone, and one given back on a clean
  stop is routed through the exchange again, reaching every bound queue;
- every read lists and sorts one folder holding the messages of all queues, and
  a new exchange file can be read before its creator has written it.

This module keeps the transport (same URL, same options, a virtual transport
with no server) and changes how messages are written and read, through kombu's
own extension points (the virtual channel's ``_put``, ``_get``, ``_restore``,
``basic_ack`` and friends):

- Writes: a message is written to ``tmp/`` and renamed into its queue's folder
  (``<data_folder_in>/<queue>/``), so a consumer sees it whole or not at all.
  Names start with the time in nanoseconds and a per-process counter, and
  consumers take the oldest name first; a message renamed in while a consumer
  lists the folder can miss that listing and come after a newer one (readdir
  does not promise to show entries added during it), so order is best effort.
- Claims: a consumer renames the oldest file into a folder of its own process
  (``unacked/<owner>/<queue>/``); a rename succeeds for one consumer only.
  The file is deleted on ack, renamed back into its queue (same name, so it
  keeps its place) on a requeue or when the channel closes, and given back by
  any other process once the owner is dead: each owner holds an exclusive
  ``flock`` on ``owners/<owner>.lock`` for its lifetime, which the kernel drops
  when the process dies however it dies. So delivery is at least once, as on
  RabbitMQ, also for a worker killed with SIGKILL.
- A file that is not a message (not JSON, not a kombu envelope, a body that
  does not decode) is never handed to the consumer: it goes to the dead-letter
  queue named by the transport option ``unreadable_queue`` (the service's
  ``<service>.events.dlq``, where ``manage.py dlq`` shows it) with the reason
  in the ``x-dlq-reason`` header and its raw bytes as the body, and the
  consumer reads on.
- Exchange tables (``<control_folder>/<exchange>.exchange``) are replaced by
  rename under a lock of their own, so a reader sees a whole table.

No ``fsync``: a message survives any process's death, not a power cut; that is
the trade of an embedded broker for local runs (RabbitMQ is the one to deploy).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import itertools
import json
import logging
import os
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from queue import Empty
from typing import Any
from urllib.parse import quote

from kombu.exceptions import ChannelError
from kombu.transport import filesystem as kombu_filesystem
from kombu.transport import virtual

logger = logging.getLogger(__name__)

MESSAGE_SUFFIX = ".msg"
# How often a polling consumer looks for messages of dead owners to give back.
RECOVERY_INTERVAL_SECONDS = 2.0
DEFAULT_UNREADABLE_QUEUE = "unreadable.dlq"
# Header names as common.events.broker spells them (that module imports this one).
HEADER_REASON = "x-dlq-reason"
HEADER_DEAD_AT = "x-dlq-dead-lettered-at"
HEADER_ORIGINAL_QUEUE = "x-dlq-original-queue"


TRANSPORT = "common.filesystem_broker:Transport"


def transport_for(url: str) -> str | None:
    """The kombu transport for a broker URL: ours for ``filesystem://``, else the URL's own."""
    return TRANSPORT if url.startswith("filesystem:") else None


class UnreadableMessage(ValueError):
    """A file in a queue folder that is not a message this transport can hand out."""


def queue_folder_name(queue: str) -> str:
    """A queue name as one folder name: no separator, never ``.`` or ``..``."""
    name = quote(queue, safe="-_.@")
    if not name.strip("."):
        raise ChannelError(f"Invalid queue name: {queue!r}")
    return name


class _Owner:
    """This process as the owner of the messages it has claimed.

    The lock file is locked before it is renamed into ``owners/``, so nobody
    can find it unlocked while its owner lives.
    """

    def __init__(self, root: Path) -> None:
        self.pid = os.getpid()
        self.name = f"{self.pid}-{uuid.uuid4().hex[:12]}"
        owners = root / "owners"
        temporary = root / "tmp" / f"{self.name}.lock"
        for folder in (owners, temporary.parent):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock = temporary.open("w")  # kept open: the lock lives as long as the process
        fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX)
        self.lock_path = owners / f"{self.name}.lock"
        temporary.rename(self.lock_path)
        self.folder = root / "unacked" / self.name

    def close(self) -> None:
        self._lock.close()


_owners: dict[Path, _Owner] = {}
_owners_lock = threading.Lock()


def _forget_owners_in_child() -> None:
    """A forked child must not keep its parent's locks: they would outlive the parent."""
    global _owners_lock
    _owners_lock = threading.Lock()  # held by another thread at the fork, it would stay held
    for owner in _owners.values():
        with contextlib.suppress(OSError):
            owner.close()
    _owners.clear()


os.register_at_fork(after_in_child=_forget_owners_in_child)


def _owner_for(root: Path) -> _Owner:
    """One owner per broker folder and process (a forked child makes one of its own)."""
    with _owners_lock:
        owner = _owners.get(root)
        if owner is None:
            owner = _owners[root] = _Owner(root)
        return owner


def recover_dead_owners(root: Path, queues_folder: Path) -> int:
    """Give the messages claimed by processes that died back to their queues.

    An owner is dead when its lock file can be locked. Whoever locks it does
    the recovery (others find it locked and pass), and the renames back are
    each done once. Returns the number of messages given back.
    """
    owners = root / "owners"
    try:
        names = os.listdir(owners)
    except FileNotFoundError:
        return 0
    recovered = 0
    for lock_name in names:
        if not lock_name.endswith(".lock"):
            continue
        lock_path = owners / lock_name
        try:
            handle = lock_path.open("r")
        except FileNotFoundError:
            continue
        with handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # alive
            owner_folder = root / "unacked" / lock_name.removesuffix(".lock")
            recovered += _give_back_all(owner_folder, queues_folder)
            with contextlib.suppress(FileNotFoundError):
                lock_path.unlink()
    if recovered:
        logger.warning("gave %d unacknowledged messages of dead consumers back", recovered)
    return recovered


def _give_back_all(owner_folder: Path, queues_folder: Path) -> int:
    given = 0
    try:
        queue_folders = os.listdir(owner_folder)
    except FileNotFoundError:
        return 0
    for queue in queue_folders:
        claimed = owner_folder / queue
        target = queues_folder / queue
        target.mkdir(parents=True, exist_ok=True)
        for name in os.listdir(claimed):
            with contextlib.suppress(FileNotFoundError):
                os.rename(claimed / name, target / name)
                given += 1
        with contextlib.suppress(OSError):
            claimed.rmdir()
    with contextlib.suppress(OSError):
        owner_folder.rmdir()
    return given


class Channel(kombu_filesystem.Channel):
    """kombu's filesystem channel with atomic writes, exclusive claims and acks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._claimed: dict[str, tuple[Path, Path]] = {}  # delivery tag -> (claimed, queue folder)
        self._no_ack_queues: set[str] = set()
        self._listed: dict[str, deque[str]] = {}
        self._known_folders: set[Path] = set()
        self._next_recovery = 0.0
        self._migrate_flat_messages()

    # --- where things live --------------------------------------------------

    @property
    def root(self) -> Path:
        """The broker folder: the parent of the queues folder (``var/broker``)."""
        return Path(self.data_folder_in).resolve().parent

    def _queue_folder(self, queue: str) -> Path:
        return Path(self.data_folder_in) / queue_folder_name(queue)

    def _ensure_folder(self, folder: Path) -> None:
        if folder not in self._known_folders:
            folder.mkdir(parents=True, exist_ok=True)
            self._known_folders.add(folder)

    # --- publishing -----------------------------------------------------------

    _counter = itertools.count()

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        """Write the whole message, then make it visible by one rename."""
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._counter):010d}{MESSAGE_SUFFIX}"
        self._write_into(self._queue_folder(queue), name, json.dumps(payload).encode())

    def _write_into(self, folder: Path, name: str, data: bytes) -> None:
        temporary = self.root / "tmp" / f"{name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            self._ensure_folder(temporary.parent)
            temporary.write_bytes(data)
            self._ensure_folder(folder)
            try:
                os.rename(temporary, folder / name)
            except FileNotFoundError:  # the folder was removed behind our back
                self._known_folders.discard(folder)
                self._ensure_folder(folder)
                os.rename(temporary, folder / name)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise ChannelError(f"Cannot add a message to {folder}") from exc

    # --- consuming ------------------------------------------------------------

    def _get(self, queue: str) -> dict[str, Any]:
        """Claim the oldest message of ``queue``; dead-letter what cannot be read."""
        self._recover_now_and_then()
        folder = self._queue_folder(queue)
        listed = self._listed.get(folder.name)
        if not listed:
            try:
                names = sorted(n for n in os.listdir(folder) if n.endswith(MESSAGE_SUFFIX))
            except FileNotFoundError:
                raise Empty() from None
            # Claimed one by one from this listing; listed again once it is used up.
            listed = self._listed[folder.name] = deque(names)
        owner = _owner_for(self.root)
        claimed_folder = owner.folder / folder.name
        while listed:
            name = listed.popleft()
            claimed = claimed_folder / name
            try:
                self._ensure_folder(claimed_folder)
                os.rename(folder / name, claimed)
            except FileNotFoundError:
                continue  # another consumer took it
            try:
                payload = self._read(claimed)
            except UnreadableMessage as exc:
                self._dead_letter(claimed, queue=queue, reason=str(exc))
                continue
            tag = payload["properties"]["delivery_tag"]
            if queue in self._no_ack_queues:
                claimed.unlink()
            else:
                self._claimed[tag] = (claimed, folder)
            return payload
        raise Empty()

    def _read(self, path: Path) -> dict[str, Any]:
        data = path.read_bytes()
        try:
            payload = json.loads(data)
            if not isinstance(payload, dict) or not isinstance(payload.get("properties"), dict):
                raise UnreadableMessage("not a kombu message envelope")
            if not isinstance(payload["properties"].get("delivery_tag"), str):
                raise UnreadableMessage("the message has no delivery tag")
            # Whatever kombu would fail on when handing it to the consumer fails here.
            self.Message(payload, channel=self)
        except UnreadableMessage:
            raise
        except Exception as exc:  # any failure to read it makes it unreadable, nothing else
            raise UnreadableMessage(f"{type(exc).__name__}: {exc}"[:500]) from exc
        return payload

    def _dead_letter(self, path: Path, *, queue: str, reason: str) -> None:
        target = self.transport_options.get("unreadable_queue") or DEFAULT_UNREADABLE_QUEUE
        raw = path.read_bytes()
        envelope = {
            "body": base64.b64encode(raw).decode(),
            "content-encoding": "binary",
            "content-type": "application/octet-stream",
            "headers": {
                HEADER_REASON: f"unreadable message in queue {queue}: {reason}",
                HEADER_ORIGINAL_QUEUE: queue,
                HEADER_DEAD_AT: datetime.now(UTC).isoformat(timespec="seconds"),
            },
            "properties": {
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
                "delivery_mode": 2,
                "priority": 0,
                "delivery_info": {"exchange": "", "routing_key": target},
            },
        }
        self._put(target, envelope)
        path.unlink()
        logger.error(
            "unreadable message in queue %s dead-lettered to %s: %s (%d bytes)",
            queue,
            target,
            reason,
            len(raw),
        )

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        if no_ack:
            self._no_ack_queues.add(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def basic_cancel(self, consumer_tag: str) -> Any:
        queue = self._tag_to_queue.get(consumer_tag)
        self._no_ack_queues.discard(queue)
        return super().basic_cancel(consumer_tag)

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        message = super().basic_get(queue, no_ack=no_ack, **kwargs)
        if message is not None and no_ack:
            self._settle(message.delivery_tag)
        return message

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        super().basic_ack(delivery_tag, multiple=multiple)
        self._settle(delivery_tag)

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        super().basic_reject(delivery_tag, requeue=requeue)
        self._settle(delivery_tag)  # requeued: already given back by _restore

    def _settle(self, delivery_tag: str) -> None:
        claimed = self._claimed.pop(delivery_tag, None)
        if claimed is not None:
            with contextlib.suppress(FileNotFoundError):
                claimed[0].unlink()

    def _restore(self, message: Any) -> None:
        """Back into its own queue, in its old place (not through the exchange again)."""
        claimed = self._claimed.pop(message.delivery_tag, None)
        if claimed is None:
            super()._restore(message)
            return
        path, folder = claimed
        self._ensure_folder(folder)
        os.rename(path, folder / path.name)
        self._listed.pop(folder.name, None)

    def _recover_now_and_then(self) -> None:
        now = time.monotonic()
        if now >= self._next_recovery:
            self._next_recovery = now + RECOVERY_INTERVAL_SECONDS
            recover_dead_owners(self.root, Path(self.data_folder_in))

    # --- queues -----------------------------------------------------------------

    def _new_queue(self, queue: str, **kwargs: Any) -> None:
        self._ensure_folder(self._queue_folder(queue))

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        return self._queue_folder(queue).is_dir()

    def _message_names(self, queue: str) -> list[str]:
        try:
            return [n for n in os.listdir(self._queue_folder(queue)) if n.endswith(MESSAGE_SUFFIX)]
        except FileNotFoundError:
            return []

    def _size(self, queue: str) -> int:
        return len(self._message_names(queue))

    def _purge(self, queue: str) -> int:
        folder = self._queue_folder(queue)
        count = 0
        for name in self._message_names(queue):
            with contextlib.suppress(FileNotFoundError):
                (folder / name).unlink()
                count += 1
        self._listed.pop(folder.name, None)
        return count

    def _delete(
        self, queue: str, exchange: str, routing_key: str, pattern: str, *args: Any, **kwargs: Any
    ) -> None:
        """Called once per binding by ``queue_delete``: the messages, the binding, the folder."""
        self._purge(queue)
        row = kombu_filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        with self._table_lock(exchange) as file:
            rows = self.get_table(exchange)
            if row in rows:
                self._table_write(file, [r for r in rows if r != row])
        folder = self._queue_folder(queue)
        with contextlib.suppress(OSError):
            folder.rmdir()
        self._known_folders.discard(folder)

    # --- exchanges --------------------------------------------------------------

    def get_table(self, exchange: str) -> list[Any]:
        file = self._exchange_file(exchange)
        try:
            data = file.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ChannelError(f"Cannot open {file}") from exc
        return [kombu_filesystem.exchange_queue_t(*row) for row in json.loads(data)]

    @contextlib.contextmanager
    def _table_lock(self, exchange: str) -> Any:
        file = self._exchange_file(exchange)
        file.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{file}.lock", "w") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            yield file

    def _table_write(self, file: Path, rows: list[Any]) -> None:
        temporary = file.with_name(f"{file.name}.{uuid.uuid4().hex[:8]}.tmp")
        temporary.write_text(json.dumps(rows))
        os.rename(temporary, file)

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        row = kombu_filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        try:
            with self._table_lock(exchange) as file:
                rows = self.get_table(exchange)
                if row not in rows:
                    self._table_write(file, [row, *rows])
        except OSError as exc:
            raise ChannelError(f"Cannot bind {queue} to {exchange}") from exc

    # --- upgrading ------------------------------------------------------------

    def _migrate_flat_messages(self) -> None:
        """Move messages left by kombu's own transport (all queues in one folder,
        ``<ms>_<uuid>.<queue>.msg``) into their queues' folders, once."""
        folder = Path(self.data_folder_in)
        try:
            names = [n for n in os.listdir(folder) if n.endswith(MESSAGE_SUFFIX)]
        except FileNotFoundError:
            return
        for name in names:
            stamp_and_id, _, rest = name.partition(".")
            queue = rest.removesuffix(MESSAGE_SUFFIX)
            if not queue:
                continue
            stamp = stamp_and_id.partition("_")[0]
            new_name = f"{int(stamp) * 1_000_000 if stamp.isdigit() else 0:020d}-0-{name}"
            target = self._queue_folder(queue)
            self._ensure_folder(target)
            with contextlib.suppress(FileNotFoundError):
                os.rename(folder / name, target / new_name)


class Transport(kombu_filesystem.Transport):
    """``filesystem://`` with :class:`Channel`; used through ``CELERY_BROKER_TRANSPORT``."""

    Channel = Channel
    global_state = virtual.BrokerState()
