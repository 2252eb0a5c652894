from decimal import Decimal
from uuid import uuid4

import pytest
from django.urls import reverse

from accounts.models import CreditAccount, User
from accounts.services import credit_reserve
from accounts.tests.factories import AddressFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(client):
    staff = User.objects.create_superuser("root@example.com", "pw", name="Root")
    client.force_login(staff)
    return client


@pytest.mark.parametrize("model", ["user", "address", "creditaccount", "creditreservation"])
def test_every_admin_list_and_search_works(admin, model):
    AddressFactory()
    url = reverse(f"admin:accounts_{model}_changelist")
    assert admin.get(url).status_code == 200
    assert admin.get(url, {"q": "x"}).status_code == 200


def test_the_credit_limit_is_set_on_the_user_page_without_touching_reserved(admin):
    user = UserFactory()
    credit_reserve(customer_id=user.pk, order_id=uuid4(), amount=Decimal("100.00"))
    url = reverse("admin:accounts_user_change", args=[user.pk])
    page = admin.get(url)
    assert page.status_code == 200
    form = {
        "email": user.email,
        "name": user.name,
        "is_active": "on",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        "credit-TOTAL_FORMS": "1",
        "credit-INITIAL_FORMS": "1",
        "credit-MIN_NUM_FORMS": "0",
        "credit-MAX_NUM_FORMS": "1",
        "credit-0-user": str(user.pk),
        "credit-0-credit_limit": "500.00",
        "addresses-TOTAL_FORMS": "0",
        "addresses-INITIAL_FORMS": "0",
        "addresses-MIN_NUM_FORMS": "0",
        "addresses-MAX_NUM_FORMS": "1000",
    }

    response = admin.post(url, form)

    assert response.status_code == 302, response.content.decode()[:2000]
    account = CreditAccount.objects.get(pk=user.pk)
    assert (account.credit_limit, account.reserved) == (Decimal("500.00"), Decimal("100.00"))
