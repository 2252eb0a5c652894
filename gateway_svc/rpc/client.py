"""The gateway's one way to call another service's API: gRPC, on the same terms for every call.

Every call has a deadline; only idempotent ones are retried (``UNAVAILABLE``:
the call never reached a server able to serve it), after ``backoff_delay``;
each target sits behind one of the proxy's circuit breakers
(proxy.resilience, shared through Redis when the gateway has it), so a dead
service is not waited on for a deadline per request. A failure becomes
``ServiceUnavailable``: the same 503 problem details (``upstream_unavailable``)
the REST calls gave.

Both worlds of the gateway call it: Django views from their threads
(``call``: one blocking channel per target, thread-safe) and the ASGI proxy
from its event loop (``call_async``: one ``grpc.aio`` channel per target and
loop). The caller's trace context goes in the metadata
(opentelemetry-instrumentation-grpc's interceptors), and so do the request id
and the gateway's service token (``authorization``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any

import grpc
from django.conf import settings
from google.protobuf.message import Message
from opentelemetry.instrumentation.grpc import aio_client_interceptors, client_interceptor
from opentelemetry.instrumentation.grpc.grpcext import intercept_channel
from prometheus_client import Counter, Histogram
from proxy.resilience import InstanceBreaker
from rest_framework import status

from common.backoff import backoff_delay
from common.observability import current_request_id
from common.problems import DomainError
from identity.tokens import service_token

# Codes that mean "the service could not serve", a failure for its breaker. The others
# (NOT_FOUND, INVALID_ARGUMENT, UNAUTHENTICATED...) are answers: the service is fine.
BREAKER_FAILURES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)
# Worth another try of an idempotent call: nothing was done by a server.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE})

grpc_calls = Counter(
    "gateway_grpc_client_calls_total",
    "gRPC calls the gateway made (each try), by method and status code; BREAKER_OPEN: "
    "refused by the gateway's breaker without a call.",
    ["method", "code"],
)
grpc_call_seconds = Histogram(
    "gateway_grpc_client_call_duration_seconds",
    "Time of one gRPC call (one try) from the gateway, by method.",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


class ServiceUnavailable(DomainError):
    code = "upstream_unavailable"
    status = status.HTTP_503_SERVICE_UNAVAILABLE
    title = "A service needed for this request is unavailable."


class RpcRefused(Exception):
    """The service answered with an error status that is an answer (``NOT_FOUND``...)."""

    def __init__(self, code: grpc.StatusCode, detail: str) -> None:
        super().__init__(f"{code.name}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Method:
    """One method of a service's contract, and how the gateway calls it."""

    service: str  # the gateway's name for it: "users", "catalog" (GATEWAY_GRPC["TARGETS"])
    path: str  # "/users.v1.UsersService/GetCustomerSummary"
    response_type: type[Message]
    idempotent: bool
    deadline_setting: str = "DEADLINE_SECONDS"  # its key in GATEWAY_GRPC


class _Targets:
    """Channels and breakers, one per target, made on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._channels: dict[str, grpc.Channel] = {}
        self._aio_channels: dict[tuple[str, int], grpc.aio.Channel] = {}
        self._breakers: dict[str, InstanceBreaker] = {}
        self._redis: Any = None

    def address(self, service: str) -> str:
        return settings.GATEWAY_GRPC["TARGETS"][service]

    def channel(self, target: str) -> grpc.Channel:
        channel = self._channels.get(target)
        if channel is None:
            with self._lock:
                channel = self._channels.get(target)
                if channel is None:
                    channel = intercept_channel(
                        grpc.insecure_channel(target, options=_CHANNEL_OPTIONS),
                        client_interceptor(),
                    )
                    self._channels[target] = channel
        return channel

    def aio_channel(self, target: str) -> grpc.aio.Channel:
        # A grpc.aio channel belongs to the loop it was made in.
        key = (target, id(asyncio.get_running_loop()))
        channel = self._aio_channels.get(key)
        if channel is None:
            channel = grpc.aio.insecure_channel(
                target, options=_CHANNEL_OPTIONS, interceptors=aio_client_interceptors()
            )
            self._aio_channels[key] = channel
        return channel

    def breaker(self, service: str, target: str) -> InstanceBreaker:
        name = f"{service}-grpc:{target}"
        breaker = self._breakers.get(name)
        if breaker is None:
            with self._lock:
                breaker = self._breakers.get(name)
                if breaker is None:
                    config = settings.GATEWAY
                    breaker = InstanceBreaker(
                        name,
                        fail_max=config["BREAKER_FAIL_MAX"],
                        reset_timeout=config["BREAKER_RESET_TIMEOUT"],
                        redis=self._redis_client(),
                        redis_prefix=config["REDIS_PREFIX"],
                    )
                    self._breakers[name] = breaker
        return breaker

    def _redis_client(self) -> Any:
        url = settings.GATEWAY["REDIS_URL"]
        if url and self._redis is None:
            import redis

            # pybreaker's Redis storage is synchronous and wants raw bytes (as proxy.runtime).
            self._redis = redis.Redis.from_url(url, decode_responses=False, socket_timeout=0.5)
        return self._redis if url else None

    def breakers(self) -> dict[str, InstanceBreaker]:
        return dict(self._breakers)

    def reset(self) -> None:
        """Forget channels and breakers (tests, and settings that changed)."""
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()
            self._aio_channels.clear()
            self._breakers.clear()
            self._redis = None


# Keepalive pings find a dead connection between calls, not during one.
_CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 0),
    # Retries are ours (idempotent calls only, with backoff_delay); gRPC's own would
    # retry a call we chose not to.
    ("grpc.enable_retries", 0),
    # A target that resolves to several addresses (dns:///users-grpc:50052, a headless
    # Service) gets its calls spread over all of them, not pinned to the first.
    ("grpc.lb_policy_name", "round_robin"),
]
targets = _Targets()


def _metadata() -> tuple[tuple[str, str], ...]:
    request_id = current_request_id()
    pairs = [("authorization", f"Bearer {service_token.get()}")]
    if request_id:
        pairs.append(("x-request-id", request_id))
    return tuple(pairs)


def _deadline(method: Method) -> float:
    return settings.GATEWAY_GRPC[method.deadline_setting]


def _attempts(method: Method) -> int:
    return 1 + (settings.GATEWAY_GRPC["RETRIES"] if method.idempotent else 0)


def _admit(breaker: InstanceBreaker, method: Method) -> None:
    if not breaker.allow():
        grpc_calls.labels(method=method.path, code="BREAKER_OPEN").inc()
        raise ServiceUnavailable(
            f"The {method.service} service is failing; the circuit is open "
            f"(a call is tried again in {breaker.retry_after():.0f} s)."
        )


def _outcome(
    breaker: InstanceBreaker, method: Method, error: grpc.RpcError
) -> ServiceUnavailable | RpcRefused:
    """Report the call to the breaker; the exception the caller gets for ``error``."""
    code = error.code()
    grpc_calls.labels(method=method.path, code=code.name).inc()
    failed = code in BREAKER_FAILURES
    breaker.record(ok=not failed)
    if failed:
        what = (
            "did not answer in time"
            if code is grpc.StatusCode.DEADLINE_EXCEEDED
            else (f"could not be reached ({code.name})")
        )
        return ServiceUnavailable(f"The {method.service} service {what}.")
    return RpcRefused(code, error.details() or "")


def _timed(method: Method, started: float) -> None:
    grpc_call_seconds.labels(method=method.path).observe(time.perf_counter() - started)


def call(method: Method, request: Message) -> Any:
    """Call ``method`` from a thread; its response, or ``ServiceUnavailable``/``RpcRefused``."""
    target = targets.address(method.service)
    breaker = targets.breaker(method.service, target)
    invoke = targets.channel(target).unary_unary(
        method.path,
        request_serializer=type(request).SerializeToString,
        response_deserializer=method.response_type.FromString,
    )
    attempts = _attempts(method)
    for attempt in range(attempts):
        if attempt:
            time.sleep(backoff_delay(attempt))
        _admit(breaker, method)
        started = time.perf_counter()
        try:
            response = invoke(request, timeout=_deadline(method), metadata=_metadata())
        except grpc.RpcError as error:
            _failed(breaker, method, started, error, retries_left=attempt + 1 < attempts)
            continue
        _succeeded(breaker, method, started)
        return response
    raise AssertionError("unreachable: the last attempt returns or raises")


def _succeeded(breaker: InstanceBreaker, method: Method, started: float) -> None:
    _timed(method, started)
    grpc_calls.labels(method=method.path, code="OK").inc()
    breaker.record(ok=True)


def _failed(
    breaker: InstanceBreaker,
    method: Method,
    started: float,
    error: grpc.RpcError,
    *,
    retries_left: bool,
) -> None:
    """Count a failed try; raise what the caller gets unless the call may be tried again."""
    _timed(method, started)
    outcome = _outcome(breaker, method, error)
    if error.code() in RETRYABLE and retries_left:
        return
    raise outcome from None


async def call_async(method: Method, request: Message) -> Any:
    """``call`` for the event loop (the ASGI proxy, the composition)."""
    target = targets.address(method.service)
    breaker = targets.breaker(method.service, target)
    invoke = targets.aio_channel(target).unary_unary(
        method.path,
        request_serializer=type(request).SerializeToString,
        response_deserializer=method.response_type.FromString,
    )
    attempts = _attempts(method)
    for attempt in range(attempts):
        if attempt:
            await asyncio.sleep(backoff_delay(attempt))
        _admit(breaker, method)
        started = time.perf_counter()
        try:
            response = await invoke(request, timeout=_deadline(method), metadata=_metadata())
        except grpc.RpcError as error:
            _failed(breaker, method, started, error, retries_left=attempt + 1 < attempts)
            continue
        _succeeded(breaker, method, started)
        return response
    raise AssertionError("unreachable: the last attempt returns or raises")
