"""Refresh tokens are never stored or shown in clear: not in any table, not in the admin."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta

import pytest
from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django.test import Client
from rest_framework.test import APIClient

from identity.models import IssuedRefreshToken, RefreshTokenFamily
from identity.tests.conftest import PASSWORD
from identity.tokens import GatewayRefreshToken


def every_stored_value() -> str:
    """Every value of every row of every table of the gateway's database, as text."""
    values = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            values.extend(str(value) for row in cursor.fetchall() for value in row)
    return "\n".join(values)


def secrets_of(*tokens: str) -> list[str]:
    """Each token whole and its signature alone (the part that makes it usable)."""
    return [part for token in tokens for part in (token, token.rsplit(".", 1)[1])]


def session(api: APIClient) -> list[str]:
    """Log in, rotate once, log out: every token the client got on the way."""
    first = api.post("/api/auth/token/", {"email": "ann@example.com", "password": PASSWORD}).json()
    second = api.post("/api/auth/token/refresh/", {"refresh": first["refresh"]}).json()
    api.post("/api/auth/token/refresh/", {"refresh": first["refresh"]})  # a reuse, revoking
    api.post("/api/auth/logout/", {"refresh": second["refresh"]})
    return [first["access"], first["refresh"], second["access"], second["refresh"]]


@pytest.mark.django_db
def test_no_table_holds_a_token(customers):
    tokens = session(APIClient())

    stored = every_stored_value()

    assert IssuedRefreshToken.objects.count() == 2
    for secret in secrets_of(*tokens):
        assert secret not in stored


@pytest.mark.django_db
def test_the_admin_shows_token_ids_and_never_a_token(customers):
    tokens = session(APIClient())
    admin = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    browser = Client()
    browser.force_login(admin)
    family = RefreshTokenFamily.objects.get()
    issued = IssuedRefreshToken.objects.first()
    pages = [
        "/admin/identity/refreshtokenfamily/",
        f"/admin/identity/refreshtokenfamily/{family.pk}/change/",
        "/admin/identity/issuedrefreshtoken/",
        f"/admin/identity/issuedrefreshtoken/{issued.pk}/change/",
    ]

    html = ""
    for page in pages:
        response = browser.get(page)
        assert response.status_code == 200, page
        html += response.content.decode()

    assert issued.jti in html
    for secret in secrets_of(*tokens):
        assert secret not in html


@pytest.mark.django_db
def test_staff_can_revoke_a_family_in_the_admin(customers):
    api = APIClient()
    refresh = api.post(
        "/api/auth/token/", {"email": "ann@example.com", "password": PASSWORD}
    ).json()["refresh"]
    admin = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    browser = Client()
    browser.force_login(admin)

    browser.post(
        "/admin/identity/refreshtokenfamily/",
        {"action": "revoke", "_selected_action": [RefreshTokenFamily.objects.get().pk]},
    )

    assert RefreshTokenFamily.objects.get().revoked_reason == "staff"
    assert api.post("/api/auth/token/refresh/", {"refresh": refresh}).status_code == 401


# --- the move from SimpleJWT's token_blacklist tables ----------------------------------------

_OLD_TABLES = """
CREATE TABLE token_blacklist_outstandingtoken (
    id integer PRIMARY KEY, jti varchar(255) UNIQUE NOT NULL, token text NOT NULL,
    created_at timestamp NULL, expires_at timestamp NOT NULL, user_id integer NULL);
CREATE TABLE token_blacklist_blacklistedtoken (
    id integer PRIMARY KEY, blacklisted_at timestamp NOT NULL,
    token_id integer UNIQUE NOT NULL REFERENCES token_blacklist_outstandingtoken (id));
"""


def old_token(sub: str, *, expired: bool = False) -> GatewayRefreshToken:
    token = GatewayRefreshToken()
    token["sub"] = sub
    if expired:
        token.set_exp(from_time=datetime.now(UTC) - timedelta(days=30))
    return token


@pytest.mark.django_db(transaction=True)
def test_migration_keeps_valid_tokens_by_id_and_drops_the_old_tables(gateway_keys):
    live, spent, expired = old_token("1"), old_token("2"), old_token("3", expired=True)
    with connection.cursor() as cursor:
        for statement in _OLD_TABLES.split(";"):
            if statement.strip():
                cursor.execute(statement)
        for pk, token in enumerate((live, spent, expired), start=1):
            cursor.execute(
                "INSERT INTO token_blacklist_outstandingtoken (id, jti, token, expires_at)"
                " VALUES (%s, %s, %s, %s)",
                [pk, token["jti"], str(token), datetime.fromtimestamp(token["exp"], UTC)],
            )
        cursor.execute(
            "INSERT INTO token_blacklist_blacklistedtoken (id, blacklisted_at, token_id)"
            " VALUES (1, %s, 2)",
            [datetime.now(UTC)],
        )
    MigrationRecorder(connection).record_applied("token_blacklist", "0001_initial")
    migration = importlib.import_module("identity.migrations.0002_from_simplejwt_blacklist")

    with connection.schema_editor() as editor:
        migration.move_from_simplejwt_blacklist(django_apps, editor)

    moved = {token.jti: token for token in IssuedRefreshToken.objects.select_related("family")}
    assert set(moved) == {live["jti"], spent["jti"]}
    assert moved[live["jti"]].used_at is None
    assert moved[spent["jti"]].used_at is not None
    assert moved[live["jti"]].family.id == live["jti"]
    assert moved[live["jti"]].family.subject == "1"
    assert not {"token_blacklist_outstandingtoken", "token_blacklist_blacklistedtoken"} & set(
        connection.introspection.table_names()
    )
    assert not MigrationRecorder(connection).migration_qs.filter(app="token_blacklist").exists()
    assert str(live) not in every_stored_value()
