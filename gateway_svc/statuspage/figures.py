"""What the status page shows of one service, read from its ``/metrics`` text.

Pure functions over Prometheus' text format (parsed by ``prometheus_client``):
no I/O, so every figure and its absence can be tested with a string.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Labels = dict[str, str]
# orders_decided_recently's help names its window: "... in the last 300 s."
_WINDOW = re.compile(r"last (\d+) s\b")
DEFAULT_WINDOW_SECONDS = 300


@dataclass
class Scrape:
    """One ``/metrics`` answer: samples by name, and each family's help text."""

    samples: dict[str, list[tuple[Labels, float]]] = field(default_factory=dict)
    help: dict[str, str] = field(default_factory=dict)

    def values(self, name: str) -> list[tuple[Labels, float]]:
        return self.samples.get(name, [])

    def value(self, name: str, default: float | None = None) -> float | None:
        """The first sample of ``name`` (the unlabelled gauges), or ``default``."""
        found = self.samples.get(name)
        return found[0][1] if found else default


def metrics_parse(*, text: str) -> Scrape:
    """Prometheus text into a ``Scrape``; ``ValueError`` when it is not that format."""
    scrape = Scrape()
    samples: dict[str, list[tuple[Labels, float]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        scrape.help[family.name] = family.documentation
        for sample in family.samples:
            samples[sample.name].append((dict(sample.labels), sample.value))
    scrape.samples = dict(samples)
    return scrape


def _ok(scrape: Scrape, prefix: str) -> bool | None:
    """Did the collector read its source at this scrape? None when it does not report."""
    value = scrape.value(f"{prefix}_scrape_ok")
    return None if value is None else value == 1


def backbone_figures(*, scrape: Scrape) -> dict[str, Any]:
    """Queue depths by kind, dead letters and the outbox's lag of one service."""
    queues = [
        {"queue": labels.get("queue", ""), "kind": labels.get("kind", ""), "messages": int(value)}
        for labels, value in scrape.values("broker_queue_messages")
    ]
    by_kind: dict[str, int] = {}
    for queue in queues:
        by_kind[queue["kind"]] = by_kind.get(queue["kind"], 0) + queue["messages"]
    unpublished = scrape.value("outbox_unpublished_events")
    lag = scrape.value("outbox_oldest_unpublished_age_seconds")
    return {
        "broker_ok": _ok(scrape, "broker"),
        "queues": sorted(queues, key=lambda queue: (queue["kind"], queue["queue"])),
        "commands": by_kind.get("commands"),
        "events": by_kind.get("events"),
        "dead_letters": by_kind.get("dead_letters"),
        "outbox_ok": _ok(scrape, "outbox"),
        "outbox_unpublished": None if unpublished is None else int(unpublished),
        "outbox_lag_seconds": lag,
    }


def saga_figures(*, scrape: Scrape) -> dict[str, Any] | None:
    """Open sagas by kind and state, those needing attention, the oldest's age.

    None when the scrape has no saga figures (every service but orders).
    """
    if "sagas_needing_attention" not in scrape.samples:
        return None
    open_sagas = [
        {"kind": labels.get("kind", ""), "state": labels.get("state", ""), "count": int(value)}
        for labels, value in scrape.values("sagas_open")
    ]
    return {
        "open": sorted(open_sagas, key=lambda row: (row["kind"], row["state"])),
        "open_total": sum(row["count"] for row in open_sagas),
        "needing_attention": int(scrape.value("sagas_needing_attention", 0) or 0),
        "oldest_age_seconds": scrape.value("sagas_oldest_open_age_seconds", 0.0),
    }


def order_figures(*, scrape: Scrape) -> dict[str, Any] | None:
    """Orders per minute by outcome over the service's window, and orders by status.

    The rate is ``orders_decided_recently`` spread over the window its help text
    names (orders' ORDERS_METRICS_WINDOW_SECONDS). None without order figures.
    """
    decided = scrape.values("orders_decided_recently")
    if not decided and "orders_by_status" not in scrape.samples:
        return None
    match = _WINDOW.search(scrape.help.get("orders_decided_recently", ""))
    window = int(match.group(1)) if match else DEFAULT_WINDOW_SECONDS
    per_minute = {
        labels.get("outcome", ""): round(value * 60 / window, 2) for labels, value in decided
    }
    decision_p50 = {
        labels.get("outcome", ""): None if math.isnan(value) else value
        for labels, value in scrape.values("orders_decision_seconds")
        if labels.get("quantile") == "0.5"
    }
    counts = {labels.get("outcome", ""): int(value) for labels, value in decided}
    return {
        "window_seconds": window,
        "per_minute": dict(sorted(per_minute.items())),
        "outcomes": [
            {
                "outcome": outcome,
                "per_minute": per_minute[outcome],
                "decided": counts[outcome],
                "decision_p50_seconds": decision_p50.get(outcome),
            }
            for outcome in sorted(per_minute)
        ],
        "by_status": {
            labels.get("status", ""): int(value)
            for labels, value in scrape.values("orders_by_status")
        },
    }
