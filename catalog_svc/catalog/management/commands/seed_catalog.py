"""Fill the catalog with a demo assortment; running it again changes nothing."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from tqdm import tqdm

from catalog.models import Category, Product
from catalog.services import category_create, product_create

# (category, parent, [(product name, price, units on hand), ...])
DEMO_CATALOG: list[tuple[str, str | None, list[tuple[str, str, int]]]] = [
    ("Electronics", None, []),
    (
        "Phones",
        "Electronics",
        [
            ("Pixel Aurora 8 smartphone, 128 GB", "549.00", 40),
            ("Nova Lite 5G smartphone, 64 GB", "229.00", 75),
            ("Rugged Field phone IP68", "319.90", 18),
            ("Fold Duo foldable phone", "1399.00", 6),
            ("Classic Flip feature phone", "49.90", 120),
            ("USB-C fast charger 65 W", "34.90", 300),
        ],
    ),
    (
        "Laptops",
        "Electronics",
        [
            ("Aero 14 ultrabook, 16 GB RAM", "1099.00", 25),
            ("Workhorse 15 business laptop", "899.00", 30),
            ("Studio 16 creator laptop, OLED", "2199.00", 8),
            ("Chromebook Go 11", "279.00", 60),
            ("Gaming Blade 17, RTX", "1899.00", 0),
            ("Laptop sleeve 14 inch, felt", "24.90", 150),
        ],
    ),
    (
        "Audio",
        "Electronics",
        [
            ("Noise-cancelling headphones NC700", "279.00", 45),
            ("True wireless earbuds Pulse", "89.90", 200),
            ("Bookshelf speakers pair, 40 W", "199.00", 20),
            ("Portable waterproof speaker", "59.90", 90),
            ("USB condenser microphone", "119.00", 35),
            ("Turntable, belt drive", "249.00", 7),
        ],
    ),
    (
        "Home & Kitchen",
        None,
        [
            ("Cast iron skillet 28 cm", "39.90", 80),
            ("Espresso machine, 15 bar", "329.00", 12),
            ("Chef's knife 20 cm, stainless", "69.00", 55),
            ("Bamboo cutting board set", "29.90", 140),
            ("Electric kettle 1.7 l", "44.90", 70),
            ("Stand mixer 5 l", "399.00", 9),
            ("Linen tablecloth 140×240", "49.00", 0),
        ],
    ),
    (
        "Books",
        None,
        [
            ("Designing Data-Intensive Applications", "45.00", 50),
            ("Building Microservices, 2nd edition", "52.00", 40),
            ("Domain-Driven Design Distilled", "34.00", 30),
            ("Release It!, 2nd edition", "41.00", 25),
            ("The Pragmatic Programmer", "39.00", 60),
            ("Two Scoops of Django", "47.00", 15),
            ("Enterprise Integration Patterns", "64.00", 10),
            ("Clean Architecture", "36.00", 20),
        ],
    ),
    (
        "Sports & Outdoors",
        None,
        [
            ("Trail running shoes, men's 43", "129.00", 22),
            ("Trail running shoes, women's 39", "129.00", 18),
            ("Yoga mat 6 mm", "34.90", 110),
            ("Camping tent, 2 persons", "189.00", 14),
            ("Sleeping bag, -5 °C", "99.00", 20),
            ("Insulated water bottle 750 ml", "24.90", 250),
            ("Road bike helmet, M", "79.00", 3),
        ],
    ),
    (
        "Toys & Games",
        None,
        [
            ("Wooden train set, 60 pieces", "59.90", 35),
            ("Strategy board game: Settlers", "44.90", 40),
            ("1000-piece jigsaw puzzle, alpine lake", "19.90", 65),
            ("Remote control car, 1:16", "69.90", 0),
            ("Building bricks starter box", "29.90", 80),
            ("Chess set, walnut", "89.00", 12),
        ],
    ),
    (
        "Clothing",
        None,
        [
            ("Merino wool T-shirt, M", "59.00", 45),
            ("Rain jacket, waterproof, L", "149.00", 28),
            ("Organic cotton hoodie, S", "69.00", 33),
            ("Wool socks, 3 pairs", "19.90", 300),
            ("Leather belt, brown, 95 cm", "39.00", 50),
            ("Down vest, M", "119.00", 1),
        ],
    ),
]


def _sku(category_index: int, product_index: int) -> str:
    return f"DEMO-{category_index + 1:02d}{product_index + 1:03d}"


class Command(BaseCommand):
    help = (
        "Create demo categories and products with stock. Idempotent: existing SKUs are left alone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--no-progress", action="store_true", help="Do not draw a progress bar."
        )

    @transaction.atomic
    def handle(self, *args: Any, no_progress: bool = False, **options: Any) -> None:
        categories: dict[str, Category] = {}
        for name, parent, _ in DEMO_CATALOG:
            category = Category.objects.filter(name=name).first()
            categories[name] = category or category_create(
                name=name, parent=categories[parent] if parent else None
            )

        wanted = [
            (_sku(ci, pi), name, Decimal(price), on_hand, categories[category_name])
            for ci, (category_name, _, products) in enumerate(DEMO_CATALOG)
            for pi, (name, price, on_hand) in enumerate(products)
        ]
        existing = set(
            Product.objects.filter(sku__in=[w[0] for w in wanted]).values_list("sku", flat=True)
        )
        created = 0
        for sku, name, price, on_hand, category in tqdm(
            wanted,
            desc="Seeding catalog",
            unit="product",
            disable=no_progress,
        ):
            if sku in existing:
                continue
            product_create(
                sku=sku,
                name=name,
                price=price,
                category=category,
                on_hand=on_hand,
                description=f"{name}. Part of the demo catalog.",
            )
            created += 1
        self.stdout.write(
            self.style.SUCCESS(
                f"Catalog seeded: {created} products created, "
                f"{len(wanted) - created} already there, {len(categories)} categories."
            )
        )
