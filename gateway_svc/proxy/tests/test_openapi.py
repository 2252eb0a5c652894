"""The merged OpenAPI document states what the gateway itself answers."""

from __future__ import annotations

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

    assert set(responses) == {"200", "401", "408", "413", "429", "502", "503", "504"}
    assert all(responses[code]["content"] == PROBLEM for code in ("408", "413", "429", "502"))
    assert "Retry-After" in responses["429"]["headers"]
    assert responses["401"] == {"description": "the service's own"}


def test_the_gateways_own_views_get_only_the_read_deadlines():
    own, catalog = _documents()

    responses = merge(own, {"catalog": catalog})["paths"]["/api/auth/token/"]["post"]["responses"]

    assert set(responses) == {"200", "408"}
