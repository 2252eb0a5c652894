"""Property tests (Hypothesis) of the product list's query string: filters, ordering, pages.

Any query string a client can send (any parameter repeated or not, any text, digits
of every script, huge and special numbers, NUL and invalid percent-escapes) gets the
page (200), a 400 problem naming the parameters at fault, or a 404 problem for a page
past the end; never a 500. Valid bounds round-trip: every product listed is inside them.
"""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from catalog.tests.factories import CategoryFactory, ProductFactory

pytestmark = pytest.mark.django_db

PRODUCTS = "/api/catalog/products/"
# Requests through the whole view and the database: a short run (deadline=None: the
# machine is shared, and timing is not what these properties are about).
PROPERTY = settings(
    max_examples=60,
    deadline=None,
    # The same cases on every run (a reviewer sees what CI saw); no example database.
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PARAMETERS = [
    "search",
    "category",
    "min_price",
    "max_price",
    "in_stock",
    "ordering",
    "page",
    "page_size",
    "ids",
]

# Digits other scripts write (Arabic-Indic, fullwidth, superscripts): Python's int() and
# Decimal() read some of them, a database does not.
OTHER_DIGITS = "".join(map(chr, [*range(0x660, 0x66A), *range(0xFF10, 0xFF1A), 0xB2, 0xB9]))
numbers_as_text = st.one_of(
    st.integers().map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.floats().map(repr),
    st.sampled_from(["1e999", "-0", "0x10", "1_000", "Infinity", "NaN", "1e50"]),
    st.text(alphabet="0123456789.,-+eE" + OTHER_DIGITS, max_size=30),
)
values = st.one_of(
    st.text(max_size=30),
    numbers_as_text,
    st.sampled_from(["true", "false", "1", "0", "", "price", "-sold", "name,-price"]),
    st.lists(st.integers(-5, 2**64).map(str), max_size=4).map(",".join),
    st.just("\x00"),
)
# Percent-escapes as a client may write them, valid UTF-8 or not.
raw_escapes = st.lists(st.integers(0, 255), max_size=6).map(
    lambda codes: "".join(f"%{code:02X}" for code in codes)
)


@st.composite
def query_strings(draw: st.DrawFn) -> str:
    pairs = draw(
        st.lists(st.tuples(st.sampled_from(PARAMETERS) | st.text(max_size=5), values), max_size=5)
    )
    text = "&".join(f"{quote(name)}={quote(value)}" for name, value in pairs)
    if draw(st.booleans()):
        text += f"&{draw(st.sampled_from(PARAMETERS))}={draw(raw_escapes)}"
    return text


@pytest.fixture
def products():
    shoes = CategoryFactory(slug="shoes")
    ProductFactory(sku="CHEAP", price=Decimal("5.00"), category=shoes)
    ProductFactory(sku="MID", price=Decimal("50.00"), on_hand=0)
    ProductFactory(sku="DEAR", price=Decimal("500.00"))


@PROPERTY
@given(query=query_strings())
@example(query="search=%00")
@example(query="category=%00")
@example(query="min_price=1e999&max_price=-1e999")
@example(query="page=%D9%A3&page_size=99999999999999999999")
@example(query="ids=1,%00")
@example(query="ordering=%FF")
def test_any_query_string_is_a_page_or_a_4xx_problem(api_client, products, query):
    response = api_client.get(f"{PRODUCTS}?{query}")

    assert response.status_code in (200, 400, 404), (response.status_code, response.content)
    if response.status_code == 200:
        body = response.json()
        assert set(body) == {"count", "next", "previous", "results"}
        return
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    if response.status_code == 400:
        assert problem["code"] == "validation_error"
        assert set(problem["errors"]) <= set(PARAMETERS)


@PROPERTY
@given(
    low=st.decimals(min_value=0, max_value=10**6, places=2),
    high=st.decimals(min_value=0, max_value=10**6, places=2),
)
def test_valid_price_bounds_round_trip(api_client, products, low, high):
    response = api_client.get(PRODUCTS, {"min_price": str(low), "max_price": str(high)})

    assert response.status_code == 200, response.content
    prices = [Decimal(item["price"]) for item in response.json()["results"]]
    assert all(low <= price <= high for price in prices)
    expected = sum(low <= price <= high for price in map(Decimal, ("5.00", "50.00", "500.00")))
    assert len(prices) == expected
