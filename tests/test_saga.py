"""The order saga over RabbitMQ with every participant a real process: gateway, catalog,
users, orders and their Celery workers."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import httpx
import jwt
import pytest

from tests.harness import RunningService, ServiceLauncher, shop_start, wait_until

pytestmark = pytest.mark.system

PASSWORD = "correct horse battery"


@dataclass
class Shop:
    gateway: RunningService
    catalog: RunningService
    users: RunningService
    orders: RunningService

    def url(self, path: str) -> str:
        return f"{self.gateway.url}{path}"


@pytest.fixture(scope="module")
def shop(module_services: ServiceLauncher) -> Shop:
    started = shop_start(
        module_services,
        # Nothing exports here: without a sampler asked for, no process would be
        # instrumented, and the trace test below follows ids from process to process.
        env={"OTEL_TRACES_SAMPLER": "parentbased_always_off"},
        orders_env={"SAGA_STEP_TIMEOUT_SECONDS": "5"},
        gateway_env={
            "GATEWAY_RATE_LIMIT_AUTHENTICATED": "100000/min",
            "LOGIN_RATE_PER_IP": "100000/min",
        },
    )
    return Shop(**started)


def customer(shop: Shop) -> dict[str, str]:
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    httpx.post(shop.url("/api/users/register/"), json={"email": email, "password": PASSWORD})
    token = httpx.post(
        shop.url("/api/auth/token/"), json={"email": email, "password": PASSWORD}
    ).json()["access"]
    return {"Authorization": f"Bearer {token}"}


def quick_customers(shop: Shop, count: int) -> list[dict[str, str]]:
    """Many customers at once: created in users_svc without a password (no slow hashing) and
    given tokens signed with the gateway's own key, as a login would."""
    created = (
        shop.users.manage(
            "shell",
            "-c",
            "import uuid; from accounts.models import User; "
            f"print(*[User.objects.create_user(f'{{uuid.uuid4().hex}}@example.com').pk "
            f"for _ in range({count})], sep=',')",
        )
        .stdout.strip()
        .splitlines()[-1]
        .split(",")
    )
    assert len(created) == count
    return [signed_headers(shop, user_id) for user_id in created]


def signed_headers(shop: Shop, user_id: str, *, staff: bool = False) -> dict[str, str]:
    """An access token for ``user_id`` signed with the gateway's own key, as a login makes."""
    key = (shop.gateway.var_dir / "jwt" / "private.pem").read_bytes()
    kid = httpx.get(shop.url("/.well-known/jwks.json")).json()["keys"][0]["kid"]
    now = int(time.time())
    claims = {
        "sub": user_id,
        "email": "",
        "name": "",
        "is_staff": staff,
        "roles": ["staff"] if staff else ["customer"],
        "token_type": "access",
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "iss": "eshop-gateway",
        "aud": "eshop",
    }
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})
    return {"Authorization": f"Bearer {token}"}


def product(shop: Shop, product_id: int) -> dict:
    return httpx.get(shop.url(f"/api/catalog/products/{product_id}/")).json()


def credit(shop: Shop, headers: dict[str, str]) -> str:
    return httpx.get(shop.url("/api/users/me/"), headers=headers).json()["credit_available"]


def settled(shop: Shop, headers: dict[str, str], order_id: str, status: str = "") -> dict:
    """The order once the saga has decided (or reached ``status``), within 30 s."""
    found: dict = {}

    def done() -> bool:
        found.update(httpx.get(shop.url(f"/api/orders/{order_id}/"), headers=headers).json())
        return found["status"] == status if status else found["status"] != "PENDING"

    assert wait_until(done, timeout=30, interval=0.2), found
    return found


def place(shop: Shop, headers: dict[str, str], lines: list[dict]) -> str:
    response = httpx.post(shop.url("/api/orders/"), json={"lines": lines}, headers=headers)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def test_an_order_with_stock_and_credit_is_approved(shop):
    headers = customer(shop)
    before = product(shop, 3)["stock_available"]

    order = settled(shop, headers, place(shop, headers, [{"product_id": 3, "quantity": 2}]))

    assert order["status"] == "APPROVED"
    assert order["lines"][0]["unit_price"] == product(shop, 3)["price"]
    assert product(shop, 3)["stock_available"] == before - 2
    assert float(credit(shop, headers)) == pytest.approx(
        1000 - 2 * float(order["lines"][0]["unit_price"])
    )
    assert [h["type"] for h in order["history"]] == [
        "order.placed",
        "order.stock_reserved",
        "order.credit_reserved",
        "order.approved",
    ]
    details = httpx.get(shop.url(f"/api/orders/{order['id']}/details/"), headers=headers).json()
    assert details["order"]["status"] == "APPROVED"
    assert details["lines"][0]["unit_price"] == order["lines"][0]["unit_price"]
    assert details["lines"][0]["product"]["id"] == 3
    assert (
        details["customer"]["id"]
        == httpx.get(shop.url("/api/users/me/"), headers=headers).json()["id"]
    )
    assert details["warnings"] == []


def test_one_trace_follows_an_order_through_every_service_and_message(shop):
    trace = uuid.uuid4().hex
    headers = {**customer(shop), "traceparent": f"00-{trace}-{uuid.uuid4().hex[:16]}-01"}

    order_id = place(shop, headers, [{"product_id": 5, "quantity": 1}])
    assert settled(shop, headers, order_id)["status"] == "APPROVED"

    # placed in the orders web process; the others in the orders worker, each on a
    # reply whose header the participant's worker set from the command it received.
    output = shop.orders.manage(
        "shell",
        "-c",
        "from orders.models import OrderEvent; print('TRACES', *(e.trace_context['traceparent'] "
        f"for e in OrderEvent.objects.filter(order_id='{order_id}').order_by('version')))",
    ).stdout
    recorded = next(line for line in output.splitlines() if line.startswith("TRACES")).split()[1:]
    assert len(recorded) == 4
    assert all(traceparent.startswith(f"00-{trace}-") for traceparent in recorded), recorded
    # A span per hop: placed by the POST; stock_reserved, credit_reserved and approved by
    # users' one answer for both steps (catalog passed the credit step on to users).
    assert len({traceparent[36:52] for traceparent in recorded}) == 2
    assert trace in shop.gateway.log_path.read_text()  # the gateway's access line
    for participant in (shop.catalog, shop.users):  # each step's "succeeded" line
        assert trace in (participant.var_dir / "worker.log").read_text(errors="replace")


def test_an_order_without_stock_is_rejected(shop):
    headers = customer(shop)
    sold_out = httpx.get(shop.url("/api/catalog/products/"), params={"in_stock": "false"}).json()
    product_id = sold_out["results"][0]["id"]

    order = settled(
        shop, headers, place(shop, headers, [{"product_id": product_id, "quantity": 1}])
    )

    assert (order["status"], order["rejection_reason"]) == ("REJECTED", "out_of_stock")
    assert credit(shop, headers) == "1000.00"


def test_an_order_over_the_credit_limit_is_rejected_and_its_stock_released(shop):
    headers = customer(shop)
    before = product(shop, 1)["stock_available"]  # 549.00 each: two exceed 1000.00

    order = settled(shop, headers, place(shop, headers, [{"product_id": 1, "quantity": 2}]))

    assert (order["status"], order["rejection_reason"]) == ("REJECTED", "credit_limit_exceeded")
    # Catalog releases the stock when order.rejected reaches it, a moment after.
    assert wait_until(lambda: product(shop, 1)["stock_available"] == before, timeout=15)
    assert credit(shop, headers) == "1000.00"


def test_cancelling_an_approved_order_returns_stock_and_credit(shop):
    headers = customer(shop)
    before = product(shop, 6)["stock_available"]  # a 34.90 charger
    order_id = place(shop, headers, [{"product_id": 6, "quantity": 1}])
    assert settled(shop, headers, order_id)["status"] == "APPROVED"

    cancel = httpx.post(shop.url(f"/api/orders/{order_id}/cancel/"), headers=headers)
    order = settled(shop, headers, order_id, status="CANCELLED")

    assert cancel.status_code == 202
    assert order["history"][-1]["type"] == "order.cancelled"
    assert product(shop, 6)["stock_available"] == before
    assert credit(shop, headers) == "1000.00"


def test_sold_and_order_counts_follow_approved_and_cancelled_orders(shop):
    """The choreography: orders' events, relayed from its event store, reach catalog and users."""
    headers = customer(shop)
    me = httpx.get(shop.url("/api/users/me/"), headers=headers).json()["id"]
    staff = signed_headers(shop, "1", staff=True)

    def counts() -> tuple[int, int]:
        customer_view = httpx.get(shop.url(f"/api/users/{me}/"), headers=staff).json()
        return product(shop, 12)["sold"], customer_view["order_count"]

    sold_before, orders_before = counts()
    assert orders_before == 0
    order_id = place(shop, headers, [{"product_id": 12, "quantity": 2}])  # 24.90 sleeves
    assert settled(shop, headers, order_id)["status"] == "APPROVED"
    assert wait_until(lambda: counts() == (sold_before + 2, 1), timeout=15), counts()

    httpx.post(shop.url(f"/api/orders/{order_id}/cancel/"), headers=headers)
    settled(shop, headers, order_id, status="CANCELLED")
    assert wait_until(lambda: counts() == (sold_before, 0), timeout=15), counts()


def test_thirty_customers_race_for_the_last_ten_units(shop):
    """Exactly as many approvals as units; stock never negative; nobody over their limit."""
    last_ten = "Stock.objects.filter(pk=5).update(on_hand=10, reserved=0)"
    shop.catalog.manage("shell", "-c", f"from catalog.models import Stock; {last_ten}")
    buyers = quick_customers(shop, 30)
    order_ids = [(h, place(shop, h, [{"product_id": 5, "quantity": 1}])) for h in buyers]

    orders = [settled(shop, h, order_id) for h, order_id in order_ids]
    results = [order["status"] for order in orders]
    reasons = {order["rejection_reason"] for order in orders if order["status"] == "REJECTED"}

    assert results.count("APPROVED") == 10, reasons
    assert results.count("REJECTED") == 20
    assert reasons == {"out_of_stock"}
    assert product(shop, 5)["stock_available"] == 0
    for headers in buyers:
        assert float(credit(shop, headers)) >= 0
