"""The gateway's calls to users.v1, catalog.v1 and orders.v1 (contracts/proto), in the
shapes it uses.

Answers become the dicts the REST API shows (``CustomerSummary``, ``Product``),
so tokens, the composition and the OpenAPI documents keep their shapes.
"""

from __future__ import annotations

from typing import Any

import grpc
from eshop_contracts.catalog.v1 import catalog_pb2
from eshop_contracts.orders.v1 import orders_pb2
from eshop_contracts.users.v1 import users_pb2

from common.contracts import rpc_message_dict
from rpc.client import Method, RpcRefused, call, call_async

CHECK_CREDENTIALS = Method(
    service="users",
    path="/users.v1.UsersService/CheckCredentials",
    response_type=users_pb2.CheckCredentialsResponse,
    # Not retried though it writes nothing: each try hashes a password (half a second of
    # users' CPU by design), and a try that timed out may still be hashing; a retry would
    # add load exactly when users is slow. The client tries again if it wants.
    idempotent=False,
    deadline_setting="LOGIN_DEADLINE_SECONDS",
)
GET_CUSTOMER_SUMMARY = Method(
    service="users",
    path="/users.v1.UsersService/GetCustomerSummary",
    response_type=users_pb2.CustomerSummary,
    idempotent=True,
)
GET_PRODUCTS = Method(
    service="catalog",
    path="/catalog.v1.CatalogService/GetProducts",
    response_type=catalog_pb2.GetProductsResponse,
    idempotent=True,
)
LIST_UNFINISHED_SAGAS = Method(
    service="orders",
    path="/orders.v1.OrdersService/ListUnfinishedSagas",
    response_type=orders_pb2.ListUnfinishedSagasResponse,
    idempotent=True,
)


def credentials_check(*, email: str, password: str) -> dict[str, Any] | None:
    """The claims of the active user with these credentials, or None."""
    request = users_pb2.CheckCredentialsRequest(email=email, password=password)
    try:
        response = call(CHECK_CREDENTIALS, request)
    except RpcRefused as refused:
        if refused.code is grpc.StatusCode.INVALID_ARGUMENT:
            return None  # as the REST endpoint's 400: no such credentials
        raise
    return rpc_message_dict(response.claims) if response.valid else None


def _summary(response: users_pb2.CustomerSummary) -> dict[str, Any]:
    return rpc_message_dict(response)


def customer_summary(*, user_id: str) -> dict[str, Any] | None:
    """What users says of a customer now, or None if there is no such customer."""
    try:
        return _summary(call(GET_CUSTOMER_SUMMARY, _summary_request(user_id)))
    except RpcRefused as refused:
        if refused.code is grpc.StatusCode.NOT_FOUND:
            return None
        raise


async def customer_summary_async(*, user_id: str) -> dict[str, Any] | None:
    """``customer_summary`` for the event loop."""
    try:
        return _summary(await call_async(GET_CUSTOMER_SUMMARY, _summary_request(user_id)))
    except RpcRefused as refused:
        if refused.code is grpc.StatusCode.NOT_FOUND:
            return None
        raise


def _summary_request(user_id: str) -> users_pb2.GetCustomerSummaryRequest:
    return users_pb2.GetCustomerSummaryRequest(user_id=str(user_id))


async def products_get_async(*, ids: list[int]) -> tuple[dict[int, dict[str, Any]], list[int]]:
    """The active products of ``ids`` by id, in one call, and the ids that name none."""
    response = await call_async(GET_PRODUCTS, catalog_pb2.GetProductsRequest(ids=ids))
    return {product.id: rpc_message_dict(product) for product in response.products}, list(
        response.missing_ids
    )


def unfinished_sagas(*, limit: int) -> list[dict[str, Any]]:
    """Orders' open sagas, those needing attention first, at most ``limit`` of them."""
    response = call(LIST_UNFINISHED_SAGAS, orders_pb2.ListUnfinishedSagasRequest(limit=limit))
    # No deadline (nothing awaited) is null, as the REST endpoint wrote it, not "".
    return [
        {**rpc_message_dict(saga), "deadline": saga.deadline or None} for saga in response.sagas
    ]
