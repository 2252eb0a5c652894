"""The gateway's Django views: the merged OpenAPI document, the AsyncAPI one and the
internal status."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common.contracts import contracts_dir
from common.permissions import IsInternalService
from common.schema_api import SchemaApi
from proxy.asyncapi import AsyncApiYamlRenderer, asyncapi_load
from proxy.openapi import merge, service_schema


@extend_schema(exclude=True)
class MergedSchemaApi(SchemaApi):
    """``/api/schema/``: the whole system's OpenAPI document."""

    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        response = super().get(request, *args, **kwargs)  # the gateway's own endpoints
        services = {name: service_schema(name) for name in settings.GATEWAY["ROUTES"]}
        response.data = merge(response.data, services)
        return response


@extend_schema(exclude=True)
class AsyncApiDocumentApi(APIView):
    """``/api/asyncapi/``: every event and command (contracts/asyncapi.yaml), public like
    ``/api/schema/``; JSON or YAML as Accept or ``?format=json|yaml`` asks."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    renderer_classes = [JSONRenderer, AsyncApiYamlRenderer]

    def get(self, request: Request) -> Response:
        return Response(asyncapi_load(contracts_dir()))


@extend_schema(exclude=True)
class GatewayStatusApi(APIView):
    """Internal: breaker states and bulkhead use of the worker that answers."""

    permission_classes = [IsInternalService]

    def get(self, request: Request) -> Response:
        from proxy.runtime import StatusCollector

        runtime = StatusCollector.current
        if runtime is None:
            return Response({"detail": "The proxy has not started in this worker yet."}, status=503)
        return Response(runtime.status())
