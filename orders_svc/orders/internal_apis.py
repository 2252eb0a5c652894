"""``/internal/``: what other services (the gateway's status page) may read of orders."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common.permissions import IsInternalService
from orders.models import Saga
from orders.selectors import saga_list_unfinished

SAGA_LIST_MAX = 200


class SagaSerializer(serializers.ModelSerializer):
    waiting = serializers.SerializerMethodField()

    class Meta:
        model = Saga
        fields = [
            "order_id",
            "kind",
            "state",
            "waiting",
            "attempts",
            "outcome",
            "needs_attention",
            "last_error",
            "started_at",
            "updated_at",
            "deadline",
        ]

    def get_waiting(self, saga: Saga) -> list[str]:
        return sorted(saga.pending)


class SagaListApi(APIView):
    """Internal: unfinished sagas, those needing attention first (as ``saga_status``)."""

    permission_classes = [IsInternalService]

    @extend_schema(
        parameters=[OpenApiParameter("limit", int, description=f"At most {SAGA_LIST_MAX}.")],
        responses={200: SagaSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        try:
            limit = min(max(int(request.query_params.get("limit", 50)), 1), SAGA_LIST_MAX)
        except ValueError:
            limit = 50
        sagas = saga_list_unfinished(limit=limit)
        return Response({"limit": limit, "sagas": SagaSerializer(sagas, many=True).data})
