import io

import pytest
from django.core.management import call_command

from orders.models import OrderSummary
from orders.services import LineRequest, order_place

pytestmark = pytest.mark.django_db


def test_rebuild_read_models_recreates_every_summary():
    for customer in ("1", "2"):
        order_place(customer_id=customer, lines=[LineRequest(1, 1)])
    OrderSummary.objects.all().delete()
    out = io.StringIO()

    call_command("rebuild_read_models", "--no-progress", stdout=out)

    assert OrderSummary.objects.count() == 2
    assert "Rebuilt 2" in out.getvalue()
