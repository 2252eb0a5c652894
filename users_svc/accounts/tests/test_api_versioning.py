"""The users API by version (common.versioning): today's answers are version 1."""

import pytest

from accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db
ME = "/api/users/me/"


def test_version_1_gets_the_same_answer_as_no_version(as_user):
    client = as_user(UserFactory())

    unversioned = client.get(ME)
    versioned = client.get(ME, HTTP_ACCEPT="application/json; version=1")

    assert versioned.status_code == 200
    assert versioned.json() == unversioned.json()


def test_version_2_is_refused_with_406_problem_details(as_user):
    response = as_user(UserFactory()).get(ME, HTTP_ACCEPT="application/json; version=2")

    assert response.status_code == 406
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "unknown_api_version"
