"""JSON values must have the type the schema states: DRF would take ``0`` for a name.

DRF's ``CharField`` turns numbers into strings and its ``BooleanField`` reads
``"yes"``, ``"0"`` or ``1`` as booleans: convenient for HTML forms, but a JSON
client sending ``{"name": 0}`` or ``{"is_default": "no"}`` breaks the contract the
OpenAPI document states (``string``, ``boolean``) and should hear so. Installed once
for every service (``CommonConfig.ready``): a JSON body gets "Not a valid string." or
"Must be a valid boolean." (400) for a value of another type. Form bodies (the
browsable API) carry only strings and keep DRF's reading of them. A string's
``max_length`` counts what the client sent, before DRF trims its whitespace, as
the schema's ``maxLength`` does.
"""

from __future__ import annotations

from typing import Any

from django.http import QueryDict
from rest_framework import fields

_installed = False


def _from_form(field: fields.Field) -> bool:
    return isinstance(getattr(field.root, "initial_data", None), QueryDict)


def install() -> None:
    """Make ``CharField`` (and subclasses) and ``BooleanField`` refuse other JSON types."""
    global _installed
    if _installed:
        return
    loose_string = fields.CharField.to_internal_value
    loose_boolean = fields.BooleanField.to_internal_value

    def string(self: fields.CharField, data: Any) -> str:
        if not isinstance(data, str) and not _from_form(self):
            self.fail("invalid")
        # DRF checks the length after trimming whitespace: "  x" passes a maxLength of 1.
        if self.max_length is not None and isinstance(data, str) and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return loose_string(self, data)

    def boolean(self: fields.BooleanField, data: Any) -> bool:
        if not isinstance(data, bool) and not _from_form(self):
            self.fail("invalid", input=data)
        return loose_boolean(self, data)

    fields.CharField.to_internal_value = string  # type: ignore[method-assign]
    fields.BooleanField.to_internal_value = boolean  # type: ignore[method-assign]
    _installed = True
