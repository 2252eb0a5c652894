"""The embedded broker (common.filesystem_broker): whole messages, one consumer each,
acks that survive a killed consumer, unreadable files dead-lettered, not fatal."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Exchange, Producer, Queue

from common.filesystem_broker import (
    HEADER_REASON,
    queue_folder_name,
    recover_dead_owners,
    transport_for,
)

# Forked children only talk to the broker folder: no database, no Django state used.
fork = multiprocessing.get_context("fork")


def options_for(root: Path) -> dict[str, Any]:
    return {
        "data_folder_in": str(root / "queues"),
        "data_folder_out": str(root / "queues"),
        "control_folder": str(root / "control"),
        "polling_interval": 0.001,
        "unreadable_queue": "svc.events.dlq",
    }


def connect(root: Path) -> Connection:
    for folder in ("queues", "control"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    return Connection(
        "filesystem://",
        transport=transport_for("filesystem://"),
        transport_options=options_for(root),
    )


def publish(root: Path, queue: str, bodies: list[Any]) -> None:
    with connect(root) as connection:
        producer = Producer(connection.channel())
        for body in bodies:
            producer.publish(body, routing_key=queue, exchange="", serializer="json")


def take(root: Path, queue: str, *, ack: bool = True, timeout: float = 5) -> Any:
    """The next body of ``queue`` (acked, unless ``ack`` is false), or None."""
    with connect(root) as connection:
        channel = connection.channel()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = channel.basic_get(queue)
            if message is not None:
                if ack:
                    message.ack()
                return json.loads(message.body)
            time.sleep(0.005)
    return None


def _produce(root: Path, producer: int, count: int) -> None:
    publish(root, "work", [{"producer": producer, "n": n, "pad": "x" * 4000} for n in range(count)])


def _consume(root: Path, total: int, taken: Any, results: Any) -> None:
    """Take messages until all ``total`` were taken by the consumers together."""
    seen: list[tuple[int, int]] = []
    with connect(root) as connection:
        channel = connection.channel()
        deadline = time.monotonic() + 60
        while taken.value < total and time.monotonic() < deadline:
            message = channel.basic_get("work")
            if message is None:
                time.sleep(0.001)
                continue
            body = json.loads(message.body)
            seen.append((body["producer"], body["n"]))
            message.ack()
            with taken.get_lock():
                taken.value += 1
    results.put(seen)


def test_concurrent_producers_and_consumers_get_every_message_once_and_whole(tmp_path):
    """kombu's own transport lost 2 of these 2,000 messages to empty reads
    (``JSONDecodeError``), the error that ended Celery workers under make run."""
    producers, per_producer = 4, 500
    results, taken = fork.Queue(), fork.Value("i", 0)
    total = producers * per_producer
    consumers = [
        fork.Process(target=_consume, args=(tmp_path, total, taken, results)) for _ in range(2)
    ]
    writers = [
        fork.Process(target=_produce, args=(tmp_path, p, per_producer)) for p in range(producers)
    ]
    for process in consumers + writers:
        process.start()
    for process in writers:
        process.join(60)
        assert process.exitcode == 0
    per_consumer = [results.get(timeout=60) for _ in consumers]
    for process in consumers:
        process.join(10)
        assert process.exitcode == 0
    received = [item for seen in per_consumer for item in seen]
    assert sorted(received) == [(p, n) for p in range(producers) for n in range(per_producer)]
    # No order is asserted: a message renamed in while a consumer lists the folder may be
    # missing from that listing (readdir's way) and come after a newer one.
    assert not list((tmp_path / "queues" / "work").iterdir())


def test_unreadable_files_are_dead_lettered_with_the_reason_and_reading_goes_on(tmp_path):
    publish(tmp_path, "work", [{"n": 1}])
    folder = tmp_path / "queues" / "work"
    # Older names than the good message: they come first.
    (folder / "00000000000000000001-1-0000000001.msg").write_bytes(b"")
    (folder / "00000000000000000002-1-0000000002.msg").write_bytes(b'{"half": ')
    (folder / "00000000000000000003-1-0000000003.msg").write_bytes(b"[1, 2]")
    unknown_encoding = {"body": "x", "properties": {"delivery_tag": "t", "body_encoding": "rot13"}}
    (folder / "00000000000000000004-1-0000000004.msg").write_text(json.dumps(unknown_encoding))

    assert take(tmp_path, "work") == {"n": 1}

    with connect(tmp_path) as connection:
        channel = connection.channel()
        dead = [channel.basic_get("svc.events.dlq") for _ in range(5)]
    reasons = [message.headers[HEADER_REASON] for message in dead if message is not None]
    assert len(reasons) == 4
    assert all(reason.startswith("unreadable message in queue work: ") for reason in reasons)
    assert "JSONDecodeError" in reasons[0]
    assert "not a kombu message envelope" in reasons[2]
    bodies = [message.body for message in dead if message is not None]
    assert bodies[:3] == [b"", b'{"half": ', b"[1, 2]"]


def _claim_and_wait(root: Path, claimed: Any) -> None:
    with connect(root) as connection:
        message = connection.channel().basic_get("work")
        claimed.put(json.loads(message.body))
        time.sleep(60)  # killed long before


def test_a_message_a_killed_consumer_had_not_acked_is_delivered_again(tmp_path):
    publish(tmp_path, "work", [{"n": 1}, {"n": 2}])
    claimed = fork.Queue()
    consumer = fork.Process(target=_claim_and_wait, args=(tmp_path, claimed))
    consumer.start()
    assert claimed.get(timeout=10) == {"n": 1}
    os.kill(consumer.pid, signal.SIGKILL)
    consumer.join(10)

    # The next consumer gives it back (they look every RECOVERY_INTERVAL_SECONDS, and at
    # their start), in its old place: first.
    assert take(tmp_path, "work") == {"n": 1}
    assert take(tmp_path, "work") == {"n": 2}
    assert recover_dead_owners(tmp_path, tmp_path / "queues") == 0
    assert not list((tmp_path / "owners").iterdir()) or all(
        path.name.startswith(f"{os.getpid()}-") for path in (tmp_path / "owners").iterdir()
    )


def test_unacked_messages_go_back_to_their_own_queue_in_their_place_on_close(tmp_path):
    exchange = Exchange("events", type="topic", durable=True)
    queues = [Queue(name, exchange, routing_key="order.#") for name in ("a.events", "b.events")]
    with connect(tmp_path) as connection:
        producer = Producer(connection.channel(), exchange=exchange)
        for queue in queues:
            queue(connection.channel()).declare()
        for n in (1, 2):
            producer.publish({"n": n}, routing_key="order.placed", serializer="json")
    assert take(tmp_path, "a.events", ack=False) == {"n": 1}  # closed without ack

    assert take(tmp_path, "a.events") == {"n": 1}  # first again, not last
    assert take(tmp_path, "a.events") == {"n": 2}
    assert take(tmp_path, "a.events", timeout=0.2) is None
    # Not routed through the exchange again: b got each event once.
    assert [take(tmp_path, "b.events"), take(tmp_path, "b.events")] == [{"n": 1}, {"n": 2}]
    assert take(tmp_path, "b.events", timeout=0.2) is None


def test_reject_requeues_or_drops_and_no_ack_consumers_leave_nothing_behind(tmp_path):
    publish(tmp_path, "work", [{"n": 1}, {"n": 2}])
    with connect(tmp_path) as connection:
        channel = connection.channel()
        first = channel.basic_get("work")
        first.reject(requeue=True)
        again = channel.basic_get("work")
        assert json.loads(again.body) == {"n": 1}
        again.reject(requeue=False)
        assert json.loads(channel.basic_get("work", no_ack=True).body) == {"n": 2}
        assert channel.basic_get("work") is None
    assert not any((tmp_path / "unacked").rglob("*.msg"))


def test_consumers_with_no_ack_take_messages_for_good(tmp_path):
    publish(tmp_path, "work", [{"n": n} for n in range(3)])
    got: list[Any] = []
    with connect(tmp_path) as connection:
        queue = Queue("work", Exchange("", type="direct"), routing_key="work")
        with connection.Consumer(queue, callbacks=[lambda body, _: got.append(body)], no_ack=True):
            deadline = time.monotonic() + 10
            while len(got) < 3 and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    connection.drain_events(timeout=0.5)
    assert got == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert not any(tmp_path.rglob("*.msg"))


def test_a_queue_that_was_never_declared_is_not_found_by_a_passive_declare(tmp_path):
    from kombu.exceptions import ChannelError

    with connect(tmp_path) as connection:
        channel = connection.channel()
        with pytest.raises(ChannelError):
            channel.queue_declare("nobody", passive=True)
        Queue("somebody")(channel).declare()
        publish(tmp_path, "somebody", [{"n": 1}])
        assert channel.queue_declare("somebody", passive=True).message_count == 1


def test_messages_left_by_kombus_own_transport_are_moved_into_their_queues(tmp_path):
    flat = tmp_path / "queues"
    flat.mkdir(parents=True)
    with connect(tmp_path / "old") as connection:  # an envelope as kombu writes it
        Producer(connection.channel()).publish({"n": 7}, routing_key="work", serializer="json")
    envelope = next((tmp_path / "old" / "queues" / "work").iterdir()).read_bytes()
    (flat / "1765000000000_6c1e.work.msg").write_bytes(envelope)

    assert take(tmp_path, "work") == {"n": 7}


def test_queue_names_become_single_folder_names():
    assert queue_folder_name("catalog.events.dlq") == "catalog.events.dlq"
    assert queue_folder_name("a/../b") == "a%2F..%2Fb"
    with pytest.raises(Exception, match="Invalid queue name"):
        queue_folder_name("..")
