"""orders.v1 over gRPC (contracts/proto/orders/v1/orders.proto): thin, like apis.py.

Served by ``manage.py grpc_serve`` (common.grpc_server), which has checked the
caller's service token and handles the database connections around each call.
"""

from __future__ import annotations

import grpc
from eshop_contracts.orders.v1 import orders_pb2, orders_pb2_grpc

from orders.selectors import saga_list_unfinished
from orders.serializers import SagaSerializer

SAGA_LIST_DEFAULT = 50
# An operator's page, not an export: past this the answer is cut, as the limit it carries says.
SAGA_LIST_MAX = 200


class OrdersServicer(orders_pb2_grpc.OrdersServiceServicer):
    def ListUnfinishedSagas(
        self, request: orders_pb2.ListUnfinishedSagasRequest, context: grpc.ServicerContext
    ) -> orders_pb2.ListUnfinishedSagasResponse:
        limit = min(request.limit or SAGA_LIST_DEFAULT, SAGA_LIST_MAX)
        rows = SagaSerializer(saga_list_unfinished(limit=limit), many=True).data
        # Dates as the REST API writes them; a saga awaiting nothing has no deadline (unset).
        sagas = [
            orders_pb2.Saga(**{name: value for name, value in row.items() if value is not None})
            for row in rows
        ]
        return orders_pb2.ListUnfinishedSagasResponse(limit=limit, sagas=sagas)


def register(server: grpc.Server) -> list[str]:
    """Add the orders.v1 servicer to ``server`` (settings.GRPC_SERVICERS); its service names."""
    orders_pb2_grpc.add_OrdersServiceServicer_to_server(OrdersServicer(), server)
    return [orders_pb2.DESCRIPTOR.services_by_name["OrdersService"].full_name]
