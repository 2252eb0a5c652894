import pytest
from django.test import Client

PROBLEM = "application/problem+json"


def test_domain_errors_keep_their_code_status_and_extra_fields(client: Client):
    response = client.get("/t/domain/")
    assert response.status_code == 409
    assert response["Content-Type"] == PROBLEM
    assert response.json() == {
        "type": "https://errors.eshop.example/out-of-tea",
        "title": "No tea left.",
        "status": 409,
        "detail": "The pot is empty.",
        "code": "out_of_tea",
        "product_ids": [1, 2],
    }


def test_validation_errors_list_every_field(client: Client):
    response = client.post(
        "/t/validation/", {"name": "far too long", "age": -1}, content_type="application/json"
    )
    body = response.json()
    assert response.status_code == 400
    assert body["code"] == "validation_error"
    assert set(body["errors"]) == {"name", "age"}


def test_malformed_json_is_a_400_problem(client: Client):
    response = client.post("/t/validation/", "{", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_request"


def test_unsupported_media_type_is_a_415_problem(client: Client):
    response = client.post("/t/validation/", "<x/>", content_type="application/xml")
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [("/t/404/", 404, "not_found"), ("/t/403/", 403, "permission_denied")],
)
def test_django_exceptions_become_problems(client: Client, path, status, code):
    response = client.get(path)
    assert response.status_code == status
    assert response.json()["code"] == code


def test_throttling_says_when_to_retry(client: Client):
    response = client.get("/t/throttled/")
    assert response.status_code == 429
    assert response["Retry-After"] == "13"  # rounded up: never invite an early retry
    assert response.json()["code"] == "too_many_requests"


def test_missing_credentials_are_a_problem(client: Client):
    response = client.get("/t/private/")
    assert response.status_code in (401, 403)
    assert response.json()["code"] == "not_authenticated"


def test_wrong_method_is_a_405_problem(client: Client):
    response = client.delete("/t/domain/")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_a_crash_is_a_500_problem_without_internals():
    client = Client(raise_request_exception=False)
    response = client.get("/t/crash/")
    assert response.status_code == 500
    assert response["Content-Type"] == PROBLEM
    assert "boom" not in response.content.decode()
    assert response.json()["code"] == "server_error"
