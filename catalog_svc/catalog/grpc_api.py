"""catalog.v1 over gRPC (contracts/proto/catalog/v1/catalog.proto): thin, like apis.py.

Served by ``manage.py grpc_serve`` (common.grpc_server), which has checked the
caller's service token and handles the database connections around each call.
"""

from __future__ import annotations

import grpc
from eshop_contracts.catalog.v1 import catalog_pb2, catalog_pb2_grpc

from catalog.selectors import product_list_by_ids
from catalog.serializers import ProductSerializer

# One order's lines are far fewer; the bound keeps one call from asking for the catalog.
MAX_IDS = 1000


class CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):
    def GetProducts(
        self, request: catalog_pb2.GetProductsRequest, context: grpc.ServicerContext
    ) -> catalog_pb2.GetProductsResponse:
        ids = list(dict.fromkeys(request.ids))
        if len(ids) > MAX_IDS:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"At most {MAX_IDS} ids per call.")
        products = product_list_by_ids(ids=ids)
        # The REST API's serializer: prices and dates written as the public API writes them.
        found = [
            catalog_pb2.Product(**data) for data in ProductSerializer(products, many=True).data
        ]
        known = {product.id for product in found}
        return catalog_pb2.GetProductsResponse(
            products=found, missing_ids=[pid for pid in ids if pid not in known]
        )


def register(server: grpc.Server) -> list[str]:
    """Add the catalog.v1 servicer to ``server`` (settings.GRPC_SERVICERS); its service names."""
    catalog_pb2_grpc.add_CatalogServiceServicer_to_server(CatalogServicer(), server)
    return [catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name]
