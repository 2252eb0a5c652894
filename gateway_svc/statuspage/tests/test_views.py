import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from common.discovery.static import StaticDiscovery
from common.discovery.testing import free_port
from statuspage import views
from statuspage.figures import metrics_parse
from statuspage.selectors import READY, Probe, snapshot_build
from statuspage.tests.metrics_samples import CATALOG, ORDERS

pytestmark = pytest.mark.django_db
PAGE = "/admin/status/"
ORDER_ID = "0b1c6a52-8f5e-4c43-9d37-4a5f0f0d9d11"


def browser(*, staff: bool) -> Client:
    user = get_user_model().objects.create_user("someone", "someone@example.com", "pw")
    user.is_staff = staff
    user.save()
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def nothing_answers(monkeypatch) -> StaticDiscovery:
    """Every service registered at an address where nothing listens."""
    url = f"http://127.0.0.1:{free_port()}"
    found = StaticDiscovery(urls={name: [url] for name in ("catalog", "users", "orders")})
    monkeypatch.setattr(views, "discovery_from_settings", lambda: found)
    return found


@pytest.fixture
def all_ready(monkeypatch) -> None:
    """A snapshot of a healthy shop with an open breaker and a stuck saga, no I/O."""
    found = StaticDiscovery(
        urls={"catalog": ["http://catalog:8001"], "orders": ["http://orders:8003"]}
    )

    def snapshot(**kwargs) -> dict:
        probes = {
            "catalog": [
                Probe(found.instances("catalog")[0], READY, scrape=metrics_parse(text=CATALOG))
            ],
            "orders": [
                Probe(found.instances("orders")[0], READY, scrape=metrics_parse(text=ORDERS))
            ],
        }
        catalog_id = found.instances("catalog")[0].id
        runtime = {
            "discovery": "static",
            "upstreams": {
                "catalog": {
                    "bulkhead": {"in_flight": 2, "limit": 100},
                    "instances": [{"id": catalog_id, "breaker": "open", "retry_after": 3.0}],
                }
            },
        }
        saga = {"order_id": ORDER_ID, "kind": "place", "state": "reserving_credit"}
        saga |= {"waiting": ["credit"], "attempts": 3, "needs_attention": True}
        return snapshot_build(
            probes=probes,
            runtime=runtime,
            local=None,
            sagas=[saga],
            orders_url="http://orders:8003",
        )

    monkeypatch.setattr(views, "status_snapshot", snapshot)


def test_anonymous_visitors_are_sent_to_the_admin_login():
    response = Client().get(PAGE)

    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={PAGE}"


def test_a_signed_in_customer_who_is_not_staff_is_sent_to_the_login_too():
    response = browser(staff=False).get(PAGE)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_staff_see_every_service_down_when_nothing_answers(nothing_answers):
    response = browser(staff=True).get(PAGE)

    assert response.status_code == 200
    html = response.content.decode()
    for name in ("catalog", "users", "orders"):
        assert f'data-service="{name}" data-state="DOWN"' in html
    assert "Connection refused" in html or "ConnectError" in html


def test_the_json_variant_carries_the_same_snapshot(nothing_answers):
    data = browser(staff=True).get(PAGE, {"format": "json"}).json()

    assert [row["name"] for row in data["services"]] == ["gateway", "catalog", "users", "orders"]
    assert data["services"][0]["state"] == READY


def test_the_page_refreshes_itself(nothing_answers):
    html = browser(staff=True).get(PAGE).content.decode()

    assert f'<meta http-equiv="refresh" content="{views.REFRESH_SECONDS}">' in html


def test_breakers_queues_and_stuck_sagas_are_shown_with_a_link_to_the_orders_history(all_ready):
    html = browser(staff=True).get(PAGE).content.decode()

    assert '<span class="badge bad">open</span>' in html
    assert "2 / 100" in html  # the bulkhead
    assert '<span class="badge bad">3</span>' in html  # catalog's dead letters
    assert "STUCK" in html
    assert f'href="http://orders:8003/admin/orders/orderevent/?order_id={ORDER_ID}"' in html


def test_orders_per_minute_by_outcome_are_shown(all_ready):
    html = browser(staff=True).get(PAGE).content.decode()

    assert re.search(r'data-outcome="approved">.*?class="num per-minute">12\.00<', html, re.S)


def test_the_admin_index_links_to_the_status_page():
    html = browser(staff=True).get("/admin/").content.decode()

    assert f'href="{PAGE}"' in html
