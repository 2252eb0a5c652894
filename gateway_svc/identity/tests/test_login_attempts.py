"""Login throttling counts failures per client and account, and never locks a customer out."""

from __future__ import annotations

import os
import uuid

import pytest
from rest_framework.test import APIClient

from identity.tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

VICTIM = "victim@example.com"


@pytest.fixture(autouse=True, params=["locmem", "redis"])
def cache_backend(request, settings):
    """Every test on the local cache (one worker) and on Redis (every worker and replica).

    Redis is the run's (TEST_REDIS_URL); a key prefix of the test's own keeps it
    apart from anything else there, so nothing is flushed.
    """
    if request.param == "redis":
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
                "KEY_PREFIX": f"test-login-{uuid.uuid4().hex}",
            }
        }
    return request.param


@pytest.fixture(autouse=True)
def limits(settings):
    settings.LOGIN_THROTTLE = {
        "CLIENT": "10/min",
        "ACCOUNT_CLIENT": "3/min",
        "ACCOUNT": "6/10min",
        "LOCKOUT_MAX_SECONDS": 240,
        "FORGET_SECONDS": 3600,
        "KNOWN_CLIENT_DAYS": 30,
    }


def login(api: APIClient, email: str, password: str, client: str = "203.0.113.1"):
    return api.post("/api/auth/token/", {"email": email, "password": password}, REMOTE_ADDR=client)


def statuses(api: APIClient, email: str, password: str, times: int, client: str = "203.0.113.1"):
    return [login(api, email, password, client).status_code for _ in range(times)]


def test_failures_lock_the_client_out_of_that_account_with_a_problem_and_retry_after(
    customers, api
):
    assert statuses(api, VICTIM, "guess", 3) == [401, 401, 401]

    refused = login(api, VICTIM, PASSWORD)

    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/problem+json"
    assert refused.json()["code"] == "too_many_requests"
    assert refused.json()["status"] == 429
    assert refused["Retry-After"] == "60"


def test_a_locked_out_client_is_refused_before_its_password_is_checked(customers, api):
    statuses(api, VICTIM, "guess", 3)
    checked = customers.checks

    login(api, VICTIM, PASSWORD)

    assert customers.checks == checked


def test_successful_logins_are_never_counted(customers, api):
    assert set(statuses(api, VICTIM, PASSWORD, 25)) == {200}


def test_a_successful_login_clears_the_clients_failures_for_that_account(customers, api):
    statuses(api, VICTIM, "guess", 2)
    assert login(api, VICTIM, PASSWORD).status_code == 200

    assert statuses(api, VICTIM, "guess", 2) == [401, 401]


def test_lockouts_double_with_each_one_up_to_the_maximum(customers, api, clock):
    waits = []
    for _ in range(4):
        statuses(api, VICTIM, "guess", 3)
        waits.append(int(login(api, VICTIM, "guess")["Retry-After"]))
        clock.advance(waits[-1])

    assert waits == [60, 120, 240, 240]


def test_the_lockout_ends_when_retry_after_says(customers, api, clock):
    statuses(api, VICTIM, "guess", 3)
    clock.advance(59)
    assert login(api, VICTIM, PASSWORD).status_code == 429

    clock.advance(1)

    assert login(api, VICTIM, PASSWORD).status_code == 200


def test_the_customer_logs_in_from_their_own_address_while_others_are_locked_out(customers, api):
    tries = {
        attacker: statuses(api, VICTIM, "guess", 4, attacker)
        for attacker in [f"198.51.100.{n}" for n in range(1, 6)]
    }

    assert tries["198.51.100.1"] == [401, 401, 401, 429]
    assert tries["198.51.100.5"] == [401, 429, 429, 429]  # by then the account is guarded
    assert login(api, VICTIM, PASSWORD, client="203.0.113.7").status_code == 200


def test_a_guarded_account_gives_unknown_addresses_one_failure_and_known_ones_their_allowance(
    customers, api
):
    known = "203.0.113.7"
    assert login(api, VICTIM, PASSWORD, client=known).status_code == 200
    for n in range(1, 4):  # 6 failures across addresses guard the account
        statuses(api, VICTIM, "guess", 2, f"198.51.100.{n}")

    unknown = statuses(api, VICTIM, "guess", 2, "198.51.100.99")
    own = statuses(api, VICTIM, "guess", 3, known)

    assert unknown == [401, 429]
    assert own == [401, 401, 401]
    assert login(api, VICTIM, PASSWORD, client="192.0.2.55").status_code == 200  # still no lock


def test_attempts_refused_for_their_client_charge_the_account_nothing(customers, api):
    attacker = "198.51.100.1"
    for n in range(10):  # the address is spent on other accounts
        login(api, f"other{n}@example.com", "guess", attacker)
    refused = statuses(api, VICTIM, "guess", 20, attacker)

    # Had those 20 counted, the account would be guarded: a new address would get one failure.
    assert set(refused) == {429}
    assert statuses(api, VICTIM, "guess", 3, "198.51.100.2") == [401, 401, 401]


def test_one_address_failing_across_many_accounts_is_locked_out_for_every_account(customers, api):
    attacker = "198.51.100.1"
    spraying = [
        login(api, f"user{n}@example.com", "guess", attacker).status_code for n in range(10)
    ]

    fresh_account = login(api, "someone-else@example.com", PASSWORD, attacker)

    assert spraying == [401] * 10
    assert fresh_account.status_code == 429
    assert login(api, "someone-else@example.com", PASSWORD, "203.0.113.9").status_code == 200


def test_the_email_is_one_account_in_any_letter_case(customers, api):
    statuses(api, VICTIM, "guess", 2)
    assert login(api, VICTIM.upper(), "guess").status_code == 401
    assert login(api, f" {VICTIM} ", "guess").status_code == 429


def test_behind_a_proxy_the_forwarded_address_is_the_client(customers, api, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}  # DRF reloads
    for n in range(1, 4):
        forwarded = f"192.0.2.1, 198.51.100.{n}"  # the first entry is the client's to forge
        api.post(
            "/api/auth/token/",
            {"email": VICTIM, "password": "guess"},
            HTTP_X_FORWARDED_FOR=forwarded,
        )

    customer = api.post(
        "/api/auth/token/",
        {"email": VICTIM, "password": PASSWORD},
        HTTP_X_FORWARDED_FOR="192.0.2.1, 203.0.113.7",
    )

    assert customer.status_code == 200


def test_concurrent_guesses_get_no_more_checks_than_the_allowance(customers):
    from identity.login_attempts import LoginLocked, login_attempt_begin

    for _ in range(3):  # three checks in flight, none answered yet
        login_attempt_begin(email=VICTIM, client="198.51.100.1")

    with pytest.raises(LoginLocked):
        login_attempt_begin(email=VICTIM, client="198.51.100.1")
    login_attempt_begin(email=VICTIM, client="203.0.113.7")  # another client is not held up


def test_an_attempt_users_svc_could_not_answer_counts_nowhere(customers, api, monkeypatch):
    from identity import services
    from identity.clients import UpstreamUnavailable

    def unavailable(**kwargs):
        raise UpstreamUnavailable()

    monkeypatch.setattr(services, "credentials_check", unavailable)
    outage = statuses(api, VICTIM, "guess", 5)
    monkeypatch.setattr(services, "credentials_check", customers.check)

    assert outage == [503] * 5
    assert statuses(api, VICTIM, "guess", 3) == [401, 401, 401]
