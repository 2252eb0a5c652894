"""The storefront's pages: thin async views over storefront.selectors and storefront.services.

Async because every page waits on the services through the worker's proxy
runtime (storefront/shop.py) on its event loop. Every page works without
JavaScript; with htmx (served from django-htmx's package, no CDN) the product
filters, adding to the cart and the order status update in place.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from identity.throttles import client_address
from storefront import cart, selectors, services
from storefront.auth import (
    session_access_token,
    session_customer,
    session_sign_in,
    session_sign_out,
)
from storefront.errors import (
    FINAL_STATUSES,
    HISTORY_WORDS,
    STATUS_WORDS,
    ShopUnavailable,
    StorefrontError,
    rejection_words,
)
from storefront.forms import (
    AddressForm,
    CheckoutForm,
    ProductFilterForm,
    QuantityForm,
    SignInForm,
    SignUpForm,
)

SESSION_FLASH = "storefront_flash"
View = Callable[..., Awaitable[HttpResponse]]


def _htmx(request: HttpRequest) -> bool:
    """A request htmx made to swap part of a page (not a whole-page navigation)."""
    details = getattr(request, "htmx", None)
    return bool(details) and not details.boosted


async def _flash(request: HttpRequest, message: str) -> None:
    """A message for the next page shown (after a redirect)."""
    await request.session.aset(SESSION_FLASH, message)


async def _page(
    request: HttpRequest, template: str, context: dict[str, Any], *, status: int = 200
) -> HttpResponse:
    """A whole page: the header needs who is signed in and the cart's size."""
    customer = await session_customer(request)
    base = {
        "customer": customer,
        "cart_count": await cart.cart_count(request.session),
        "flash": await request.session.apop(SESSION_FLASH, ""),
        "currency": settings.CURRENCY,
    }
    return render(request, template, {**base, **context}, status=status)


def _shop_errors(view: View) -> View:
    """A service that refuses or does not answer becomes a page saying so in words."""

    @functools.wraps(view)
    async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return await view(request, *args, **kwargs)
        except StorefrontError as error:
            status = 503 if isinstance(error, ShopUnavailable) else 400
            if _htmx(request):
                # No swap on an error status: the part of the page stays as it was
                # (a polled order status keeps polling).
                return HttpResponse(error.message, status=status, content_type="text/plain")
            return await _page(
                request, "storefront/error.html", {"message": error.message}, status=status
            )

    return wrapper


def _signed_in(view: View) -> View:
    """Pages of one's own: the view gets a valid access token, else the sign-in page."""

    @functools.wraps(view)
    async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        access = await session_access_token(request)
        if access is None:
            target = reverse("storefront:signin") + "?" + urlencode({"next": request.path})
            if _htmx(request):
                return HttpResponseClientRedirect(target)
            return redirect(target)
        return await view(request, access, *args, **kwargs)

    return wrapper


def _next_url(request: HttpRequest, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


# Browsing


@require_GET
@_shop_errors
async def product_list_view(request: HttpRequest) -> HttpResponse:
    categories = await selectors.category_list()
    form = ProductFilterForm(request.GET, categories=categories)
    filters = form.filters()
    page = await selectors.product_list(**filters)
    query = request.GET.copy()
    query.pop("page", None)
    context = {"form": form, "page": page, "query": query.urlencode(), "categories": categories}
    if _htmx(request):
        return render(request, "storefront/_results.html", context)
    return await _page(request, "storefront/product_list.html", context)


@require_GET
@_shop_errors
async def product_detail_view(request: HttpRequest, product_id: int) -> HttpResponse:
    product = await selectors.product_get(product_id=product_id)
    if product is None:
        return await _page(
            request,
            "storefront/error.html",
            {"message": "This product is not in the catalog."},
            status=404,
        )
    in_cart = (await cart.cart_get(request.session)).get(product_id, 0)
    return await _page(
        request, "storefront/product_detail.html", {"product": product, "in_cart": in_cart}
    )


# The cart


@require_GET
@_shop_errors
async def cart_view(request: HttpRequest) -> HttpResponse:
    lines = await selectors.cart_lines(cart=await cart.cart_get(request.session))
    total = sum((line.subtotal for line in lines), Decimal("0.00"))
    return await _page(request, "storefront/cart.html", {"lines": lines, "total": total})


@require_POST
async def cart_add_view(request: HttpRequest) -> HttpResponse:
    form = QuantityForm(request.POST)
    message = "That quantity cannot be added."
    if form.is_valid() and form.cleaned_data["quantity"] > 0:
        added = await cart.cart_add(
            request.session,
            product_id=form.cleaned_data["product_id"],
            quantity=form.cleaned_data["quantity"],
        )
        message = "Added to your cart." if added else "Your cart is full (50 products at most)."
    if _htmx(request):
        context = {"cart_count": await cart.cart_count(request.session), "message": message}
        return render(request, "storefront/_cart_added.html", context)
    await _flash(request, message)
    return redirect(_next_url(request, reverse("storefront:cart")))


@require_POST
async def cart_update_view(request: HttpRequest) -> HttpResponse:
    form = QuantityForm(request.POST)
    if form.is_valid():
        quantity = 0 if "remove" in request.POST else form.cleaned_data["quantity"]
        await cart.cart_set(
            request.session, product_id=form.cleaned_data["product_id"], quantity=quantity
        )
    else:
        await _flash(request, "Quantities are whole numbers from 0 to 1000.")
    return redirect("storefront:cart")


# Checkout and orders


async def _checkout_page(
    request: HttpRequest, access: str, *, error: str = "", status: int = 200
) -> HttpResponse:
    lines, customer, addresses = await asyncio.gather(
        selectors.cart_lines(cart=await cart.cart_get(request.session)),
        selectors.customer_get(access=access),
        selectors.address_list(access=access),
    )
    if not lines:
        return redirect("storefront:cart")
    total = sum((line.subtotal for line in lines), Decimal("0.00"))
    key = await cart.checkout_key_get(request.session)
    context = {
        "lines": lines,
        "total": total,
        "credit_available": Decimal(customer["credit_available"]),
        "over_credit": total > Decimal(customer["credit_available"]),
        "address": next((a for a in addresses if a.get("is_default")), None)
        or (addresses[0] if addresses else None),
        "form": CheckoutForm(initial={"checkout_key": key}),
        "error": error,
    }
    return await _page(request, "storefront/checkout.html", context, status=status)


@require_http_methods(["GET", "POST"])
@_shop_errors
@_signed_in
async def checkout_view(request: HttpRequest, access: str) -> HttpResponse:
    if request.method == "GET":
        return await _checkout_page(request, access)
    form = CheckoutForm(request.POST)
    key = form.cleaned_data["checkout_key"] if form.is_valid() else ""
    # A repeated submission of a checkout that already placed its order (a double click).
    if key and (placed := await cart.checkout_placed_order(request.session, key=key)):
        return redirect("storefront:order", order_id=placed)
    lines = await cart.cart_get(request.session)
    if not lines:
        return redirect("storefront:cart")
    if not key or key != await request.session.aget(cart.SESSION_CHECKOUT_KEY):
        await _flash(request, "Your cart changed: please check your order again.")
        return redirect("storefront:checkout")
    try:
        order = await services.order_place(access=access, lines=lines, idempotency_key=key)
    except StorefrontError as error:
        if not isinstance(error, ShopUnavailable):
            # Refused: the next attempt is a new checkout. (A timeout keeps the key:
            # trying again returns the order if the first attempt did place it.)
            await request.session.apop(cart.SESSION_CHECKOUT_KEY, None)
        status = 503 if isinstance(error, ShopUnavailable) else 400
        return await _checkout_page(request, access, error=error.message, status=status)
    await cart.checkout_complete(request.session, key=key, order_id=str(order["id"]))
    return redirect("storefront:order", order_id=order["id"])


@require_GET
@_shop_errors
@_signed_in
async def order_list_view(request: HttpRequest, access: str) -> HttpResponse:
    page = request.GET.get("page", "1")
    orders = await selectors.order_list(access=access, page=int(page) if page.isdigit() else 1)
    for order in orders["results"]:
        order["status_words"] = STATUS_WORDS.get(order["status"], order["status"])
        order["created"] = parse_datetime(order["created_at"])
    return await _page(request, "storefront/order_list.html", {"orders": orders})


def _status_context(order: dict[str, Any]) -> dict[str, Any]:
    """What the order's status section shows: its status, why it was refused, its history."""
    status = order["status"]
    return {
        "order": order,
        "status": status,
        "status_words": STATUS_WORDS.get(status, status),
        "final": status in FINAL_STATUSES,
        "refusal": rejection_words(order.get("rejection_reason", ""))
        if status == "REJECTED"
        else "",
        "history": [
            {
                "type": entry["type"],
                "words": HISTORY_WORDS.get(entry["type"], entry["type"]),
                "at": parse_datetime(entry["at"]),
            }
            for entry in order.get("history", [])
        ],
    }


@require_GET
@_shop_errors
@_signed_in
async def order_detail_view(request: HttpRequest, access: str, order_id: Any) -> HttpResponse:
    order = await selectors.order_get(access=access, order_id=str(order_id))
    if order is None:
        return await _page(
            request,
            "storefront/error.html",
            {"message": "There is no such order among yours."},
            status=404,
        )
    products = await selectors.products_get(
        product_ids=[int(line["product_id"]) for line in order["lines"]]
    )
    lines = []
    for line in order["lines"]:
        product = products.get(int(line["product_id"]))
        # Prices are the order's once its stock is set aside; until then the catalog's.
        price = line.get("unit_price") or (product or {}).get("price")
        lines.append(
            {
                **line,
                "product": product,
                "subtotal": Decimal(price) * line["quantity"] if price is not None else None,
            }
        )
    total = order.get("total")
    if total is None and all(line["subtotal"] is not None for line in lines):
        total = sum((line["subtotal"] for line in lines), Decimal("0.00"))
    context = {
        **_status_context(order),
        "lines": lines,
        "total": total,
        "created": parse_datetime(order["created_at"]),
    }
    return await _page(request, "storefront/order_detail.html", context)


@require_GET
@_shop_errors
@_signed_in
async def order_status_view(request: HttpRequest, access: str, order_id: Any) -> HttpResponse:
    """The order's status section alone (htmx polling, and the push channel's script)."""
    order = await selectors.order_get(access=access, order_id=str(order_id))
    if order is None:
        return HttpResponse("There is no such order among yours.", status=404)
    return render(request, "storefront/_order_status.html", _status_context(order))


@require_POST
@_shop_errors
@_signed_in
async def order_cancel_view(request: HttpRequest, access: str, order_id: Any) -> HttpResponse:
    await services.order_cancel(access=access, order_id=str(order_id))
    await _flash(request, "Cancellation requested: your stock and credit will be returned.")
    return redirect("storefront:order", order_id=order_id)


# The account


@require_GET
@_shop_errors
@_signed_in
async def account_view(request: HttpRequest, access: str) -> HttpResponse:
    customer = await selectors.customer_get(access=access)
    limit, available = Decimal(customer["credit_limit"]), Decimal(customer["credit_available"])
    context = {
        "profile": customer,
        "credit_limit": limit,
        "credit_available": available,
        "credit_used": limit - available,
        "credit_percent": int((limit - available) * 100 / limit) if limit else 0,
    }
    return await _page(request, "storefront/account.html", context)


@require_http_methods(["GET", "POST"])
@_shop_errors
@_signed_in
async def address_list_view(request: HttpRequest, access: str) -> HttpResponse:
    form = AddressForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                await services.address_create(access=access, address=form.cleaned_data)
            except StorefrontError as error:
                if isinstance(error, ShopUnavailable):
                    raise
                _form_errors(form, error)
                status = 400
            else:
                await _flash(request, "Address saved.")
                return redirect("storefront:addresses")
        else:
            status = 400
    addresses = await selectors.address_list(access=access)
    return await _page(
        request, "storefront/addresses.html", {"addresses": addresses, "form": form}, status=status
    )


@require_POST
@_shop_errors
@_signed_in
async def address_delete_view(request: HttpRequest, access: str, address_id: int) -> HttpResponse:
    await services.address_delete(access=access, address_id=address_id)
    await _flash(request, "Address deleted.")
    return redirect("storefront:addresses")


def _form_errors(form: Any, error: StorefrontError) -> None:
    """The service's refusal on the form: on its fields where it names them."""
    for field, messages in error.fields.items():
        for message in messages:
            form.add_error(field if field in form.fields else None, message)
    if not error.fields:
        form.add_error(None, error.message)


# Signing up, in and out


@require_http_methods(["GET", "POST"])
@_shop_errors
async def sign_up_view(request: HttpRequest) -> HttpResponse:
    form = SignUpForm(request.POST or None)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                pair = await services.customer_sign_up(
                    **form.cleaned_data, client=client_address(request)
                )
            except StorefrontError as error:
                if isinstance(error, ShopUnavailable):
                    raise
                _form_errors(form, error)
            else:
                customer = await session_sign_in(request, pair=pair)
                await _flash(request, f"Welcome, {customer.display_name}!")
                return redirect(_next_url(request, reverse("storefront:products")))
    context = {"form": form, "next": _next_url(request, "")}
    return await _page(request, "storefront/sign_up.html", context, status=status)


@require_http_methods(["GET", "POST"])
@_shop_errors
async def sign_in_view(request: HttpRequest) -> HttpResponse:
    form = SignInForm(request.POST or None)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                pair = await services.customer_sign_in(
                    **form.cleaned_data, client=client_address(request)
                )
            except StorefrontError as error:
                if isinstance(error, ShopUnavailable):
                    raise
                form.add_error(None, error.message)
            else:
                customer = await session_sign_in(request, pair=pair)
                await _flash(request, f"Signed in as {customer.email}.")
                return redirect(_next_url(request, reverse("storefront:products")))
    context = {"form": form, "next": _next_url(request, "")}
    return await _page(request, "storefront/sign_in.html", context, status=status)


@require_POST
async def sign_out_view(request: HttpRequest) -> HttpResponse:
    await session_sign_out(request)
    await _flash(request, "You are signed out.")
    return redirect("storefront:products")
