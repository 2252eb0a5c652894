"""One RabbitMQ user per service, allowed only the exchanges and queues its processes use.

``ACCESS`` is the map, and the one place compose and k8s take it from: they load
``definitions()`` at the broker's boot (``python -m common.broker_access --out DIR``
writes it with a ``rabbitmq.conf`` that names it; compose's ``broker-users`` one-off
and ``scripts/k8s_secrets.py`` run it), each service's processes connect as the user
of their service, and the operator's administrator (``eshop``) is the only other user.

What a service's processes do on the broker, and so what its user may do
(RabbitMQ's configure, write and read regular expressions on the virtual host,
``permissions()``), with ``<p>`` the ``QUEUE_PREFIX``:

- Its own queues and exchanges, named ``<p><service>`` or ``<p><service>.<anything>``:
  the Celery task queue and its exchange, ``.events`` and ``.events.dlq`` (and the
  ``.commands.dlq`` of refused commands), each with its exchange of the same name,
  and ``.celeryev`` (worker heartbeats, ``CELERY_EVENT_EXCHANGE``). All rights.
- The command exchanges of the services it sends commands or replies to
  (``commands_to``): write only, so it can neither read another's queue nor
  declare, delete or purge it.
- The ``events`` exchange: producers write to it, and topic permissions restrict the
  routing keys (event types) to their own (``events_produced``); consumers read it to
  bind their queue, and only to the types they consume (``events_consumed``). Both
  configure it, because the relay and the consumers declare it (a declare of an
  existing exchange needs the configure right too): they could delete it, never
  publish through it what they do not produce.
- Passive declares (queue depths for ``/metrics``, KEDA) and connecting (``/ready/``)
  need no right.

Routing, so that write permissions mean something: Celery publishes a task for
a direct queue to the default exchange (routing key = queue name) and declares the
target queue first. On RabbitMQ the right to write to the default exchange is the
right to write to every queue of the virtual host, and declaring another service's
queue needs the right to configure (so delete) it. So ``celery_routing_settings()``
lists every service's command queue with its direct exchange of the same name (as
Celery names them), never declares the others' (``no_declare``: the broker's
definitions and their owner's worker do), and routes each task to its queue's
exchange. Dead letters and replays go through a queue's own exchange as well
(``common.events.broker.queue_exchange``). ``make run``'s filesystem broker has no
users: Celery's own routing stays there.

Two shared Celery features are off for the same reason: remote control (the
``celery.pidbox`` fanout exchange and reply queues every worker would share; nothing
here uses ``celery inspect``/``control``) and native delayed delivery (on quorum
queues Celery's workers declare the shared ``celery_delayed_*`` exchanges and
queues and bind every task queue to them, so whoever may publish into them reaches
every queue; our tasks use no ETA or countdown): ``common.celery.Consumer``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kombu import Exchange, Queue

from common.quorum import broker_is_rabbitmq, quorum_queue_arguments

VHOST = "/"
EVENT_EXCHANGE = "events"
ADMIN_USER = "eshop"
# Matches no exchange or queue name: no right at all (RabbitMQ reads "" the same way).
NOTHING = "^$"


@dataclass(frozen=True)
class ServiceAccess:
    """What one service's processes do on the broker, beyond their own queues."""

    # Services whose command queue it publishes to (commands, or saga replies).
    commands_to: tuple[str, ...] = ()
    # Event types (prefixes) it publishes on the events exchange (its outbox relay).
    events_produced: tuple[str, ...] = ()
    # Event types (prefixes) its consumer's queue is bound to.
    events_consumed: tuple[str, ...] = ()
    # A Celery worker consumes its command queue.
    has_worker: bool = False


ACCESS: dict[str, ServiceAccess] = {
    # Participants: run their steps, reply to the orchestrator, consume order events;
    # catalog passes the saga's routing slip on to users (the credit step).
    "catalog": ServiceAccess(
        commands_to=("orders", "users"), events_consumed=("order.",), has_worker=True
    ),
    "users": ServiceAccess(commands_to=("orders",), events_consumed=("order.",), has_worker=True),
    # The orchestrator: commands to both participants; publishes the order events.
    "orders": ServiceAccess(
        commands_to=("catalog", "users"), events_produced=("order.",), has_worker=True
    ),
    # Its workers hear order events for the order-status streams (gateway_svc/proxy/
    # order_feed.py: a queue of its own per worker, bound to order.#, and its DLQ).
    "gateway": ServiceAccess(events_consumed=("order.",)),
}


def password_env(service: str) -> str:
    """The variable that holds a service's broker password (compose/.env, k8s Secrets)."""
    return f"RABBITMQ_{service.upper()}_PASSWORD"


def _alternatives(names: list[str]) -> str:
    return f"^({'|'.join(names)})$" if names else NOTHING


def _types(prefixes: tuple[str, ...]) -> str:
    return f"^({'|'.join(re.escape(prefix) for prefix in prefixes)})" if prefixes else NOTHING


def permissions(
    service: str, *, prefix: str = "", event_exchange: str = EVENT_EXCHANGE
) -> dict[str, str]:
    """RabbitMQ's ``configure``, ``write`` and ``read`` expressions for the service's user."""
    access = ACCESS[service]
    if access == ServiceAccess():
        return {"configure": NOTHING, "write": NOTHING, "read": NOTHING}
    own = rf"{re.escape(prefix + service)}(\..+)?"
    events = re.escape(prefix + event_exchange)
    uses_events = bool(access.events_produced or access.events_consumed)
    targets = [re.escape(prefix + target) for target in access.commands_to]
    return {
        "configure": _alternatives([own, *([events] if uses_events else [])]),
        "write": _alternatives([own, *targets, *([events] if access.events_produced else [])]),
        "read": _alternatives([own, *([events] if access.events_consumed else [])]),
    }


def topic_permissions(service: str) -> dict[str, str] | None:
    """Routing keys (event types) it may publish to, and bind from, the events exchange."""
    access = ACCESS[service]
    if not (access.events_produced or access.events_consumed):
        return None
    return {"write": _types(access.events_produced), "read": _types(access.events_consumed)}


def password_hash(password: str, *, salt: bytes | None = None) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + sha256(salt + password)).

    Written here because no maintained Python package computes it (RabbitMQ's own
    tools do it inside the broker, which has no Python); the format is RabbitMQ's
    documented one (access-control, "Credentials and passwords"), four lines.
    """
    salt = secrets.token_bytes(4) if salt is None else salt
    digest = hashlib.sha256(salt + password.encode()).digest()
    return base64.b64encode(salt + digest).decode()


def command_queue(service: str, *, prefix: str = "", rabbitmq: bool = True, own: bool) -> Queue:
    """A service's Celery task queue with its direct exchange of the same name.

    ``own``: this process's service, whose worker declares it; another's is never
    declared here (``no_declare``), only published to through its exchange.
    """
    name = prefix + service
    return Queue(
        name,
        Exchange(name, type="direct", durable=True),
        routing_key=name,
        durable=True,
        queue_arguments=quorum_queue_arguments(rabbitmq=rabbitmq) or None,
        no_declare=not own,
    )


def route_to_queue_exchange(
    name: str, args: Any, kwargs: Any, options: dict[str, Any], task: Any = None, **_: Any
) -> dict[str, str] | None:
    """Celery router: publish a task to its queue's own exchange, never the default one."""
    queue = options.get("queue")
    if not isinstance(queue, Queue) or queue.exchange is None or not queue.exchange.name:
        return None
    return {"exchange": queue.exchange.name, "routing_key": queue.routing_key or queue.name}


def celery_routing_settings(*, service: str, prefix: str, broker_url: str) -> dict[str, Any]:
    """The ``CELERY_*`` settings of the routing above (the module's docstring says why).

    On RabbitMQ only: elsewhere (``make run``'s filesystem broker, ``memory://``) there
    are no users to keep apart, and Celery's own routing stays, as it was (a command
    sent before its receiver ever started waits in the queue the sender declared).
    """
    rabbitmq = broker_is_rabbitmq(broker_url)
    if not rabbitmq:
        return {}
    services = sorted({name for name, access in ACCESS.items() if access.has_worker} | {service})
    return {
        "CELERY_TASK_QUEUES": [
            command_queue(name, prefix=prefix, rabbitmq=rabbitmq, own=name == service)
            for name in services
        ],
        "CELERY_TASK_ROUTES": ["common.broker_access.route_to_queue_exchange"],
        "CELERY_WORKER_ENABLE_REMOTE_CONTROL": False,
        "CELERY_EVENT_EXCHANGE": f"{prefix}{service}.celeryev",
        "CELERY_WORKER_CONSUMER": "common.celery:Consumer",
    }


def definitions(
    passwords: dict[str, str],
    *,
    admin_password: str,
    prefix: str = "",
    event_exchange: str = EVENT_EXCHANGE,
    vhost: str = VHOST,
) -> dict[str, Any]:
    """RabbitMQ definitions (loaded at boot): the users, their rights, and the exchanges
    and queues a sender needs before their owner first starts (command queues, events).

    The queues and exchanges are declared exactly as the code declares them (quorum
    queues, durable direct and topic exchanges), or the code's declares would be refused.
    """
    users = [
        {
            "name": ADMIN_USER,
            "password_hash": password_hash(admin_password),
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": ["administrator"],
        }
    ]
    rights = [{"user": ADMIN_USER, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}]
    topics = []
    for service in ACCESS:
        users.append(
            {
                "name": service,
                "password_hash": password_hash(passwords[service]),
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": [],
            }
        )
        rights.append(
            {
                "user": service,
                "vhost": vhost,
                **permissions(service, prefix=prefix, event_exchange=event_exchange),
            }
        )
        if (topic := topic_permissions(service)) is not None:
            topics.append(
                {"user": service, "vhost": vhost, "exchange": prefix + event_exchange, **topic}
            )
    exchange = {"vhost": vhost, "durable": True, "auto_delete": False, "internal": False}
    workers = [prefix + name for name, access in ACCESS.items() if access.has_worker]
    return {
        "users": users,
        "vhosts": [{"name": vhost}],
        "permissions": rights,
        "topic_permissions": topics,
        "exchanges": [
            {"name": prefix + event_exchange, "type": "topic", **exchange, "arguments": {}},
            *({"name": name, "type": "direct", **exchange, "arguments": {}} for name in workers),
        ],
        "queues": [
            {
                "name": name,
                "vhost": vhost,
                "durable": True,
                "auto_delete": False,
                "arguments": quorum_queue_arguments(rabbitmq=True),
            }
            for name in workers
        ],
        "bindings": [
            {
                "source": name,
                "vhost": vhost,
                "destination": name,
                "destination_type": "queue",
                "routing_key": name,
                "arguments": {},
            }
            for name in workers
        ],
    }


RABBITMQ_CONF = """\
# Written by common.broker_access: the users, rights and command queues of the shop,
# imported at every boot (a changed password or right takes effect at the next start).
load_definitions = {path}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write RabbitMQ's definitions (users, rights) and a rabbitmq.conf loading them."
    )
    parser.add_argument("--out", type=Path, required=True, help="the folder to write")
    parser.add_argument(
        "--mounted-at",
        help="where the broker sees that folder (rabbitmq.conf names the file there); "
        "default: --out",
    )
    options = parser.parse_args(argv)
    names = ["RABBITMQ_PASSWORD", *(password_env(service) for service in ACCESS)]
    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        print(f"set {', '.join(missing)}: no broker user has a default password", file=sys.stderr)
        return 64
    document = definitions(
        {service: os.environ[password_env(service)] for service in ACCESS},
        admin_password=os.environ["RABBITMQ_PASSWORD"],
        prefix=os.environ.get("QUEUE_PREFIX", ""),
        event_exchange=os.environ.get("EVENT_EXCHANGE", EVENT_EXCHANGE),
        vhost=os.environ.get("RABBITMQ_VHOST", VHOST),
    )
    out: Path = options.out
    out.mkdir(parents=True, exist_ok=True)
    # Readable by the broker's own user (another uid): hashes only, never a password.
    (out / "definitions.json").write_text(json.dumps(document, indent=2) + "\n")
    (out / "definitions.json").chmod(0o644)
    mounted = Path(options.mounted_at or out)
    (out / "rabbitmq.conf").write_text(RABBITMQ_CONF.format(path=mounted / "definitions.json"))
    (out / "rabbitmq.conf").chmod(0o644)
    print(f"RabbitMQ definitions for {', '.join(ACCESS)} written in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
