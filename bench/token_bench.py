"""How long issuing and verifying a token takes (CPU per call, one process).

    make bench-tokens        # or: .venv/bin/python bench/token_bench.py [--rounds N]

Runs the gateway's real code on a throw-away VAR_DIR (SQLite, fresh keys):
- sign: one RS256 access token (PyJWT, key pre-loaded);
- issue: what POST /api/auth/token/ does after users_svc answered: a refresh
  token recorded as outstanding (one INSERT) plus its access token;
- verify: common.auth.token_decode (kid lookup, RS256 check, claims): a token's first use;
- authenticate: the DRF authentication class on a request, as every service runs
  it, with the same token again (verified tokens are remembered until they expire).
Not a test: it prints figures to compare between runs on one machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measure(name: str, work: Callable[[], object], rounds: int) -> None:
    for _ in range(min(50, rounds)):  # warm-up
        work()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        work()
        samples.append(time.perf_counter_ns() - start)
    samples.sort()
    median = statistics.median(samples) / 1000
    p95 = samples[int(len(samples) * 0.95) - 1] / 1000
    print(f"{name:<14} median {median:8.1f} µs   p95 {p95:8.1f} µs   ({rounds} rounds)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    rounds = parser.parse_args().rounds

    var_dir = tempfile.mkdtemp(prefix="token-bench-")
    os.environ.update(VAR_DIR=var_dir, DATABASE_URL="", GATEWAY_DATABASE_URL="")
    os.environ["DJANGO_SETTINGS_MODULE"] = "gateway_svc.settings"
    sys.path.insert(0, str(REPO / "gateway_svc"))

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import transaction
    from rest_framework.test import APIRequestFactory

    from common.auth import JWTAuthentication, token_decode
    from identity.keys import keys_generate
    from identity.services import _issue
    from identity.tokens import GatewayAccessToken

    call_command("migrate", verbosity=0)
    keys_generate()
    claims = {
        "sub": "42",
        "email": "ann@example.com",
        "name": "Ann",
        "is_staff": False,
        "roles": ["customer"],
    }

    def sign() -> str:
        token = GatewayAccessToken()
        token["sub"] = "42"
        return str(token)

    def issue() -> object:
        with transaction.atomic():
            return _issue(claims)

    access = _issue(claims).access
    request = APIRequestFactory().get("/", HTTP_AUTHORIZATION=f"Bearer {access}")
    authentication = JWTAuthentication()

    print(f"RS256, 2048-bit key, Python {sys.version.split()[0]}, VAR_DIR {var_dir}")
    measure("sign", sign, rounds)
    measure("issue", issue, rounds)
    measure("verify", lambda: token_decode(access), rounds)
    measure("authenticate", lambda: authentication.authenticate(request), rounds)


if __name__ == "__main__":
    main()
