"""users_svc stand-ins and a clock for the token endpoints' tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from identity import services
from identity.clients import InvalidCredentials

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    """Login counters and throttles live in the cache: each test starts with none."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def api() -> APIClient:
    return APIClient()


class Customers:
    """users_svc as the gateway sees it: credentials and customer summaries."""

    def __init__(self) -> None:
        self.inactive: set[str] = set()
        self.checks = 0

    def user_id(self, email: str) -> str:
        return str(sum(email.encode()) % 10_000)

    def summary(self, *, user_id: str) -> dict[str, Any] | None:
        email = f"{user_id}@example.com"
        return {
            "id": user_id,
            "email": email,
            "name": "Test Customer",
            "is_staff": False,
            "roles": ["customer"],
            "is_active": user_id not in self.inactive,
        }

    def check(self, *, email: str, password: str) -> dict[str, Any]:
        self.checks += 1
        if password != PASSWORD:
            raise InvalidCredentials()
        return {
            "sub": self.user_id(email),
            "email": email,
            "name": "Test Customer",
            "is_staff": False,
            "roles": ["customer"],
        }


@pytest.fixture
def customers(monkeypatch: pytest.MonkeyPatch, gateway_keys: Any) -> Customers:
    fake = Customers()
    monkeypatch.setattr(services, "credentials_check", fake.check)
    monkeypatch.setattr(services, "customer_summary", fake.summary)
    return fake


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[], float]:
    """time.time() under the test's control (the lockouts' and the local cache's clock)."""
    fake = Clock()
    monkeypatch.setattr(time, "time", fake)
    return fake
