from decimal import Decimal

import pytest

from accounts.models import Address, CreditAccount, User
from accounts.tests.factories import AddressFactory, UserFactory

pytestmark = pytest.mark.django_db

REGISTER = "/api/users/register/"
ME = "/api/users/me/"
ADDRESSES = "/api/users/me/addresses/"


# --- registration ---------------------------------------------------------------------------


def test_register_answers_201_with_the_new_customer(api_client):
    response = api_client.post(
        REGISTER, {"email": "Ann@Example.com", "password": "correct horse battery", "name": "Ann"}
    )
    assert response.status_code == 201
    body = response.json()
    assert body == {"id": body["id"], "email": "ann@example.com", "name": "Ann"}
    assert User.objects.get(pk=body["id"]).check_password("correct horse battery")


@pytest.mark.parametrize("email", ["ann@example.com", "ANN@EXAMPLE.COM", "Ann@example.com"])
def test_register_refuses_a_duplicate_email_whatever_its_case(api_client, email):
    UserFactory(email="ann@example.com")
    response = api_client.post(REGISTER, {"email": email, "password": "correct horse battery"})
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert "email" in response.json()["errors"]
    assert User.objects.count() == 1


@pytest.mark.parametrize("password", ["short", "12345678901", "password123", "ann@example.com"])
def test_register_refuses_a_weak_password(api_client, password):
    response = api_client.post(REGISTER, {"email": "ann@example.com", "password": password})
    assert response.status_code == 400
    assert "password" in response.json()["errors"]
    assert not User.objects.exists()


def test_register_names_every_missing_field(api_client):
    response = api_client.post(REGISTER, {})
    assert set(response.json()["errors"]) == {"email", "password"}


# --- me ----------------------------------------------------------------------------------------


def test_me_shows_the_profile_and_credit(as_user):
    user = UserFactory(email="ann@example.com", name="Ann")
    CreditAccount.objects.filter(pk=user.pk).update(reserved=Decimal("250.00"))

    body = as_user(user).get(ME).json()

    assert body == {
        "id": user.pk,
        "email": "ann@example.com",
        "name": "Ann",
        "credit_limit": "1000.00",
        "credit_available": "750.00",
        "date_joined": body["date_joined"],
    }


def test_me_needs_a_token(api_client):
    response = api_client.get(ME)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_me_updates_the_name_but_not_the_credit(as_user):
    user = UserFactory()
    response = as_user(user).patch(ME, {"name": "New Name", "credit_limit": "99999.00"})
    assert response.status_code == 200
    assert response.json()["name"] == "New Name"
    assert response.json()["credit_limit"] == "1000.00"


# --- addresses ---------------------------------------------------------------------------------


ADDRESS = {
    "label": "Home",
    "recipient": "Ann Example",
    "line1": "1 Rue de la Paix",
    "city": "Paris",
    "postal_code": "75002",
    "country": "fr",
}


def test_addresses_create_list_update_delete(as_user):
    client = as_user(UserFactory())

    created = client.post(ADDRESSES, ADDRESS)
    address_id = created.json()["id"]
    listed = client.get(ADDRESSES)
    updated = client.patch(f"{ADDRESSES}{address_id}/", {"city": "Lyon"})
    deleted = client.delete(f"{ADDRESSES}{address_id}/")

    assert created.status_code == 201
    assert created.json()["country"] == "FR"
    assert listed.json()["count"] == 1
    assert updated.json()["city"] == "Lyon"
    assert deleted.status_code == 204
    assert not Address.objects.exists()


def test_another_customers_address_is_not_found(as_user):
    someone_elses = AddressFactory()
    client = as_user(UserFactory())

    assert client.get(f"{ADDRESSES}{someone_elses.pk}/").status_code == 404
    assert client.delete(f"{ADDRESSES}{someone_elses.pk}/").status_code == 404
    assert client.get(ADDRESSES).json()["count"] == 0
    assert Address.objects.filter(pk=someone_elses.pk).exists()


def test_one_default_address_at_a_time(as_user):
    user = UserFactory()
    client = as_user(user)
    first = client.post(ADDRESSES, {**ADDRESS, "is_default": True}).json()
    second = client.post(ADDRESSES, {**ADDRESS, "label": "Work", "is_default": True}).json()

    defaults = list(
        Address.objects.filter(owner=user, is_default=True).values_list("pk", flat=True)
    )

    assert defaults == [second["id"]]
    assert first["id"] != second["id"]


def test_a_bad_address_gets_field_errors(as_user):
    response = as_user(UserFactory()).post(ADDRESSES, {**ADDRESS, "country": "France", "city": ""})
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"country", "city"}


# --- staff ------------------------------------------------------------------------------------


def test_staff_list_and_search_customers(staff_api):
    UserFactory(email="ann@example.com", name="Ann")
    UserFactory(email="bob@example.com", name="Bob")

    everyone = staff_api.get("/api/users/").json()
    found = staff_api.get("/api/users/", {"search": "ANN"}).json()

    assert everyone["count"] == 2
    assert [c["email"] for c in found["results"]] == ["ann@example.com"]


def test_staff_set_a_credit_limit_and_deactivate(staff_api):
    user = UserFactory()

    response = staff_api.patch(
        f"/api/users/{user.pk}/", {"credit_limit": "250.00", "is_active": False}
    )

    assert response.status_code == 200
    assert (response.json()["credit_limit"], response.json()["is_active"]) == ("250.00", False)


def test_staff_cannot_set_a_negative_limit(staff_api):
    user = UserFactory()
    response = staff_api.patch(f"/api/users/{user.pk}/", {"credit_limit": "-1.00"})
    assert response.status_code == 400
    assert "credit_limit" in response.json()["errors"]


@pytest.mark.parametrize("method", ["get", "patch"])
def test_customers_get_403_on_staff_endpoints(as_user, method):
    user = UserFactory()
    response = getattr(as_user(user), method)(f"/api/users/{user.pk}/", {"credit_limit": "9999"})
    assert response.status_code == 403
    assert as_user(user).get("/api/users/").status_code == 403
    assert CreditAccount.objects.get(pk=user.pk).credit_limit == Decimal("1000.00")


def test_an_unknown_customer_is_404(staff_api):
    response = staff_api.get("/api/users/999999/")
    assert response.status_code == 404
    assert response.json()["code"] == "customer_not_found"


# --- internal: gone, users.v1 over gRPC took it (test_grpc_api.py) -----------------------------


def test_the_internal_rest_endpoints_are_gone(service_api):
    assert service_api.post("/internal/credentials/verify/", {}).status_code == 404
    assert service_api.get("/internal/customers/1/").status_code == 404
