"""The embedded broker side by side: kombu's own filesystem transport, ours, RabbitMQ.

    make bench-broker      # or: .venv/bin/python bench/broker_bench.py [--messages 4000 ...]

Each round starts ``--producers`` processes publishing ``--messages`` in all to
one durable queue (JSON bodies of ``--size`` bytes, the shape of a saga
command) and ``--consumers`` processes consuming it the way Celery and our
event consumers do (``drain_events``, one ack per message), alternating the
transports round by round so that this machine's swings hit all alike:

``--kinds`` may add ``kombu-sqlite``, kombu's SQLAlchemy transport on a SQLite
file (the other embedded broker that needs no server; SQLAlchemy is not among
the project's packages: ``pip install sqlalchemy`` first).

1. flat out: every producer publishes as fast as it can; messages per second
   from the first publish to the last ack;
2. paced: ``--rate`` messages/s in all (below every transport's maximum),
   latency publish -> delivery p50/p99 (both clocks are this machine's).

For each: messages lost (not delivered within ``--settle`` s of the last
publish), unreadable deliveries (a consumer's ``drain_events`` raised: what
ended Celery workers under ``make run``), duplicates, and the CPU of
producers and consumers per message (their rusage). RabbitMQ's own CPU is
not counted (it is a server of its own; the file transports have none).
Results go to ``bench/results/broker.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "common" / "src"))

from kombu import Connection, Consumer, Producer, Queue  # noqa: E402

from common.filesystem_broker import TRANSPORT  # noqa: E402

DEFAULT_OUTPUT = REPO / "bench" / "results" / "broker.json"
RABBITMQ_URL = os.environ.get("TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
fork = multiprocessing.get_context("fork")


def connection_for(kind: str, folder: Path) -> Connection:
    if kind == "rabbitmq":
        return Connection(RABBITMQ_URL, transport_options={"confirm_publish": True})
    if kind == "kombu-sqlite":  # kombu's SQLAlchemy transport on a SQLite file (needs SQLAlchemy)
        folder.mkdir(parents=True, exist_ok=True)
        connection = Connection(f"sqla+sqlite:///{folder / 'broker.sqlite3'}")
        # Its transport options all go to create_engine(): the interval is set on the transport.
        connection.transport.polling_interval = 0.01
        return connection
    options = {
        "data_folder_in": str(folder / "queues"),
        "data_folder_out": str(folder / "queues"),
        "control_folder": str(folder / "control"),
        "processed_folder": str(folder / "processed"),
        "polling_interval": 0.01,  # as settings.broker_config
    }
    for key in ("data_folder_in", "control_folder", "processed_folder"):
        Path(options[key]).mkdir(parents=True, exist_ok=True)
    transport = TRANSPORT if kind == "embedded" else None
    return Connection("filesystem://", transport=transport, transport_options=options)


def produce(kind: str, folder: Path, queue: str, count: int, interval: float, size: int) -> None:
    pad = "x" * size
    with connection_for(kind, folder) as connection:
        producer = Producer(connection.channel())
        target = Queue(queue, durable=True, auto_delete=False)
        started = time.monotonic()
        for n in range(count):
            if interval:
                delay = started + n * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            producer.publish(
                {"sent": time.time(), "id": f"{os.getpid()}-{n}", "pad": pad},
                routing_key=queue,
                declare=[target],
                delivery_mode=2,
                serializer="json",
            )


def consume(kind: str, folder: Path, queue: str, stop_at: Any, results: Any) -> None:
    latencies: list[float] = []
    ids: list[str] = []
    unreadable = 0

    def on_message(body: Any, message: Any) -> None:
        latencies.append(time.time() - body["sent"])
        ids.append(body["id"])
        message.ack()

    with connection_for(kind, folder) as connection:
        channel = connection.channel()
        target = Queue(queue, durable=True, auto_delete=False)
        with Consumer(channel, [target], callbacks=[on_message], prefetch_count=4):
            while time.time() < stop_at.value or stop_at.value == 0:
                try:
                    connection.drain_events(timeout=0.2)
                except TimeoutError:
                    if stop_at.value and len(ids) and time.time() >= stop_at.value:
                        break
                except Exception:
                    unreadable += 1
    usage = resource.getrusage(resource.RUSAGE_SELF)
    results.put(
        {
            "latencies": latencies,
            "ids": ids,
            "unreadable": unreadable,
            "cpu": usage.ru_utime + usage.ru_stime,
        }
    )


def run_once(kind: str, args: argparse.Namespace, *, paced: bool) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"broker-{kind}-", dir=REPO / "var"))
    queue = f"bench-broker-{uuid.uuid4().hex[:8]}"
    per_producer = args.messages // args.producers
    interval = args.producers / args.rate if paced else 0.0
    stop_at = fork.Value("d", 0.0)
    results = fork.Queue()
    with connection_for(kind, folder) as connection:  # declared before anyone publishes
        Queue(queue, durable=True, auto_delete=False)(connection.channel()).declare()
    consumers = [
        fork.Process(target=consume, args=(kind, folder, queue, stop_at, results))
        for _ in range(args.consumers)
    ]
    for process in consumers:
        process.start()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    producers = [
        fork.Process(target=produce, args=(kind, folder, queue, per_producer, interval, args.size))
        for _ in range(args.producers)
    ]
    for process in producers:
        process.start()
    for process in producers:
        process.join()
    published = time.time()
    total = per_producer * args.producers
    # Consumers stop once everything arrived or --settle s after the last publish.
    stop_at.value = published + args.settle
    gathered = [results.get(timeout=args.settle + 60) for _ in consumers]
    for process in consumers:
        process.join(10)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    latencies = sorted(x for g in gathered for x in g["latencies"])
    ids = [i for g in gathered for i in g["ids"]]
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    shutil.rmtree(folder, ignore_errors=True)
    if kind == "rabbitmq":
        with connection_for(kind, folder) as connection:
            connection.channel().queue_delete(queue)
    received = len(set(ids))
    elapsed = (published - started) if paced else None
    result = {
        "kind": kind,
        "paced": paced,
        "messages": total,
        "received": received,
        "lost": total - received,
        "duplicates": len(ids) - received,
        "unreadable": sum(g["unreadable"] for g in gathered),
        "cpu_ms_per_message": round(1000 * cpu / max(received, 1), 3),
        "p50_ms": round(1000 * statistics.median(latencies), 2) if latencies else None,
        "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 2)
        if latencies
        else None,
    }
    if not paced:
        # Flat out: the last delivery is the publish time of the last plus its latency;
        # approximated by the time everything was published plus the p99 latency.
        span = (published - started) + (latencies[-1] if latencies else 0)
        result["messages_per_s"] = round(received / span, 1) if span else None
    else:
        result["rate"] = round(total / elapsed, 1) if elapsed else None
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default="kombu-filesystem,embedded,rabbitmq")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--size", type=int, default=600, help="bytes of padding per message")
    parser.add_argument("--rate", type=float, default=200.0, help="messages/s of the paced run")
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    (REPO / "var").mkdir(exist_ok=True)
    kinds = args.kinds.split(",")
    runs: list[dict[str, Any]] = []
    for round_number in range(args.rounds):
        for paced in (False, True):
            for kind in kinds:
                result = run_once(kind, args, paced=paced)
                result["round"] = round_number
                runs.append(result)
                print(json.dumps(result), flush=True)

    summary: dict[str, Any] = {}
    for kind in kinds:
        flat = [r for r in runs if r["kind"] == kind and not r["paced"]]
        paced_runs = [r for r in runs if r["kind"] == kind and r["paced"]]
        summary[kind] = {
            "messages_per_s": statistics.median(r["messages_per_s"] for r in flat),
            "cpu_ms_per_message": statistics.median(r["cpu_ms_per_message"] for r in flat),
            "paced_p50_ms": statistics.median(r["p50_ms"] for r in paced_runs),
            "paced_p99_ms": statistics.median(r["p99_ms"] for r in paced_runs),
            "lost": sum(r["lost"] for r in flat + paced_runs),
            "unreadable": sum(r["unreadable"] for r in flat + paced_runs),
            "duplicates": sum(r["duplicates"] for r in flat + paced_runs),
        }
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cores": os.cpu_count()},
        "arguments": {k: str(v) for k, v in vars(args).items()},
        "summary": summary,
        "runs": runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"\n{'transport':18} {'msg/s':>8} {'CPU ms/msg':>11} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'lost':>5} {'unreadable':>10} {'dup':>4}"
    )
    for kind, figures in summary.items():
        print(
            f"{kind:18} {figures['messages_per_s']:>8} {figures['cpu_ms_per_message']:>11} "
            f"{figures['paced_p50_ms']:>8} {figures['paced_p99_ms']:>8} {figures['lost']:>5} "
            f"{figures['unreadable']:>10} {figures['duplicates']:>4}"
        )
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
