"""Events between services: envelope and schemas, transactional outbox, relay, inbox, DLQ.

A service records an event in the transaction of the change it describes::

    from common.events import event_record, register_event_type

    register_event_type("order.approved", {"type": "object", "required": ["total"], ...})

    with transaction.atomic():
        order.save()
        event_record(type="order.approved", subject=str(order.id), data={"total": "12.50"})

``manage.py outbox_relay`` publishes it to the topic exchange ``events``
(routing key = type); ``manage.py consume_events`` feeds the service's
queue to the handlers named in ``EVENT_HANDLERS``, exactly once per event id
thanks to the inbox; ``manage.py dlq`` shows, replays and purges what failed.
The relay, consumer and DLQ live in ``common.events.relay``, ``.consumer``
and ``.dlq`` (they import kombu; producers need only this module).
"""

from common.events.envelope import (
    Event,
    EventError,
    InvalidEnvelope,
    InvalidEventData,
    UnknownEventType,
    UnknownEventVersion,
    event_data_validate,
    event_dataschema,
    event_parse,
    register_event_type,
    registered_event_types,
    registered_event_versions,
)
from common.events.outbox import (
    OutboxError,
    event_record,
    outbox_notify,
    outbox_notify_statement,
)
from common.events.publish_on_commit import outbox_publish_on_commit

__all__ = [
    "Event",
    "EventError",
    "InvalidEnvelope",
    "InvalidEventData",
    "OutboxError",
    "UnknownEventType",
    "UnknownEventVersion",
    "event_data_validate",
    "event_dataschema",
    "event_parse",
    "event_record",
    "outbox_notify",
    "outbox_notify_statement",
    "outbox_publish_on_commit",
    "register_event_type",
    "registered_event_types",
    "registered_event_versions",
]
