"""The page shape every list answers: ``{"count", "next", "previous", "results"}``."""

from typing import Any

from rest_framework import pagination
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request


class PageNumberPagination(pagination.PageNumberPagination):
    """``?page=`` and a bounded ``?page_size=``.

    A page or page size that is not a positive integer (or is given twice) is
    refused (400) rather than silently replaced by the default: the client asked for
    something else. A page past the end is 404; a size above ``max_page_size`` is
    capped, as documented.
    """

    page_size_query_param = "page_size"
    max_page_size = 100
    last_page_strings = ()  # the schema says integer: no "?page=last"

    def _single(self, request: Request, name: str) -> str | None:
        """The parameter's one value: repeating it is a malformed request, not a choice."""
        values = request.query_params.getlist(name)
        if len(values) > 1:
            raise ValidationError({name: ["Give this parameter once."]})
        return values[0] if values else None

    def get_page_number(self, request: Request, paginator: Any) -> str | int:
        raw = self._single(request, self.page_query_param)
        if raw is None:
            return 1
        if not self._positive(raw):
            raise ValidationError({self.page_query_param: ["Must be a positive integer."]})
        return int(raw)  # past the last page: 404, as DRF answers

    @staticmethod
    def _positive(raw: str) -> bool:
        # At most 18 digits: int() of a very long string is refused (and slow).
        return raw.isascii() and raw.isdigit() and len(raw) <= 18 and int(raw) >= 1

    def get_page_size(self, request: Request) -> int | None:
        raw = self._single(request, self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not self._positive(raw):
            raise ValidationError({self.page_size_query_param: ["Must be a positive integer."]})
        return min(int(raw), self.max_page_size)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1}
            elif parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1}
                parameter["description"] = (
                    f"Results per page (default {self.page_size}, at most {self.max_page_size}: "
                    "a larger size is capped)."
                )
        return parameters
