"""Property tests (Hypothesis) of the staff customer list's query string: search and pages.

Any search text (NUL and every script included) and any page values get the page
(200), a 400 problem naming the parameter, or a 404 problem past the last page; a
search finds exactly the customers whose email or name contains it.
"""

from __future__ import annotations

import string
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

CUSTOMERS = "/api/users/"
PROPERTY = settings(
    max_examples=50,
    deadline=None,
    # The same cases on every run (a reviewer sees what CI saw); no example database.
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
texts = st.text(max_size=30) | st.sampled_from(["\x00", "%", "_", "ann", "ANN", "٣", " "])


@pytest.fixture
def customers():
    return [
        UserFactory(email="ann@example.com", name="Ann Lee"),
        UserFactory(email="bob@example.com", name="Bob 100%_sure"),
    ]


@PROPERTY
@given(
    pairs=st.lists(st.tuples(st.sampled_from(["search", "page", "page_size"]), texts), max_size=4)
)
@example(pairs=[("search", "\x00")])
@example(pairs=[("page", "٣"), ("page_size", "9" * 40)])
def test_any_query_string_is_a_page_or_a_4xx_problem(staff_api, customers, pairs):
    query = "&".join(f"{name}={quote(value)}" for name, value in pairs)

    response = staff_api.get(f"{CUSTOMERS}?{query}")

    assert response.status_code in (200, 400, 404), (response.status_code, response.content)
    if response.status_code != 200:
        assert response["Content-Type"] == "application/problem+json"


@PROPERTY
@given(search=st.text(alphabet=string.ascii_letters + string.digits + " @._%", max_size=8))
def test_a_search_finds_exactly_the_customers_containing_it(staff_api, customers, search):
    # ASCII: PostgreSQL's and Python's case folding agree there.
    response = staff_api.get(CUSTOMERS, {"search": search})

    assert response.status_code == 200, response.content
    needle = search.strip().lower()
    expected = {
        user.email
        for user in customers
        if needle in user.email.lower() or needle in user.name.lower()
    }
    assert {c["email"] for c in response.json()["results"]} == expected
