"""A service's gRPC server: what every service's ``manage.py grpc_serve`` process runs.

Beside the service's own servicers (``GRPC_SERVICERS``: dotted paths of
``register(server) -> list[str]`` functions, one per app) it serves the
standard health service (``grpc.health.v1``, fed by the same checks as
``/ready/``) and server reflection. Every call of the service's own methods
passes three interceptors, outermost first:

1. tracing: the W3C trace context is read from the call's metadata
   (opentelemetry-instrumentation-grpc's server interceptor, a SERVER span);
2. auth: a service token (scope ``internal``) in ``authorization: Bearer ...``
   metadata, the same tokens the REST ``/internal/`` endpoints accepted;
3. Django's request cycle: old database connections are closed before and
   after the call, as Django does around each HTTP request (a connection past
   ``CONN_MAX_AGE``, or broken, is not handed to the next call).

Health and reflection need no token: probes and ``grpcurl`` carry none, and they
tell nothing the .proto files in the repository do not.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from typing import Any

import grpc
from django.db import close_old_connections
from django.utils.module_loading import import_string
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import filters, server_interceptor

from common.auth import InvalidToken, TokenUser, verified_tokens
from common.health import readiness_checks

logger = logging.getLogger(__name__)

# Services anyone may call: the probes' and the tools' (no token).
OPEN_SERVICES = (
    health.SERVICE_NAME,
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)


def _service_of(method: str) -> str:
    """``/users.v1.UsersService/CheckCredentials`` -> ``users.v1.UsersService``."""
    return method.lstrip("/").split("/", 1)[0]


def _refusal(code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    def refuse(request: Any, context: grpc.ServicerContext) -> None:
        context.abort(code, message)

    return grpc.unary_unary_rpc_method_handler(refuse)


def caller_verify(metadata: Iterable[tuple[str, Any]]) -> TokenUser:
    """The service calling, from its ``authorization`` metadata; ``PermissionError`` names why
    a customer's token is refused, ``InvalidToken`` why any other is."""
    values = [value for key, value in metadata if key == "authorization"]
    if not values:
        raise InvalidToken("Send a service token: authorization: Bearer <token>.")
    value = values[0] if isinstance(values[0], str) else values[0].decode("latin-1")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("The authorization metadata must be 'Bearer <token>'.")
    user = TokenUser.from_claims(verified_tokens.verify(token.strip()))
    if not user.is_service:
        raise PermissionError("Only services may call this (a service token, scope internal).")
    return user


class ServiceTokenInterceptor(grpc.ServerInterceptor):
    """Refuse a call without a valid service token: UNAUTHENTICATED, or PERMISSION_DENIED
    for a valid token that is not a service's (a customer's access token)."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        if _service_of(handler_call_details.method) in OPEN_SERVICES:
            return continuation(handler_call_details)
        try:
            caller_verify(handler_call_details.invocation_metadata or ())
        except InvalidToken as error:
            return _refusal(grpc.StatusCode.UNAUTHENTICATED, str(error))
        except PermissionError as error:
            return _refusal(grpc.StatusCode.PERMISSION_DENIED, str(error))
        return continuation(handler_call_details)


class DjangoConnectionsInterceptor(grpc.ServerInterceptor):
    """Close old database connections around each call, as Django's request cycle does."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler  # only unary methods are served; others pass as they are
        behavior = handler.unary_unary

        def with_connections(request: Any, context: grpc.ServicerContext) -> Any:
            close_old_connections()
            try:
                return behavior(request, context)
            finally:
                close_old_connections()

        return grpc.unary_unary_rpc_method_handler(
            with_connections,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def ready_now() -> bool:
    """Do the readiness checks of ``/ready/`` (database, broker) pass now?"""
    try:
        for check in readiness_checks():
            outcome = check.run()
            if inspect.isawaitable(outcome):
                asyncio.run(outcome)  # type: ignore[arg-type]
    except Exception as error:  # any failed check means "not ready", whatever its type
        logger.warning("gRPC health: not serving: %s", error)
        return False
    finally:
        close_old_connections()
    return True


class ReadinessReporter:
    """Keeps the health service's statuses in step with ``ready_now()``, every ``interval``."""

    def __init__(
        self,
        servicer: health.HealthServicer,
        services: Sequence[str],
        *,
        interval: float,
        check: Callable[[], bool] = ready_now,
    ) -> None:
        self.servicer = servicer
        self.services = ["", *services]  # "": the server as a whole
        self.interval = interval
        self.check = check
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="grpc-readiness", daemon=True)

    def report(self) -> bool:
        ready = self.check()
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if ready
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in self.services:
            self.servicer.set(service, status)
        return ready

    def start(self) -> None:
        self.report()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.report()

    def stop(self) -> None:
        self._stop.set()


def grpc_server_build(
    *,
    registrations: Sequence[str],
    max_workers: int,
    health_interval: float,
    ready_check: Callable[[], bool] = ready_now,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
) -> tuple[grpc.Server, health.HealthServicer, ReadinessReporter]:
    """The server with the service's servicers, health, reflection and the interceptors
    (``interceptors``: more of them, innermost).

    Not started, and bound to no port: ``add_insecure_port`` is the caller's (TLS ends at
    the edge, as for HTTP between services).
    """
    traced_methods = filters.negate(
        filters.any_of(*(filters.service_name(name) for name in OPEN_SERVICES))
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        interceptors=[
            server_interceptor(filter_=traced_methods),
            ServiceTokenInterceptor(),
            DjangoConnectionsInterceptor(),
            *interceptors,
        ],
        # A call beyond the workers waits in gRPC's queue; past this many it is refused
        # (RESOURCE_EXHAUSTED) at once, so a caller's deadline is not spent queueing.
        maximum_concurrent_rpcs=max_workers * 4,
    )
    services: list[str] = []
    for dotted in registrations:
        services.extend(import_string(dotted)(server))
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*services, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    reporter = ReadinessReporter(
        health_servicer, services, interval=health_interval, check=ready_check
    )
    return server, health_servicer, reporter
