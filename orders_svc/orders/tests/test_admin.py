import pytest
from django.urls import reverse

from orders.services import LineRequest, order_place

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("model", ["ordersummary", "orderevent", "idempotencykey", "saga"])
def test_every_admin_list_and_search_works_and_is_read_only(admin_client, model):
    order_place(customer_id="7", lines=[LineRequest(1, 1)], idempotency_key="k")
    url = reverse(f"admin:orders_{model}_changelist")
    page = admin_client.get(url)
    assert page.status_code == 200
    assert admin_client.get(url, {"q": "7"}).status_code == 200
    assert admin_client.get(reverse(f"admin:orders_{model}_add")).status_code == 403


def test_events_waiting_for_the_relay_can_be_listed(admin_client):
    order, _ = order_place(customer_id="7", lines=[LineRequest(1, 1)])
    url = reverse("admin:orders_orderevent_changelist")

    waiting = admin_client.get(url, {"published_at__isnull": "True"})

    assert waiting.status_code == 200
    assert str(order.id) in waiting.content.decode()
