"""Metric texts as the services' ``/metrics`` answer them (trimmed to what the page reads)."""

CATALOG = """\
# HELP broker_scrape_ok 1 when the figures below were read at this scrape.
# TYPE broker_scrape_ok gauge
broker_scrape_ok 1.0
# HELP broker_queue_messages Messages ready in this service's queues.
# TYPE broker_queue_messages gauge
broker_queue_messages{kind="commands",queue="catalog"} 4.0
broker_queue_messages{kind="events",queue="catalog.events"} 2.0
broker_queue_messages{kind="dead_letters",queue="catalog.events.dlq"} 3.0
# HELP outbox_scrape_ok 1 when the figures below were read at this scrape.
# TYPE outbox_scrape_ok gauge
outbox_scrape_ok 1.0
# HELP outbox_unpublished_events Events committed to the outbox and not yet confirmed by the broker.
# TYPE outbox_unpublished_events gauge
outbox_unpublished_events 7.0
# HELP outbox_oldest_unpublished_age_seconds How long the oldest unpublished event has waited.
# TYPE outbox_oldest_unpublished_age_seconds gauge
outbox_oldest_unpublished_age_seconds 95.5
# HELP django_http_requests_total_by_method_total Count of requests by method.
# TYPE django_http_requests_total_by_method_total counter
django_http_requests_total_by_method_total{method="GET"} 12.0
"""

ORDERS = """\
# HELP broker_scrape_ok 1 when the figures below were read at this scrape.
# TYPE broker_scrape_ok gauge
broker_scrape_ok 0.0
# HELP outbox_scrape_ok 1 when the figures below were read at this scrape.
# TYPE outbox_scrape_ok gauge
outbox_scrape_ok 1.0
# HELP outbox_unpublished_events Events committed to the outbox and not yet confirmed by the broker.
# TYPE outbox_unpublished_events gauge
outbox_unpublished_events 0.0
# HELP outbox_oldest_unpublished_age_seconds How long the oldest unpublished event has waited.
# TYPE outbox_oldest_unpublished_age_seconds gauge
outbox_oldest_unpublished_age_seconds 0.0
# HELP orders_by_status Orders standing in each status.
# TYPE orders_by_status gauge
orders_by_status{status="APPROVED"} 30.0
orders_by_status{status="PENDING"} 2.0
orders_by_status{status="REJECTED"} 6.0
# HELP orders_decision_seconds Time to a decision, over the orders decided in the last 120 s.
# TYPE orders_decision_seconds gauge
orders_decision_seconds{outcome="approved",quantile="0.5"} 0.25
orders_decision_seconds{outcome="approved",quantile="0.99"} 0.9
orders_decision_seconds{outcome="rejected",quantile="0.5"} NaN
# HELP orders_decided_recently Orders approved or rejected in the last 120 s.
# TYPE orders_decided_recently gauge
orders_decided_recently{outcome="approved"} 24.0
orders_decided_recently{outcome="rejected"} 0.0
# HELP sagas_open Sagas not finished, by kind and state.
# TYPE sagas_open gauge
sagas_open{kind="place",state="reserving_credit"} 1.0
sagas_open{kind="place",state="reserving_stock"} 2.0
# HELP sagas_needing_attention Unfinished sagas flagged for an operator (see manage.py saga_status).
# TYPE sagas_needing_attention gauge
sagas_needing_attention 1.0
# HELP sagas_oldest_open_age_seconds How long the oldest unfinished saga has run (0 when none).
# TYPE sagas_oldest_open_age_seconds gauge
sagas_oldest_open_age_seconds 42.0
"""

GATEWAY = """\
# HELP outbox_unpublished_events Events committed to the outbox and not yet confirmed by the broker.
# TYPE outbox_unpublished_events gauge
outbox_unpublished_events 0.0
# HELP gateway_breaker_state Circuit state per upstream instance: 0 closed, 1 half-open, 2 open.
# TYPE gateway_breaker_state gauge
gateway_breaker_state{instance="catalog-127.0.0.1-8001",upstream="catalog"} 0.0
"""
