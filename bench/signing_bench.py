"""What signing costs per message: common.signing (Ed25519) next to Celery's message signing.

    .venv/bin/python bench/signing_bench.py [--rounds 5] [--output bench/results/signing.json]

For a typical saga command (``catalog.stock_reserve`` with three lines) and a typical
event (``order.approved``), CPU time per message of:

- ours: sign (canonical form + Ed25519) on the sender, verify (the same canonical form
  + Ed25519 verify + the sender policy) on the receiver;
- Celery's ``auth`` serializer (``app.setup_security``: RSA-2048 key, X.509 certificate,
  SHA-256), serialize on the sender and deserialize (verify) on the receiver;
- for scale, serializing the same message to JSON alone (what Celery does anyway).

Medians of ``--rounds`` rounds of ``--count`` messages each, on one core of this machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from celery.security.certificate import Certificate, CertStore
from celery.security.key import PrivateKey
from celery.security.serialization import SecureSerializer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from kombu.utils import json as kombu_json
from nacl.signing import SigningKey

from common.signing import (
    command_payload,
    event_payload,
    sender_check,
    signature_headers,
    verify,
)

REPO = Path(__file__).resolve().parents[1]
TASK_ID = str(uuid.uuid4())
COMMAND = {
    "order_id": str(uuid.uuid4()),
    "lines": [{"product_id": n, "quantity": n + 1} for n in (3, 7, 11)],
}
EVENT = json.dumps(
    {
        "id": str(uuid.uuid4()),
        "type": "order.approved",
        "source": "orders",
        "time": "2026-12-06T10:00:00.000000+00:00",
        "subject": str(uuid.uuid4()),
        "trace": {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"},
        "data": {
            "customer_id": "1042",
            "total": "129.70",
            "currency": "EUR",
            "lines": [
                {"product_id": n, "quantity": n + 1, "unit_price": "12.97"} for n in (3, 7, 11)
            ],
        },
    },
    separators=(",", ":"),
).encode()
POLICY = {"catalog.*": ["orders"]}


def per_message(work: Callable[[], object], *, count: int, rounds: int) -> float:
    """Median over rounds of the CPU seconds one call takes."""
    samples = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(count):
            work()
        samples.append((time.process_time() - started) / count)
    return statistics.median(samples)


def celery_auth() -> tuple[SecureSerializer, SecureSerializer]:
    """Celery's signing serializer, as setup_security builds it: a sender and a receiver."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "orders")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    certificate = Certificate(cert.public_bytes(serialization.Encoding.PEM).decode())
    store = CertStore()
    store.add_cert(certificate)
    sender = SecureSerializer(
        PrivateKey(key_pem.decode()), certificate, store, digest="sha256", serializer="json"
    )
    return sender, sender


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=REPO / "bench/results/signing.json")
    options = parser.parse_args()
    run = {"count": options.count, "rounds": options.rounds}

    ours = SigningKey.generate()
    public = ours.verify_key
    command = {"task": "catalog.stock_reserve", "task_id": TASK_ID, "args": (), "kwargs": COMMAND}
    headers = signature_headers(
        signer="orders", payload=command_payload(**command, signer="orders"), private_key=ours
    )

    def command_sign() -> object:
        payload = command_payload(**command, signer="orders")
        return signature_headers(signer="orders", payload=payload, private_key=ours)

    def command_verify() -> object:
        signer = verify(
            headers=headers,
            payload_for=lambda signer: command_payload(**command, signer=signer),
            public_key_for=lambda _: public,
        )
        sender_check(policy=POLICY, name="catalog.stock_reserve", signer=signer)
        return signer

    event_headers = signature_headers(
        signer="orders", payload=event_payload(body=EVENT, signer="orders"), private_key=ours
    )

    def event_sign() -> object:
        payload = event_payload(body=EVENT, signer="orders")
        return signature_headers(signer="orders", payload=payload, private_key=ours)

    def event_check() -> object:
        return verify(
            headers=event_headers,
            payload_for=lambda signer: event_payload(body=EVENT, signer=signer),
            public_key_for=lambda _: public,
        )

    sender, receiver = celery_auth()
    body = [[], COMMAND, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    signed = sender.serialize(body)

    def celery_sign() -> object:
        return sender.serialize(body)

    def celery_verify() -> object:
        return receiver.deserialize(signed)

    def json_only() -> object:
        return kombu_json.dumps(body)

    results = {
        name: round(per_message(work, **run) * 1e6, 1)
        for name, work in {
            "command_sign_us": command_sign,
            "command_verify_us": command_verify,
            "event_sign_us": event_sign,
            "event_verify_us": event_check,
            "celery_auth_rsa2048_sign_us": celery_sign,
            "celery_auth_rsa2048_verify_us": celery_verify,
            "json_serialize_only_us": json_only,
        }.items()
    }
    report = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
        **run,
        "cpu_per_message": results,
    }
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(report, indent=2) + "\n")
    width = max(map(len, results))
    for name, micros in results.items():
        print(f"{name:<{width}}  {micros:8.1f} µs")
    print(f"written to {options.output}")


if __name__ == "__main__":
    main()
