"""Failed logins slow down the client that makes them, and never lock a customer out.

Only failed password checks are counted (each attempt is counted as it starts,
so that concurrent guesses cannot outrun the count, and taken back when the
password was right), in Django's cache (Redis when ``CACHE_URL`` names one, so
every worker and replica counts together), under three keys:

- the client address, across all accounts (``LOGIN_RATE_PER_IP``): one
  address spraying guesses over many accounts;
- the account *and* the client address (``LOGIN_RATE_PER_EMAIL``): one
  address guessing one account; a successful login clears it;
- the account, across all addresses (``LOGIN_RATE_PER_ACCOUNT``, looser): one
  account guessed from many addresses.

A key whose failures reach its allowance within its period is locked for that
period; each further lockout doubles it (remembered for
``LOGIN_FAILURES_FORGET_SECONDS``), up to ``LOGIN_LOCKOUT_MAX_SECONDS``; after
a lockout the count starts afresh.

Why no lock ever falls on an account alone: that is the classic denial of
service, since anyone who knows a customer's email could keep them out with a
few wrong passwords sent from a few addresses. So a lock falls only on the
client that failed (its address, or its address for that account), and a
request refused for its client is refused before the password is checked and
counted nowhere: nothing is learnt, and the account is charged nothing. The
account-wide counter, when it trips, only *guards* the account: an address
that has not logged in to it successfully before (within
``LOGIN_KNOWN_CLIENT_DAYS``) then gets one failure instead of its usual
allowance before its (account, address) lockout, while the customer's known
addresses keep theirs. A botnet spread over many addresses gets one guess per
address and lockout, and the customer is never refused for what others did.

Hand-written rather than django-axes: axes works through Django's
``authenticate()`` and its signals (our passwords are checked by users_svc
over HTTP), has one failure limit for all its lockout parameter combinations
and a fixed cool-off, and has neither growing lockouts nor the guarded mode.
DRF's throttles count every request, not failures.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from proxy.routes import Rate

logger = logging.getLogger(__name__)

_PREFIX = "login"


class LoginLocked(Exception):
    """This client may not try to log in (to this account) for ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"Too many failed logins; try again in {retry_after} s.")


@dataclass(frozen=True)
class _Keys:
    client: str
    pair: str
    account: str
    known: str


def _keys(email: str, client: str) -> _Keys:
    # Emails are hashed: a cache dump should not be a list of who failed to log in.
    account = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    return _Keys(
        client=f"{_PREFIX}:client:{client}",
        pair=f"{_PREFIX}:pair:{account}:{client}",
        account=f"{_PREFIX}:account:{account}",
        known=f"{_PREFIX}:known:{account}:{client}",
    )


def _config() -> dict[str, Any]:
    return settings.LOGIN_THROTTLE


def _lockout_seconds(key: str, allowance: Rate) -> int:
    """This key's next lockout: its period, doubled for every lockout it had before."""
    config = _config()
    strikes = _incr(f"{key}:strikes", config["FORGET_SECONDS"])
    cache.touch(f"{key}:strikes", config["FORGET_SECONDS"])
    cap = max(config["LOCKOUT_MAX_SECONDS"], allowance.seconds)
    return min(allowance.seconds * 2 ** min(strikes - 1, 32), cap)


def _incr(key: str, timeout: int) -> int:
    """Count one more; a new count lives ``timeout`` seconds from its first hit (a window)."""
    if cache.add(key, 1, timeout):
        return 1
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout)
        return 1


def _lock(key: str, allowance: Rate, now: float) -> None:
    seconds = _lockout_seconds(key, allowance)
    cache.set(f"{key}:lock", now + seconds, seconds)
    cache.delete(f"{key}:fails")
    kind = key.split(":")[1]
    logger.warning(
        "Login %s: %s for %d s", "guard" if kind == "account" else "lockout", kind, seconds
    )


def _take_back(key: str) -> None:
    # A missing count: its window ended, or a lockout started it afresh.
    with contextlib.suppress(ValueError):
        cache.decr(f"{key}:fails")


def _allowances(keys: _Keys, now: float) -> dict[str, Rate]:
    """The allowance of the client's two keys; see the module docstring for the guard."""
    config = _config()
    per_pair = Rate.parse(config["ACCOUNT_CLIENT"])
    guarded = (cache.get(f"{keys.account}:lock") or 0.0) > now
    if guarded and not cache.get(keys.known):
        per_pair = Rate(1, per_pair.seconds)
    return {keys.client: Rate.parse(config["CLIENT"]), keys.pair: per_pair}


def login_attempt_begin(*, email: str, client: str) -> None:
    """Refuse (``LoginLocked``) a locked-out client, else count the attempt as failed already.

    Counted before the password is checked, so that a burst of concurrent
    guesses gets no more checks than the allowance (past it they are refused
    and count nowhere); ``login_success_record`` takes the attempt back,
    ``login_failure_record`` keeps it and locks the client out when it is due.
    """
    keys = _keys(email, client)
    now = time.time()
    try:
        locks = cache.get_many([f"{keys.client}:lock", f"{keys.pair}:lock"])
        until = max(locks.values(), default=0.0)
        if until > now:
            raise LoginLocked(retry_after=max(1, math.ceil(until - now)))
        charged: list[str] = []
        for key, allowance in _allowances(keys, now).items():
            charged.append(key)
            if _incr(f"{key}:fails", allowance.seconds) > allowance.count:
                for taken in charged:
                    _take_back(taken)
                raise LoginLocked(retry_after=1)  # the allowance is in flight right now
    except LoginLocked:
        raise
    except Exception:
        # Losing the counters must not stop every login; the outage is logged.
        logger.exception("Login throttle unavailable; letting the attempt through")


def login_failure_record(*, email: str, client: str) -> None:
    """A wrong password (or unknown email) from ``client``: keep the attempt counted, lock
    the client out where the allowance is used up, and count it against the account."""
    config = _config()
    keys = _keys(email, client)
    now = time.time()
    try:
        for key, allowance in _allowances(keys, now).items():
            if (cache.get(f"{key}:fails") or 0) >= allowance.count:
                _lock(key, allowance, now)
        account = Rate.parse(config["ACCOUNT"])
        if _incr(f"{keys.account}:fails", account.seconds) >= account.count:
            _lock(keys.account, account, now)  # the guard: it refuses nobody
    except Exception:
        logger.exception("Login throttle unavailable; a failed login was not counted")


def login_attempt_abandon(*, email: str, client: str) -> None:
    """The password could not be checked (users_svc unavailable): the attempt counts nowhere."""
    keys = _keys(email, client)
    try:
        _take_back(keys.client)
        _take_back(keys.pair)
    except Exception:
        logger.exception("Login throttle unavailable; an abandoned attempt stays counted")


def login_success_record(*, email: str, client: str) -> None:
    """The right password: the attempt is taken back, the client's slate for the account
    is clean, and the client is known to the account.

    The client's failures on other accounts stay counted, or one account of the
    attacker's own would wipe the count of its guesses at everyone else's.
    """
    config = _config()
    keys = _keys(email, client)
    try:
        _take_back(keys.client)
        cache.delete_many([f"{keys.pair}:fails", f"{keys.pair}:strikes", f"{keys.pair}:lock"])
        cache.set(keys.known, 1, config["KNOWN_CLIENT_DAYS"] * 86400)
    except Exception:
        logger.exception("Login throttle unavailable; a successful login was not recorded")
