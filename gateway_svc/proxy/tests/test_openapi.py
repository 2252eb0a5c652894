"""The merged OpenAPI document states what the gateway itself answers."""

from __future__ import annotations

from eshop_contracts.users.v1 import users_pb2

from proxy.openapi import merge

PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def _documents() -> tuple[dict, dict]:
    own = {
        "openapi": "3.0.3",
        "info": {"title": "gateway"},
        "paths": {"/api/auth/token/": {"post": {"responses": {"200": {}}}}},
        "components": {"schemas": {}},
    }
    catalog = {
        "paths": {
            "/api/catalog/products/": {
                "get": {
                    "operationId": "list",
                    "responses": {"200": {}, "401": {"description": "the service's own"}},
                }
            }
        },
        "components": {"schemas": {"Problem": {"type": "object"}}},
    }
    return own, catalog


def test_proxied_operations_document_the_gateways_own_answers():
    own, catalog = _documents()

    responses = merge(own, {"catalog": catalog})["paths"]["/api/catalog/products/"]["get"][
        "responses"
    ]

    assert set(responses) == {
        *("200", "401", "406", "408", "413", "414", "429", "502", "503", "504"),
    }
    assert all(
        responses[code]["content"] == PROBLEM for code in ("408", "413", "414", "429", "502")
    )
    assert "Retry-After" in responses["429"]["headers"]
    assert responses["401"] == {"description": "the service's own"}


def test_the_gateways_own_views_get_only_the_read_deadlines():
    own, catalog = _documents()

    responses = merge(own, {"catalog": catalog})["paths"]["/api/auth/token/"]["post"]["responses"]

    assert set(responses) == {"200", "408"}


def _service(prefix: str, *components: str) -> dict:
    return {
        "paths": {f"/api/{prefix}/": {"get": {"operationId": "list", "responses": {"200": {}}}}},
        "components": {"schemas": {name: {"type": "object"} for name in components}},
    }


def test_the_order_details_composition_is_documented_with_every_answer_it_gives():
    own, _ = _documents()
    services = {
        "catalog": _service("catalog", "Product"),
        "orders": _service("orders", "Order", "LineOut"),
    }

    document = merge(own, services)
    operation = document["paths"]["/api/orders/{order_id}/details/"]["get"]

    assert set(operation["responses"]) == {
        "200",
        "401",
        "404",
        "406",
        "408",
        "429",
        "502",
        "503",
        "504",
    }
    assert operation["security"] == [{"bearerAuth": []}]
    assert operation["parameters"][0]["schema"] == {"type": "string", "format": "uuid"}
    assert all(
        operation["responses"][code]["content"] == PROBLEM for code in ("401", "404", "429", "504")
    )
    details = document["components"]["schemas"]["OrderDetails"]
    assert details["properties"]["order"] == {"$ref": "#/components/schemas/Order"}
    assert details["properties"]["customer"]["allOf"] == [
        {"$ref": "#/components/schemas/OrderDetailsCustomer"}
    ]
    line = document["components"]["schemas"]["OrderDetailsLine"]
    assert line["allOf"][0] == {"$ref": "#/components/schemas/LineOut"}


def test_the_composition_follows_a_renamed_component_and_needs_orders():
    own, _ = _documents()
    own["components"]["schemas"]["Order"] = {"type": "string"}  # a clash: orders' is renamed

    document = merge(own, {"orders": _service("orders", "Order", "LineOut")})
    details = document["components"]["schemas"]["OrderDetails"]

    assert details["properties"]["order"] == {"$ref": "#/components/schemas/OrdersOrder"}
    assert "/api/orders/{order_id}/details/" not in merge(own, {"orders": None})["paths"]


def test_the_compositions_customer_is_documented_from_the_users_v1_contract():
    own, _ = _documents()

    document = merge(own, {"orders": _service("orders", "Order", "LineOut")})
    customer = document["components"]["schemas"]["OrderDetailsCustomer"]

    assert set(customer["required"]) == {
        field.name for field in users_pb2.CustomerSummary.DESCRIPTOR.fields
    }
    assert customer["properties"]["id"] == {"type": "integer"}
    assert customer["properties"]["credit_limit"] == {"type": "string", "format": "decimal"}
    assert customer["properties"]["roles"] == {"type": "array", "items": {"type": "string"}}
