"""What keeps the API as strict as its OpenAPI document: pagination, JSON types, error docs.

Every operation documents 406: an ``Accept`` naming an API version not served.
"""

from __future__ import annotations

import pytest
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from common.pagination import PageNumberPagination
from common.permissions import IsStaff, IsStaffOrReadOnly
from common.schema import AutoSchema


def _request(query: str) -> Request:
    return Request(APIRequestFactory().get(f"/things/?{query}"))


@pytest.mark.parametrize("query", ["page_size=0", "page_size=x", "page_size=", "page_size=¹"])
def test_a_page_size_that_is_not_a_positive_integer_is_refused(query):
    with pytest.raises(ValidationError):
        PageNumberPagination().get_page_size(_request(query))


def test_a_page_size_above_the_maximum_is_capped():
    assert PageNumberPagination().get_page_size(_request("page_size=1000")) == 100


@pytest.mark.parametrize(
    "query", ["page=", "page=0", "page=last", "page=1&page=2", "page=" + "9" * 30]
)
def test_a_page_that_is_not_one_positive_integer_is_refused(query):
    with pytest.raises(ValidationError):
        PageNumberPagination().get_page_number(_request(query), paginator=None)


class _Shape(serializers.Serializer):
    name = serializers.CharField(max_length=10)
    flag = serializers.BooleanField()


@pytest.mark.parametrize(
    "body",
    [
        {"name": 0, "flag": True},
        {"name": "a", "flag": "no"},
        {"name": "  " + "a" * 10, "flag": True},  # too long as sent, though not once trimmed
    ],
)
def test_json_values_of_another_type_are_refused(body):
    assert not _Shape(data=body).is_valid()


def test_form_values_keep_drfs_reading():
    from django.http import QueryDict

    assert _Shape(data=QueryDict("name=a&flag=true")).is_valid()


def _statuses(view: type[APIView], method: str, path: str = "/things/") -> dict[int, str]:
    schema = AutoSchema()
    schema.view = view()
    schema.method = method
    schema.path = path
    schema.view.request = None
    return schema.problem_statuses()


def test_staff_only_operations_document_401_and_403():
    class Staff(APIView):
        permission_classes = [IsStaff]

    assert set(_statuses(Staff, "GET")) == {401, 403, 406}


def test_public_reads_document_no_403():
    class Catalog(APIView):
        permission_classes = [IsStaffOrReadOnly]

    assert set(_statuses(Catalog, "GET", "/things/{id}/")) == {401, 404, 406}


def test_open_operations_without_credentials_document_no_401():
    class Open(APIView):
        permission_classes = [AllowAny]
        authentication_classes: list = []

    assert set(_statuses(Open, "GET")) == {406}  # an unknown API version, as everywhere
