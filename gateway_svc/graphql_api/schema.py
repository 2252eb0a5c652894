"""The GraphQL schema of the gateway: reads of products, categories, my profile and my orders.

Types mirror the REST answers (API.md) field for field in camelCase; resolvers are
thin: they read through ``upstream.Upstreams`` (the services' APIs, batched) and
turn the JSON into these types. ``schema.graphql`` next to this file is the SDL,
exported with ``strawberry export-schema`` and checked for staleness by a test.
"""

from __future__ import annotations

import enum
import logging
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaxAliasesLimiter, MaxTokensLimiter
from strawberry.types import ExecutionContext

from graphql_api.errors import GraphQLProblem, is_unexpected
from graphql_api.limits import (
    MAX_ALIASES,
    MAX_DEPTH,
    MAX_PAGE_SIZE,
    MAX_TOKENS,
    ComplexityLimiter,
    DepthLimiter,
)

logger = logging.getLogger(__name__)

MAX_TEXT_ARGUMENT = 200

# Resolvers' info: its ``context`` is a graphql_api.views.GraphQLContext.
Info = strawberry.Info


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _datetime(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


@strawberry.type(description="A product on sale (staff also see retired ones).")
class Product:
    id: int
    sku: str
    name: str
    slug: str
    description: str
    price: Decimal
    currency: str
    category_id: int | None = strawberry.field(description="See `categories`.")
    stock_available: int
    sold: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Product:
        return cls(
            id=data["id"],
            sku=data["sku"],
            name=data["name"],
            slug=data["slug"],
            description=data.get("description") or "",
            price=Decimal(str(data["price"])),
            currency=data["currency"],
            category_id=data.get("category"),
            stock_available=data.get("stock_available") or 0,
            sold=data.get("sold") or 0,
            created_at=datetime.fromisoformat(data["created_at"]),
            updated_at=datetime.fromisoformat(data["updated_at"]),
        )


@strawberry.type
class ProductPage:
    total_count: int
    page: int
    items: list[Product]


@strawberry.type
class Category:
    id: int
    name: str
    slug: str
    parent_id: int | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Category:
        return cls(
            id=data["id"], name=data["name"], slug=data["slug"], parent_id=data.get("parent")
        )


@strawberry.type
class CategoryPage:
    total_count: int
    page: int
    items: list[Category]


@strawberry.type(description="The signed-in customer (`GET /api/users/me/`).")
class Customer:
    id: strawberry.ID
    email: str
    name: str
    credit_limit: Decimal
    credit_available: Decimal
    date_joined: datetime

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Customer:
        return cls(
            id=strawberry.ID(str(data["id"])),
            email=data["email"],
            name=data.get("name") or "",
            credit_limit=Decimal(str(data["credit_limit"])),
            credit_available=Decimal(str(data["credit_available"])),
            date_joined=datetime.fromisoformat(data["date_joined"]),
        )


@strawberry.type
class OrderLine:
    product_id: int
    quantity: int
    unit_price: Decimal | None = strawberry.field(description="Set once stock is reserved.")

    @strawberry.field(
        description="The product now; null if the catalog no longer shows it (retired)."
    )
    async def product(self, info: Info) -> Product | None:
        data = await info.context.upstreams.products.load(self.product_id)
        return None if data is None else Product.from_json(data)


@strawberry.type
class Order:
    id: strawberry.ID
    status: str
    total: Decimal | None
    currency: str
    rejection_reason: str
    line_count: int
    item_count: int
    created_at: datetime
    updated_at: datetime
    lines: list[OrderLine]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Order:
        return cls(
            id=strawberry.ID(str(data["id"])),
            status=data["status"],
            total=_decimal(data.get("total")),
            currency=data.get("currency") or "",
            rejection_reason=data.get("rejection_reason") or "",
            line_count=data.get("line_count") or 0,
            item_count=data.get("item_count") or 0,
            created_at=datetime.fromisoformat(data["created_at"]),
            updated_at=datetime.fromisoformat(data["updated_at"]),
            lines=[
                OrderLine(
                    product_id=line["product_id"],
                    quantity=line["quantity"],
                    unit_price=_decimal(line.get("unit_price")),
                )
                for line in data.get("lines") or []
            ],
        )


@strawberry.type
class OrderPage:
    total_count: int
    page: int
    items: list[Order]


@strawberry.enum(description="`ordering` of the product list.")
class ProductOrdering(enum.Enum):
    PRICE = "price"
    PRICE_DESC = "-price"
    NAME = "name"
    NAME_DESC = "-name"
    NEWEST = "-created_at"
    OLDEST = "created_at"
    BEST_SELLING = "-sold"


def _page_check(page: int, page_size: int) -> None:
    if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise GraphQLProblem(
            f"page must be 1 or more and pageSize between 1 and {MAX_PAGE_SIZE}.",
            status=400,
            code="validation_error",
        )


def _signed_in(info: Info) -> None:
    if info.context.claims is None:
        raise GraphQLProblem(
            "Send an access token: Authorization: Bearer <token>.",
            status=401,
            code="not_authenticated",
        )


@strawberry.type
class Query:
    @strawberry.field(description="Products on sale, as `GET /api/catalog/products/` filters them.")
    async def products(
        self,
        info: Info,
        search: str | None = None,
        category: Annotated[
            str | None,
            strawberry.argument(description="Category id or slug (its subcategories included)."),
        ] = None,
        min_price: Decimal | None = None,
        max_price: Decimal | None = None,
        in_stock: bool | None = None,
        ordering: ProductOrdering | None = None,
        page: int = 1,
        page_size: int = 20,
    ) -> ProductPage | None:
        _page_check(page, page_size)
        if len(search or "") > MAX_TEXT_ARGUMENT or len(category or "") > MAX_TEXT_ARGUMENT:
            # It goes into the catalog's URL, whose server refuses a long one (414).
            raise GraphQLProblem(
                f"search and category hold at most {MAX_TEXT_ARGUMENT} characters.",
                status=400,
                code="validation_error",
            )
        body = await info.context.upstreams.get(
            "catalog",
            "/api/catalog/products/",
            {
                "search": search,
                "category": category,
                "min_price": min_price,
                "max_price": max_price,
                "in_stock": None if in_stock is None else str(in_stock).lower(),
                "ordering": ordering.value if ordering else None,
                "page": page,
                "page_size": page_size,
            },
        )
        results = body.get("results") or []
        for item in results:  # a line that names one of these later costs no call
            info.context.upstreams.products.prime(item["id"], item)
        items = [Product.from_json(item) for item in results]
        return ProductPage(total_count=body.get("count") or 0, page=page, items=items)

    @strawberry.field(description="One product by id; null if the catalog does not show it.")
    async def product(self, info: Info, id: int) -> Product | None:
        data = await info.context.upstreams.products.load(id)
        return None if data is None else Product.from_json(data)

    @strawberry.field(description="Categories (`GET /api/catalog/categories/`).")
    async def categories(
        self, info: Info, page: int = 1, page_size: int = 100
    ) -> CategoryPage | None:
        _page_check(page, page_size)
        body = await info.context.upstreams.get(
            "catalog", "/api/catalog/categories/", {"page": page, "page_size": page_size}
        )
        items = [Category.from_json(item) for item in body.get("results") or []]
        return CategoryPage(total_count=body.get("count") or 0, page=page, items=items)

    @strawberry.field(description="The signed-in customer's profile and credit; needs a token.")
    async def me(self, info: Info) -> Customer | None:
        _signed_in(info)
        return Customer.from_json(await info.context.upstreams.get("users", "/api/users/me/"))

    @strawberry.field(
        description="The signed-in customer's orders, newest first, with their lines "
        "(staff: everyone's, as `GET /api/orders/`); needs a token."
    )
    async def orders(self, info: Info, page: int = 1, page_size: int = 20) -> OrderPage | None:
        _signed_in(info)
        _page_check(page, page_size)
        body = await info.context.upstreams.get(
            "orders", "/api/orders/", {"page": page, "page_size": page_size}
        )
        items = [Order.from_json(item) for item in body.get("results") or []]
        return OrderPage(total_count=body.get("count") or 0, page=page, items=items)


class GatewaySchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Log our own failures; a client's mistakes and refusals are its answer, not news."""
        for error in errors:
            if is_unexpected(error):
                logger.error("GraphQL failed: %s", error.message, exc_info=error.original_error)


schema = GatewaySchema(
    query=Query,
    # Factories, not instances: each request gets its own (they hold its execution context).
    extensions=[
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
        lambda: DepthLimiter(max_depth=MAX_DEPTH),
        ComplexityLimiter,
    ],
)
