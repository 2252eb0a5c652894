"""Small template filters of the storefront's pages."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django import template
from django.conf import settings

register = template.Library()

_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£"}


@register.filter
def money(value: object, currency: str = "") -> str:
    """``549.00`` as ``€549.00`` (the deployment's currency unless one is given)."""
    if value is None or value == "":
        return "—"
    try:
        amount = Decimal(str(value)).quantize(Decimal("0.01"))
    except InvalidOperation:
        return str(value)
    code = currency or settings.CURRENCY
    symbol = _SYMBOLS.get(code)
    return f"{symbol}{amount:,}" if symbol else f"{amount:,} {code}"


@register.filter
def hue(value: object) -> int:
    """A stable colour (an HSL hue) per product, for its picture's placeholder."""
    try:
        return int(value) * 47 % 360  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 210


@register.filter
def initials(name: str) -> str:
    words = [word for word in str(name).split() if word[:1].isalnum()]
    return "".join(word[0] for word in words[:2]).upper()
