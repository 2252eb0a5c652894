"""Move the refresh tokens SimpleJWT's token_blacklist app recorded, then drop its tables.

Its ``token_blacklist_outstandingtoken`` table held every refresh token's text
(and its admin showed it). The tokens still valid keep working: each becomes
a family of its own (they carry no ``fam`` claim), a blacklisted one is
recorded as spent. Then both tables and the app's migration records go.
"""

from datetime import UTC, datetime

import jwt
from django.db import migrations
from django.db.migrations.recorder import MigrationRecorder

_OUTSTANDING = "token_blacklist_outstandingtoken"
_BLACKLISTED = "token_blacklist_blacklistedtoken"


def move_from_simplejwt_blacklist(apps, schema_editor):
    connection = schema_editor.connection
    tables = set(connection.introspection.table_names())
    if _OUTSTANDING in tables:
        family_model = apps.get_model("identity", "RefreshTokenFamily")
        token_model = apps.get_model("identity", "IssuedRefreshToken")
        now = datetime.now(UTC)
        blacklisted = (
            f"SELECT token_id FROM {_BLACKLISTED}" if _BLACKLISTED in tables else "SELECT NULL"
        )
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT o.jti, o.token, o.id IN ({blacklisted}) FROM {_OUTSTANDING} o"  # noqa: S608
            )
            rows = cursor.fetchall()
        for jti, text, spent in rows:
            try:
                claims = jwt.decode(text, options={"verify_signature": False})
            except jwt.InvalidTokenError:
                continue
            expires_at = datetime.fromtimestamp(int(claims.get("exp", 0)), UTC)
            if expires_at <= now or token_model.objects.filter(jti=jti).exists():
                continue
            created_at = datetime.fromtimestamp(int(claims.get("iat", now.timestamp())), UTC)
            family, _ = family_model.objects.get_or_create(
                id=jti, defaults={"subject": str(claims.get("sub", "")), "created_at": created_at}
            )
            token_model.objects.create(
                jti=jti,
                family=family,
                created_at=created_at,
                expires_at=expires_at,
                used_at=now if spent else None,
            )
    for table in (_BLACKLISTED, _OUTSTANDING):  # the one that refers to the other first
        if table in tables:
            schema_editor.execute(f"DROP TABLE {schema_editor.quote_name(table)}")
    MigrationRecorder(connection).migration_qs.filter(app="token_blacklist").delete()


class Migration(migrations.Migration):
    dependencies = [("identity", "0001_initial")]

    operations = [
        migrations.RunPython(move_from_simplejwt_blacklist, migrations.RunPython.noop),
    ]
