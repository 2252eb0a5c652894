"""The storefront's pages as a browser without JavaScript (and htmx's partial requests) see them."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from storefront.auth import SESSION_TOKENS
from storefront.cart import SESSION_CHECKOUT_KEY
from storefront.tests.conftest import PASSWORD, sign_in

HTMX = {"HTTP_HX_REQUEST": "true"}


def text(response) -> str:
    return response.content.decode()


def checkout_key(page: str) -> str:
    return re.search(r'name="checkout_key" value="([0-9a-f]+)"', page).group(1)


def fill_cart(browser: Client, *lines: tuple[int, int]) -> None:
    for product_id, quantity in lines:
        browser.post("/cart/add/", {"product_id": product_id, "quantity": quantity})


# Browsing


def test_the_product_list_shows_products_with_their_price_and_stock(browser, fake_shop):
    page = text(browser.get("/"))

    assert "<title>Products · eShop</title>" in page
    assert "Pixel phone" in page
    assert "€549.00" in page
    assert "Only 3 left" in page  # the flip phone
    assert "Out of stock" in page  # the gaming laptop


def test_every_filter_field_has_a_label(browser, fake_shop):
    page = text(browser.get("/"))

    for field in ("q", "category", "min_price", "max_price", "sort"):
        assert f'<label for="id_{field}">' in page


def test_search_category_prices_and_sorting_are_asked_of_the_catalog(browser, fake_shop):
    response = browser.get(
        "/",
        {
            "q": "phone",
            "category": "phones",
            "min_price": "10",
            "max_price": "600",
            "sort": "-price",
        },
    )

    query = fake_shop.calls[-1]["query"]
    assert query["search"] == "phone"
    assert query["category"] == "phones"
    assert (query["min_price"], query["max_price"]) == ("10", "600")
    assert query["ordering"] == "-price"
    page = text(response)
    assert page.index("Pixel phone") < page.index("Flip phone")
    assert "Release It" not in page


def test_a_filter_the_catalog_does_not_know_is_left_out(browser, fake_shop):
    browser.get("/", {"sort": "by-magic", "min_price": "cheap", "q": "phone"})

    query = fake_shop.calls[-1]["query"]
    assert "ordering" not in query
    assert "min_price" not in query
    assert query["search"] == "phone"


def test_htmx_gets_only_the_results_when_a_filter_changes(browser, fake_shop):
    response = browser.get("/", {"q": "release"}, **HTMX)

    page = text(response)
    assert "<html" not in page
    assert "Release It" in page
    assert "Pixel phone" not in page


def test_the_product_page_shows_the_stock_state(browser, fake_shop):
    low = text(browser.get("/products/2/"))
    out = text(browser.get("/products/3/"))

    assert "Only 3 left" in low
    assert "Add to cart" in low
    assert "Out of stock" in out
    assert "Add to cart" not in out


def test_a_product_not_in_the_catalog_is_a_page_not_json(browser, fake_shop):
    response = browser.get("/products/999/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    assert "This product is not in the catalog." in text(response)


def test_a_catalog_that_does_not_answer_is_said_in_words(browser, fake_shop):
    fake_shop.down.add("catalog")

    response = browser.get("/")

    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert "Part of the shop is unavailable right now" in text(response)


# The cart


def test_the_cart_keeps_quantities_and_adds_up_the_total(browser, fake_shop):
    fill_cart(browser, (1, 1), (4, 2), (4, 1))

    page = text(browser.get("/cart/"))

    assert 'value="3"' in page  # three of Release It
    assert "€672.00" in page  # 549.00 + 3 × 41.00


def test_a_quantity_can_be_changed_and_a_line_removed(browser, fake_shop):
    fill_cart(browser, (1, 1), (4, 1))

    browser.post("/cart/update/", {"product_id": 4, "quantity": 5})
    browser.post("/cart/update/", {"product_id": 1, "quantity": 1, "remove": "1"})
    page = text(browser.get("/cart/"))

    assert "Pixel phone" not in page
    assert "€205.00" in page


def test_adding_with_htmx_updates_the_cart_count_in_place(browser, fake_shop):
    response = browser.post("/cart/add/", {"product_id": 1, "quantity": 2}, **HTMX)

    page = text(response)
    assert 'id="cart-count">2<' in page
    assert 'hx-swap-oob="true"' in page
    assert "Added to your cart." in page


# Signing up and in


def test_a_new_customer_signs_up_and_is_signed_in_without_the_token_in_the_page(browser, fake_shop):
    response = browser.post(
        "/signup/", {"name": "Ann", "email": "ann@example.com", "password": PASSWORD}, follow=True
    )

    page = text(response)
    tokens = browser.session[SESSION_TOKENS]
    assert "Welcome, Ann!" in page
    assert "Sign out" in page
    assert tokens["user"]["email"] == "ann@example.com"
    assert tokens["access"] not in page
    assert tokens["refresh"] not in page
    assert tokens["access"] not in str(response.cookies)


def test_an_email_already_registered_is_said_on_its_field(browser, fake_shop):
    fake_shop.register("ann@example.com")

    response = browser.post(
        "/signup/", {"name": "Ann", "email": "ann@example.com", "password": PASSWORD}
    )

    assert response.status_code == 400
    assert "This email is taken." in text(response)
    assert SESSION_TOKENS not in browser.session


def test_a_wrong_password_is_said_in_words(browser, fake_shop):
    fake_shop.register("ann@example.com")

    response = browser.post("/signin/", {"email": "ann@example.com", "password": "nope nope"})

    assert response.status_code == 400
    assert "The email or the password is wrong." in text(response)


def test_signing_in_returns_to_the_page_asked_for(browser, fake_shop):
    fake_shop.register("ann@example.com")

    response = browser.post(
        "/signin/", {"email": "ann@example.com", "password": PASSWORD, "next": "/orders/"}
    )

    assert response["Location"] == "/orders/"


def test_signing_in_never_sends_the_browser_to_another_site(browser, fake_shop):
    fake_shop.register("ann@example.com")

    response = browser.post(
        "/signin/",
        {"email": "ann@example.com", "password": PASSWORD, "next": "https://evil.example/"},
    )

    assert response["Location"] == "/"


def test_signing_out_revokes_the_login_and_forgets_the_session(browser, fake_shop):
    from identity.models import RefreshTokenFamily

    sign_in(browser, fake_shop)
    fill_cart(browser, (1, 1))

    browser.post("/signout/")

    assert SESSION_TOKENS not in browser.session
    assert RefreshTokenFamily.objects.get().revoked_at is not None
    assert browser.get("/orders/")["Location"].startswith("/signin/")


def test_staff_see_a_link_to_the_admin_and_customers_do_not(fake_shop):
    staff, customer = Client(), Client()
    sign_in(staff, fake_shop, "boss@example.com", is_staff=True)
    sign_in(customer, fake_shop, "ann@example.com")

    assert 'href="/admin/"' in text(staff.get("/"))
    assert 'href="/admin/"' not in text(customer.get("/"))


# Checkout and orders


def test_checkout_needs_a_sign_in(browser, fake_shop):
    fill_cart(browser, (1, 1))

    response = browser.get("/checkout/")

    assert response.status_code == 302
    assert response["Location"] == "/signin/?next=%2Fcheckout%2F"


def test_checkout_places_the_cart_as_one_order_with_the_forms_idempotency_key(browser, fake_shop):
    sign_in(browser, fake_shop)
    fill_cart(browser, (1, 1), (4, 2))
    key = checkout_key(text(browser.get("/checkout/")))

    response = browser.post("/checkout/", {"checkout_key": key})

    (order_id,) = fake_shop.orders
    placed = [call for call in fake_shop.calls if call["method"] == "POST"]
    assert placed[-1]["key"] == key
    assert placed[-1]["body"] == {
        "lines": [{"product_id": 1, "quantity": 1}, {"product_id": 4, "quantity": 2}]
    }
    assert response["Location"] == f"/orders/{order_id}/"
    assert "Your cart is empty" in text(browser.get("/cart/"))


def test_the_same_checkout_sent_twice_places_one_order(browser, fake_shop):
    sign_in(browser, fake_shop)
    fill_cart(browser, (1, 1))
    key = checkout_key(text(browser.get("/checkout/")))

    first = browser.post("/checkout/", {"checkout_key": key})
    second = browser.post("/checkout/", {"checkout_key": key})

    assert len(fake_shop.orders) == 1
    assert first["Location"] == second["Location"]


def test_a_checkout_form_from_before_the_cart_changed_is_not_placed(browser, fake_shop):
    sign_in(browser, fake_shop)
    fill_cart(browser, (1, 1))
    key = checkout_key(text(browser.get("/checkout/")))
    fill_cart(browser, (4, 1))

    response = browser.post("/checkout/", {"checkout_key": key}, follow=True)

    assert fake_shop.orders == {}
    assert "Your cart changed: please check your order again." in text(response)


def test_an_order_service_that_does_not_answer_keeps_the_cart_and_the_key(browser, fake_shop):
    sign_in(browser, fake_shop)
    fill_cart(browser, (1, 1))
    key = checkout_key(text(browser.get("/checkout/")))
    fake_shop.down.add("orders")

    refused = browser.post("/checkout/", {"checkout_key": key})
    fake_shop.down.clear()
    retried = browser.post("/checkout/", {"checkout_key": key})

    assert refused.status_code == 503
    assert "Part of the shop is unavailable right now" in text(refused)
    assert browser.session.get(SESSION_CHECKOUT_KEY) is None  # used by the retry
    assert len(fake_shop.orders) == 1
    assert retried.status_code == 302


def test_checkout_warns_when_the_order_is_over_the_available_credit(browser, fake_shop):
    sign_in(browser, fake_shop)
    fill_cart(browser, (1, 2))  # 1098.00, over the 1000.00 limit

    page = text(browser.get("/checkout/"))

    assert "This order is more than your available credit" in page
    assert "€1,000.00" in page


def test_the_order_page_polls_its_status_section_while_it_is_pending(browser, fake_shop):
    sign_in(browser, fake_shop)
    fill_cart(browser, (1, 1))
    browser.post("/checkout/", {"checkout_key": checkout_key(text(browser.get("/checkout/")))})
    (order_id,) = fake_shop.orders

    page = text(browser.get(f"/orders/{order_id}/"))

    assert f'data-order-id="{order_id}"' in page
    assert f'data-status-url="/orders/{order_id}/status/"' in page
    assert 'hx-trigger="every 2s"' in page
    assert "Pending: checking stock and credit" in page
    assert "storefront/order_live.js" in page


def test_the_status_fragment_stops_polling_once_the_order_is_approved(browser, fake_shop):
    sign_in(browser, fake_shop)
    fill_cart(browser, (1, 1))
    browser.post("/checkout/", {"checkout_key": checkout_key(text(browser.get("/checkout/")))})
    (order_id,) = fake_shop.orders
    fake_shop.decide(order_id, "APPROVED")

    fragment = text(browser.get(f"/orders/{order_id}/status/", **HTMX))

    assert fragment.lstrip().startswith('<section id="order-status"')
    assert 'data-status="APPROVED"' in fragment
    assert "hx-trigger" not in fragment
    assert "Order approved" in fragment


def test_a_refused_order_says_why_in_words(browser, fake_shop):
    sign_in(browser, fake_shop)
    fill_cart(browser, (1, 2))
    browser.post("/checkout/", {"checkout_key": checkout_key(text(browser.get("/checkout/")))})
    (order_id,) = fake_shop.orders
    fake_shop.decide(order_id, "REJECTED", "credit_limit_exceeded")

    page = text(browser.get(f"/orders/{order_id}/"))

    assert "Your credit limit does not cover this order" in page
    assert "credit_limit_exceeded" not in page


def test_another_customers_order_is_not_shown(fake_shop):
    owner, stranger = Client(), Client()
    sign_in(owner, fake_shop, "ann@example.com")
    sign_in(stranger, fake_shop, "bob@example.com")
    fill_cart(owner, (1, 1))
    owner.post("/checkout/", {"checkout_key": checkout_key(text(owner.get("/checkout/")))})
    (order_id,) = fake_shop.orders

    response = stranger.get(f"/orders/{order_id}/")

    assert response.status_code == 404
    assert "There is no such order among yours." in text(response)


def test_my_orders_lists_the_customers_orders(browser, fake_shop):
    sign_in(browser, fake_shop)
    fill_cart(browser, (4, 1))
    browser.post("/checkout/", {"checkout_key": checkout_key(text(browser.get("/checkout/")))})
    (order_id,) = fake_shop.orders

    page = text(browser.get("/orders/"))

    assert f'href="/orders/{order_id}/"' in page
    assert "€41.00" in page


# The account


def test_my_account_shows_the_credit(browser, fake_shop):
    sign_in(browser, fake_shop)

    page = text(browser.get("/account/"))

    assert 'id="credit-available">€1,000.00<' in page


def test_an_address_is_added_and_the_services_refusal_shown_on_its_field(browser, fake_shop):
    sign_in(browser, fake_shop)
    address = {
        "recipient": "Ann",
        "line1": "1 Main Street",
        "postal_code": "75001",
        "city": "Paris",
        "country": "FR",
    }

    saved = browser.post("/account/addresses/", address, follow=True)
    refused = browser.post("/account/addresses/", {**address, "country": "F1"})

    assert "1 Main Street" in text(saved)
    assert refused.status_code == 400
    assert "Use two letters." in text(refused)


@pytest.mark.parametrize("path", ["/orders/", "/account/", "/account/addresses/", "/checkout/"])
def test_pages_of_ones_own_send_a_stranger_to_sign_in(browser, fake_shop, path):
    response = browser.get(path)

    assert response.status_code == 302
    assert response["Location"].startswith("/signin/?next=")


def test_the_storefronts_pages_are_not_in_the_api_document():
    """The contract fuzzing (tests/test_contract_fuzz.py) walks the API document: HTML pages
    must not end up in it."""
    from drf_spectacular.generators import SchemaGenerator

    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]

    assert "/api/auth/token/" in paths
    pages = ("/products/", "/cart/", "/checkout/", "/orders/", "/account/", "/sign")
    assert "/" not in paths
    assert not [path for path in paths if path.startswith(pages)]


# The tokens in the session


def expire_access_token(browser: Client) -> dict:
    """The session's access token made due for a refresh; the pair it held."""
    session = browser.session
    tokens = session[SESSION_TOKENS]
    session[SESSION_TOKENS] = {**tokens, "expires_at": 0}
    session.save()
    return tokens


def test_an_access_token_about_to_expire_is_refreshed_and_kept_in_the_session(browser, fake_shop):
    sign_in(browser, fake_shop)
    before = expire_access_token(browser)

    response = browser.get("/account/")

    after = browser.session[SESSION_TOKENS]
    assert response.status_code == 200
    assert after["refresh"] != before["refresh"]
    assert after["expires_at"] > 0


def test_a_session_saved_with_the_spent_pair_gets_its_successor_not_a_second_refresh(
    browser, fake_shop
):
    """A request that read the session before another refreshed it may save the spent
    pair back; using it again would revoke the whole login."""
    from identity.models import IssuedRefreshToken, RefreshTokenFamily

    sign_in(browser, fake_shop)
    spent = expire_access_token(browser)
    browser.get("/account/")
    successor = browser.session[SESSION_TOKENS]
    session = browser.session
    session[SESSION_TOKENS] = {**spent, "expires_at": 0}  # the stale write
    session.save()

    response = browser.get("/account/")

    assert response.status_code == 200
    assert browser.session[SESSION_TOKENS]["refresh"] == successor["refresh"]
    assert IssuedRefreshToken.objects.count() == 2  # the sign-in's and one refresh
    assert RefreshTokenFamily.objects.get().revoked_at is None


def test_a_revoked_login_signs_the_session_out(browser, fake_shop):
    from identity.services import token_revoke

    sign_in(browser, fake_shop)
    tokens = expire_access_token(browser)
    token_revoke(refresh=tokens["refresh"])

    response = browser.get("/account/")

    assert response["Location"] == "/signin/?next=%2Faccount%2F"
    assert SESSION_TOKENS not in browser.session


def test_an_approved_order_can_be_cancelled_from_its_status_section(browser, fake_shop):
    sign_in(browser, fake_shop)
    fill_cart(browser, (1, 1))
    browser.post("/checkout/", {"checkout_key": checkout_key(text(browser.get("/checkout/")))})
    (order_id,) = fake_shop.orders
    fake_shop.decide(order_id, "APPROVED")
    fragment = text(browser.get(f"/orders/{order_id}/status/", **HTMX))

    response = browser.post(f"/orders/{order_id}/cancel/", follow=True)

    assert f'action="/orders/{order_id}/cancel/"' in fragment
    assert fake_shop.orders[order_id]["cancel_requested"] is True
    assert "Cancellation requested" in text(response)
