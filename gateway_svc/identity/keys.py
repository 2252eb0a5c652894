"""The gateway's signing keys: the current RS256 key pair and retired public keys.

Files (see ``JWT_*`` in .env.example)::

    private.pem          current private key, mode 0600 (JWT_PRIVATE_KEY)
    public.pem           its public half (JWT_PUBLIC_KEY, read by local services)
    retired/<kid>.pem    public keys replaced by a rotation (JWT_RETIRED_KEYS)

A retired key stays published in the JWKS (and trusted) until every token it
signed has expired: its file's modification time is the moment it retired.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from common.auth import key_id, load_public_key, public_jwk

KEY_SIZE = 2048


@dataclass(frozen=True)
class SigningKey:
    private_key: RSAPrivateKey
    kid: str


def _paths() -> tuple[Path, Path, Path]:
    config = settings.JWT
    return (
        Path(config["PRIVATE_KEY_FILE"]),
        Path(config["PUBLIC_KEY_FILES"][0]),
        Path(config["RETIRED_KEYS_DIR"]),
    )


def retirement_window_seconds() -> int:
    """How long a retired key must stay trusted: the longest token lifetime."""
    return settings.JWT["REFRESH_TOKEN_DAYS"] * 86400


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


def keys_generate(*, rotate: bool = False) -> tuple[str, bool]:
    """Make a key pair if there is none (or, with ``rotate``, a new one); return (kid, created).

    On rotation the old public key moves to the retired folder, and retired
    keys older than the retirement window are deleted.
    """
    private_path, public_path, retired_dir = _paths()
    if private_path.exists() and not rotate:
        return key_id(load_public_key(private_path)), False
    if private_path.exists():
        old_public = load_public_key(private_path)
        retired_dir.mkdir(parents=True, exist_ok=True)
        retired_file = retired_dir / f"{key_id(old_public)}.pem"
        _write_atomically(retired_file, _public_pem(old_public), 0o644)
        os.utime(retired_file)  # retired now, whatever the old file's age
        _prune_retired(retired_dir)
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
    _write_atomically(
        private_path,
        private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        0o600,
    )
    _write_atomically(public_path, _public_pem(private_key.public_key()), 0o644)
    return key_id(private_key.public_key()), True


def _public_pem(public_key: Any) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _prune_retired(retired_dir: Path) -> None:
    cutoff = time.time() - retirement_window_seconds()
    for path in retired_dir.glob("*.pem"):
        if path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)


class _SigningKeyCache:
    """The current private key, parsed once and again only when its file changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: SigningKey | None = None
        self._stamp: tuple[str, float] | None = None

    def get(self) -> SigningKey:
        private_path = _paths()[0]
        try:
            stamp = (str(private_path), private_path.stat().st_mtime)
        except FileNotFoundError:
            raise ImproperlyConfigured(
                f"No JWT signing key at {private_path}: run `manage.py generate_jwt_keys` "
                "or set JWT_PRIVATE_KEY."
            ) from None
        if stamp != self._stamp or self._key is None:
            with self._lock:
                private_key = serialization.load_pem_private_key(
                    private_path.read_bytes(), password=None
                )
                if not isinstance(private_key, RSAPrivateKey):
                    raise ImproperlyConfigured(f"{private_path} is not an RSA private key.")
                self._key = SigningKey(private_key, key_id(private_key.public_key()))
                self._stamp = stamp
        return self._key

    def clear(self) -> None:
        with self._lock:
            self._key, self._stamp = None, None


signing_key_cache = _SigningKeyCache()


def signing_key() -> SigningKey:
    return signing_key_cache.get()


def jwks() -> dict[str, list[dict[str, str]]]:
    """The keys to publish: the current one first, then retired ones still in their window."""
    current = signing_key()
    keys = [public_jwk(current.private_key.public_key())]
    retired_dir = _paths()[2]
    if retired_dir.is_dir():
        cutoff = time.time() - retirement_window_seconds()
        for path in sorted(retired_dir.glob("*.pem"), key=lambda p: -p.stat().st_mtime):
            if path.stat().st_mtime >= cutoff:
                jwk = public_jwk(load_public_key(path))
                if jwk["kid"] != current.kid:
                    keys.append(jwk)
    return {"keys": keys}
