"""Writes the storefront makes for a person: sign up and in, place and cancel orders, addresses.

Each either succeeds or raises ``StorefrontError`` with words to show (and the
refused form's field messages); a service that does not answer raises
``ShopUnavailable``, a ``StorefrontError`` too.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async

from identity.clients import InvalidCredentials, UpstreamUnavailable
from identity.login_attempts import LoginLocked
from identity.services import TokenPair, token_obtain
from storefront import shop
from storefront.errors import ShopUnavailable, StorefrontError, problem_error


async def customer_sign_in(*, email: str, password: str, client: str) -> TokenPair:
    """A token pair for these credentials, counted like the token API's logins."""
    try:
        return await sync_to_async(token_obtain)(email=email, password=password, client=client)
    except InvalidCredentials as error:
        raise StorefrontError("The email or the password is wrong.") from error
    except LoginLocked as error:
        raise StorefrontError(
            f"Too many failed sign-ins. Please try again in {error.retry_after} seconds."
        ) from error
    except UpstreamUnavailable as error:
        raise ShopUnavailable("unavailable", error.detail) from error


async def customer_sign_up(*, email: str, password: str, name: str, client: str) -> TokenPair:
    """Register a customer with users_svc, then sign them in."""
    answer = await shop.shop_call(
        "POST",
        "/api/users/register/",
        body={"email": email, "password": password, "name": name},
        client=client,
    )
    if answer.status != 201:
        raise problem_error(answer.status, answer.body, fallback="The sign-up was refused.")
    return await customer_sign_in(email=email, password=password, client=client)


async def order_place(
    *, access: str, lines: dict[int, int], idempotency_key: str
) -> dict[str, Any]:
    """Place an order for these lines; the same key places it once, however often it is sent."""
    answer = await shop.shop_call(
        "POST",
        "/api/orders/",
        access=access,
        body={
            "lines": [
                {"product_id": product_id, "quantity": quantity}
                for product_id, quantity in lines.items()
            ]
        },
        idempotency_key=idempotency_key,
    )
    if answer.status not in (200, 201, 202):
        raise problem_error(answer.status, answer.body, fallback="The order was not accepted.")
    return answer.body


async def order_cancel(*, access: str, order_id: str) -> None:
    answer = await shop.shop_call("POST", f"/api/orders/{order_id}/cancel/", access=access)
    if not answer.ok:
        raise problem_error(answer.status, answer.body, fallback="The order cannot be cancelled.")


async def address_create(*, access: str, address: dict[str, Any]) -> dict[str, Any]:
    answer = await shop.shop_call("POST", "/api/users/me/addresses/", access=access, body=address)
    if answer.status != 201:
        raise problem_error(answer.status, answer.body, fallback="The address was refused.")
    return answer.body


async def address_delete(*, access: str, address_id: int) -> None:
    answer = await shop.shop_call("DELETE", f"/api/users/me/addresses/{address_id}/", access=access)
    if answer.status not in (204, 404):  # gone already is as good as deleted
        raise problem_error(answer.status, answer.body, fallback="The address was not deleted.")
