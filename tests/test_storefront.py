"""The storefront in headless Chromium, as a shopper uses it, against the whole shop running.

Needs Debian's ``chromium`` (/usr/bin/chromium) and the ``playwright`` package; Playwright's
own browser download is never used. Screenshots go to var/test-results/storefront-*.png.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.harness import RunningService, ServiceLauncher, shop_start
from tests.test_status_page import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS

pytestmark = pytest.mark.system

PASSWORD = "correct horse battery"
SAGA_TIMEOUT_MS = 45_000  # the saga's three steps on a loaded 2-core machine
ORDER_URL = re.compile(r"/orders/[0-9a-f-]{36}/$")
PHONE = {"width": 375, "height": 812}


@pytest.fixture(scope="module")
def gateway(module_services: ServiceLauncher) -> RunningService:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return shop_start(module_services)["gateway"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


def new_page(browser: Browser, gateway: RunningService, **options) -> Page:
    context = browser.new_context(
        base_url=gateway.url, viewport=options.pop("viewport", {"width": 1280, "height": 860})
    )
    context.set_default_timeout(15_000)
    return context.new_page()


@pytest.fixture
def page(browser: Browser, gateway: RunningService) -> Iterator[Page]:
    page = new_page(browser, gateway)
    try:
        yield page
    finally:
        page.context.close()


def sign_up(page: Page, name: str = "Ann Shopper") -> str:
    """A new customer, through the sign-up form; signed in afterwards."""
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    page.goto("/signup/")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.locator("#flash")).to_contain_text(f"Welcome, {name}!")
    return email


def settled(page: Page) -> None:
    """htmx has no request in flight and has finished swapping (a click would land on the
    results about to be replaced otherwise)."""
    page.wait_for_function(
        "!document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')"
    )


def add_to_cart(page: Page, product_name: str, count_after: int) -> None:
    settled(page)
    card = page.locator(".product-card").filter(has_text=product_name)
    card.get_by_role("button", name=re.compile("Add to cart")).click()
    expect(page.locator("#cart-count")).to_have_text(str(count_after))


def search(page: Page, words: str) -> None:
    page.goto("/")
    page.get_by_label("Search").fill(words)
    page.get_by_label("Search").press("Enter")
    expect(page).to_have_url(re.compile(r"\?q="))


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"storefront-{name}.png"), full_page=True)


def orders_of(gateway: RunningService, email: str) -> list[dict]:
    """The customer's orders as the orders API lists them."""
    credentials = {"email": email, "password": PASSWORD}
    token = httpx.post(f"{gateway.url}/api/auth/token/", json=credentials).json()["access"]
    listing = httpx.get(f"{gateway.url}/api/orders/", headers={"Authorization": f"Bearer {token}"})
    assert listing.status_code == 200, listing.text
    return listing.json()["results"]


def test_a_new_customer_signs_up_browses_filters_orders_and_sees_the_order_approved(
    page: Page, gateway: RunningService
):
    page.goto("/")
    expect(page.locator(".product-card").first).to_be_visible()
    shot(page, "products")
    sign_up(page)

    # Filters: a category, then a price range, the results changing in place (htmx).
    page.goto("/")
    page.get_by_label("Category").select_option(label="Books")
    expect(page).to_have_url(re.compile(r"category=books"))
    expect(page.locator(".product-card").filter(has_text="Release It!")).to_be_visible()
    expect(page.locator(".product-card").filter(has_text="Pixel Aurora")).to_have_count(0)
    page.get_by_label("Highest price").fill("42")
    page.get_by_label("Highest price").press("Enter")
    expect(page.locator(".product-card").filter(has_text="Designing Data")).to_have_count(0)
    add_to_cart(page, "Release It!", 1)
    page.get_by_label("Sort by").select_option(label="Price, high to low")
    page.get_by_label("Highest price").fill("")
    page.get_by_label("Highest price").press("Enter")
    expect(page.locator(".product-card").first).to_contain_text("Enterprise Integration")
    add_to_cart(page, "Designing Data-Intensive Applications", 2)

    page.goto("/cart/")
    expect(page.locator("#cart-total")).to_have_text("€86.00")  # 41.00 + 45.00
    shot(page, "cart")
    page.get_by_role("link", name="Checkout").click()
    shot(page, "checkout")
    page.get_by_role("button", name=re.compile("Place order")).click()
    expect(page).to_have_url(ORDER_URL)
    page.evaluate("window.stillTheSamePage = true")

    status = page.locator("#order-status")
    expect(status).to_have_attribute("data-status", "APPROVED", timeout=SAGA_TIMEOUT_MS)
    expect(status).to_contain_text("Order approved")
    assert page.evaluate("window.stillTheSamePage") is True  # no reload happened
    shot(page, "order")


def test_an_order_over_the_credit_limit_shows_the_refusal_in_words(
    page: Page, gateway: RunningService
):
    sign_up(page)
    search(page, "Studio 16")
    add_to_cart(page, "Studio 16 creator laptop", 1)  # 2199.00, over the 1000.00 limit
    page.goto("/checkout/")
    expect(page.locator("#over-credit")).to_be_visible()
    page.get_by_role("button", name=re.compile("Place order")).click()

    refusal = page.locator("#order-refusal")
    expect(refusal).to_have_text(
        re.compile("Your credit limit does not cover this order"), timeout=SAGA_TIMEOUT_MS
    )
    expect(page.locator("#order-status-word")).to_have_text("Refused")
    expect(page.locator("body")).not_to_contain_text("credit_limit_exceeded")
    shot(page, "order-refused")


def test_a_double_click_on_checkout_places_one_order(page: Page, gateway: RunningService):
    email = sign_up(page)
    search(page, "Pragmatic")
    add_to_cart(page, "The Pragmatic Programmer", 1)
    page.goto("/checkout/")

    page.get_by_role("button", name=re.compile("Place order")).dblclick()

    expect(page).to_have_url(ORDER_URL)
    orders = orders_of(gateway, email)
    assert len(orders) == 1
    assert page.url.endswith(f"/orders/{orders[0]['id']}/")


def test_two_submissions_of_one_checkout_racing_each_other_place_one_order(
    page: Page, gateway: RunningService
):
    """What a double click sends when the browser does not drop the second submission
    (Chromium does): the same form twice at once, both reaching the server."""
    email = sign_up(page)
    search(page, "Chess")
    add_to_cart(page, "Chess set, walnut", 1)
    page.goto("/checkout/")

    landed = page.evaluate(
        """async () => {
            const form = document.querySelector('#checkout-form');
            const send = () => fetch(form.action, {method: 'POST', body: new FormData(form)});
            const answers = await Promise.all([send(), send()]);
            return answers.map(answer => [answer.status, answer.url]);
        }"""
    )

    orders = orders_of(gateway, email)
    assert len(orders) == 1
    order_url = f"{gateway.url}/orders/{orders[0]['id']}/"
    assert landed == [[200, order_url], [200, order_url]]


def test_the_pages_fit_a_375_px_phone_and_work_from_the_keyboard(
    browser: Browser, gateway: RunningService
):
    page = new_page(browser, gateway, viewport=PHONE)
    try:
        page.goto("/")
        page.keyboard.press("Tab")
        expect(page.locator(":focus")).to_have_text("Skip to content")
        page.keyboard.press("Enter")
        expect(page.locator(":focus")).to_have_attribute("id", "main")
        sign_up(page, name="Pat Phone")
        search(page, "Chess")
        add_to_cart(page, "Chess set, walnut", 1)
        page.goto("/checkout/")
        page.get_by_role("button", name=re.compile("Place order")).click()
        expect(page).to_have_url(ORDER_URL)
        order_path = page.url.removeprefix(gateway.url)
        widths = {}
        for path in (
            "/",
            "/products/1/",
            "/cart/",
            "/orders/",
            order_path,
            "/account/",
            "/account/addresses/",
            "/signup/",
        ):
            page.goto(path)
            widths[path] = page.evaluate("document.documentElement.scrollWidth")
            if path in ("/", order_path):
                shot(page, "phone-order" if path == order_path else "phone-products")
        assert widths == dict.fromkeys(widths, PHONE["width"])
    finally:
        page.context.close()
