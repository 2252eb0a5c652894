"""common.sql: plain statements write and read rows as the ORM does (real PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from common.events.models import InboxMessage, OutboxMessage
from common.sql import (
    columns,
    insert_statement,
    prepared,
    row_insert,
    row_update,
    rows_insert,
    rows_read,
    statements_run,
    upsert_statement,
)

pytestmark = pytest.mark.django_db


def outbox_row(**changes) -> OutboxMessage:
    values = {
        "id": uuid.uuid4(),
        "type": "order.placed",
        "subject": "o-1",
        "envelope": {"data": {"lines": [{"product_id": 1, "unit_price": "9.50"}]}, "ü": "ß"},
        "created_at": datetime(2026, 12, 6, 20, 15, 30, 123456, tzinfo=UTC),
    }
    return OutboxMessage(**{**values, **changes})


def fields_of(row) -> dict:
    return {field.attname: getattr(row, field.attname) for field in row._meta.concrete_fields}


def test_inserted_rows_read_back_through_the_orm_as_written():
    rows = [outbox_row(), outbox_row(subject="o-2", published_at=timezone.now(), attempts=2)]

    rows_insert(rows)

    for row in rows:
        assert fields_of(OutboxMessage.objects.get(pk=row.pk)) == fields_of(row)


def test_insert_sets_auto_now_add_on_the_objects_and_leaves_auto_ids_to_the_database():
    before = timezone.now()
    row = InboxMessage(consumer="q", message_id=uuid.uuid4(), type="order.placed")

    rows_insert([row])

    assert row.pk is None
    stored = InboxMessage.objects.get(message_id=row.message_id)
    assert before <= row.processed_at == stored.processed_at <= timezone.now()


def test_a_duplicate_insert_raises_djangos_integrity_error_and_writes_nothing():
    first = outbox_row()
    rows_insert([first])

    with pytest.raises(IntegrityError), transaction.atomic():
        rows_insert([outbox_row(), outbox_row(id=first.id)])

    assert OutboxMessage.objects.count() == 1


def test_update_changes_the_named_fields_of_one_row():
    row, other = outbox_row(), outbox_row()
    rows_insert([row, other])
    published = timezone.now() + timedelta(seconds=5)

    changed = row_update(
        OutboxMessage, pk=row.pk, fields={"published_at": published, "envelope": {"n": [1, 2]}}
    )

    assert changed == 1
    stored = OutboxMessage.objects.get(pk=row.pk)
    assert (stored.published_at, stored.envelope, stored.subject) == (
        published,
        {"n": [1, 2]},
        "o-1",
    )
    assert fields_of(OutboxMessage.objects.get(pk=other.pk)) == fields_of(other)


def test_update_of_a_missing_row_changes_nothing():
    assert row_update(OutboxMessage, pk=uuid.uuid4(), fields={"attempts": 3}) == 0


def test_an_upsert_inserts_a_new_row_and_replaces_the_columns_of_an_existing_one():
    row, other = outbox_row(), outbox_row(subject="o-2")
    statements_run([upsert_statement(row), upsert_statement(other)])
    assert fields_of(OutboxMessage.objects.get(pk=row.pk)) == fields_of(row)

    changed = outbox_row(id=row.id, subject="o-9", attempts=7, envelope={"n": [3]})
    statements_run([upsert_statement(changed)])

    assert OutboxMessage.objects.count() == 2
    assert fields_of(OutboxMessage.objects.get(pk=row.pk)) == fields_of(changed)
    assert fields_of(OutboxMessage.objects.get(pk=other.pk)) == fields_of(other)


def test_rows_read_gives_the_instances_the_orm_would():
    rows = [outbox_row(), outbox_row(published_at=timezone.now())]
    rows_insert(rows)

    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns(OutboxMessage)} FROM {OutboxMessage._meta.db_table} ORDER BY subject"  # noqa: S608
        )
        read = rows_read(OutboxMessage, cursor)

    assert [fields_of(row) for row in read] == [
        fields_of(row) for row in OutboxMessage.objects.order_by("subject")
    ]
    assert all(isinstance(row.envelope, dict) and isinstance(row.id, uuid.UUID) for row in read)
    assert all(not row._state.adding for row in read)  # as loaded: save() updates


def test_insert_of_one_row_sets_its_auto_id_and_leaves_it_as_loaded():
    row = InboxMessage(consumer="q", message_id=uuid.uuid4(), type="order.placed")

    row_insert(row)

    assert row.pk is not None
    assert not row._state.adding
    assert fields_of(InboxMessage.objects.get(pk=row.pk)) == fields_of(row)
    row.type = "order.approved"
    row.save()  # an UPDATE of the row written, not a second INSERT
    assert InboxMessage.objects.get(pk=row.pk).type == "order.approved"
    assert InboxMessage.objects.count() == 1


def test_insert_of_one_row_with_its_own_key():
    row = outbox_row()

    row_insert(row)

    assert fields_of(OutboxMessage.objects.get(pk=row.pk)) == fields_of(row)


def test_insert_of_one_row_after_statements_sets_its_auto_id_in_one_round_trip():
    from django.test.utils import CaptureQueriesContext

    earlier = InboxMessage(consumer="q", message_id=uuid.uuid4(), type="order.placed")
    row_insert(earlier)
    table = InboxMessage._meta.db_table
    retyped = (f"UPDATE {table} SET type = %s WHERE id = %s", ["order.rejected", earlier.pk])  # noqa: S608
    row = InboxMessage(consumer="q", message_id=uuid.uuid4(), type="order.approved")

    with CaptureQueriesContext(connection) as sent:
        row_insert(row, after=[retyped])

    assert len(sent) == 1
    assert row.pk is not None
    assert row.pk != earlier.pk
    assert fields_of(InboxMessage.objects.get(pk=row.pk)) == fields_of(row)
    assert InboxMessage.objects.get(pk=earlier.pk).type == "order.rejected"


def test_a_failing_insert_after_statements_undoes_them_with_its_transaction():
    earlier = InboxMessage(consumer="q", message_id=uuid.uuid4(), type="order.placed")
    row_insert(earlier)
    table = InboxMessage._meta.db_table
    retyped = (f"UPDATE {table} SET type = %s WHERE id = %s", ["order.rejected", earlier.pk])  # noqa: S608
    again = InboxMessage(consumer="q", message_id=earlier.message_id, type="order.placed")

    with pytest.raises(IntegrityError), transaction.atomic():
        row_insert(again, after=[retyped])

    assert InboxMessage.objects.get(pk=earlier.pk).type == "order.placed"


def test_statements_run_in_order_in_one_round_trip_on_postgresql():
    from django.test.utils import CaptureQueriesContext

    row = outbox_row()
    table = OutboxMessage._meta.db_table
    update = (f"UPDATE {table} SET attempts = attempts + %s WHERE id = %s", [2, row.id])  # noqa: S608

    with CaptureQueriesContext(connection) as sent:
        statements_run([insert_statement([row]), None, update, update])

    assert len(sent) == 1
    assert OutboxMessage.objects.get(pk=row.pk).attempts == 4  # inserted first, then both


def _prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE name LIKE 'eshop_%%'")
        return [statement for (statement,) in cursor.fetchall()]


def test_a_prepared_statement_reads_what_the_plain_one_reads_and_is_prepared_once():
    rows = [outbox_row(attempts=3), outbox_row(attempts=5, subject="o-%")]
    rows_insert(rows)
    table = OutboxMessage._meta.db_table
    sql = (
        f"SELECT subject, attempts FROM {table} "  # noqa: S608
        "WHERE attempts >= %s AND subject LIKE 'o-%%' ORDER BY attempts"
    )

    with connection.cursor() as cursor:
        cursor.execute(sql, [4])
        plain = cursor.fetchall()
        first = prepared(cursor, sql)
        cursor.execute(first, [4])
        once = cursor.fetchall()
        second = prepared(cursor, sql)
        cursor.execute(second, [1])
        again = cursor.fetchall()

    assert plain == once == [("o-%", 5)]
    assert again == [("o-1", 3), ("o-%", 5)]
    assert first == second
    assert first.startswith("EXECUTE eshop_")
    assert first.endswith("(%s)")
    name = first.removeprefix("EXECUTE ").split("(")[0]
    assert [text for text in _prepared_statements() if "subject LIKE" in text] == [
        f"PREPARE {name} AS SELECT subject, attempts FROM {table} "  # noqa: S608
        "WHERE attempts >= $1 AND subject LIKE 'o-%' ORDER BY attempts"
    ]


def test_a_prepared_statement_outlives_a_rolled_back_transaction():
    table = OutboxMessage._meta.db_table
    sql = f"SELECT count(*) FROM {table} WHERE attempts = %s"  # noqa: S608

    def prepare_then_fail() -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(prepared(cursor, sql), [0])
            raise ZeroDivisionError  # the transaction rolls back after the PREPARE

    with pytest.raises(ZeroDivisionError):
        prepare_then_fail()

    with connection.cursor() as cursor:
        cursor.execute(prepared(cursor, sql), [0])  # known, not prepared a second time
        assert cursor.fetchone() == (0,)


@pytest.mark.django_db(transaction=True)
def test_a_new_connection_prepares_its_statements_again():
    table = OutboxMessage._meta.db_table
    sql = f"SELECT count(*) FROM {table} WHERE attempts = %s AND subject = %s"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(prepared(cursor, sql), [0, "x"])

    connection.close()  # the next cursor opens a new connection

    with connection.cursor() as cursor:
        assert _prepared_statements() == []
        cursor.execute(prepared(cursor, sql), [0, "x"])
        assert cursor.fetchone() == (0,)
    assert any("attempts = $1 AND subject = $2" in text for text in _prepared_statements())
