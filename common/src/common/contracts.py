"""The contracts between services, as data: the JSON schema files in ``contracts/``.

- ``contracts/events/<type>.v<N>.json``: what an event's ``data`` holds (its producer
  registers it, ``event_types_register``, and stamps its ``$id`` on every event as
  ``dataschema``);
- ``contracts/commands/<task>.v<N>.json``: a task's kwargs, checked by the worker that
  runs it before the task's body (``command_validate``, from ``VerifiedTask``);
- ``contracts/consumers/<service>/<message>.json``: what one consumer relies on of a
  message it receives (``ConsumerContract``): an event, a command or reply, or a gRPC
  method's response (``kind: rpc``, the message named ``<package>.<Service>.<Method>``
  as in ``contracts/proto``, read as ``rpc_message_dict`` writes it); a consumer of
  events validates what it receives against that part only
  (``consumer_events_register``), and the producer's tests check every consumer's part
  against what the producer really sends or answers (``contract_verify``).
  ``contracts/README.md`` says why, and what a new version is.

The folder is found as ``CONTRACTS_DIR`` (environment) says, else as the ``contracts``
folder beside one of this file's or the working directory's ancestors: the repository
root when run from the source tree, ``/app`` in the image (compose/Dockerfile).
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema.exceptions import SchemaError, ValidationError
from jsonschema.validators import validator_for

from common.events.envelope import (
    CONTRACTS_BASE_URI,
    EVENT_TYPE_PATTERN,
    register_event_type,
)
from common.json_schemas import SchemaValidator

KINDS = ("events", "commands")
_FILE_NAME = re.compile(
    r"^(?P<name>[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)\.v(?P<version>[1-9]\d*)\.json$"
)


class ContractError(Exception):
    """A contract file is missing, unreadable or not what its folder says it is."""


@functools.cache
def contracts_dir() -> Path:
    """The ``contracts`` folder (holding ``events/``, ``commands/``, ``consumers/``)."""
    configured = os.environ.get("CONTRACTS_DIR")
    if configured:
        return Path(configured)
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for folder in start.parents if start.is_file() else (start, *start.parents):
            if (folder / "contracts" / "events").is_dir():
                return folder / "contracts"
    raise ContractError(
        "no contracts/events folder above this code or the working directory; set CONTRACTS_DIR"
    )


def _validator(schema: Mapping[str, Any]) -> SchemaValidator:
    return SchemaValidator(schema)


def _read(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ContractError(f"{path}: {exc}") from exc
    if not isinstance(document, dict):
        raise ContractError(f"{path}: not a JSON object")
    return document


def _names(value: Any) -> tuple[str, ...]:
    """An ``x-producer`` or ``x-consumer``: one service name or a list of them."""
    return (value,) if isinstance(value, str) else tuple(value or ())


@dataclass(frozen=True)
class MessageSchema:
    """One schema file: an event type's data or a task's kwargs, in one version."""

    kind: str  # "events" or "commands"
    name: str  # the event type or the task name
    version: int
    path: Path
    schema: dict[str, Any]

    @property
    def producers(self) -> tuple[str, ...]:
        return _names(self.schema.get("x-producer"))

    @property
    def consumers(self) -> tuple[str, ...]:
        return _names(self.schema.get("x-consumer"))

    @functools.cached_property
    def validator(self) -> SchemaValidator:
        return _validator(self.schema)


@functools.cache
def message_schemas(kind: str) -> dict[tuple[str, int], MessageSchema]:
    """Every schema file of ``kind`` ("events" or "commands"), by (name, version)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    found: dict[tuple[str, int], MessageSchema] = {}
    for path in sorted((contracts_dir() / kind).glob("*.json")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise ContractError(f"{path}: the name is not <name>.v<N>.json")
        key = (match["name"], int(match["version"]))
        found[key] = MessageSchema(kind, key[0], key[1], path, _read(path))
    return found


def schema_uri(kind: str, name: str, version: int) -> str:
    """The ``$id`` a schema file must have (for events, their ``dataschema`` too)."""
    return f"{CONTRACTS_BASE_URI}{kind}/{name}.v{version}.json"


def event_types_register(producer: str) -> list[str]:
    """Register every version of every event type ``producer`` produces; their names."""
    registered = []
    for (name, version), message in message_schemas("events").items():
        if producer in message.producers:
            register_event_type(name, message.schema, version=version)
            registered.append(name)
    return sorted(set(registered))


# --- commands -------------------------------------------------------------------------


def command_versions(task: str) -> list[MessageSchema]:
    """The schema files of ``task``, latest first."""
    found = [message for (name, _), message in message_schemas("commands").items() if name == task]
    return sorted(found, key=lambda message: message.version, reverse=True)


def command_problems(task: str, kwargs: Mapping[str, Any]) -> list[str]:
    """Why ``kwargs`` follow none of ``task``'s schema versions ([] when one fits).

    A command carries no version: it is good when it fits any version the receiver
    has, so a sender may move to v<N+1> once every receiver has that file.
    A task with no schema file has nothing to check here (the consistency test
    makes sure every task has one).
    """
    versions = command_versions(task)
    if not versions:
        return []
    problems: list[str] = []
    for message in versions:
        errors = _problems(message.validator, kwargs, root="kwargs")
        if not errors:
            return []
        problems = problems or [f"{task} v{message.version}: {error}" for error in errors]
    return problems


def command_validate(task: str, kwargs: Mapping[str, Any]) -> None:
    """Refuse (``MessageRefused``: the worker dead-letters it) kwargs no schema of ``task`` fits."""
    problems = command_problems(task, kwargs)
    if problems:
        from common.signing import MessageRefused  # settings-bound: imported on refusal only

        raise MessageRefused("kwargs against the contract: " + "; ".join(problems)[:1500])


# --- consumers ------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsumerContract:
    """What one consumer relies on of one message (``contracts/consumers/<consumer>/``).

    ``reads`` is a JSON schema of the parts it reads: of an event, ``subject`` and
    ``data`` (as in the envelope); of a command or reply, its kwargs; of a gRPC
    response, its fields (``rpc_message_dict``).
    """

    consumer: str
    message: str
    kind: str  # "event", "command" or "rpc"
    versions: tuple[int, ...]
    description: str
    reads: dict[str, Any]
    examples: tuple[dict[str, Any], ...]
    path: Path

    @functools.cached_property
    def validator(self) -> SchemaValidator:
        return _validator(self.reads)

    def data_schema(self) -> dict[str, Any]:
        """The part of ``reads`` about an event's ``data``: what the consumer validates."""
        data = self.reads.get("properties", {}).get("data", {"type": "object"})
        return {"$schema": self.reads.get("$schema"), **data} if "$schema" in self.reads else data

    def problems(self, message: Mapping[str, Any], *, version: int = 1) -> list[str]:
        """Where ``message`` (an event envelope, or kwargs) breaks this contract."""
        if version not in self.versions:
            accepted = ", ".join(f"v{known}" for known in self.versions)
            return [f"{self.consumer} accepts {self.message} {accepted} only, not v{version}"]
        return [
            f"{self.consumer} relies on {self.message} {error}"
            for error in _problems(self.validator, message)
        ]


@functools.cache
def consumer_contracts() -> tuple[ConsumerContract, ...]:
    found = []
    for path in sorted((contracts_dir() / "consumers").glob("*/*.json")):
        document = _read(path)
        try:
            contract = ConsumerContract(
                consumer=document["consumer"],
                message=document["message"],
                kind=document["kind"],
                versions=tuple(document["versions"]),
                description=document["description"],
                reads=document["reads"],
                examples=tuple(document.get("examples", ())),
                path=path,
            )
        except (KeyError, TypeError) as exc:
            raise ContractError(f"{path}: {exc!r} missing or malformed") from exc
        if (path.parent.name, path.stem) != (contract.consumer, contract.message):
            raise ContractError(f"{path}: says {contract.consumer}/{contract.message}")
        found.append(contract)
    return tuple(found)


def contracts_of(
    *, consumer: str | None = None, message: str | None = None
) -> list[ConsumerContract]:
    return [
        contract
        for contract in consumer_contracts()
        if consumer in (None, contract.consumer) and message in (None, contract.message)
    ]


def consumer_events_register(consumer: str) -> list[str]:
    """Register, for each event ``consumer`` relies on, the part it reads of each version
    it accepts: what its event consumer then checks on receipt. The event types."""
    registered = []
    for contract in contracts_of(consumer=consumer):
        if contract.kind == "event":
            for version in contract.versions:
                register_event_type(contract.message, contract.data_schema(), version=version)
            registered.append(contract.message)
    return registered


def contract_verify(message: str, produced: Mapping[str, Any], *, version: int = 1) -> list[str]:
    """Every consumer's contract for ``message`` against one message really produced.

    ``produced`` is an event's envelope (``Event.to_dict()``) or a command's kwargs. The
    answer names the consumer and the field: "catalog relies on order.cancelled data.lines: ...".
    """
    return [
        problem
        for contract in contracts_of(message=message)
        for problem in contract.problems(produced, version=version)
    ]


# --- consistency ----------------------------------------------------------------------


def contracts_problems() -> list[str]:
    """What is wrong with the contract files themselves (the consistency test wants [])."""
    problems: list[str] = []
    invalid: set[tuple[str, str, int]] = set()  # not schemas: no example is checked against them
    for kind in KINDS:
        for (name, version), message in message_schemas(kind).items():
            where = f"{kind}/{message.path.name}"
            schema = message.schema
            try:
                validator_for(schema).check_schema(schema)
            except SchemaError as exc:
                problems.append(f"{where}: not a valid JSON schema: {exc.message}")
                invalid.add((kind, name, version))
            if schema.get("$schema") != "https://json-schema.org/draft/2020-12/schema":
                problems.append(f"{where}: $schema is not JSON Schema 2020-12")
            if schema.get("$id") != schema_uri(kind, name, version):
                problems.append(f"{where}: $id is not {schema_uri(kind, name, version)}")
            for field in ("title", "description", "x-producer"):
                if not schema.get(field):
                    problems.append(f"{where}: {field} missing")
            if kind == "events" and not EVENT_TYPE_PATTERN.match(name):
                problems.append(f"{where}: {name!r} is not an event type")
            if kind == "commands" and len(message.consumers) != 1:
                problems.append(f"{where}: x-consumer must name the one service running it")
    for contract in consumer_contracts():
        where = f"consumers/{contract.consumer}/{contract.path.name}"
        if contract.kind == "rpc":
            problems.extend(_rpc_problems(contract, where))
            continue
        kind = {"event": "events", "command": "commands"}.get(contract.kind)
        if kind is None:
            problems.append(f"{where}: kind {contract.kind!r} is not event, command or rpc")
            continue
        try:
            validator_for(contract.reads).check_schema(contract.reads)
        except SchemaError as exc:
            problems.append(f"{where}: reads is not a valid JSON schema: {exc.message}")
            continue
        if not contract.versions:
            problems.append(f"{where}: accepts no version")
        for version in contract.versions:
            produced = message_schemas(kind).get((contract.message, version))
            if produced is None:
                missing = f"{kind}/{contract.message}.v{version}.json"
                problems.append(f"{where}: no producer schema {missing}")
                continue
            if kind == "commands" and contract.consumer not in (
                *produced.consumers,
                *produced.producers,
            ):
                problems.append(f"{where}: {contract.consumer} neither sends nor runs it")
            if (kind, contract.message, version) not in invalid:
                problems.extend(_example_problems(contract, produced, where))
    return problems


def _examples_read(contract: ConsumerContract, where: str) -> list[str]:
    """The examples the contract's consumer would not accept (there must be one)."""
    if not contract.examples:
        return [f"{where}: no example"]
    return [
        f"{where} example {index}: {error}"
        for index, example in enumerate(contract.examples)
        for error in _problems(contract.validator, example)
    ]


def _example_problems(contract: ConsumerContract, produced: MessageSchema, where: str) -> list[str]:
    """A contract's examples: ones its consumer accepts, that its producer may send."""
    problems = _examples_read(contract, where)
    for index, example in enumerate(contract.examples):
        sent = example.get("data", {}) if contract.kind == "event" else example
        root = "data" if contract.kind == "event" else "kwargs"
        problems.extend(
            f"{where} example {index}: the producer's v{produced.version} refuses it: {error}"
            for error in _problems(produced.validator, sent, root=root)
        )
    return problems


def _problems(validator: SchemaValidator, instance: Any, *, root: str = "") -> list[str]:
    """Each error as "<path>: <message>", a missing property named in the path."""
    found = []
    for error in sorted(validator.iter_errors(instance), key=_error_order):
        for path in _error_paths(error, root):
            found.append(f"{path}: {error.message}")
    return found


def _error_order(error: ValidationError) -> tuple[str, ...]:
    return tuple(str(part) for part in error.absolute_path)


def _error_paths(error: ValidationError, root: str) -> Iterable[str]:
    path = root
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f"{'.' if path else ''}{part}"
    if error.validator == "required" and isinstance(error.instance, Mapping):
        missing = [name for name in error.validator_value if name not in error.instance]
        return [f"{path}{'.' if path else ''}{name}" for name in missing] or [path or "(message)"]
    return [path or "(message)"]


# --- gRPC responses ---------------------------------------------------------------------


def rpc_message_dict(message: Any) -> dict[str, Any]:
    """A protobuf message as its consumers read it: every scalar field by name (unset ones
    with their default), nested messages as dicts when set (absent when not), repeated
    fields as lists, int64 as int (protobuf's own JSON form writes int64 as text)."""

    def value_of(field: Any, value: Any) -> Any:
        if field.message_type is None:
            return value
        return rpc_message_dict(value)

    found: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.is_repeated:
            found[field.name] = [value_of(field, item) for item in value]
        elif field.message_type is not None and not message.HasField(field.name):
            continue
        else:
            found[field.name] = value_of(field, value)
    return found


@functools.cache
def _rpc_pool() -> Any:
    """The descriptor pool with every generated module of ``contracts/proto`` loaded."""
    import importlib
    import pkgutil

    import eshop_contracts
    from google.protobuf import descriptor_pool

    for module in pkgutil.walk_packages(eshop_contracts.__path__, "eshop_contracts."):
        if module.name.endswith("_pb2"):
            importlib.import_module(module.name)
    return descriptor_pool.Default()


def rpc_response_type(method: str) -> Any:
    """The response class of ``<package>.<Service>.<Method>``; ``KeyError`` if none."""
    from google.protobuf import message_factory

    found = _rpc_pool().FindMethodByName(method)
    return message_factory.GetMessageClass(found.output_type)


def _rpc_problems(contract: ConsumerContract, where: str) -> list[str]:
    """An rpc contract: its method exists, and each example is a response it may answer."""
    from google.protobuf import json_format

    try:
        response_type = rpc_response_type(contract.message)
    except KeyError:
        return [f"{where}: no gRPC method {contract.message} in contracts/proto"]
    try:
        validator_for(contract.reads).check_schema(contract.reads)
    except SchemaError as exc:
        return [f"{where}: reads is not a valid JSON schema: {exc.message}"]
    problems = _examples_read(contract, where)
    for index, example in enumerate(contract.examples):
        try:
            json_format.ParseDict(example, response_type())
        except json_format.ParseError as exc:
            problems.append(f"{where} example {index}: not a {response_type.__name__}: {exc}")
    return problems
