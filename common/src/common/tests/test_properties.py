"""Property tests (Hypothesis) of the parsers every service shares.

Each property: any input gets a valid parse or the documented 4xx problem, never an
unexpected exception (a 500); a valid input round-trips. Inputs arrive as a client
can send them: any token text, any ``Authorization`` bytes, any header and payload
structure (signed with the trusted key too, so that claim checks are reached), any
page text (digits of every script, huge values), any JSON value for a typed field.
"""

from __future__ import annotations

import base64
import functools
import json
import time
from typing import Any

import jwt
import pytest
from django.conf import settings as django_settings
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from common.auth import ALGORITHM, InvalidToken, VerifiedTokens, token_decode
from common.pagination import PageNumberPagination

# Short runs: the whole property suite of the project stays well under a minute.
# Function-scoped fixtures (keys, settings) are the same for every example on purpose.
PROPERTY = settings(
    max_examples=100,
    deadline=None,
    # The same cases on every run (a reviewer sees what CI saw); no example database.
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Whole requests through Django and DRF: fewer, each one costs milliseconds.
PROPERTY_HTTP = settings(PROPERTY, max_examples=40)
WHOAMI = "/t/whoami/"
# One clock for the strategies (Hypothesis replays a case and must draw the same values).
NOW = int(time.time())

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: Any) -> str:
    return b64(json.dumps(value).encode())


@functools.cache
def private_key(pem: bytes) -> Any:
    """Loaded once: loading checks the RSA key, which costs more than signing with it."""
    return jwt.get_algorithm_by_name(ALGORITHM).prepare_key(pem)


def sign(keys: Any, payload: dict[str, Any]) -> str:
    """An access token as the gateway signs it: ``payload`` over the valid claims."""
    now = NOW
    claims = {
        "sub": "7",
        "email": "ann@example.com",
        "name": "Ann",
        "is_staff": False,
        "roles": [],
        "token_type": "access",
        "iat": now,
        "exp": now + 3600,
        "jti": "a1b2c3",
        "iss": django_settings.JWT["ISSUER"],
        "aud": django_settings.JWT["AUDIENCE"],
        **payload,
    }
    return jwt.encode(
        claims, private_key(keys.private_pem), algorithm=ALGORITHM, headers={"kid": keys.kid}
    )


CLAIM_NAMES = sorted(
    ["sub", "email", "name", "is_staff", "roles", "scope", "token_type", "iat", "exp", "jti"]
)


@st.composite
def claims(draw: st.DrawFn, *, issuer: str, audience: str) -> dict[str, Any]:
    """A payload: each contract claim valid, missing or any JSON value, plus extras."""
    now = NOW
    valid = {
        "sub": "7",
        "email": "ann@example.com",
        "name": "Ann",
        "is_staff": False,
        "roles": ["customer"],
        "scope": "",
        "token_type": "access",
        "iat": now,
        "exp": now + 3600,
        "jti": "a1b2c3",
        "iss": issuer,
        "aud": audience,
    }
    payload = dict(valid)
    # A few claims at a time go missing or take any value: the others stay valid, so
    # that the checks after the signature's are reached.
    for name in draw(st.sets(st.sampled_from(sorted(valid)), max_size=3)):
        if draw(st.booleans()):
            del payload[name]
        else:
            payload[name] = draw(
                json_values
                # numbers as text, in several scripts: int() reads them all
                | st.integers(now, now + 10**6).map(str)
                | st.text(alphabet="0123456789٣۹१", min_size=1, max_size=14)
            )
    payload.update(draw(st.dictionaries(st.text(max_size=6), json_values, max_size=2)))
    return payload


@st.composite
def signed_tokens(draw: st.DrawFn, *, keys: Any, issuer: str, audience: str) -> str:
    """Tokens with any header and payload; the signature is the trusted key's or junk."""
    header = draw(
        st.one_of(
            st.just({"alg": ALGORITHM, "kid": keys.kid, "typ": "JWT"}),
            st.just({"alg": ALGORITHM, "kid": keys.kid}),
            st.fixed_dictionaries(
                {"alg": st.sampled_from([ALGORITHM, "none", "HS256"]) | json_values},
                optional={"kid": st.just(keys.kid) | json_values, "typ": json_values},
            ),
            json_values,
        )
    )
    payload = draw(claims(issuer=issuer, audience=audience) | json_values)
    signing_input = f"{segment(header)}.{segment(payload)}"
    if draw(st.integers(0, 3)):  # mostly signed: the claim checks come after the signature
        signature = jwt.get_algorithm_by_name(ALGORITHM).sign(
            signing_input.encode(),
            private_key(keys.private_pem),
        )
    else:
        signature = draw(st.binary(max_size=64))
    return f"{signing_input}.{b64(signature)}"


arbitrary_tokens = st.one_of(
    st.text(max_size=200),
    st.lists(st.binary(max_size=40).map(b64), min_size=1, max_size=5).map(".".join),
    st.lists(json_values.map(segment), min_size=1, max_size=4).map(".".join),
)


def assert_refused_as_401(response: Any) -> None:
    assert response.status_code == 401, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] in ("authentication_failed", "not_authenticated")


@PROPERTY
@given(token=arbitrary_tokens)
@example(token=segment([]) + ".e30.x")
@example(token=b64(b"[" * 5000 + b"]" * 5000) + ".e30.x")  # deeper than json's recursion
@example(token="\udcff.x.y")
def test_any_token_text_is_claims_or_invalid(jwt_keys, token):
    try:
        decoded = token_decode(token)
    except InvalidToken:
        return
    assert isinstance(decoded, dict)


@PROPERTY_HTTP
@given(data=st.data())
def test_any_header_and_payload_structure_is_a_user_or_a_401(jwt_keys, settings, data):
    token = data.draw(
        signed_tokens(
            keys=jwt_keys, issuer=settings.JWT["ISSUER"], audience=settings.JWT["AUDIENCE"]
        )
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    # Twice: the second answer comes from the verified-token memory.
    for response in (client.get(WHOAMI), client.get(WHOAMI)):
        if response.status_code != 200:
            assert_refused_as_401(response)


any_claim_value = (
    json_values
    | st.integers(min_value=0, max_value=2**63).map(str)  # digits as text: int() reads them
    | st.text(alphabet="0123456789٣۹१", min_size=1, max_size=14)
)


@PROPERTY_HTTP
@given(name=st.sampled_from(CLAIM_NAMES), value=any_claim_value)
@example(name="exp", value="4102444800")
@example(name="roles", value=7)
def test_a_signed_token_with_any_value_for_one_claim_is_a_user_or_a_401(jwt_keys, name, value):
    token = sign(jwt_keys, {name: value})
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    for response in (client.get(WHOAMI), client.get(WHOAMI)):  # the second from memory
        if response.status_code != 200:
            assert_refused_as_401(response)


@PROPERTY
@given(data=st.data())
def test_a_token_accepted_once_is_accepted_again_from_memory(jwt_keys, settings, data):
    token = data.draw(
        signed_tokens(
            keys=jwt_keys, issuer=settings.JWT["ISSUER"], audience=settings.JWT["AUDIENCE"]
        )
    )
    verifier = VerifiedTokens()
    try:
        first = verifier.verify(token)
    except InvalidToken:
        return
    assert verifier.verify(token) == first


@PROPERTY_HTTP
@given(
    header=st.binary(max_size=120).filter(lambda raw: b"\r" not in raw and b"\n" not in raw)
    | st.builds(lambda s: b"Bearer " + s, st.binary(max_size=120))
)
@example(header=b"Bearer \xff\xfe")
@example(header=b"bearer  a b")
def test_any_authorization_header_bytes_are_anonymous_or_a_401(jwt_keys, header):
    # The WSGI environ holds headers as latin-1 text: every byte maps to one character.
    response = APIClient().get(WHOAMI, HTTP_AUTHORIZATION=header.decode("latin-1"))

    assert_refused_as_401(response)  # whoami needs a user: no valid token here


@PROPERTY_HTTP
@given(sub=st.text(min_size=1, max_size=40), is_staff=st.booleans(), roles=st.lists(st.text()))
def test_valid_claims_round_trip_into_the_request_user(jwt_keys, sub, is_staff, roles):
    token = sign(jwt_keys, {"sub": sub, "is_staff": is_staff, "roles": roles})

    response = APIClient().get(WHOAMI, HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 200, response.content
    assert response.json()["id"] == sub
    assert response.json()["is_staff"] is is_staff
    assert response.json()["roles"] == roles


# --------------------------------------------------------------------- pagination

# Digits other scripts write (Arabic-Indic, fullwidth, superscripts, a Roman numeral):
# str.isdigit() and int() take some of them.
OTHER_DIGITS = "".join(
    map(chr, [*range(0x660, 0x66A), *range(0xFF10, 0xFF1A), 0xB2, 0xB3, 0xB9, 0x2167])
)
paginator = PageNumberPagination()
factory = APIRequestFactory()

page_texts = st.one_of(
    st.text(max_size=30),
    st.integers().map(str),
    st.text(alphabet="0123456789" + OTHER_DIGITS, min_size=1, max_size=25),
    st.integers(min_value=10**17, max_value=10**40).map(str),
)


def parse_or_error(parse: Any, request: Request) -> int | ValidationError:
    try:
        return parse(request)
    except ValidationError as error:
        return error


@PROPERTY
@given(values=st.lists(page_texts, max_size=3), sizes=st.lists(page_texts, max_size=3))
def test_any_page_and_page_size_is_a_positive_int_or_a_400(values, sizes):
    request = Request(factory.get("/", {"page": values, "page_size": sizes}))
    for parse, name, given_values in (
        (lambda r: paginator.get_page_number(r, None), "page", values),
        (paginator.get_page_size, "page_size", sizes),
    ):
        parsed = parse_or_error(parse, request)
        if isinstance(parsed, ValidationError):
            assert set(parsed.detail) == {name}
            continue
        assert type(parsed) is int
        assert 1 <= parsed <= 10**18
        if given_values:
            # Only one plain ASCII number is accepted, and it means what it says.
            (text,) = given_values
            assert text.isascii()
            assert text.isdigit()
            assert parsed == min(int(text), 10**18 if name == "page" else paginator.max_page_size)


@PROPERTY
@given(page=st.integers(min_value=1, max_value=10**17), size=st.integers(1, 10**17))
def test_valid_pages_round_trip_and_sizes_are_capped(page, size):
    request = Request(factory.get("/", {"page": str(page), "page_size": str(size)}))

    assert paginator.get_page_number(request, None) == page
    assert paginator.get_page_size(request) == min(size, paginator.max_page_size)


# --------------------------------------------------------------------- strict JSON types


class Typed(serializers.Serializer):
    name = serializers.CharField(max_length=20)
    flag = serializers.BooleanField()
    count = serializers.IntegerField(min_value=0, max_value=1000)


@PROPERTY
@given(body=st.dictionaries(st.sampled_from(["name", "flag", "count"]), json_values, max_size=3))
def test_any_json_value_for_a_typed_field_is_that_type_or_a_field_error(body):
    serializer = Typed(data=body)
    if serializer.is_valid():
        assert isinstance(serializer.validated_data["name"], str)
        assert isinstance(serializer.validated_data["flag"], bool)
        assert type(serializer.validated_data["count"]) is int
        assert isinstance(body["name"], str)
        assert isinstance(body["flag"], bool)
    else:
        assert set(serializer.errors) <= {"name", "flag", "count"}


@PROPERTY
@given(
    name=st.text(min_size=1, max_size=20).filter(lambda s: s.strip() == s and s),
    flag=st.booleans(),
    count=st.integers(0, 1000),
)
def test_values_of_the_stated_type_round_trip(name, flag, count):
    assume("\x00" not in name)  # DRF refuses NUL characters in any string
    serializer = Typed(data={"name": name, "flag": flag, "count": count})

    assert serializer.is_valid(), serializer.errors
    assert serializer.validated_data == {"name": name, "flag": flag, "count": count}


@pytest.mark.parametrize("name", ["", " " * 21, "x" * 21])
def test_the_typed_serializer_refuses_what_the_schema_refuses(name):
    assert not Typed(data={"name": name, "flag": True, "count": 0}).is_valid()
