"""catalog.v1 over gRPC, through the server `manage.py grpc_serve` runs (in-process, loopback)."""

from __future__ import annotations

import grpc
import pytest
from eshop_contracts.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from google.protobuf.json_format import MessageToDict

from catalog.grpc_api import MAX_IDS
from catalog.tests.factories import ProductFactory
from common.contracts import contract_verify, contracts_of, rpc_message_dict

# The server's threads read the database: the rows must be committed for them to see.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def catalog(grpc_serve):
    return catalog_pb2_grpc.CatalogServiceStub(grpc_serve())


@pytest.fixture
def service_metadata(make_token):
    token = make_token(sub="service:gateway", scope="internal", roles=["service"])
    return (("authorization", f"Bearer {token}"),)


def _get(catalog, metadata, ids):
    request = catalog_pb2.GetProductsRequest(ids=ids)
    return catalog.GetProducts(request, metadata=metadata, timeout=10)


def test_one_call_answers_every_product_as_the_rest_api_shows_it(
    catalog, service_metadata, api_client
):
    first, second = ProductFactory(on_hand=4), ProductFactory(on_hand=0)

    response = _get(catalog, service_metadata, [second.pk, first.pk, second.pk])

    by_id = {product.id: product for product in response.products}
    assert sorted(by_id) == sorted([first.pk, second.pk])  # a repeated id is answered once
    for product in (first, second):
        rest = api_client.get(f"/api/catalog/products/{product.pk}/").json()
        grpc_dict = MessageToDict(
            by_id[product.pk],
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
        # protobuf's JSON writes int64 as text; the values are the REST API's all the same
        assert {k: str(v) for k, v in grpc_dict.items()} == {k: str(v) for k, v in rest.items()}
    assert by_id[first.pk].stock_available == 4
    assert list(response.missing_ids) == []


def test_unknown_and_inactive_products_are_listed_as_missing(catalog, service_metadata):
    active = ProductFactory()
    inactive = ProductFactory(active=False)

    response = _get(catalog, service_metadata, [active.pk, inactive.pk, 999_999])

    assert [product.id for product in response.products] == [active.pk]
    assert list(response.missing_ids) == [inactive.pk, 999_999]


def test_no_ids_is_an_empty_answer(catalog, service_metadata):
    response = _get(catalog, service_metadata, [])

    assert (list(response.products), list(response.missing_ids)) == ([], [])


def test_more_ids_than_the_limit_is_an_invalid_argument(catalog, service_metadata):
    with pytest.raises(grpc.RpcError) as refused:
        _get(catalog, service_metadata, list(range(1, MAX_IDS + 2)))

    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_a_call_without_a_service_token_is_unauthenticated(catalog):
    with pytest.raises(grpc.RpcError) as refused:
        _get(catalog, (), [1])

    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_every_consumers_contract_holds_for_what_get_products_answers(catalog, service_metadata):
    present, retired = ProductFactory(on_hand=3), ProductFactory(active=False)
    method = "catalog.v1.CatalogService.GetProducts"

    response = _get(catalog, service_metadata, [present.pk, retired.pk, 10**9])

    assert contracts_of(message=method)  # somebody relies on it: else nothing is checked
    assert contract_verify(method, rpc_message_dict(response)) == []
    broken = rpc_message_dict(response)
    del broken["products"][0]["price"]
    assert contract_verify(method, broken) == [
        f"gateway relies on {method} products[0].price: 'price' is a required property"
    ]
