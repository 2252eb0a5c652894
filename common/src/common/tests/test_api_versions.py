"""Reading the API version from Accept (common.api_versions), as services and the gateway do."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.api_versions import accept_unknown_version, accept_versions


@pytest.mark.parametrize(
    ("accept", "versions"),
    [
        ("application/json", []),
        ("application/json; version=1", ["1"]),
        ('application/json; version="2"', ["2"]),
        ("text/html, application/json;version=3;q=0.9, */*", ["3"]),
        ("", []),
    ],
)
def test_the_versions_accept_names_are_read_from_each_media_range(accept, versions):
    assert accept_versions(accept) == versions


def test_no_version_is_not_refused():
    assert accept_unknown_version("application/json") is None


def test_a_served_version_among_others_is_not_refused():
    assert (
        accept_unknown_version("application/json; version=2, application/json; version=1") is None
    )


def test_only_unserved_versions_are_refused_naming_the_first():
    assert accept_unknown_version("application/json; version=7, text/plain; version=9") == "7"


@given(st.text())
def test_any_accept_header_is_read_without_an_error(accept):
    assert isinstance(accept_versions(accept), list)
