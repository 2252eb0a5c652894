"""What the gateway forwards where, and on which terms (auth, limits, timeouts).

Routes are plain data built once from settings (``GATEWAY``); the hot path
only does a dict lookup on the first path segment after ``/api/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


@dataclass(frozen=True)
class Rate:
    """``count`` requests per ``seconds`` window."""

    count: int
    seconds: int

    @classmethod
    def parse(cls, text: str) -> Rate:
        """``"120/min"``, ``"10/s"``, ``"1000/hour"``, ``"50/10s"``."""
        count, _, period = text.partition("/")
        units = {
            "s": 1,
            "sec": 1,
            "second": 1,
            "m": 60,
            "min": 60,
            "minute": 60,
            "h": 3600,
            "hour": 3600,
            "d": 86400,
            "day": 86400,
        }
        digits = "".join(ch for ch in period if ch.isdigit())
        unit = period[len(digits) :]
        if not count.isdigit() or unit not in units:
            raise ValueError(f"Not a rate: {text!r} (expected like '120/min' or '10/s').")
        return cls(int(count), int(digits or 1) * units[unit])


@dataclass(frozen=True)
class PublicRule:
    """Requests anyone may make without a token: these methods on paths under this prefix."""

    methods: frozenset[str]
    path_prefix: str


@dataclass(frozen=True)
class PathLimit:
    """A rate per client address for these methods on paths under this prefix (sign-ups),
    counted on its own, on top of the route's rate."""

    methods: frozenset[str]
    path_prefix: str
    rate: Rate

    @property
    def name(self) -> str:
        return f"{'+'.join(sorted(self.methods))}:{self.path_prefix}"


@dataclass(frozen=True)
class Route:
    service: str
    prefix: str
    public: tuple[PublicRule, ...] = ()
    connect_timeout: float = 1.0
    read_timeout: float = 10.0
    retries: int = 2
    max_body_bytes: int = 1_048_576
    anonymous_rate: Rate = field(default_factory=lambda: Rate(120, 60))
    authenticated_rate: Rate = field(default_factory=lambda: Rate(600, 60))
    limits: tuple[PathLimit, ...] = ()

    def limits_for(self, method: str, path: str) -> tuple[PathLimit, ...]:
        """The path limits this request counts against (usually none)."""
        return tuple(
            limit
            for limit in self.limits
            if method in limit.methods and path.startswith(limit.path_prefix)
        )

    def is_public(self, method: str, path: str) -> bool:
        return any(
            method in rule.methods and path.startswith(rule.path_prefix) for rule in self.public
        )


def routes_from_settings(config: dict[str, Any]) -> dict[str, Route]:
    """Routes by service name (the path segment after ``/api/``)."""
    defaults = config["ROUTE_DEFAULTS"]
    routes = {}
    for service, spec in config["ROUTES"].items():
        merged = {**defaults, **spec}
        routes[service] = Route(
            service=service,
            prefix=f"/api/{service}/",
            public=tuple(
                PublicRule(frozenset(m.upper() for m in methods), prefix)
                for methods, prefix in merged.get("public", ())
            ),
            connect_timeout=float(merged["connect_timeout"]),
            read_timeout=float(merged["read_timeout"]),
            retries=int(merged["retries"]),
            max_body_bytes=int(merged["max_body_bytes"]),
            anonymous_rate=Rate.parse(merged["anonymous_rate"]),
            authenticated_rate=Rate.parse(merged["authenticated_rate"]),
            limits=tuple(
                PathLimit(frozenset(m.upper() for m in methods), prefix, Rate.parse(rate))
                for methods, prefix, rate in merged.get("limits", ())
            ),
        )
    return routes
