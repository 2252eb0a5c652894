"""The services as the storefront sees them, in memory, for the fast tests of its pages.

``FakeShop`` stands in for ``storefront.shop.shop_call`` (the storefront's one
HTTP boundary) and answers as the services' APIs do (API.md): the catalog, the
customers with credit and addresses, the orders with their idempotency keys.
It knows the customer by the access token, verified as the services verify it.
Sign-in itself is the gateway's real code (identity.services), with users_svc's
credential check answered by the same stand-in. The real processes meet in
tests/test_storefront.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from common.auth import token_decode
from identity import services as identity_services
from identity.clients import InvalidCredentials
from storefront import shop
from storefront.errors import ShopUnavailable
from storefront.shop import ShopAnswer

PASSWORD = "correct horse battery"

CATEGORIES = [
    {"id": 1, "name": "Electronics", "slug": "electronics", "parent": None},
    {"id": 2, "name": "Phones", "slug": "phones", "parent": 1},
    {"id": 3, "name": "Books", "slug": "books", "parent": None},
]


def _product(pid: int, name: str, price: str, category: int, stock: int) -> dict[str, Any]:
    return {
        "id": pid,
        "sku": f"SKU-{pid:04d}",
        "name": name,
        "slug": name.lower().replace(" ", "-"),
        "description": f"The {name}.",
        "price": price,
        "currency": "EUR",
        "category": category,
        "active": True,
        "stock_available": stock,
        "sold": 0,
        "created_at": f"2026-12-0{pid % 9 + 1}T10:00:00Z",
        "updated_at": "2026-12-06T10:00:00Z",
    }


def _problem(status: int, code: str, errors: dict[str, list[str]] | None = None) -> ShopAnswer:
    body: dict[str, Any] = {"status": status, "code": code, "title": code, "detail": code}
    if errors:
        body["errors"] = errors
    return ShopAnswer(status, body)


class FakeShop:
    def __init__(self) -> None:
        self.products = {
            1: _product(1, "Pixel phone", "549.00", 2, 40),
            2: _product(2, "Flip phone", "49.90", 2, 3),
            3: _product(3, "Gaming laptop", "1899.00", 1, 0),
            4: _product(4, "Release It", "41.00", 3, 25),
        }
        self.customers: dict[str, dict[str, Any]] = {}
        self.addresses: dict[int, dict[str, Any]] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        self.keys: dict[tuple[str, str], str] = {}
        self.calls: list[dict[str, Any]] = []
        self.down: set[str] = set()  # services that do not answer ("orders", ...)

    # users_svc's side of signing in (identity.clients)

    def register(self, email: str, *, name: str = "", is_staff: bool = False) -> dict[str, Any]:
        customer = {
            "id": str(len(self.customers) + 1),
            "email": email,
            "name": name,
            "is_staff": is_staff,
            "roles": ["staff"] if is_staff else ["customer"],
            "is_active": True,
            "credit_limit": "1000.00",
            "reserved": Decimal("0.00"),
        }
        self.customers[email.lower()] = customer
        return customer

    def credentials_check(self, *, email: str, password: str) -> dict[str, Any]:
        customer = self.customers.get(email.lower())
        if customer is None or password != PASSWORD:
            raise InvalidCredentials()
        return {
            "sub": customer["id"],
            **{k: customer[k] for k in ("email", "name", "is_staff", "roles")},
        }

    def customer_summary(self, *, user_id: str) -> dict[str, Any] | None:
        customer = self._by_id(user_id)
        return None if customer is None else {**customer, "roles": customer["roles"]}

    def _by_id(self, user_id: str) -> dict[str, Any] | None:
        return next((c for c in self.customers.values() if c["id"] == user_id), None)

    # the orders' outcome, as the saga would decide it

    def decide(self, order_id: str, status: str, reason: str = "") -> None:
        order = self.orders[order_id]
        order["status"] = status
        order["rejection_reason"] = reason
        event = {"APPROVED": "order.approved", "REJECTED": "order.rejected"}[status]
        order["history"].append({"type": event, "at": "2026-12-06T10:00:02Z"})

    # storefront.shop.shop_call

    async def __call__(
        self,
        method: str,
        path: str,
        *,
        access: str | None = None,
        query: dict[str, Any] | None = None,
        body: Any = None,
        idempotency_key: str = "",
        client: str = "",
    ) -> ShopAnswer:
        self.calls.append(
            {
                "method": method,
                "path": path,
                "query": query or {},
                "body": body,
                "key": idempotency_key,
            }
        )
        service = path.split("/")[2]
        if service in self.down:
            raise ShopUnavailable("unavailable", f"The {service} service could not be reached.")
        customer = None
        if access:
            customer = self._by_id(str(token_decode(access)["sub"]))
        handler = getattr(self, f"_{service}")
        return handler(method, path.split("/")[3:-1], query or {}, body, customer, idempotency_key)

    def _catalog(self, method, parts, query, body, customer, key) -> ShopAnswer:
        if parts == ["categories"]:
            return ShopAnswer(200, {"count": len(CATEGORIES), "results": CATEGORIES})
        if parts == ["products"]:
            found = list(self.products.values())
            if search := query.get("search"):
                found = [p for p in found if search.lower() in p["name"].lower()]
            if slug := query.get("category"):
                ids = {c["id"] for c in CATEGORIES if c["slug"] == slug}
                ids |= {c["id"] for c in CATEGORIES if c["parent"] in ids}
                found = [p for p in found if p["category"] in ids]
            if "min_price" in query:
                found = [p for p in found if Decimal(p["price"]) >= Decimal(query["min_price"])]
            if "max_price" in query:
                found = [p for p in found if Decimal(p["price"]) <= Decimal(query["max_price"])]
            if ordering := query.get("ordering"):
                field = ordering.lstrip("-")
                key_of = (
                    (lambda p: Decimal(p["price"])) if field == "price" else (lambda p: p[field])
                )
                found.sort(key=key_of, reverse=ordering.startswith("-"))
            size, page = int(query.get("page_size", 20)), int(query.get("page", 1))
            if (page - 1) * size >= len(found) and page > 1:
                return _problem(404, "not_found")
            chunk = found[(page - 1) * size : page * size]
            return ShopAnswer(200, {"count": len(found), "results": chunk})
        product = self.products.get(int(parts[1]))
        return ShopAnswer(200, product) if product else _problem(404, "not_found")

    def _users(self, method, parts, query, body, customer, key) -> ShopAnswer:
        if parts == ["register"]:
            if body["email"].lower() in self.customers:
                return _problem(400, "validation_error", {"email": ["This email is taken."]})
            if len(body["password"]) < 8:
                return _problem(400, "validation_error", {"password": ["Too short."]})
            made = self.register(body["email"], name=body.get("name", ""))
            return ShopAnswer(201, {"id": made["id"], "email": made["email"], "name": made["name"]})
        if customer is None:
            return _problem(401, "not_authenticated")
        if parts == ["me"]:
            available = Decimal(customer["credit_limit"]) - customer["reserved"]
            return ShopAnswer(
                200,
                {
                    "id": customer["id"],
                    "email": customer["email"],
                    "name": customer["name"],
                    "credit_limit": customer["credit_limit"],
                    "credit_available": f"{available:.2f}",
                    "date_joined": "2026-12-06T10:00:00Z",
                },
            )
        mine = {i: a for i, a in self.addresses.items() if a["owner"] == customer["id"]}
        if parts == ["me", "addresses"] and method == "GET":
            return ShopAnswer(200, {"count": len(mine), "results": list(mine.values())})
        if parts == ["me", "addresses"]:
            if len(body.get("country", "")) != 2 or not body["country"].isalpha():
                return _problem(400, "validation_error", {"country": ["Use two letters."]})
            address_id = len(self.addresses) + 1
            self.addresses[address_id] = {**body, "id": address_id, "owner": customer["id"]}
            return ShopAnswer(201, self.addresses[address_id])
        address_id = int(parts[2])
        if address_id not in mine:
            return _problem(404, "not_found")
        del self.addresses[address_id]
        return ShopAnswer(204)

    def _orders(self, method, parts, query, body, customer, key) -> ShopAnswer:
        if customer is None:
            return _problem(401, "not_authenticated")
        if parts == [] and method == "POST":
            lines = body["lines"]
            if key and (customer["id"], key) in self.keys:
                order = self.orders[self.keys[(customer["id"], key)]]
                if [(ln["product_id"], ln["quantity"]) for ln in order["lines"]] != [
                    (ln["product_id"], ln["quantity"]) for ln in lines
                ]:
                    return _problem(422, "idempotency_key_reused")
                return ShopAnswer(202, order)
            order_id = str(uuid.uuid4())
            total = sum(
                Decimal(self.products[ln["product_id"]]["price"]) * ln["quantity"] for ln in lines
            )
            self.orders[order_id] = {
                "id": order_id,
                "customer_id": customer["id"],
                "status": "PENDING",
                "lines": [
                    {**ln, "unit_price": self.products[ln["product_id"]]["price"]} for ln in lines
                ],
                "total": f"{total:.2f}",
                "currency": "EUR",
                "rejection_reason": "",
                "cancel_requested": False,
                "created_at": "2026-12-06T10:00:00Z",
                "updated_at": "2026-12-06T10:00:00Z",
                "history": [{"type": "order.placed", "at": "2026-12-06T10:00:00Z"}],
            }
            if key:
                self.keys[(customer["id"], key)] = order_id
            return ShopAnswer(202, self.orders[order_id])
        mine = [o for o in self.orders.values() if o["customer_id"] == customer["id"]]
        if parts == []:
            summaries = [
                {**o, "item_count": sum(ln["quantity"] for ln in o["lines"])} for o in mine
            ]
            return ShopAnswer(200, {"count": len(summaries), "results": summaries[::-1]})
        order = next((o for o in mine if o["id"] == parts[0]), None)
        if order is None:
            return _problem(404, "order_not_found")
        if parts[1:] == ["cancel"]:
            if order["status"] != "APPROVED":
                return _problem(409, "order_state_conflict")
            order["cancel_requested"] = True
            return ShopAnswer(202, order)
        return ShopAnswer(200, order)


@pytest.fixture
def fake_shop(monkeypatch: pytest.MonkeyPatch, gateway_keys: Any, db: Any) -> Iterator[FakeShop]:
    fake = FakeShop()
    monkeypatch.setattr(shop, "shop_call", fake)
    monkeypatch.setattr(identity_services, "credentials_check", fake.credentials_check)
    monkeypatch.setattr(identity_services, "customer_summary", fake.customer_summary)
    cache.clear()  # login counters
    yield fake
    cache.clear()


@pytest.fixture
def browser() -> Client:
    """A browser without JavaScript: cookies, forms and redirects only."""
    return Client()


def sign_in(browser: Client, fake: FakeShop, email: str = "ann@example.com", **kwargs: Any) -> None:
    if email.lower() not in fake.customers:
        fake.register(email, name="Ann", **kwargs)
    response = browser.post("/signin/", {"email": email, "password": PASSWORD})
    assert response.status_code == 302, response.content.decode()
