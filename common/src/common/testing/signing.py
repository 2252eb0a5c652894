"""Message signing keys for a service's tests (common.signing), made once per test session.

Every suite's conftest imports ``signing_keys`` (autouse): the service signs with a
key of the session's own, and the public keys of catalog, users and orders are
there, as ``make run`` lays them out under var/signing/. ``signing_identity`` gives
a test that takes another service name (``settings.SERVICE_NAME``) a key pair of
that name too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings

from common.signing import (
    attestation_payload,
    event_payload,
    key_pair_generate,
    private_key_load,
    sign,
    signature_headers,
)

SIGNING_SERVICES = ("catalog", "users", "orders")
_session_folder: list[Path] = []  # the session's key folder, once signing_keys made it


def event_signed(body: bytes | str, *, signer: str = "orders") -> dict[str, str]:
    """The headers ``signer``'s relay would publish ``body`` with (the session's keys)."""
    raw = body.encode() if isinstance(body, str) else body
    key = private_key_load(_session_folder[-1] / f"{signer}.pem")
    return signature_headers(
        signer=signer, payload=event_payload(body=raw, signer=signer), private_key=key
    )


def attested(*, claim: str, fields: dict[str, Any], signer: str) -> dict[str, str]:
    """``signer``'s attestation of ``fields`` under ``claim`` (common.signing.attest), made
    with the session's key of that name."""
    key = private_key_load(_session_folder[-1] / f"{signer}.pem")
    payload = attestation_payload(claim=claim, fields=fields, signer=signer)
    return {"signer": signer, "signature": sign(key, payload)}


def consume_signed(
    consumer: Any, body: bytes | str, *, signer: str = "orders", **delivery: Any
) -> Any:
    """``consumer.process(body)`` for a body ``signer`` signed, as its relay sends it
    (``delivery``: what else the broker would say, e.g. the ``exchange``)."""
    return consumer.process(body, headers=event_signed(body, signer=signer), **delivery)


def signing_identity(settings: Any, folder: Path, service: str) -> Path:
    """Sign as ``service`` with a pair made in ``folder`` (its public key there too)."""
    private_key = folder / f"{service}.pem"
    key_pair_generate(
        private_key_file=private_key, public_key_file=folder / "public" / private_key.name
    )
    settings.MESSAGE_SIGNING = {"KEY": str(private_key), "PUBLIC_KEYS": str(folder / "public")}
    return private_key


@pytest.fixture(scope="session", autouse=True)
def signing_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's key folder; this service signs with its own pair from it."""
    folder = tmp_path_factory.mktemp("signing")
    for service in SIGNING_SERVICES:
        key_pair_generate(
            private_key_file=folder / f"{service}.pem",
            public_key_file=folder / "public" / f"{service}.pem",
        )
    previous = django_settings.MESSAGE_SIGNING
    signing_identity(django_settings, folder, django_settings.SERVICE_NAME)
    _session_folder.append(folder)
    yield folder
    _session_folder.remove(folder)
    django_settings.MESSAGE_SIGNING = previous
