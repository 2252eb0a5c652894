"""Reads for the storefront's pages, from the services' APIs (through storefront.shop)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from storefront import shop
from storefront.errors import problem_error

PAGE_SIZE = 12
# Orderings the catalog API offers, as the product list names them.
SORTS = {
    "": ("Default", ""),
    "price": ("Price, low to high", "price"),
    "-price": ("Price, high to low", "-price"),
    "name": ("Name, A to Z", "name"),
    "newest": ("Newest first", "-created_at"),
    "bestselling": ("Best selling", "-sold"),
}
LOW_STOCK = 5


@dataclass(frozen=True)
class ProductPage:
    products: list[dict[str, Any]]
    count: int
    page: int
    pages: int


@dataclass(frozen=True)
class CartLine:
    product: dict[str, Any]
    quantity: int

    @property
    def unit_price(self) -> Decimal:
        return Decimal(self.product["price"])

    @property
    def subtotal(self) -> Decimal:
        return self.unit_price * self.quantity

    @property
    def short_of_stock(self) -> bool:
        return self.quantity > int(self.product.get("stock_available", 0))


def stock_state(product: dict[str, Any]) -> str:
    """``out``, ``low`` or ``in``: what the product page and the list say of its stock."""
    available = int(product.get("stock_available", 0))
    if available <= 0:
        return "out"
    return "low" if available <= LOW_STOCK else "in"


def _with_stock(product: dict[str, Any]) -> dict[str, Any]:
    return {**product, "stock_state": stock_state(product)}


async def product_list(
    *,
    search: str = "",
    category: str = "",
    min_price: Decimal | None = None,
    max_price: Decimal | None = None,
    sort: str = "",
    page: int = 1,
) -> ProductPage:
    query: dict[str, Any] = {"page": page, "page_size": PAGE_SIZE}
    if search:
        query["search"] = search
    if category:
        query["category"] = category
    if min_price is not None:
        query["min_price"] = str(min_price)
    if max_price is not None:
        query["max_price"] = str(max_price)
    if ordering := SORTS.get(sort, SORTS[""])[1]:
        query["ordering"] = ordering
    answer = await shop.shop_call("GET", "/api/catalog/products/", query=query)
    if answer.status == 404:  # a page past the end
        return ProductPage(products=[], count=0, page=page, pages=0)
    if not answer.ok:
        raise problem_error(answer.status, answer.body, fallback="The catalog refused the search.")
    count = int(answer.body["count"])
    return ProductPage(
        products=[_with_stock(product) for product in answer.body["results"]],
        count=count,
        page=page,
        pages=max(1, -(-count // PAGE_SIZE)),
    )


async def product_get(*, product_id: int) -> dict[str, Any] | None:
    answer = await shop.shop_call("GET", f"/api/catalog/products/{product_id}/")
    if answer.status == 404:
        return None
    if not answer.ok:
        raise problem_error(answer.status, answer.body, fallback="The catalog refused.")
    return _with_stock(answer.body)


async def products_get(*, product_ids: list[int]) -> dict[int, dict[str, Any] | None]:
    """Several products at once (one call each, all in flight together)."""
    found = await asyncio.gather(*(product_get(product_id=pid) for pid in product_ids))
    return dict(zip(product_ids, found, strict=True))


async def category_list() -> list[dict[str, Any]]:
    """Every category, each parent followed by its children (``depth`` 0 or more)."""
    answer = await shop.shop_call("GET", "/api/catalog/categories/", query={"page_size": 100})
    if not answer.ok:
        raise problem_error(answer.status, answer.body, fallback="The catalog refused.")
    categories = answer.body["results"] if isinstance(answer.body, dict) else answer.body
    children: dict[Any, list[dict[str, Any]]] = {}
    for category in categories:
        children.setdefault(category.get("parent"), []).append(category)
    ordered: list[dict[str, Any]] = []

    def walk(parent: Any, depth: int) -> None:
        for category in sorted(children.get(parent, []), key=lambda c: c["name"]):
            ordered.append({**category, "depth": depth})
            walk(category["id"], depth + 1)

    walk(None, 0)
    return ordered


async def cart_lines(*, cart: dict[int, int]) -> list[CartLine]:
    """The cart's lines with their products as the catalog has them now (gone ones dropped)."""
    products = await products_get(product_ids=list(cart))
    return [
        CartLine(product=product, quantity=cart[pid])
        for pid, product in products.items()
        if product is not None
    ]


async def customer_get(*, access: str) -> dict[str, Any]:
    """The customer's profile and credit (``credit_limit``, ``credit_available``)."""
    answer = await shop.shop_call("GET", "/api/users/me/", access=access)
    if not answer.ok:
        raise problem_error(answer.status, answer.body, fallback="Your account could not be read.")
    return answer.body


async def address_list(*, access: str) -> list[dict[str, Any]]:
    answer = await shop.shop_call(
        "GET", "/api/users/me/addresses/", access=access, query={"page_size": 100}
    )
    if not answer.ok:
        raise problem_error(
            answer.status, answer.body, fallback="Your addresses could not be read."
        )
    return answer.body["results"] if isinstance(answer.body, dict) else answer.body


async def order_get(*, access: str, order_id: str) -> dict[str, Any] | None:
    """An order with its status and history; None when it is not the customer's."""
    answer = await shop.shop_call("GET", f"/api/orders/{order_id}/", access=access)
    if answer.status == 404:
        return None
    if not answer.ok:
        raise problem_error(answer.status, answer.body, fallback="The order could not be read.")
    return answer.body


async def order_list(*, access: str, page: int = 1) -> dict[str, Any]:
    """One page of the customer's orders, newest first: ``results``, ``count``, ``pages``."""
    answer = await shop.shop_call(
        "GET", "/api/orders/", access=access, query={"page": page, "page_size": 20}
    )
    if answer.status == 404:
        return {"results": [], "count": 0, "pages": 0, "page": page}
    if not answer.ok:
        raise problem_error(answer.status, answer.body, fallback="Your orders could not be read.")
    count = int(answer.body["count"])
    return {
        "results": answer.body["results"],
        "count": count,
        "pages": max(1, -(-count // 20)),
        "page": page,
    }
