"""What went wrong, in words a shopper reads: never a status code, a JSON body or a trace."""

from __future__ import annotations

from typing import Any

# The services' problem-details codes (API.md), as a person would want to hear them.
PROBLEM_WORDS = {
    "not_authenticated": "Please sign in again.",
    "authentication_failed": "Your sign-in has expired. Please sign in again.",
    "permission_denied": "You may not do this.",
    "not_found": "We could not find this.",
    "too_many_requests": "Too many attempts from your connection. Please wait a little "
    "and try again.",
    "idempotency_key_reused": "Your cart changed while you were checking out. Please review "
    "your order and place it again.",
    "order_state_conflict": "This order can no longer be changed.",
    "validation_error": "Some of what you entered needs another look.",
    "payload_too_large": "That is too much for one request.",
}
UNAVAILABLE_WORDS = {
    "timeout": "The shop took too long to answer. Please try again in a moment.",
    "unavailable": "Part of the shop is unavailable right now. Please try again in a moment.",
}
REJECTION_WORDS = {
    "out_of_stock": "Some items are out of stock: there were not enough units left for this order.",
    "credit_limit_exceeded": "Your credit limit does not cover this order, so it was refused. "
    "Nothing was charged.",
    "product_not_found": "A product in this order is no longer in the catalog.",
    "product_inactive": "A product in this order is no longer sold.",
    "timeout": "The shop could not confirm this order in time, so it was cancelled. Nothing "
    "was charged.",
}
STATUS_WORDS = {
    "PENDING": "Pending: checking stock and credit",
    "APPROVED": "Approved",
    "REJECTED": "Refused",
    "CANCELLED": "Cancelled",
}
FINAL_STATUSES = frozenset({"APPROVED", "REJECTED", "CANCELLED"})
HISTORY_WORDS = {
    "order.placed": "Order placed",
    "order.stock_reserved": "Stock set aside",
    "order.stock_refused": "Not enough stock",
    "order.credit_reserved": "Credit reserved",
    "order.credit_refused": "Credit refused",
    "order.approved": "Order approved",
    "order.rejected": "Order refused",
    "order.cancel_requested": "Cancellation requested",
    "order.cancelled": "Order cancelled",
}


class StorefrontError(Exception):
    """Something the shop could not do, with the words to show for it.

    ``fields`` holds per-field messages of a refused form (field name -> messages).
    """

    def __init__(self, message: str, *, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class ShopUnavailable(StorefrontError):
    """No answer from a service: ``kind`` is ``timeout`` or ``unavailable``."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(UNAVAILABLE_WORDS.get(kind, UNAVAILABLE_WORDS["unavailable"]))
        self.kind = kind
        self.detail = detail


def _messages(value: Any) -> list[str]:
    if isinstance(value, list):
        return [text for item in value for text in _messages(item)]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _messages(item)]
    return [str(value)]


def problem_error(status: int, body: Any, *, fallback: str) -> StorefrontError:
    """A refused call (4xx problem details) as words, field messages kept for the form."""
    problem = body if isinstance(body, dict) else {}
    code = str(problem.get("code", ""))
    fields = {
        str(name): _messages(messages) for name, messages in (problem.get("errors") or {}).items()
    }
    if code == "too_many_requests" and problem.get("retry_after"):
        return StorefrontError(
            f"Too many attempts from your connection. Please try again in "
            f"{problem['retry_after']} seconds."
        )
    if code == "validation_error" and fields:
        return StorefrontError(PROBLEM_WORDS[code], fields=fields)
    if status == 404:
        return StorefrontError(PROBLEM_WORDS["not_found"])
    return StorefrontError(PROBLEM_WORDS.get(code, fallback), fields=fields)


def rejection_words(reason: str) -> str:
    return REJECTION_WORDS.get(reason, "The order was refused.")
