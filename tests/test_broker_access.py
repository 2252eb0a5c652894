"""One RabbitMQ user per service (common.broker_access), on a real broker.

A private RabbitMQ node boots with the definitions compose and k8s load (the same
function writes them), and every user is tried with a real AMQP client: what its
service's processes do works, and reading, declaring, deleting or publishing what
belongs to another service is refused. Publishes are confirmed, so a refused
publish is seen (without confirms RabbitMQ closes the channel after the fact).

The map itself is checked against the code first: the services orders' saga sends
commands to, where the participants send their replies, the event types each
consumer handles.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import amqp
import pytest
from celery import Celery
from kombu import Connection, Exchange, Producer, Queue, binding

from common.broker_access import ACCESS, celery_routing_settings, definitions
from tests.chaos import rabbitmq_available
from tests.servers import PrivateRabbitMQ

REPO = Path(__file__).resolve().parents[1]
PASSWORDS = {service: f"{service}-secret" for service in ACCESS}
ADMIN_PASSWORD = "admin-secret"


# ------------------------------------------------------------------ the map and the code


def module_constant(path: Path, name: str) -> Any:
    """The literal value a module assigns to ``name`` (read, not imported: each service
    is a Django project of its own)."""
    for node in ast.parse(path.read_text()).body:
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        if isinstance(target, ast.Name) and target.id == name and node.value is not None:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path} assigns no {name}")


def test_orders_may_send_commands_exactly_to_the_participants_of_its_saga() -> None:
    steps = module_constant(REPO / "orders_svc" / "orders" / "saga.py", "STEPS")
    assert set(ACCESS["orders"].commands_to) == {service for service, _ in steps.values()}


@pytest.mark.parametrize(
    ("service", "tasks"),
    [("catalog", "catalog_svc/catalog/tasks.py"), ("users", "users_svc/accounts/tasks.py")],
)
def test_a_participant_may_send_only_its_replies_to_orders(service: str, tasks: str) -> None:
    """And catalog the credit step it passes on to users (the saga's routing slip)."""
    sent = [module_constant(REPO / tasks, "REPLY")]
    if service == "catalog":
        sent.append(module_constant(REPO / tasks, "PASSED_ON"))
    assert ACCESS[service].commands_to == tuple(task.split(".", 1)[0] for task in sent)


@pytest.mark.parametrize("service", ["catalog", "users"])
def test_a_consumer_may_bind_the_event_types_it_handles(service: str) -> None:
    settings = REPO / f"{service}_svc" / f"{service}_svc" / "settings.py"
    handlers = module_constant(settings, "EVENT_HANDLERS")
    consumed = ACCESS[service].events_consumed
    assert handlers
    assert all(event_type.startswith(consumed) for event_type in handlers)


def test_orders_may_publish_every_event_type_it_defines() -> None:
    # The values of orders.models.OrderEventType: the types its event store (the outbox) holds.
    source = (REPO / "orders_svc" / "orders" / "models.py").read_text()
    (event_type_class,) = [
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.ClassDef) and node.name == "OrderEventType"
    ]
    types = [
        ast.literal_eval(node.value)
        for node in event_type_class.body
        if isinstance(node, ast.Assign)
    ]
    assert "order.approved" in types
    assert all(event_type.startswith(ACCESS["orders"].events_produced) for event_type in types)
    # Nobody else produces events.
    assert [s for s, access in ACCESS.items() if access.events_produced] == ["orders"]


# ------------------------------------------------------------------ a broker with the users


class BrokerWithUsers(PrivateRabbitMQ):
    """A private node that imports the definitions at boot (and so has no guest user)."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        document = definitions(PASSWORDS, admin_password=ADMIN_PASSWORD)
        (workdir / "definitions.json").write_text(json.dumps(document))
        config = workdir / "rabbitmq.conf"
        config.write_text(
            config.read_text() + f"load_definitions = {workdir / 'definitions.json'}\n"
        )

    @property
    def url(self) -> str:  # readiness is checked as the administrator
        return self.url_of("eshop", ADMIN_PASSWORD)

    def url_of(self, user: str, password: str | None = None) -> str:
        return f"amqp://{user}:{password or PASSWORDS[user]}@127.0.0.1:{self.port}//"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerWithUsers]:
    if reason := rabbitmq_available():
        pytest.fail(reason)
    node = BrokerWithUsers(tmp_path_factory.mktemp("rabbitmq"))
    node.start()
    try:
        yield node
    finally:
        node.close()


def connect(broker: BrokerWithUsers, user: str, password: str | None = None) -> Connection:
    connection = Connection(
        broker.url_of(user, password),
        connect_timeout=10,
        transport_options={"confirm_publish": True},
    )
    connection.ensure_connection(max_retries=0)
    return connection


def refused(broker: BrokerWithUsers, user: str, operation: Any) -> bool:
    """Whether RabbitMQ refuses ``operation(channel)`` to ``user`` (ACCESS_REFUSED)."""
    with connect(broker, user) as connection:
        try:
            operation(connection.channel())
        except amqp.AccessRefused:
            return True
    return False


def quorum_queue(name: str, **kwargs: Any) -> Queue:
    """A queue with its exchange of the same name, as our code and Celery declare them."""
    return Queue(
        name,
        Exchange(name, "direct", durable=True),
        routing_key=name,
        queue_arguments={"x-queue-type": "quorum"},
        **kwargs,
    )


def publish(exchange: str, routing_key: str) -> Any:
    return lambda channel: Producer(channel).publish(
        {"probe": True}, exchange=exchange, routing_key=routing_key
    )


def test_each_user_logs_in_with_its_own_password_and_no_default_user_exists(broker) -> None:
    for user in ACCESS:
        connect(broker, user).release()
    for user, password in (("catalog", PASSWORDS["orders"]), ("guest", "guest")):
        with pytest.raises(amqp.AccessRefused):
            connect(broker, user, password)


def celery_app(broker: BrokerWithUsers, service: str) -> Celery:
    """A Celery app routed as ``service``'s is (common.settings), as its broker user."""
    app = Celery(service)
    routing = celery_routing_settings(service=service, prefix="", broker_url=broker.url)
    app.conf.update(
        broker_url=broker.url_of(service),
        # Confirmed, so that a refused publish raises here (not so in the services:
        # a command the broker does not take is resent by the saga's watchdog).
        broker_transport_options={"confirm_publish": True},
        **{key.removeprefix("CELERY_").lower(): value for key, value in routing.items()},
    )
    return app


def test_a_command_travels_through_the_receivers_exchange_as_celery_sends_it(broker) -> None:
    # The command queues exist from the broker's boot (the definitions), as in compose/k8s.
    sender = celery_app(broker, "orders")
    try:
        sender.send_task("catalog.stock_reserve", kwargs={"order_id": "o-1"}, queue="catalog")
        with connect(broker, "catalog") as catalog:
            message = catalog.channel().basic_get("catalog", no_ack=True)
        assert message is not None
        assert message.headers["task"] == "catalog.stock_reserve"
        assert message.delivery_info["exchange"] == "catalog"  # not the default exchange
        # catalog's reply, through orders' exchange, and the credit step it passes on,
        # through users'; users' reply, never to catalog, whom it does not call.
        replier = celery_app(broker, "catalog")
        try:
            replier.send_task("orders.saga_reply", kwargs={"ok": True}, queue="orders")
            replier.send_task("users.credit_reserve", kwargs={}, queue="users")
        finally:
            replier.close()
        users = celery_app(broker, "users")
        try:
            with pytest.raises(amqp.AccessRefused):
                users.send_task("catalog.stock_reserve", kwargs={}, queue="catalog")
        finally:
            users.close()
        with connect(broker, "orders") as orders:
            reply = orders.channel().basic_get("orders", no_ack=True)
        assert reply is not None
        assert reply.headers["task"] == "orders.saga_reply"
        with connect(broker, "users") as users_connection:
            passed_on = users_connection.channel().basic_get("users", no_ack=True)
        assert passed_on is not None
        assert passed_on.headers["task"] == "users.credit_reserve"
    finally:
        sender.close()


@pytest.mark.parametrize("service", ["catalog", "users"])
def test_a_consumer_declares_and_dead_letters_on_its_own_queues_only(broker, service) -> None:
    events = Exchange("events", "topic", durable=True)
    own = f"{service}.events"
    with connect(broker, service) as connection:
        channel = connection.channel()
        # What the consumer declares at start: its queue, bound to the types it handles
        # and to its own exchange (replays), and its dead-letter queue.
        Queue(
            own,
            bindings=[
                binding(events, routing_key="order.approved"),
                binding(Exchange(own, "direct", durable=True), routing_key=own),
            ],
            queue_arguments={"x-queue-type": "quorum"},
        )(channel).declare()
        quorum_queue(f"{own}.dlq")(channel).declare()
        publish(f"{own}.dlq", f"{own}.dlq")(channel)  # a dead letter
        publish(own, own)(channel)  # a replay
        assert channel.basic_get(f"{own}.dlq", no_ack=True) is not None
        assert channel.basic_get(own, no_ack=True) is not None
    other = "users" if service == "catalog" else "catalog"
    for operation in (
        lambda channel: channel.basic_get("orders"),  # the orchestrator's replies
        lambda channel: channel.basic_get(f"{other}.events"),
        lambda channel: channel.queue_delete("orders"),
        lambda channel: channel.queue_purge(other),
        lambda channel: quorum_queue(f"{other}.events.dlq")(channel).declare(),
        lambda channel: channel.queue_bind(own, "events", "product.#"),  # not its types
        lambda channel: channel.queue_bind(own, "orders", "orders"),  # orders' commands
        publish("", "orders"),  # the default exchange reaches every queue
        *([publish(other, other)] if service == "users" else []),  # one it never calls
        publish("events", "order.approved"),  # it produces no events
        publish("celery_delayed_delivery", "0.catalog"),
    ):
        assert refused(broker, service, operation)


def test_orders_publishes_only_order_events_and_reads_nobody_elses_queue(broker) -> None:
    with connect(broker, "orders") as connection:
        channel = connection.channel()
        Exchange("events", "topic", durable=True)(channel).declare()  # as the relay does
        publish("events", "order.approved")(channel)
        publish("catalog", "catalog")(channel)
        publish("users", "users")(channel)
    for operation in (
        publish("events", "product.updated"),
        publish("events", "user.deleted"),
        publish("", "catalog"),
        lambda channel: channel.basic_get("catalog"),
        lambda channel: channel.basic_get("catalog.events"),
        lambda channel: channel.queue_delete("users.events"),
    ):
        assert refused(broker, "orders", operation)


def test_the_gateway_hears_order_events_on_its_own_queues_and_nothing_more(broker) -> None:
    events = Exchange("events", "topic", durable=True)
    feed = "gateway.order-status.host-1-abc"
    with connect(broker, "gateway") as connection:
        channel = connection.channel()
        connection.channel().queue_declare("catalog", passive=True)  # /metrics, KEDA
        # What a gateway worker's order feed declares (gateway_svc/proxy/order_feed.py).
        quorum_queue("gateway.events.dlq")(channel).declare()
        Queue(
            feed,
            bindings=[binding(events, routing_key="order.#")],
            durable=False,
            exclusive=True,
            auto_delete=True,
            queue_arguments={"x-queue-type": "classic", "x-max-length": 100},
        )(channel).declare()
        publish("gateway.events.dlq", "gateway.events.dlq")(channel)
    for operation in (
        publish("catalog", "catalog"),
        publish("events", "order.approved"),
        publish("", "gateway.events.dlq"),
        lambda channel: channel.basic_get("catalog"),
        lambda channel: channel.basic_get("catalog.events"),
        lambda channel: channel.queue_bind("gateway.events.dlq", "events", "product.#"),
        lambda channel: quorum_queue("orders.events")(channel).declare(),
    ):
        assert refused(broker, "gateway", operation)
