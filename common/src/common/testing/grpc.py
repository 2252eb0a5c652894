"""A service's gRPC server in the test process, on a loopback port: ``grpc_serve()``.

Import the fixture into a service's conftest: ``from common.testing.grpc import grpc_serve``.
It is the server ``manage.py grpc_serve`` runs (common.grpc_server: the service's
``GRPC_SERVICERS``, health, reflection, the interceptors). Its threads use the
database, so tests that call it need ``django_db(transaction=True)``: a test's own
transaction is not visible to other connections.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from django.db import connections

from common.grpc_server import grpc_server_build


class _ConnectionsClosed(grpc.ServerInterceptor):
    """Close the server thread's connection after each call: the test database is dropped
    at the end of the session, and a connection left open in a pool thread holds it."""

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        behavior = handler.unary_unary

        def closing(request: Any, context: Any) -> Any:
            try:
                return behavior(request, context)
            finally:
                connections.close_all()

        return grpc.unary_unary_rpc_method_handler(
            closing,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


@pytest.fixture
def grpc_serve(settings: Any) -> Iterator[Callable[..., grpc.Channel]]:
    """``grpc_serve(ready=lambda: True)``: start the service's server; a channel to it."""
    started: list[tuple[grpc.Server, grpc.Channel]] = []

    def start(*, ready: Callable[[], bool] = lambda: True) -> grpc.Channel:
        server, _, reporter = grpc_server_build(
            registrations=settings.GRPC_SERVICERS,
            max_workers=4,
            health_interval=3600,
            ready_check=ready,
            interceptors=[_ConnectionsClosed()],
        )
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        reporter.report()
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        started.append((server, channel))
        return channel

    yield start
    for server, channel in started:
        channel.close()
        server.stop(None).wait()
