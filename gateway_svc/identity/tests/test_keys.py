import io
import os
import stat
import time

import jwt
import pytest
from django.core.management import call_command

from common.auth import token_decode
from identity import keys
from identity.services import service_token_issue


def kids(client) -> list[str]:
    return [key["kid"] for key in client.get("/.well-known/jwks.json").json()["keys"]]


def test_the_private_key_is_readable_by_its_owner_only(gateway_keys):
    mode = stat.S_IMODE(os.stat(gateway_keys / "private.pem").st_mode)
    assert mode == 0o600


def test_generate_keeps_an_existing_key(gateway_keys):
    kid = keys.signing_key().kid
    assert keys.keys_generate() == (kid, False)


def test_jwks_publishes_the_current_key_in_standard_form(gateway_keys, client):
    response = client.get("/.well-known/jwks.json")
    (key,) = response.json()["keys"]
    assert set(key) == {"kty", "kid", "alg", "use", "n", "e"}
    assert (key["kty"], key["alg"], key["use"], key["kid"]) == (
        "RSA",
        "RS256",
        "sig",
        keys.signing_key().kid,
    )
    assert "max-age" in response["Cache-Control"]


def test_rotation_signs_with_the_new_key_and_still_publishes_the_old(gateway_keys, client):
    old = keys.signing_key().kid
    old_token = service_token_issue(service="test", minutes=5)

    call_command("generate_jwt_keys", "--rotate", stdout=io.StringIO())
    new = keys.signing_key().kid
    new_token = service_token_issue(service="test", minutes=5)

    assert new != old
    assert kids(client) == [new, old]
    assert jwt.get_unverified_header(new_token)["kid"] == new
    assert token_decode(old_token)["sub"] == "service:test"
    assert token_decode(new_token)["sub"] == "service:test"


def test_retired_keys_leave_the_jwks_once_their_tokens_have_expired(gateway_keys, client, settings):
    old = keys.signing_key().kid
    keys.keys_generate(rotate=True)
    retired_file = gateway_keys / "retired" / f"{old}.pem"
    long_ago = time.time() - settings.JWT["REFRESH_TOKEN_DAYS"] * 86400 - 60
    os.utime(retired_file, (long_ago, long_ago))

    assert old not in kids(client)
    keys.keys_generate(rotate=True)  # the next rotation deletes it
    assert not retired_file.exists()


def test_service_tokens_carry_the_internal_scope(gateway_keys):
    claims = token_decode(service_token_issue(service="orders", minutes=5))
    assert (claims["sub"], claims["scope"], claims["token_type"]) == (
        "service:orders",
        "internal",
        "access",
    )
    assert claims["exp"] - claims["iat"] == 300


def test_issue_service_token_prints_a_verifiable_token(gateway_keys):
    out = io.StringIO()
    call_command("issue_service_token", "ops", "--minutes", "2", stdout=out)
    assert token_decode(out.getvalue().strip())["sub"] == "service:ops"


def test_a_missing_key_is_a_clear_configuration_error(settings, tmp_path):
    settings.JWT = {**settings.JWT, "PRIVATE_KEY_FILE": str(tmp_path / "none.pem")}
    keys.signing_key_cache.clear()
    with pytest.raises(Exception, match="generate_jwt_keys"):
        keys.signing_key()
