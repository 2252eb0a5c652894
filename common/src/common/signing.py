"""Signed messages between services: who sent a command, reply or event, and may they.

Every service holds its own Ed25519 private key and the public keys of the
services it hears from. A sender signs a canonical form of what it sends and
names itself (``x-signer``); a receiver acts on a message only when the
signature verifies with the named service's public key AND that service may
send this task or event type (``COMMAND_SENDERS``, ``EVENT_SOURCES``: each
receiving service's own settings). Anything else is refused with a reason
(``MessageRefused``) and dead-lettered by the caller, never acted on.

Why our own signatures rather than Celery's message signing (``setup_security``
with the ``auth`` serializer), measured and read in Celery 5.7's code:

- Celery signs the serialized body only. With protocol 2 the task name and id
  travel in the headers, unsigned: a signed ``catalog.stock_commit`` body
  (``{"order_id": ...}``) would verify as well under ``catalog.stock_release``.
  Here the task name, task id, args, kwargs and signer are all signed.
- Celery verifies against any certificate of its store and then drops who
  signed; the task cannot tell orders from users, so "only orders may send
  catalog.stock_*" could not be checked. Here the verified signer is the
  task's ``request.signed_by``.
- A body that fails Celery's verification is a decode error: logged and
  acknowledged, i.e. lost (``Consumer.on_decode_error``). Ours go to the
  dead-letter queue with the reason, where ``manage.py dlq`` shows them.
- Cost, measured (``bench/signing_bench.py``, bench/README.md): about 0.04 ms
  to sign a saga command and 0.13 ms to verify it, half of what Celery's
  RSA-2048 ``auth`` serializer takes (0.32 ms to sign, 0.05 to verify); either
  is small next to the ~1 ms a Celery task costs to send and 1.2 ms to run.
- Hand-written, but small: the cryptography is libsodium's Ed25519 (PyNaCl), the
  key files PEM read by the ``cryptography`` package; what is ours is the canonical
  form, the two headers and the policy. An order is about eight signatures and six
  checks: with libsodium 31 and 61 µs each on this machine, where ``cryptography``'s
  Ed25519 took 39 and 124 (issue #16, bench/README.md).

The pure part (keys, canonical forms, sign, verify, policy) is here; where the
messages are sent and received: ``common.commands`` (Celery) and
``common.events.relay`` / ``.consumer`` (events).
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from kombu.utils import json as kombu_json
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

# The message headers that carry a signature (short: they show in RabbitMQ's UI too).
HEADER_SIGNER = "x-signer"
HEADER_SIGNATURE = "x-signature"

# Domain separation: a signature made for an event can never pass for a command's.
_COMMAND_CONTEXT = b"eshop-command-v1\n"
_EVENT_CONTEXT = b"eshop-event-v1\n"
_ATTESTATION_CONTEXT = b"eshop-attestation-v1\n"

# A signer names a key file: plain names only, so a forged header cannot point elsewhere.
SIGNER_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


class MessageRefused(Exception):
    """A message that must not be acted on; ``str()`` is the reason the dead letter carries."""


class SignatureInvalid(MessageRefused):
    """No signature, an unknown signer, or a signature that does not verify."""


class SenderNotAllowed(MessageRefused):
    """A valid signature, but from a service that may not send this."""


# --- keys ------------------------------------------------------------------------


def key_pair_generate(*, private_key_file: Path, public_key_file: Path) -> bool:
    """Write a new Ed25519 pair unless the private key exists; True when written.

    The private key is readable by its owner only; the public one may be handed
    to every service that hears from this one.
    """
    if private_key_file.exists():
        return False
    private_key = Ed25519PrivateKey.generate()
    private_key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    public_key_file.parent.mkdir(parents=True, exist_ok=True)
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    temporary = private_key_file.with_suffix(".tmp")
    temporary.touch(mode=0o600)
    temporary.write_bytes(private_pem)
    public_key_file.write_bytes(public_pem)
    temporary.replace(private_key_file)  # last: a half-made pair is made again next time
    return True


def private_key_load(path: Path) -> SigningKey:
    """The signing key in the PEM file ``path`` (``key_pair_generate``'s)."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise ImproperlyConfigured(
            f"No message signing key at {path} (MESSAGE_SIGNING_KEY): run "
            "`manage.py generate_signing_keys` (make run does) or mount the service's Secret."
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ImproperlyConfigured(f"{path} is not an Ed25519 private key.")
    return SigningKey(key.private_bytes_raw())


def public_key_load(path: Path) -> VerifyKey | None:
    """The key in ``path``, or None when there is none (an unknown signer)."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return None
    return VerifyKey(key.public_bytes_raw()) if isinstance(key, Ed25519PublicKey) else None


class Keyring:
    """This service's private key and the public keys of the others, loaded once each.

    A public key that is not there yet is looked for again on the next message
    (a service added later needs no restart of its receivers).
    """

    def __init__(self, *, private_key_file: Path, public_keys_dir: Path) -> None:
        self.private_key_file = private_key_file
        self.public_keys_dir = public_keys_dir
        self._private: SigningKey | None = None
        self._public: dict[str, VerifyKey] = {}
        self._lock = threading.Lock()

    def private_key(self) -> SigningKey:
        if self._private is None:
            with self._lock:
                if self._private is None:
                    self._private = private_key_load(self.private_key_file)
        return self._private

    def public_key(self, signer: str) -> VerifyKey | None:
        key = self._public.get(signer)
        if key is None and SIGNER_PATTERN.match(signer):
            key = public_key_load(self.public_keys_dir / f"{signer}.pem")
            if key is not None:
                self._public[signer] = key
        return key


_keyring: tuple[tuple[Any, Any], Keyring] | None = None  # (the settings it is for, keyring)
_keyring_lock = threading.Lock()


def keyring() -> Keyring:
    """The keyring the settings name (``MESSAGE_SIGNING``), made on first use."""
    global _keyring
    config = settings.MESSAGE_SIGNING
    # Compared as configured, not as paths: every message asks, and two Path
    # objects a call were 5 % of the relay's CPU (issue #16).
    source = (config["KEY"], config["PUBLIC_KEYS"])
    current = _keyring
    if current is None or current[0] != source:
        with _keyring_lock:
            keys = Keyring(private_key_file=Path(source[0]), public_keys_dir=Path(source[1]))
            current = _keyring = (source, keys)
    return current[1]


# --- canonical forms ------------------------------------------------------------


def command_payload(
    *, task: str, task_id: str, args: Sequence[Any], kwargs: Mapping[str, Any], signer: str
) -> bytes:
    """What a command's signature covers: everything the receiver acts on, and who sent it.

    Keys sorted, no spaces, ASCII only, and kombu's JSON (the one Celery sends with),
    so both sides write the same bytes whatever Python types the sender used.
    """
    canonical = kombu_json.dumps(
        {
            "signer": signer,
            "task": task,
            "id": task_id,
            "args": list(args),
            "kwargs": dict(kwargs),
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return _COMMAND_CONTEXT + canonical.encode()


def event_payload(*, body: bytes, signer: str) -> bytes:
    """What an event's signature covers: the exact bytes published, and who sent them."""
    return _EVENT_CONTEXT + signer.encode() + b"\n" + body


def attestation_payload(*, claim: str, fields: Mapping[str, Any], signer: str) -> bytes:
    """What an attestation covers: a claim (what the fields are for) and its fields, and
    who vouches for them; canonical as ``command_payload``."""
    canonical = kombu_json.dumps(
        {"signer": signer, "claim": claim, "fields": dict(fields)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return _ATTESTATION_CONTEXT + canonical.encode()


# --- sign and verify ------------------------------------------------------------


def sign(private_key: SigningKey, payload: bytes) -> str:
    return base64.b64encode(private_key.sign(payload).signature).decode("ascii")


def signature_headers(*, signer: str, payload: bytes, private_key: SigningKey) -> dict:
    return {HEADER_SIGNER: signer, HEADER_SIGNATURE: sign(private_key, payload)}


def signer_of(headers: Mapping[str, Any] | None) -> str:
    """The service a message says it comes from; ``SignatureInvalid`` when it names none."""
    signer = (headers or {}).get(HEADER_SIGNER)
    if not signer:
        raise SignatureInvalid("unsigned: no x-signer header")
    if not isinstance(signer, str) or not SIGNER_PATTERN.match(signer):
        raise SignatureInvalid(f"x-signer {str(signer)[:80]!r} is not a service name")
    return signer


def verify(
    *,
    headers: Mapping[str, Any] | None,
    payload_for: Any,
    public_key_for: Any,
) -> str:
    """The verified signer, or ``SignatureInvalid`` with the reason.

    ``payload_for(signer)`` gives the bytes the signer must have signed;
    ``public_key_for(signer)`` its key (None for a service we know no key of).
    """
    signer = signer_of(headers)
    encoded = (headers or {}).get(HEADER_SIGNATURE)
    if not encoded or not isinstance(encoded, str):
        raise SignatureInvalid(f"unsigned: no x-signature header (x-signer {signer!r})")
    try:
        signature = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureInvalid("x-signature is not base64") from None
    public_key = public_key_for(signer)
    if public_key is None:
        raise SignatureInvalid(f"no public key for signer {signer!r}")
    payload = payload_for(signer)
    try:
        public_key.verify(payload, signature)
    # ValueError: not 64 bytes long, which no signature of that key is either.
    except (BadSignatureError, ValueError):
        raise SignatureInvalid(
            f"bad signature: does not verify with {signer}'s key (forged or tampered)"
        ) from None
    return signer


# --- who may send what ------------------------------------------------------------


def senders_allowed(policy: Mapping[str, Iterable[str]], name: str) -> set[str]:
    """The services ``policy`` ({task or event type pattern: [services]}) lets send ``name``.

    Patterns are shell-style (``catalog.*``); several matching patterns add up.
    """
    allowed: set[str] = set()
    for pattern, services in policy.items():
        if fnmatch.fnmatchcase(name, pattern):
            allowed.update(services)
    return allowed


def sender_check(*, policy: Mapping[str, Iterable[str]], name: str, signer: str) -> None:
    """``SenderNotAllowed`` unless ``signer`` may send ``name``."""
    allowed = senders_allowed(policy, name)
    if signer not in allowed:
        who = ", ".join(sorted(allowed)) or "no service"
        raise SenderNotAllowed(f"{signer!r} may not send {name!r} (only {who} may)")


# --- with this service's settings ---------------------------------------------------


def command_sign(*, task: str, task_id: str, args: Sequence[Any], kwargs: Mapping) -> dict:
    """The headers that sign a command this service sends."""
    signer = settings.SERVICE_NAME
    payload = command_payload(task=task, task_id=task_id, args=args, kwargs=kwargs, signer=signer)
    return signature_headers(signer=signer, payload=payload, private_key=keyring().private_key())


def command_verify(
    *, task: str, task_id: str, args: Sequence[Any], kwargs: Mapping, headers: Mapping | None
) -> str:
    """The service that sent this command, checked; ``MessageRefused`` otherwise."""
    ring = keyring()
    signer = verify(
        headers=headers,
        payload_for=lambda signer: command_payload(
            task=task, task_id=task_id, args=args, kwargs=kwargs, signer=signer
        ),
        public_key_for=ring.public_key,
    )
    sender_check(policy=settings.COMMAND_SENDERS, name=task, signer=signer)
    return signer


def event_sign(*, body: bytes) -> dict:
    """The headers that sign an event body this service publishes."""
    signer = settings.SERVICE_NAME
    payload = event_payload(body=body, signer=signer)
    return signature_headers(signer=signer, payload=payload, private_key=keyring().private_key())


def event_verify(*, body: bytes, headers: Mapping | None) -> str:
    """Who signed this event body (checked); the envelope's ``source`` must then be them."""
    return verify(
        headers=headers,
        payload_for=lambda signer: event_payload(body=body, signer=signer),
        public_key_for=keyring().public_key,
    )


def attest(*, claim: str, fields: Mapping[str, Any]) -> dict[str, str]:
    """This service vouches for ``fields`` under ``claim``, to a service further on: what a
    message passed along by another carries (``{"signer", "signature"}``), since that
    message's own signature names only the last sender (the saga's routing slip)."""
    signer = settings.SERVICE_NAME
    payload = attestation_payload(claim=claim, fields=fields, signer=signer)
    return {"signer": signer, "signature": sign(keyring().private_key(), payload)}


def attestation_verify(
    *, claim: str, fields: Mapping[str, Any], attestation: Any, signer: str
) -> None:
    """``SignatureInvalid`` unless ``attestation`` is ``signer``'s, over these ``fields``
    under ``claim``."""
    if not isinstance(attestation, Mapping) or attestation.get("signer") != signer:
        raise SignatureInvalid(f"{claim}: no attestation by {signer}")
    verify(
        headers={HEADER_SIGNER: signer, HEADER_SIGNATURE: attestation.get("signature")},
        payload_for=lambda name: attestation_payload(claim=claim, fields=fields, signer=name),
        public_key_for=keyring().public_key,
    )


def event_source_check(*, event_type: str, source: str, signer: str) -> None:
    """The envelope says who produced it; that must be its signer, and allowed to."""
    if source != signer:
        raise SenderNotAllowed(f"envelope source {source!r} but signed by {signer!r}")
    sender_check(policy=settings.EVENT_SOURCES, name=event_type, signer=signer)
