import io

import pytest
from django.core.management import call_command

from catalog.models import Category, Product, Stock

pytestmark = pytest.mark.django_db


def seed() -> None:
    call_command("seed_catalog", "--no-progress", stdout=io.StringIO())


def test_seed_creates_a_realistic_catalog_with_stock():
    seed()

    assert Category.objects.filter(parent=None).count() >= 5
    assert Product.objects.count() >= 50
    assert Stock.objects.count() == Product.objects.count()
    assert Stock.objects.filter(on_hand__gt=0).count() >= 45
    assert Category.objects.exclude(parent=None).exists()


def test_seed_is_idempotent_and_keeps_stock_that_changed():
    seed()
    product = Product.objects.order_by("pk").first()
    Stock.objects.filter(pk=product.pk).update(on_hand=1)
    counts = (Category.objects.count(), Product.objects.count())

    seed()

    assert (Category.objects.count(), Product.objects.count()) == counts
    assert Stock.objects.get(pk=product.pk).on_hand == 1
