"""Property tests (Hypothesis) of the gateway's own token parsing (identity/tokens.py).

Whatever a client sends as a refresh token (any text, any header and payload
structure, any JSON value, any body bytes) is a parse, a TokenBackendError, or on the
endpoints a 400/401/415 problem: never an unexpected exception or a 500.
"""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rest_framework_simplejwt.exceptions import TokenBackendError

from identity.keys import signing_key
from identity.tokens import GatewayRefreshToken, keyed_backend

pytestmark = pytest.mark.django_db

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    # The same cases on every run (a reviewer sees what CI saw); no example database.
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
REFRESH = "/api/auth/token/refresh/"
LOGOUT = "/api/auth/logout/"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=10,
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: object) -> str:
    return b64(json.dumps(value).encode())


@st.composite
def structured_tokens(draw: st.DrawFn) -> str:
    """Any header and payload; the kid is the gateway's own now and then."""
    kid = signing_key().kid
    header = draw(
        st.fixed_dictionaries(
            {"alg": st.sampled_from(["RS256", "none", "HS256"]) | json_values},
            optional={"kid": st.just(kid) | json_values},
        )
        | json_values
    )
    payload = draw(json_values)
    return f"{segment(header)}.{segment(payload)}.{b64(draw(st.binary(max_size=32)))}"


tokens = st.one_of(
    st.text(max_size=120),
    st.lists(st.binary(max_size=30).map(b64), min_size=1, max_size=4).map(".".join),
    structured_tokens(),
)


@PROPERTY
@given(token=tokens)
@example(token=b64(b"[" * 5000 + b"]" * 5000) + ".e30.x")
def test_the_backend_decodes_any_token_or_refuses_it(gateway_keys, token):
    try:
        claims = keyed_backend().decode(token)
    except TokenBackendError:
        return
    assert isinstance(claims, dict)


@PROPERTY
@given(refresh=tokens | json_values, path=st.sampled_from([REFRESH, LOGOUT]))
def test_any_refresh_value_is_a_400_or_401_problem(api, gateway_keys, refresh, path):
    response = api.post(path, {"refresh": refresh}, format="json")

    assert response.status_code in (400, 401), response.content
    assert response["Content-Type"] == "application/problem+json"


@PROPERTY
@given(
    body=st.binary(max_size=300),
    content_type=st.sampled_from(
        [
            "application/json",
            "application/x-www-form-urlencoded",
            "text/plain",
            "multipart/form-data",
        ]
    ),
)
def test_any_body_bytes_are_a_4xx_problem(api, gateway_keys, body, content_type):
    response = api.generic("POST", REFRESH, body, content_type=content_type)

    assert response.status_code in (400, 401, 415), response.content
    assert response["Content-Type"] == "application/problem+json"


def test_a_refresh_token_of_the_gateway_round_trips_through_the_backend(gateway_keys):
    token = GatewayRefreshToken()
    token["sub"] = "42"

    claims = keyed_backend().decode(str(token))

    assert claims["sub"] == "42"
    assert claims["jti"] == token["jti"]
