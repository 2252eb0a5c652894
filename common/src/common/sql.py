"""Plain statements for the saga's hot path, with the ORM's values and the ORM's rows.

Compiling a query costs the ORM far more than running it: in a profile of the saga
under load (issue #16, py-spy), ``bulk_create`` and a ten-field ``update()`` took
about 1 ms of an orders worker's 5 ms an order, before any statement left the
process. These helpers write the same statements directly: table and column names
from the model's meta, every value prepared by its own field (``get_db_prep_save``,
as the ORM does: a UUID as SQLite's hex, JSON adapted, an aware datetime as the
backend keeps it), so rows read back through the ORM exactly as if it had written
them, on PostgreSQL and SQLite alike. Rows read by a plain SELECT (or ``RETURNING``)
of ``columns(model)`` become model instances through the converters the ORM would
apply (``rows_read``), worked out once per model and database rather than per query.
On PostgreSQL their statements run prepared (``prepared``): parsed and planned once per
connection, not once per statement. Use them where a profile says so; the ORM stays
the rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.db import connections, models
from django.db.backends.utils import CursorWrapper

Statement = tuple[str, Sequence[Any]]  # SQL with %s placeholders, and its parameters


def statements_run(statements: Sequence[Statement | None], *, using: str = "default") -> None:
    """Run the statements (None ones skipped) in order: in one round trip on PostgreSQL,
    each a prepared statement (``prepared``), one call each elsewhere (SQLite runs one
    statement a call)."""
    present = [statement for statement in statements if statement is not None]
    connection = connections[using]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql" and present:
            cursor.execute(
                "; ".join(prepared(cursor, sql) for sql, _ in present),
                [value for _, params in present for value in params],
            )
        else:
            for sql, params in present:
                cursor.execute(sql, params)


def insert_statement(rows: Sequence[models.Model], *, using: str = "default") -> Statement:
    """The INSERT of the rows (of one model) in one statement, their ids left to the
    database; ``auto_now`` and ``auto_now_add`` values are set on the objects, as
    ``save()`` would."""
    meta = rows[0]._meta
    connection = connections[using]
    quote = connection.ops.quote_name
    fields = [field for field in meta.concrete_fields if not field.primary_key or not _auto(field)]
    params: list[Any] = []
    for row in rows:
        params.extend(
            field.get_db_prep_save(field.pre_save(row, True), connection) for field in fields
        )
    placeholders = "(" + ", ".join(["%s"] * len(fields)) + ")"
    return (
        f"INSERT INTO {quote(meta.db_table)} "  # noqa: S608 - names from the model's meta
        f"({', '.join(quote(field.column) for field in fields)}) "
        f"VALUES {', '.join([placeholders] * len(rows))}",
        params,
    )


def rows_insert(rows: Sequence[models.Model], *, using: str = "default") -> None:
    """INSERT the rows (of one model) in one statement, without reading their ids back
    (an auto id stays unset on them)."""
    if rows:
        statements_run([insert_statement(rows, using=using)], using=using)


def row_insert(
    row: models.Model, *, using: str = "default", after: Sequence[Statement] = ()
) -> None:
    """INSERT one row and set its auto id on it: ``save(force_insert=True)``, less the
    compiling (``auto_now`` fields set as ``save()`` sets them). ``after``: statements
    run first, in the same round trip on PostgreSQL (``statements_run``)."""
    meta = row._meta
    connection = connections[using]
    statement, params = insert_statement([row], using=using)
    auto = meta.pk if _auto(meta.pk) else None
    returning = auto is not None and connection.features.can_return_columns_from_insert
    if returning:
        statement += f" RETURNING {connection.ops.quote_name(auto.column)}"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The cursor holds the last statement's result: the INSERT's id.
            statement = "; ".join(prepared(cursor, sql) for sql, _ in [*after, (statement, ())])
            params = [*(value for _, values in after for value in values), *params]
        elif after:
            statements_run(after, using=using)
        cursor.execute(statement, params)  # values are parameters
        if auto is not None:
            row.pk = cursor.fetchone()[0] if returning else cursor.lastrowid
    row._state.adding, row._state.db = False, using


def upsert_statement(row: models.Model, *, using: str = "default") -> Statement:
    """The INSERT of the row, or, when its primary key is taken, the UPDATE of every
    other column to the row's values (``ON CONFLICT ... DO UPDATE``: PostgreSQL, and
    SQLite since 3.24)."""
    meta = row._meta
    quote = connections[using].ops.quote_name
    statement, params = insert_statement([row], using=using)
    updates = ", ".join(
        f"{quote(field.column)} = EXCLUDED.{quote(field.column)}"
        for field in meta.concrete_fields
        if not field.primary_key
    )
    return f"{statement} ON CONFLICT ({quote(meta.pk.column)}) DO UPDATE SET {updates}", params


def update_statement(
    model: type[models.Model], *, pk: Any, fields: Mapping[str, Any], using: str = "default"
) -> Statement:
    """The UPDATE of one row's fields (by name, values as the model holds them)."""
    meta = model._meta
    connection = connections[using]
    quote = connection.ops.quote_name
    columns, params = [], []
    for name, value in fields.items():
        field = meta.get_field(name)
        columns.append(f"{quote(field.column)} = %s")
        params.append(field.get_db_prep_save(value, connection))
    params.append(meta.pk.get_db_prep_save(pk, connection))
    return (
        f"UPDATE {quote(meta.db_table)} SET {', '.join(columns)} "  # noqa: S608 - names from the meta
        f"WHERE {quote(meta.pk.column)} = %s",
        params,
    )


def row_update(
    model: type[models.Model], *, pk: Any, fields: Mapping[str, Any], using: str = "default"
) -> int:
    """UPDATE one row's fields (by name, values as the model holds them); the rows changed."""
    sql, params = update_statement(model, pk=pk, fields=fields, using=using)
    with connections[using].cursor() as cursor:
        cursor.execute(prepared(cursor, sql), params)
        return cursor.rowcount


_PLACEHOLDER = re.compile(r"%s|%%")
# Statements whose text carries their values would each be prepared anew: past this many
# on one connection, the rest run unprepared.
PREPARED_PER_CONNECTION = 200


def prepared(cursor: CursorWrapper, sql: str) -> str:
    """What to execute for ``sql`` (``%s`` placeholders) with the same parameters: on
    PostgreSQL ``EXECUTE`` of a statement prepared once per connection (its own round
    trip, the first time), elsewhere ``sql`` itself.

    For the hot path's statements, whose planning cost as much as running them:
    PostgreSQL planned the relay's claim in 194 µs and ran it in 128, the saga's locked
    read, catalog's shelves and users' account in about 100 µs each and ran them in
    45-65, a write 10-50 µs (issue #16, pg_stat_statements with track_planning, 20
    orders/s). A prepared statement is parsed once and, after five runs, keeps a generic
    plan: those four reads prepared took the shop from 29.3 to 27.4 ms of CPU an order
    (PostgreSQL 6.1 → 5.0) side by side. It outlives a rolled-back transaction, so it is
    known per connection, not per transaction.
    """
    connection = cursor.db
    if connection.vendor != "postgresql":
        return sql
    known = connection.__dict__.get("eshop_prepared")
    if known is None or known[0] is not connection.connection:  # a new connection
        known = connection.__dict__["eshop_prepared"] = (connection.connection, {})
    statements: dict[str, tuple[str, int]] = known[1]
    if sql not in statements:
        if len(statements) >= PREPARED_PER_CONNECTION:
            return sql
        count = 0

        def numbered(match: re.Match[str]) -> str:
            nonlocal count
            if match.group() == "%%":
                return "%"
            count += 1
            return f"${count}"

        name = f"eshop_{len(statements) + 1}"
        # Under Django's cursor, not through it: once a connection, it is not one of the
        # statements its caller counts (tests of round trips, DEBUG's query log).
        with connection.wrap_database_errors:
            cursor.cursor.execute(f"PREPARE {name} AS {_PLACEHOLDER.sub(numbered, sql)}")
        statements[sql] = (name, count)
    name, count = statements[sql]
    return f"EXECUTE {name}({', '.join(['%s'] * count)})" if count else f"EXECUTE {name}"


def columns(model: type[models.Model], *, using: str = "default") -> str:
    """The model's columns, quoted, in the order ``rows_read`` expects them."""
    quote = connections[using].ops.quote_name
    return ", ".join(quote(field.column) for field in model._meta.concrete_fields)


def rows_read(
    model: type[models.Model], cursor: CursorWrapper, *, using: str = "default"
) -> list[models.Model]:
    """The rows a statement selecting ``columns(model)`` returned, as model instances."""
    connection = connections[using]
    names, converters = _reading(model, connection)
    rows = []
    for values in cursor.fetchall():
        values = list(values)
        for position, field, field_converters in converters:
            for converter in field_converters:
                values[position] = converter(values[position], field, connection)
        rows.append(model.from_db(using, names, values))
    return rows


def _reading(
    model: type[models.Model], connection: Any
) -> tuple[list[str], list[tuple[int, Any, list[Callable]]]]:
    """Field names and, per column that needs any, the ORM's converters (backend's, then
    the field's: JSON text to objects, SQLite's hex to UUIDs, ...), kept on the
    connection (one per thread, as Django's are) after the first time."""
    known = connection.__dict__.setdefault("eshop_rows_read", {})
    if model not in known:
        fields = model._meta.concrete_fields
        converters = []
        for position, field in enumerate(fields):
            column = field.get_col(model._meta.db_table)
            found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            if found:
                converters.append((position, column, found))
        known[model] = ([field.attname for field in fields], converters)
    return known[model]


def _auto(field: models.Field) -> bool:
    return isinstance(field, models.AutoField | models.BigAutoField | models.SmallAutoField)
