"""The orders API: thin views over selectors and services."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from orders.domain import Order
from orders.errors import (
    ConcurrencyConflict,
    IdempotencyKeyReused,
    OrderNotFound,
    OrderStateConflict,
)
from orders.models import OrderSummary
from orders.selectors import order_get, order_summaries, orders_get_many
from orders.serializers import OrderSerializer, OrderSummarySerializer, PlaceOrderSerializer
from orders.services import LineRequest, order_cancel_request, order_place


def _visible_order(request: Request, order_id: str) -> Order:
    """The order if the caller owns it or is staff; anyone else learns nothing (404)."""
    order = order_get(order_id=order_id)
    if not request.user.is_staff and order.customer_id != str(request.user.pk):
        raise OrderNotFound(f"There is no order {order_id}.")
    return order


class OrderListCreateApi(generics.ListAPIView):
    serializer_class = OrderSummarySerializer
    # For the OpenAPI document (common.schema): the refusals each operation can give.
    domain_errors = {"POST": (IdempotencyKeyReused, ConcurrencyConflict)}

    def get_queryset(self) -> QuerySet[OrderSummary]:
        user = self.request.user
        return order_summaries(customer_id=None if user.is_staff else str(user.pk))

    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        # Each summary with its order's lines: a page of orders with their lines costs
        # one query more, and a client (the gateway's GraphQL) one request, not one per order.
        orders = orders_get_many(order_ids=[summary.order_id for summary in page])
        for summary in page:
            order = orders.get(summary.order_id)
            summary.lines = order.lines if order is not None else []
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        request=PlaceOrderSerializer,
        responses={202: OrderSerializer},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="The same key returns the same order instead of placing another.",
            )
        ],
    )
    def post(self, request: Request) -> Response:
        serializer = PlaceOrderSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        order, _ = order_place(
            customer_id=str(request.user.pk),
            lines=[LineRequest(**line) for line in serializer.validated_data["lines"]],
            idempotency_key=request.headers.get("Idempotency-Key", "")[:255],
        )
        return Response(
            OrderSerializer(order).data,
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": f"/api/orders/{order.id}/"},
        )


class OrderDetailApi(APIView):
    domain_errors = (OrderNotFound,)

    @extend_schema(responses={200: OrderSerializer})
    def get(self, request: Request, order_id: str) -> Response:
        return Response(OrderSerializer(_visible_order(request, order_id)).data)


class OrderCancelApi(APIView):
    domain_errors = (OrderNotFound, OrderStateConflict, ConcurrencyConflict)

    @extend_schema(request=None, responses={202: OrderSerializer})
    def post(self, request: Request, order_id: str) -> Response:
        _visible_order(request, order_id)
        order = order_cancel_request(order_id=order_id, requested_by=str(request.user.pk))
        return Response(OrderSerializer(order).data, status=status.HTTP_202_ACCEPTED)
