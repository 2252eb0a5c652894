"""common.json_schemas: the compiled check answers for valid messages, jsonschema for the rest,
and the two never disagree on what is valid."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest
from jsonschema import FormatChecker
from jsonschema.validators import validator_for

from common.contracts import consumer_contracts
from common.json_schemas import SchemaValidator

ORDER_ID = "3f2a9c1e-8d4b-4f6a-9e2d-1c5b7a9f0e3d"
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["order_id", "lines"],
    "properties": {
        "order_id": {"type": "string", "format": "uuid"},
        "at": {"type": "string", "format": "date-time"},
        "lines": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["product_id", "quantity"],
                "properties": {
                    "product_id": {"type": "integer", "minimum": 1},
                    "quantity": {"type": "integer", "minimum": 1},
                },
            },
        },
    },
}


def reference(schema: dict[str, Any]) -> Any:
    return validator_for(schema)(schema, format_checker=FormatChecker())


def messages(instance: Any, validator: Any) -> list[tuple[list, str]]:
    return sorted(
        (list(error.absolute_path), error.message) for error in validator.iter_errors(instance)
    )


def test_a_valid_message_has_no_errors():
    checked = SchemaValidator(SCHEMA)
    valid = {"order_id": ORDER_ID, "lines": [{"product_id": 3, "quantity": 2}]}

    assert list(checked.iter_errors(valid)) == []
    assert checked.is_valid(valid)


@pytest.mark.parametrize(
    "instance",
    [
        {"order_id": ORDER_ID},
        {"order_id": "not-a-uuid", "lines": [{"product_id": 3, "quantity": 2}]},
        {"order_id": ORDER_ID, "lines": [{"product_id": 0, "quantity": "2"}]},
        {"order_id": ORDER_ID, "lines": []},
        [],
    ],
)
def test_an_invalid_message_gets_jsonschemas_own_errors(instance):
    checked = SchemaValidator(SCHEMA)

    assert not checked.is_valid(instance)
    assert messages(instance, checked) == messages(instance, reference(SCHEMA))
    assert messages(instance, checked)  # the reference does refuse it


def test_what_is_not_json_is_left_to_jsonschema():
    checked = SchemaValidator(SCHEMA)
    # A Decimal is no JSON value: the compiled check says no, jsonschema (for which
    # it is a number, not an integer) decides.
    odd = {"order_id": ORDER_ID, "lines": [{"product_id": Decimal(3), "quantity": 1}]}

    assert messages(odd, checked) == messages(odd, reference(SCHEMA))
    assert checked.is_valid(odd) is reference(SCHEMA).is_valid(odd)


def test_a_schema_the_compiled_check_cannot_take_is_left_to_jsonschema():
    schema = {"$ref": "https://nowhere.example/other.json"}  # unresolvable for jsonschema-rs

    checked = SchemaValidator(schema)

    assert checked._compiled is None
    assert checked.reference is not None


def _variants(example: Any) -> list[Any]:
    """The example, and versions of it each broken in one place: a key dropped, a value
    of another type, at the top and one level down."""
    found = [example]
    if isinstance(example, dict):
        for key, value in example.items():
            dropped = {k: v for k, v in example.items() if k != key}
            found += [
                dropped,
                {**example, key: [value]},
                {**example, key: "x"},
                {**example, key: 1},
            ]
            if isinstance(value, dict):
                for inner in value:
                    broken = copy.deepcopy(example)
                    broken[key][inner] = None
                    found.append(broken)
    return found


def test_the_contracts_examples_and_their_broken_versions_get_the_same_answer_from_both():
    checked = 0
    for contract in consumer_contracts():
        fast, slow = SchemaValidator(contract.reads), reference(contract.reads)
        for example in contract.examples:
            for instance in _variants(example):
                assert fast.is_valid(instance) is slow.is_valid(instance), (contract.path, instance)
                assert messages(instance, fast) == messages(instance, slow)
                checked += 1
    assert checked > 100
