"""The AsyncAPI document (proxy/asyncapi.py): made from the contract files, current, served."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from common.contracts import contracts_dir
from proxy.asyncapi import DOCUMENT_NAME, asyncapi_check, asyncapi_document, asyncapi_yaml

FIXTURE = Path(__file__).parent / "asyncapi_contracts"


@pytest.fixture
def contracts(tmp_path: Path) -> Path:
    """A copy of the small fixture set (one event, one command, one consumer contract)."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "contracts"))


def test_each_event_type_gets_a_channel_on_the_events_exchange(contracts):
    channel = asyncapi_document(contracts)["channels"]["event_shop_paid"]

    assert channel["address"] == "shop.paid"
    assert channel["bindings"]["amqp"]["is"] == "routingKey"
    assert channel["bindings"]["amqp"]["exchange"] == {
        "name": "events",
        "type": "topic",
        "durable": True,
        "autoDelete": False,
        "vhost": "/",
    }


def test_each_command_queue_gets_a_channel_of_the_receiving_service(contracts):
    channel = asyncapi_document(contracts)["channels"]["commands_billing"]

    assert channel["address"] == "billing"
    assert channel["bindings"]["amqp"]["queue"]["name"] == "billing"
    assert list(channel["messages"]) == ["billing_invoice_v1"]


def test_schemas_are_the_files_content(contracts):
    schemas = asyncapi_document(contracts)["components"]["schemas"]
    event = json.loads((contracts / "events" / "shop.paid.v1.json").read_text())
    del event["$schema"]  # the document's schemas are all of its default format

    assert schemas["shop.paid.v1"] == event


def test_an_event_message_is_the_envelope_naming_its_schema_version(contracts):
    message = asyncapi_document(contracts)["components"]["messages"]["shop.paid.v1"]
    specific = message["payload"]["allOf"][1]["properties"]

    assert message["payload"]["allOf"][0] == {"$ref": "#/components/schemas/EventEnvelope"}
    assert specific["dataschema"] == {
        "const": "https://contracts.eshop.example/events/shop.paid.v1.json"
    }
    assert specific["data"] == {"$ref": "#/components/schemas/shop.paid.v1"}


def test_a_command_message_is_celerys_body_around_the_kwargs(contracts):
    message = asyncapi_document(contracts)["components"]["messages"]["billing.invoice.v1"]

    assert message["payload"]["items"][1] == {"$ref": "#/components/schemas/billing.invoice.v1"}
    assert message["headers"]["properties"]["task"] == {"const": "billing.invoice"}


def test_producers_send_and_consumers_receive(contracts):
    operations = asyncapi_document(contracts)["operations"]

    assert operations["shop_send_shop_paid"]["action"] == "send"
    assert operations["billing_receive_shop_paid"]["action"] == "receive"
    assert operations["shop_send_billing_invoice"]["action"] == "send"
    assert operations["billing_receive_billing_invoice"]["channel"] == {
        "$ref": "#/channels/commands_billing"
    }


def test_a_second_version_is_a_second_message_on_the_same_channel(contracts):
    v2 = json.loads((contracts / "events" / "shop.paid.v1.json").read_text())
    v2["$id"] = v2["$id"].replace(".v1.", ".v2.")
    (contracts / "events" / "shop.paid.v2.json").write_text(json.dumps(v2))

    document = asyncapi_document(contracts)

    assert list(document["channels"]["event_shop_paid"]["messages"]) == [
        "shop_paid_v1",
        "shop_paid_v2",
    ]
    assert len(document["operations"]["shop_send_shop_paid"]["messages"]) == 2


def test_the_fixture_document_passes_the_structure_check(contracts):
    assert asyncapi_check(asyncapi_document(contracts)) == []


def test_the_structure_check_finds_a_reference_to_nothing(contracts):
    document = asyncapi_document(contracts)
    document["components"]["messages"]["shop.paid.v1"]["payload"]["allOf"][0] = {
        "$ref": "#/components/schemas/Missing"
    }
    document["operations"]["shop_send_shop_paid"]["action"] = "publish"

    problems = asyncapi_check(document)

    assert "$ref #/components/schemas/Missing points at nothing" in problems
    assert "operations.shop_send_shop_paid.action is not send or receive" in problems


def test_the_check_command_fails_when_a_schema_file_changed(contracts):
    call_command("asyncapi_build", contracts=str(contracts))
    call_command("asyncapi_build", contracts=str(contracts), check=True)
    event = contracts / "events" / "shop.paid.v1.json"
    event.write_text(event.read_text().replace("A fixture event.", "Changed."))

    with pytest.raises(CommandError, match="stale"):
        call_command("asyncapi_build", contracts=str(contracts), check=True)


# --- the repository's own contracts ------------------------------------------------------------


def test_the_committed_document_matches_the_contract_files():
    """Fails after a schema file changed without `make asyncapi`."""
    committed = (contracts_dir() / DOCUMENT_NAME).read_text(encoding="utf-8")

    assert committed == asyncapi_yaml(asyncapi_document(contracts_dir()))


def test_the_committed_document_is_structurally_valid_asyncapi_3():
    document = yaml.safe_load((contracts_dir() / DOCUMENT_NAME).read_text(encoding="utf-8"))

    assert asyncapi_check(document) == []
    assert document["channels"], "no channel at all"


# --- /api/asyncapi/ ----------------------------------------------------------------------------


def test_the_document_is_served_as_json_without_a_token(client):
    response = client.get("/api/asyncapi/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == yaml.safe_load((contracts_dir() / DOCUMENT_NAME).read_text())


@pytest.mark.parametrize(
    ("query", "accept"),
    [({"format": "yaml"}, "*/*"), ({}, "application/yaml")],
    ids=["format=yaml", "Accept"],
)
def test_the_document_is_served_as_yaml_when_asked(client, query, accept):
    response = client.get("/api/asyncapi/", query, HTTP_ACCEPT=accept)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/yaml")
    assert yaml.safe_load(response.content)["asyncapi"] == "3.0.0"


def test_an_unknown_format_is_a_404_problem(client):
    response = client.get("/api/asyncapi/", {"format": "xml"})

    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"


def test_the_merged_openapi_document_leaves_it_out_like_itself(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    assert "/api/asyncapi/" not in schema["paths"]
    assert "/api/schema/" not in schema["paths"]
