from decimal import Decimal

import factory

from catalog.models import Category, Product, Stock


class CategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Category

    name = factory.Sequence(lambda n: f"Category {n}")
    slug = factory.Sequence(lambda n: f"category-{n}")


class ProductFactory(factory.django.DjangoModelFactory):
    """A product with a stock row; ``on_hand`` sets its units."""

    class Meta:
        model = Product
        skip_postgeneration_save = True

    sku = factory.Sequence(lambda n: f"SKU-{n:05d}")
    name = factory.Sequence(lambda n: f"Product {n}")
    slug = factory.Sequence(lambda n: f"product-{n}")
    price = Decimal("10.00")
    category = factory.SubFactory(CategoryFactory)

    @factory.post_generation
    def on_hand(product: Product, create: bool, extracted: int | None, **kwargs: object) -> None:
        if create:
            Stock.objects.create(product=product, on_hand=10 if extracted is None else extracted)
