"""Production settings: `manage.py check --deploy` is clean for every service, and HTTPS holds.

Each service is configured as in production (ENVIRONMENT=production, a long
random SECRET_KEY, ALLOWED_HOSTS, DEBUG off, nothing else) in a process of its
own, since Django is configured once per process. Behind the ingress, a
client's scheme arrives in X-Forwarded-Proto: plain http is redirected to
https, except the paths that cluster-internal callers reach over plain http
(probes, metrics, internal calls, schemas, the JWKS).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
SERVICES = ("catalog", "users", "orders", "gateway")
HOST = "shop.example"


def service_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a production service: only what production must set.

    The suite's own database, broker and cache URLs and any HTTPS setting of the
    shell are left out: the embedded defaults under a private VAR_DIR suffice.
    """
    dropped = ("DATABASE_URL", "BROKER_URL", "CACHE_URL", "GATEWAY_REDIS_URL")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.endswith(dropped)
        and not key.startswith(("SECURE_", "SESSION_COOKIE_", "CSRF_COOKIE_", "DJANGO_"))
        and key not in ("ENVIRONMENT", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS")
    }
    return {
        **env,
        "ENVIRONMENT": "production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": HOST,
        "DEBUG": "false",
        "VAR_DIR": str(tmp_path / "var"),
        **extra,
    }


def run(service: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO / f"{service}_svc",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("service", SERVICES)
def test_check_deploy_passes_with_no_warning_and_nothing_silenced(service, tmp_path):
    result = run(
        service, service_env(tmp_path), "manage.py", "check", "--deploy", "--fail-level", "WARNING"
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


# What a request gets from each service, through Django's test client in its own process:
# {path: [status, Location, Strict-Transport-Security]} for each forwarded scheme.
_PROBE = """
import json, os, sys
import django
os.environ["DJANGO_SETTINGS_MODULE"] = sys.argv[1] + "_svc.settings"
django.setup()
from django.test import Client
client = Client(HTTP_HOST=sys.argv[2], raise_request_exception=False)
answers = {}
for path in json.loads(sys.argv[3]):
    for scheme in ("", "http", "https"):
        headers = {"HTTP_X_FORWARDED_PROTO": scheme} if scheme else {}
        response = client.get(path, **headers)
        answers[f"{scheme or '-'} {path}"] = [
            response.status_code,
            response.get("Location"),
            response.get("Strict-Transport-Security"),
        ]
print(json.dumps(answers))
"""

# Reached over plain http inside the cluster: probes, Prometheus, internal calls,
# the schemas the gateway merges, and (on the gateway) the JWKS the services fetch.
PLAIN_HTTP = ["/health/", "/metrics", "/internal/nothing-here/", "/api/schema/"]


def answers(service: str, env: dict[str, str], paths: list[str]) -> dict[str, list]:
    result = run(service, env, "-c", _PROBE, service, HOST, json.dumps(paths))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("service", SERVICES)
def test_plain_http_clients_are_redirected_and_https_ones_get_hsts(service, tmp_path):
    got = answers(service, service_env(tmp_path), ["/admin/login/"])

    assert got["- /admin/login/"][:2] == [301, f"https://{HOST}/admin/login/"]
    assert got["http /admin/login/"][:2] == [301, f"https://{HOST}/admin/login/"]
    status, _, hsts = got["https /admin/login/"]
    assert status == 200
    assert hsts == "max-age=31536000; includeSubDomains; preload"


@pytest.mark.parametrize("service", SERVICES)
def test_cluster_internal_plain_http_calls_are_never_redirected(service, tmp_path):
    env = service_env(tmp_path)
    paths = PLAIN_HTTP
    if service == "gateway":
        assert run(service, env, "manage.py", "generate_jwt_keys").returncode == 0
        paths = [*PLAIN_HTTP, "/.well-known/jwks.json"]

    got = answers(service, env, paths)

    redirected = {request: answer for request, answer in got.items() if answer[0] == 301}
    assert redirected == {}
    assert got["- /health/"][0] == 200


def test_the_https_settings_are_configurable(tmp_path):
    env = service_env(
        tmp_path,
        SECURE_SSL_REDIRECT="false",
        SECURE_HSTS_SECONDS="3600",
        SECURE_HSTS_INCLUDE_SUBDOMAINS="false",
        SECURE_HSTS_PRELOAD="false",
    )

    got = answers("catalog", env, ["/admin/login/"])

    assert got["- /admin/login/"][0] == 200
    assert got["https /admin/login/"][2] == "max-age=3600"


def test_local_runs_stay_on_plain_http(tmp_path):
    env = service_env(tmp_path, ENVIRONMENT="local")

    got = answers("gateway", env, ["/admin/login/"])

    assert got["- /admin/login/"][0] == 200
    assert got["https /admin/login/"][2] is None


def test_behind_tls_the_shop_works_through_the_gateway_on_production_settings(services):
    """Real processes on production settings; the ingress is played by the headers it sets.

    Every plain-http call inside (readiness, the gateway's calls to users'
    internal API, the services' JWKS fetches) goes through, and so does every
    request of an https client; a plain-http client is sent to https.
    """
    from tests.harness import free_port

    production = {
        "ENVIRONMENT": "production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "*",
        "DEBUG": "false",
    }
    gateway_port = free_port()
    jwks = {"JWT_JWKS_URL": f"http://127.0.0.1:{gateway_port}/.well-known/jwks.json"}
    users = services.start("users", env={**production, **jwks})
    catalog = services.start("catalog", seed=True, env={**production, **jwks})
    gateway = services.start(
        "gateway",
        port=gateway_port,
        env={**production, "USERS_URL": users.url, "CATALOG_URL": catalog.url, "NUM_PROXIES": "1"},
    )
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7", "Host": HOST}
    account = {"email": f"{secrets.token_hex(4)}@example.com", "password": "correct horse battery"}

    signed_up = httpx.post(f"{gateway.url}/api/users/register/", json=account, headers=https)
    login = httpx.post(f"{gateway.url}/api/auth/token/", json=account, headers=https)
    bearer = {**https, "Authorization": f"Bearer {login.json()['access']}"}
    me = httpx.get(f"{gateway.url}/api/users/me/", headers=bearer)
    products = httpx.get(f"{gateway.url}/api/catalog/products/", headers=https)
    plain = httpx.get(
        f"{gateway.url}/api/catalog/products/?page=2",
        headers={**https, "X-Forwarded-Proto": "http"},
    )

    assert signed_up.status_code == 201, signed_up.text
    assert login.status_code == 200, login.text
    assert login.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert me.status_code == 200, me.text
    assert products.status_code == 200, products.text
    assert products.json()["next"].startswith(f"https://{HOST}/")
    assert plain.status_code == 301
    assert plain.headers["Location"] == f"https://{HOST}/api/catalog/products/?page=2"
