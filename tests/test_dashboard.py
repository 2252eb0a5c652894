"""The Grafana dashboard (compose/grafana/): Grafana cannot run here, so every panel's
query goes to a real Prometheus (Debian's) scraping a running shop that has just taken
an order, and must be accepted and return series."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.harness import REPO, RunningService, ServiceLauncher, free_port, shop_start, wait_until

pytestmark = pytest.mark.system

GRAFANA = REPO / "compose" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "eshop.json"
PASSWORD = "correct horse battery"
# Grafana's own variable; a window that holds several 1 s scrapes.
RATE_INTERVAL = "15s"


def panels() -> list[dict[str, Any]]:
    return [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]


def queries() -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in panels() for target in panel["targets"]]


def test_every_panel_queries_the_provisioned_prometheus() -> None:
    datasources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    uid = {source["uid"] for source in datasources if source["type"] == "prometheus"}
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "eshop.yml").read_text())[
        "providers"
    ][0]
    compose = yaml.safe_load((REPO / "compose" / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]

    assert len(panels()) >= 10
    for panel in panels():
        assert panel["targets"], panel["title"]
        assert {panel["datasource"]["uid"]} | {
            t["datasource"]["uid"] for t in panel["targets"]
        } == uid
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts


@pytest.fixture(scope="module")
def shop(module_services: ServiceLauncher) -> dict[str, RunningService]:
    return shop_start(module_services)


@pytest.fixture(scope="module")
def prometheus(
    shop: dict[str, RunningService], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Debian's Prometheus scraping the shop every second, each target labelled with its
    service as compose's prometheus.yml labels it."""
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    assert Path(binary).exists(), "Prometheus is missing: apt-get install prometheus"
    folder = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "eshop",
                "static_configs": [
                    {"targets": [service.url.removeprefix("http://")], "labels": {"service": name}}
                    for name, service in shop.items()
                ],
            }
        ],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    with (folder / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_until(ready, timeout=30, interval=0.2), (folder / "prometheus.log").read_text()
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def query(prometheus: str, expr: str) -> dict[str, Any]:
    expr = expr.replace("$__rate_interval", RATE_INTERVAL)
    return httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()


def test_every_panel_returns_series_from_a_running_shop(
    shop: dict[str, RunningService], prometheus: str
) -> None:
    gateway = shop["gateway"].url
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    httpx.post(f"{gateway}/api/users/register/", json={"email": email, "password": PASSWORD})
    token = httpx.post(
        f"{gateway}/api/auth/token/", json={"email": email, "password": PASSWORD}
    ).json()["access"]
    headers = {"Authorization": f"Bearer {token}"}
    placed = httpx.post(
        f"{gateway}/api/orders/",
        json={"lines": [{"product_id": 1, "quantity": 1}]},
        headers=headers,
    )
    assert placed.status_code == 202, placed.text

    def decided() -> bool:
        order = httpx.get(f"{gateway}/api/orders/{placed.json()['id']}/", headers=headers)
        return order.json()["status"] in {"APPROVED", "REJECTED"}

    assert wait_until(decided, timeout=30, interval=0.2)
    answers: dict[str, dict[str, Any]] = {}

    def every_query_has_series() -> bool:
        for title, expr in queries():
            # Keep traffic flowing so every rate has increases inside its window.
            httpx.get(f"{gateway}/api/catalog/products/1/")
            answers[f"{title}: {expr}"] = query(prometheus, expr)
        return all(
            answer.get("status") == "success" and answer["data"]["result"]
            for answer in answers.values()
        )

    assert wait_until(every_query_has_series, timeout=60, interval=1), {
        name: answer for name, answer in answers.items() if not answer.get("data", {}).get("result")
    }
