"""Signing and checking messages (common.signing): the pure part, no broker.

Keys are real Ed25519 pairs made in each test's folder; nothing is mocked.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from common.signing import (
    HEADER_SIGNATURE,
    HEADER_SIGNER,
    Keyring,
    SenderNotAllowed,
    SignatureInvalid,
    attest,
    attestation_payload,
    attestation_verify,
    command_payload,
    event_payload,
    event_source_check,
    key_pair_generate,
    private_key_load,
    sender_check,
    senders_allowed,
    signature_headers,
    verify,
)
from common.testing.signing import signing_identity

COMMAND = {
    "task": "catalog.stock_release",
    "task_id": "6f1c1c52-8a8e-4a47-9d8b-3f9f0f7a2b11",
    "args": (),
    "kwargs": {"order_id": "a5e2d4c8-0000-4000-8000-000000000001"},
}


@pytest.fixture
def keys(tmp_path: Path) -> Keyring:
    """Pairs for orders and users, the way ``manage.py generate_signing_keys`` lays them out."""
    for service in ("orders", "users"):
        key_pair_generate(
            private_key_file=tmp_path / f"{service}.pem",
            public_key_file=tmp_path / "public" / f"{service}.pem",
        )
    return Keyring(private_key_file=tmp_path / "orders.pem", public_keys_dir=tmp_path / "public")


def signed_command(keys: Keyring, *, signer: str = "orders", key_of: str = "orders", **changes):
    """The headers ``key_of``'s key gives the command (with ``changes``), naming ``signer``."""
    payload = command_payload(**{**COMMAND, **changes}, signer=signer)
    key = private_key_load(keys.private_key_file.parent / f"{key_of}.pem")
    return signature_headers(signer=signer, payload=payload, private_key=key)


def check_command(keys: Keyring, headers: dict, **changes) -> str:
    command = {**COMMAND, **changes}
    return verify(
        headers=headers,
        payload_for=lambda signer: command_payload(**command, signer=signer),
        public_key_for=keys.public_key,
    )


def test_a_command_signed_by_its_sender_verifies_as_that_sender(keys):
    assert check_command(keys, signed_command(keys)) == "orders"


@pytest.mark.parametrize(
    "changed",
    [
        {"kwargs": {"order_id": "a5e2d4c8-0000-4000-8000-000000000002"}},  # another order
        {"task": "catalog.stock_commit"},  # the same body under another task
        {"task_id": "6f1c1c52-8a8e-4a47-9d8b-3f9f0f7a2b12"},
        {"args": ("extra",)},
    ],
    ids=["other order", "other task", "other task id", "other args"],
)
def test_a_command_changed_after_signing_does_not_verify(keys, changed):
    headers = signed_command(keys)

    with pytest.raises(SignatureInvalid, match="bad signature"):
        check_command(keys, headers, **changed)


def test_a_signature_naming_another_signer_than_the_key_does_not_verify(keys):
    # orders' key, but the headers say users sent it: checked with users' key, it fails.
    headers = signed_command(keys, signer="users", key_of="orders")

    with pytest.raises(SignatureInvalid, match="users's key"):
        check_command(keys, headers)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "unsigned: no x-signer"),
        ({HEADER_SIGNER: "orders"}, "unsigned: no x-signature"),
        ({HEADER_SIGNER: "orders", HEADER_SIGNATURE: "not base64!"}, "not base64"),
        ({HEADER_SIGNER: "../../etc/passwd", HEADER_SIGNATURE: "AAAA"}, "not a service name"),
        ({HEADER_SIGNER: 7, HEADER_SIGNATURE: "AAAA"}, "not a service name"),
        ({HEADER_SIGNER: "payments", HEADER_SIGNATURE: "AAAA"}, "no public key for signer"),
    ],
    ids=["nothing", "no signature", "garbage", "path as signer", "number", "unknown service"],
)
def test_a_message_without_a_usable_signature_is_refused_with_the_reason(keys, headers, reason):
    with pytest.raises(SignatureInvalid, match=reason):
        check_command(keys, headers)


def test_the_canonical_form_does_not_depend_on_key_order_or_python_types():
    one = command_payload(
        task="t", task_id="1", args=[], kwargs={"b": Decimal("1.10"), "a": 1}, signer="s"
    )
    other = command_payload(
        task="t", task_id="1", args=(), kwargs={"a": 1, "b": Decimal("1.10")}, signer="s"
    )

    assert one == other


def test_an_event_signature_never_passes_for_a_command(keys):
    payload = command_payload(**COMMAND, signer="orders")
    # What an event of exactly those bytes would be signed over differs (domain separation).
    assert event_payload(body=payload, signer="orders") != payload


def test_an_event_body_changed_after_signing_does_not_verify(keys):
    body = b'{"type":"order.cancelled","source":"orders"}'
    headers = signature_headers(
        signer="orders",
        payload=event_payload(body=body, signer="orders"),
        private_key=keys.private_key(),
    )

    def check(raw: bytes) -> str:
        return verify(
            headers=headers,
            payload_for=lambda signer: event_payload(body=raw, signer=signer),
            public_key_for=keys.public_key,
        )

    assert check(body) == "orders"
    with pytest.raises(SignatureInvalid):
        check(body.replace(b"cancelled", b"approved"))


def test_policies_name_who_may_send_what():
    policy = {"catalog.*": ["orders"], "catalog.stock_release": ["ops"]}

    assert senders_allowed(policy, "catalog.stock_release") == {"orders", "ops"}
    assert senders_allowed(policy, "catalog.stock_reserve") == {"orders"}
    assert senders_allowed(policy, "users.credit_release") == set()
    sender_check(policy=policy, name="catalog.stock_reserve", signer="orders")
    with pytest.raises(SenderNotAllowed, match=r"'users' may not send 'catalog.stock_reserve'"):
        sender_check(policy=policy, name="catalog.stock_reserve", signer="users")
    with pytest.raises(SenderNotAllowed, match=r"only no service may"):
        sender_check(policy=policy, name="users.credit_release", signer="orders")


def test_an_event_must_be_signed_by_the_source_it_names(settings):
    settings.EVENT_SOURCES = {"order.*": ["orders"]}

    event_source_check(event_type="order.cancelled", source="orders", signer="orders")
    with pytest.raises(SenderNotAllowed, match="source 'orders' but signed by 'users'"):
        event_source_check(event_type="order.cancelled", source="orders", signer="users")
    with pytest.raises(SenderNotAllowed, match=r"'users' may not send 'order.cancelled'"):
        event_source_check(event_type="order.cancelled", source="users", signer="users")


def test_a_key_pair_is_made_once_and_its_private_half_kept_private(tmp_path):
    private, public = tmp_path / "keys" / "orders.pem", tmp_path / "keys" / "public" / "orders.pem"

    made = key_pair_generate(private_key_file=private, public_key_file=public)
    first = private.read_bytes()
    again = key_pair_generate(private_key_file=private, public_key_file=public)

    assert (made, again) == (True, False)
    assert private.read_bytes() == first
    assert private.stat().st_mode & 0o077 == 0
    assert (tmp_path / "keys").stat().st_mode & 0o077 == 0


def test_a_missing_private_key_says_how_to_make_one(tmp_path):
    ring = Keyring(private_key_file=tmp_path / "none.pem", public_keys_dir=tmp_path)

    with pytest.raises(ImproperlyConfigured, match="generate_signing_keys"):
        ring.private_key()


def test_a_public_key_deployed_later_is_found_without_a_restart(tmp_path):
    ring = Keyring(private_key_file=tmp_path / "x.pem", public_keys_dir=tmp_path / "public")
    assert ring.public_key("users") is None

    key_pair_generate(
        private_key_file=tmp_path / "users.pem", public_key_file=tmp_path / "public" / "users.pem"
    )

    assert ring.public_key("users") is not None


def test_an_attestation_verifies_for_its_signer_claim_and_fields_only(settings, tmp_path):
    settings.SERVICE_NAME = "orders"
    signing_identity(settings, tmp_path, "orders")
    fields = {"order_id": COMMAND["kwargs"]["order_id"], "customer_id": "7"}

    grant = attest(claim="users.credit_reserve", fields=fields)

    assert grant["signer"] == "orders"
    attestation_verify(
        claim="users.credit_reserve", fields=fields, attestation=grant, signer="orders"
    )
    for claim, changed, signer, attestation, why in [
        ("users.credit_release", fields, "orders", grant, "does not verify"),
        ("users.credit_reserve", {**fields, "customer_id": "8"}, "orders", grant, "does not"),
        ("users.credit_reserve", fields, "catalog", grant, "no attestation by catalog"),
        ("users.credit_reserve", fields, "orders", None, "no attestation by orders"),
        ("users.credit_reserve", fields, "orders", {"signer": "orders"}, "no x-signature"),
    ]:
        with pytest.raises(SignatureInvalid, match=why):
            attestation_verify(claim=claim, fields=changed, attestation=attestation, signer=signer)
    # Domain separation: an attestation's bytes are never a command's or an event's.
    payload = attestation_payload(claim="catalog.stock_release", fields={}, signer="orders")
    assert payload != command_payload(**COMMAND, signer="orders")
    assert not payload.startswith(event_payload(body=b"", signer="orders"))
