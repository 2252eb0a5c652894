"""The operators' status page in the gateway's admin, seen in headless Chromium as a person
sees it: every service ready, then one stopped and shown DOWN with its circuit open.

Needs Debian's ``chromium`` (/usr/bin/chromium) and the ``playwright`` package; Playwright's
own browser download is never used. Screenshots go to var/test-results/status-page*.png.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.harness import REPO, RunningService, ServiceLauncher, shop_start, wait_until

pytestmark = pytest.mark.system

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = REPO / "var" / "test-results"
STAFF, STAFF_PASSWORD = "operator", "status page at night"
PASSWORD = "correct horse battery"
SERVICES = ("gateway", "catalog", "users", "orders")


@dataclass
class Shop:
    gateway: RunningService
    catalog: RunningService
    users: RunningService
    orders: RunningService
    approved_order: str
    open_order: str

    def url(self, path: str) -> str:
        return f"{self.gateway.url}{path}"


def customer(gateway: RunningService) -> dict[str, str]:
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    credentials = {"email": email, "password": PASSWORD}
    assert httpx.post(f"{gateway.url}/api/users/register/", json=credentials).status_code == 201
    token = httpx.post(f"{gateway.url}/api/auth/token/", json=credentials).json()["access"]
    return {"Authorization": f"Bearer {token}"}


def place(gateway: RunningService, headers: dict[str, str], product_id: int) -> str:
    body = {"lines": [{"product_id": product_id, "quantity": 1}]}
    response = httpx.post(f"{gateway.url}/api/orders/", json=body, headers=headers)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def order_status(gateway: RunningService, headers: dict[str, str], order_id: str) -> str:
    return httpx.get(f"{gateway.url}/api/orders/{order_id}/", headers=headers).json()["status"]


@pytest.fixture(scope="module")
def shop(module_services: ServiceLauncher) -> Shop:
    """The whole shop with one order approved and one whose saga waits for catalog's worker."""
    started = shop_start(
        module_services,
        consumers=False,
        gateway_env={
            # Two failed calls open a circuit, which then stays open while we look.
            "GATEWAY_BREAKER_FAIL_MAX": "2",
            "GATEWAY_BREAKER_RESET_TIMEOUT": "120",
        },
    )
    gateway, catalog, users, orders = (started[name] for name in SERVICES)
    gateway.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; get_user_model().objects"
        f".create_superuser({STAFF!r}, 'operator@example.com', {STAFF_PASSWORD!r})",
    )
    headers = customer(gateway)
    approved = place(gateway, headers, product_id=6)
    assert wait_until(lambda: order_status(gateway, headers, approved) == "APPROVED", 30)
    # With catalog's worker away, the next saga waits for its stock reply: an open saga.
    catalog.stop_workers()
    waiting = place(gateway, headers, product_id=6)
    return Shop(gateway, catalog, users, orders, approved_order=approved, open_order=waiting)


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


@pytest.fixture
def page(browser: Browser, shop: Shop) -> Iterator[Page]:
    """A staff member signed in to the gateway's admin, as on the login form."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.goto(shop.url("/admin/"))
    page.fill("#id_username", STAFF)
    page.fill("#id_password", STAFF_PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#user-tools")).to_contain_text(STAFF)
    try:
        yield page
    finally:
        context.close()


def card(page: Page, service: str):
    return page.locator(f'.card[data-service="{service}"]')


def instance_row(page: Page, service: str):
    return page.locator(f'#instances tr[data-service="{service}"]')


def test_the_admin_index_leads_staff_to_the_status_page(page: Page, shop: Shop):
    page.click("text=System status")

    expect(page).to_have_url(shop.url("/admin/status/"))
    expect(page.locator("h1")).to_have_text("System status")


def test_the_status_page_needs_a_staff_sign_in(browser: Browser, shop: Shop):
    context = browser.new_context()
    try:
        anonymous = context.new_page()
        anonymous.goto(shop.url("/admin/status/"))

        expect(anonymous).to_have_url(re.compile(r"/admin/login/\?next=/admin/status/$"))
    finally:
        context.close()


def test_every_service_is_ready_with_its_circuits_closed_and_the_sagas_listed(
    page: Page, shop: Shop
):
    page.goto(shop.url("/admin/status/"))

    for service in SERVICES:
        expect(card(page, service)).to_contain_text("READY")
        expect(card(page, service)).to_have_attribute("data-state", "READY")
    for service in ("catalog", "users", "orders"):
        expect(instance_row(page, service).locator(".breaker")).to_have_text("closed")
    open_saga = page.locator(f'#sagas tr[data-order="{shop.open_order}"]')
    expect(open_saga).to_contain_text("reserving_stock")
    expect(open_saga.locator("a")).to_have_attribute(
        "href", f"{shop.orders.url}/admin/orders/orderevent/?order_id={shop.open_order}"
    )
    # catalog's worker is away: the stock command waits in its queue.
    commands_waiting = page.locator('#backbone tr[data-service="catalog"] td').nth(1)
    expect(commands_waiting).to_have_text("1", timeout=15_000)
    approved_per_minute = page.locator('#orders tr[data-outcome="approved"] .per-minute')
    expect(approved_per_minute).not_to_have_text("0.00")
    page.screenshot(path=str(SCREENSHOTS / "status-page.png"), full_page=True)


def test_a_stopped_service_is_shown_down_with_its_circuit_open(page: Page, shop: Shop):
    """Runs last in this module: it stops users_svc."""
    headers = customer(shop.gateway)
    page.goto(shop.url("/admin/status/"))
    read_at = page.locator("#generated-at").inner_text()

    shop.users.stop()

    def users_circuit_open() -> bool:
        httpx.get(shop.url("/api/users/me/"), headers=headers)  # fails and counts
        data = page.request.get(shop.url("/admin/status/?format=json")).json()
        users = next(row for row in data["services"] if row["name"] == "users")
        return users["instances"][0]["breaker"] == "open"

    assert wait_until(users_circuit_open, timeout=30, interval=0.2)
    # No reload: the page refreshes itself and shows it.
    expect(card(page, "users")).to_have_attribute("data-state", "DOWN", timeout=20_000)
    assert page.locator("#generated-at").inner_text() != read_at
    users_row = instance_row(page, "users")
    expect(users_row.locator(".readiness")).to_have_text("DOWN")
    expect(users_row.locator(".breaker")).to_contain_text("open")
    expect(users_row).to_contain_text("refused")
    expect(page.locator('#backbone tr[data-service="users"]')).to_contain_text("no figures")
    expect(page.locator("#problems")).to_contain_text("users")
    for service in ("gateway", "catalog", "orders"):
        expect(card(page, service)).to_have_attribute("data-state", "READY")
    page.screenshot(path=str(SCREENSHOTS / "status-page-users-down.png"), full_page=True)
