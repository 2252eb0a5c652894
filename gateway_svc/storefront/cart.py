"""The cart, kept in the Django session: product id -> quantity, nothing else.

Prices and stock are read from the catalog whenever the cart is shown, so the
cart never shows a stale price. Any change to the cart ends the checkout in
progress (its idempotency key): a key stands for one set of lines, and the
orders service refuses the same key with other lines.
"""

from __future__ import annotations

import uuid

from django.contrib.sessions.backends.base import SessionBase

SESSION_CART = "storefront_cart"
SESSION_CHECKOUT_KEY = "storefront_checkout_key"
# Checkout keys that placed an order -> that order, so a repeated submission
# (a double click) finds its order even after the first one emptied the cart.
SESSION_PLACED = "storefront_placed"
PLACED_REMEMBERED = 10
# The orders API's own bounds (API.md): one line per product, at most 50 lines,
# at most 1000 units per line.
MAX_LINES = 50
MAX_QUANTITY = 1000


async def cart_get(session: SessionBase) -> dict[int, int]:
    """The cart's lines: product id -> quantity, in the order they were added."""
    stored = await session.aget(SESSION_CART) or {}
    return {int(product_id): int(quantity) for product_id, quantity in stored.items()}


async def _cart_save(session: SessionBase, lines: dict[int, int]) -> None:
    await session.aset(SESSION_CART, {str(pid): qty for pid, qty in lines.items()})
    await session.apop(SESSION_CHECKOUT_KEY, None)


async def cart_add(session: SessionBase, *, product_id: int, quantity: int) -> bool:
    """Add units of a product (up to the per-line bound); False when the cart is full."""
    lines = await cart_get(session)
    if product_id not in lines and len(lines) >= MAX_LINES:
        return False
    lines[product_id] = min(MAX_QUANTITY, lines.get(product_id, 0) + quantity)
    await _cart_save(session, lines)
    return True


async def cart_set(session: SessionBase, *, product_id: int, quantity: int) -> None:
    """Set a line's quantity; 0 removes the line."""
    lines = await cart_get(session)
    if quantity <= 0:
        lines.pop(product_id, None)
    elif product_id in lines:
        lines[product_id] = min(MAX_QUANTITY, quantity)
    await _cart_save(session, lines)


async def cart_clear(session: SessionBase) -> None:
    await _cart_save(session, {})


async def cart_count(session: SessionBase) -> int:
    return sum((await cart_get(session)).values())


async def checkout_key_get(session: SessionBase) -> str:
    """The key of the checkout in progress, made when the checkout form is first shown."""
    key = await session.aget(SESSION_CHECKOUT_KEY)
    if not key:
        key = uuid.uuid4().hex
        await session.aset(SESSION_CHECKOUT_KEY, key)
    return key


async def checkout_placed_order(session: SessionBase, *, key: str) -> str | None:
    """The order this checkout key placed already, if it did."""
    return (await session.aget(SESSION_PLACED) or {}).get(key)


async def checkout_complete(session: SessionBase, *, key: str, order_id: str) -> None:
    """The order is placed: remember its key, empty the cart, end the checkout."""
    placed = dict(await session.aget(SESSION_PLACED) or {})
    placed[key] = order_id
    await session.aset(SESSION_PLACED, dict(list(placed.items())[-PLACED_REMEMBERED:]))
    await cart_clear(session)
