"""The contract files (contracts/) and what reads them: versions in the envelope, commands
checked against their schema, the consistency of the files themselves.

The producers' verification of every consumer's contract against what they really send
is in their own tests (orders, catalog, users: ``test_contracts.py``).
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest

from common import contracts
from common.contracts import (
    command_problems,
    command_validate,
    contract_verify,
    contracts_dir,
    contracts_problems,
    message_schemas,
)
from common.events import (
    Event,
    InvalidEnvelope,
    UnknownEventVersion,
    event_data_validate,
    register_event_type,
)
from common.events.envelope import event_schema_uri
from common.signing import MessageRefused
from common.tests.test_commands import (  # noqa: F401 - the worker and queue fixtures
    dead_letters,
    deliver,
    queue,
    signed_as,
    verifying,
)

ORDER_ID = "0b8e3c1e-6a52-4a8e-9d0f-2f1c9c1b7a10"


@pytest.fixture
def contracts_copy(tmp_path, monkeypatch):
    """A copy of contracts/ that a test may break, read instead of the real one."""
    copy = tmp_path / "contracts"
    for kind in ("events", "commands", "consumers"):
        shutil.copytree(contracts_dir() / kind, copy / kind)
    monkeypatch.setenv("CONTRACTS_DIR", str(copy))
    _forget()
    yield copy
    monkeypatch.delenv("CONTRACTS_DIR")
    _forget()


def _forget() -> None:
    for cached in (
        contracts.contracts_dir,
        contracts.message_schemas,
        contracts.consumer_contracts,
    ):
        cached.cache_clear()


def test_the_contracts_folder_is_found_from_the_source_tree():
    assert (contracts_dir() / "events" / "order.approved.v1.json").is_file()


def test_every_contract_file_is_consistent():
    # Valid JSON Schema 2020-12 with the $id its name says; every consumer contract names
    # a message and version a producer has, and its examples fit both sides.
    assert contracts_problems() == []
    assert len(message_schemas("events")) >= 9
    assert {name for name, _ in message_schemas("commands")} == {
        "catalog.stock_reserve",
        "catalog.stock_release",
        "users.credit_reserve",
        "users.credit_release",
        "orders.saga_reply",
    }


def _edit(path: Path, change) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def test_a_broken_schema_file_is_reported_by_name(contracts_copy):
    _edit(
        contracts_copy / "events" / "order.placed.v1.json",
        lambda schema: schema.update(type="thing"),
    )
    [problem] = contracts_problems()
    assert problem.startswith("events/order.placed.v1.json: not a valid JSON schema")


def test_a_consumer_contract_for_a_message_nobody_produces_is_reported(contracts_copy):
    path = contracts_copy / "consumers" / "catalog" / "order.cancelled.json"
    _edit(path, lambda contract: contract.update(versions=[1, 2]))
    assert contracts_problems() == [
        "consumers/catalog/order.cancelled.json: no producer schema events/order.cancelled.v2.json"
    ]


def test_an_example_the_producer_would_never_send_is_reported(contracts_copy):
    # The consumer's contract asks for something the producer's schema does not promise.
    path = contracts_copy / "consumers" / "users" / "order.cancelled.json"
    _edit(path, lambda contract: contract["examples"][0]["data"].update(customer_id=42))
    problems = contracts_problems()
    assert any("the producer's v1 refuses it: data.customer_id" in p for p in problems), problems


def test_the_verifier_names_the_consumer_and_the_field():
    envelope = {"subject": ORDER_ID, "data": {"customer_id": "7", "lines": [{"product_id": 1}]}}
    problems = contract_verify("order.cancelled", envelope)
    assert "catalog relies on order.cancelled data.lines[0].quantity: " in problems[0]
    assert not any(problem.startswith(("users", "gateway")) for problem in problems)
    assert contract_verify("order.cancelled", envelope, version=3)[0] == (
        "catalog accepts order.cancelled v1 only, not v3"
    )


# --- versions in the envelope ---------------------------------------------------------


def _event(**fields) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "type": "order.approved",
        "source": "orders",
        "time": "2026-12-06T10:00:00+00:00",
        "subject": ORDER_ID,
        "trace": {},
        "data": {},
        **fields,
    }


def test_an_event_without_a_dataschema_is_version_1():
    assert Event.from_dict(_event()).version == 1
    assert "dataschema" not in Event.from_dict(_event()).to_dict()


def test_the_dataschema_says_the_version_and_survives_the_wire():
    uri = event_schema_uri("order.approved", 2)
    event = Event.from_dict(_event(dataschema=uri))
    assert (event.version, event.to_dict()["dataschema"]) == (2, uri)
    assert Event.from_json(event.to_json()) == event


@pytest.mark.parametrize(
    "dataschema",
    [
        event_schema_uri("order.cancelled", 1),  # another type's
        "https://elsewhere.example/events/order.approved.v1.json",
        "https://contracts.eshop.example/events/order.approved.v0.json",
        7,
    ],
)
def test_a_dataschema_that_is_not_one_of_the_types_versions_is_refused(dataschema):
    with pytest.raises(InvalidEnvelope, match="dataschema"):
        Event.from_dict(_event(dataschema=dataschema))


def test_a_version_not_registered_is_refused_with_the_versions_known():
    register_event_type("test.versioned", {"type": "object"})
    register_event_type("test.versioned", {"type": "object", "required": ["n"]}, version=3)
    event_data_validate(event_type="test.versioned", data={}, version=1)
    with pytest.raises(
        UnknownEventVersion, match=r"test.versioned v2 is not known here \(known: v1, v3\)"
    ):
        event_data_validate(event_type="test.versioned", data={}, version=2)
    # A producer's default is its latest version.
    with pytest.raises(Exception, match="'n' is a required property"):
        event_data_validate(event_type="test.versioned", data={})


# --- commands -----------------------------------------------------------------------


def test_a_command_following_its_schema_passes():
    command_validate(
        "catalog.stock_reserve",
        {"order_id": ORDER_ID, "lines": [{"product_id": 1, "quantity": 2}]},
    )
    command_validate("test.no_schema_file", {"anything": True})  # nothing to check


def test_a_command_against_its_schema_is_refused_naming_the_field():
    with pytest.raises(MessageRefused) as refused:
        command_validate("users.credit_reserve", {"order_id": ORDER_ID, "customer_id": "7"})
    assert "users.credit_reserve v2: kwargs.amount: 'amount' is a required property" in str(
        refused.value
    )


def test_a_reply_is_checked_by_its_step():
    good = {"order_id": ORDER_ID, "step": "credit_reserve", "ok": True, "reason": ""}
    assert (
        command_problems(
            "orders.saga_reply", {**good, "data": {"customer_id": "7", "amount": "20.00"}}
        )
        == []
    )
    assert command_problems("orders.saga_reply", {**good, "data": {"customer_id": "7"}}) == [
        "orders.saga_reply v1: kwargs.data.amount: 'amount' is a required property"
    ]
    refused = {**good, "ok": False, "reason": "credit_limit_exceeded", "data": {}}
    assert command_problems("orders.saga_reply", refused) == []


def test_a_worker_dead_letters_a_signed_command_against_its_schema(
    contracts_copy,
    verifying,  # noqa: F811 - the fixture imported above
    signing_keys,
):
    (contracts_copy / "commands" / "svc.do.v1.json").write_text(
        json.dumps(
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "required": ["order_id"],
                "properties": {"order_id": {"type": "string", "format": "uuid"}},
            }
        )
    )
    _forget()
    app, done = verifying
    task_id, good_id = str(uuid.uuid4()), str(uuid.uuid4())

    deliver(
        app,
        task_id,
        signed_as(signing_keys / "orders.pem", "orders", task_id, order_id="o-1"),
        order_id="o-1",
    )
    deliver(
        app,
        good_id,
        signed_as(signing_keys / "orders.pem", "orders", good_id, order_id=ORDER_ID),
        order_id=ORDER_ID,
    )

    assert done == [{"order_id": ORDER_ID, "signed_by": "orders"}]
    (dead,) = dead_letters()
    assert (dead.id, dead.reason) == (
        task_id,
        "kwargs against the contract: svc.do v1: kwargs.order_id: 'o-1' is not a 'uuid'",
    )
