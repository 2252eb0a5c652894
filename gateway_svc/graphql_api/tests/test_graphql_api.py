"""/graphql/ without upstreams: edge auth, the limits, error shapes, never a 5xx, the
schema file and the GraphiQL page. Reads through real services: tests/test_graphql.py."""

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest
from graphql import parse
from proxy.runtime import StatusCollector

from common.testing.tokens import *  # noqa: F403 - make_token
from graphql_api.limits import MAX_COMPLEXITY, query_cost
from graphql_api.schema import schema
from graphql_api.sdl import SDL_FILE, schema_sdl

GRAPHQL = "/graphql/"
APP = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_proxy_runtime(monkeypatch):
    """No proxy runtime in this process: nothing here may reach a service."""
    monkeypatch.setattr(StatusCollector, "current", None)


def ask(client, query: str, variables: dict | None = None, **headers):
    body = {"query": query, **({"variables": variables} if variables else {})}
    return client.post(GRAPHQL, json.dumps(body), content_type="application/json", **headers)


def codes(response) -> list[str]:
    return [error["extensions"]["code"] for error in response.json()["errors"]]


def test_me_and_orders_refuse_anonymous_callers_in_the_graphql_error_format(client):
    response = ask(client, "{ __typename me { id } orders { totalCount } }")

    body = response.json()
    assert response.status_code == 200
    assert body["data"] == {"__typename": "Query", "me": None, "orders": None}
    for error in body["errors"]:
        assert error["extensions"]["code"] == "not_authenticated"
        assert error["extensions"]["status"] == 401
        assert error["message"].startswith("Send an access token")


def test_a_bad_token_refuses_the_whole_request_with_401(client, make_token):
    expired = make_token(sub=7, lifetime=-60)

    for authorization in ("Bearer not-a-token", f"Bearer {expired}", "Basic YTpi"):
        response = ask(client, "{ __typename }", HTTP_AUTHORIZATION=authorization)
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == 'Bearer realm="api"'
        assert codes(response) == ["authentication_failed"]


def test_a_valid_token_is_accepted(client, make_token):
    response = ask(client, "{ __typename }", HTTP_AUTHORIZATION=f"Bearer {make_token(sub=7)}")
    assert response.json() == {"data": {"__typename": "Query"}}


def test_a_query_deeper_than_the_limit_is_refused_before_it_runs(client):
    deep = "{ orders { items { lines { product { a { b { c { d } } } } } } } }"

    response = ask(client, deep)

    assert response.status_code == 200
    assert response.json()["data"] is None
    assert "query_too_deep" in codes(response)
    assert any(
        "exceeds maximum operation depth of 6" in e["message"] for e in response.json()["errors"]
    )


def test_a_query_above_the_cost_limit_is_refused_with_its_cost(client):
    costly = "{ orders(pageSize: 100) { items { lines { product { name sku price } } } } }"

    response = ask(client, costly)

    (error,) = response.json()["errors"]
    assert response.json()["data"] is None
    assert error["extensions"]["code"] == "query_too_complex"
    assert error["extensions"]["cost"] == 1 + 100 + 100 + 100 * 50 * 4 > MAX_COMPLEXITY
    assert f"at most {MAX_COMPLEXITY}" in error["message"]


def test_page_sizes_in_variables_count_at_their_value(client):
    query = "query($n: Int!) { orders(pageSize: $n) { items { lines { product { name } } } } }"

    small = ask(client, query, {"n": 5})
    large = ask(client, query, {"n": 100})

    assert codes(small) == ["not_authenticated"]  # within the limit: it ran
    assert codes(large) == ["query_too_complex"]


@pytest.mark.parametrize(
    ("query", "cost"),
    [
        ("{ products { totalCount } }", 1 + 20),
        ("{ orders(pageSize: 2) { items { lines { product { name } } } } }", 1 + 2 + 2 + 100 + 100),
        (
            "{ categories(pageSize: 3) { items { ...C } } } fragment C on Category { id name }",
            1 + 3 + 6,
        ),
        ("{ product(id: 1) { name } __schema { types { name } } }", 2),
    ],
)
def test_a_field_costs_one_each_time_it_may_be_resolved(query, cost):
    assert query_cost(schema._schema, parse(query), None, {}) == cost


def test_too_many_aliases_or_tokens_are_refused(client):
    aliases = "{ " + " ".join(f"p{i}: product(id: {i}) {{ id }}" for i in range(16)) + " }"
    tokens = "{ " + "__typename " * 2001 + "}"

    assert codes(ask(client, aliases)) == ["too_many_aliases"]
    assert codes(ask(client, tokens)) == ["query_too_large"]


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        ("{ products {", "application/json", 400),  # not JSON
        ('"{ __typename }"', "application/json", 400),  # JSON, not an object
        ("[1, 2]", "application/json", 400),  # a batch: not enabled
        ('{"query": 5}', "application/json", 400),
        ('{"query": "{ __typename }", "variables": [1]}', "application/json", 400),
        ('{"variables": {}}', "application/json", 400),  # no query
        ("query={__typename}", "text/plain", 400),
        ('{"query": "{ products { "}', "application/json", 200),  # a GraphQL syntax error
        ('{"query": "{ ...Missing }"}', "application/json", 200),
        ('{"query": "fragment F on Query { ...F } { ...F }"}', "application/json", 200),
        ('{"query": "mutation { x }"}', "application/json", 200),
        ('{"query": "{ nope }"}', "application/json", 200),
        ('{"query": "{ product(id: 99999999999) { id } }"}', "application/json", 200),
        (
            '{"query": "query($n: Int!) { products(pageSize: $n) { totalCount } }"}',
            "application/json",
            200,
        ),
        (
            '{"query": "{ products(minPrice: \\"cheap\\") { totalCount } }"}',
            "application/json",
            200,
        ),
    ],
)
def test_any_text_gets_a_graphql_error_never_a_5xx(client, body, content_type, status):
    response = client.post(GRAPHQL, body, content_type=content_type)

    assert response.status_code == status
    errors = response.json()["errors"]
    assert errors
    assert all(e["extensions"]["status"] == 400 for e in errors)
    assert all(e["extensions"]["code"] != "internal_error" for e in errors)


def test_out_of_range_pages_are_refused_by_the_resolver(client, make_token):
    token = make_token(sub=7)

    response = ask(
        client, "{ orders(pageSize: 500) { totalCount } }", HTTP_AUTHORIZATION=f"Bearer {token}"
    )

    assert codes(response) == ["validation_error"]


def test_text_arguments_longer_than_a_url_can_carry_are_refused(client):
    response = ask(
        client, "query($s: String) { products(search: $s) { totalCount } }", {"s": "x" * 201}
    )
    assert codes(response) == ["validation_error"]


def test_other_methods_get_405_in_the_graphql_format(client):
    response = client.put(GRAPHQL)
    assert response.status_code == 405
    assert codes(response) == ["method_not_allowed"]


def test_introspection_is_allowed(client):
    response = ask(client, "{ __schema { queryType { fields { name } } } }")

    fields = {f["name"] for f in response.json()["data"]["__schema"]["queryType"]["fields"]}
    assert fields == {"products", "product", "categories", "me", "orders"}


def test_the_exported_sdl_is_current():
    assert SDL_FILE.read_text() == schema_sdl(), (
        "graphql_api/schema.graphql is stale: run `python manage.py export_graphql_schema`"
    )


def test_graphiql_loads_only_local_assets_whose_digests_are_pinned(client):
    page = client.get(GRAPHQL, HTTP_ACCEPT="text/html").content.decode()
    tags = re.findall(r'(?:src|href)="([^"]+)"\s+integrity="sha384-([^"]+)"', page)

    assert len(tags) == 4
    assert "https://" not in page
    for url, digest in tags:
        local = APP / "static" / url.removeprefix("/static/gateway/")
        assert base64.b64encode(hashlib.sha384(local.read_bytes()).digest()).decode() == digest
