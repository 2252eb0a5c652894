from collections.abc import Iterator
from pathlib import Path

import pytest

from common.auth import key_set
from common.testing.tracing import spans  # noqa: F401 - in-memory spans of the session's provider
from identity import keys


@pytest.fixture
def gateway_keys(settings, tmp_path: Path) -> Iterator[Path]:
    """A fresh key folder for the gateway (as `generate_jwt_keys` makes it), per test."""
    folder = tmp_path / "jwt"
    settings.JWT = {
        **settings.JWT,
        "PRIVATE_KEY_FILE": str(folder / "private.pem"),
        "PUBLIC_KEY_FILES": [str(folder / "public.pem")],
        "RETIRED_KEYS_DIR": str(folder / "retired"),
        "JWKS_URL": "",
        "KEYS_RELOAD_SECONDS": 0,
    }
    keys.signing_key_cache.clear()
    key_set.clear()
    keys.keys_generate()
    yield folder
    keys.signing_key_cache.clear()
    key_set.clear()
