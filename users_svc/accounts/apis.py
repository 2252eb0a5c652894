"""The users service's HTTP API: thin views over selectors and services."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.errors import CustomerNotFound, EmailTaken, InvalidCreditLimit
from accounts.models import Address, User
from accounts.selectors import address_list, user_get, user_list
from accounts.serializers import (
    AddressSerializer,
    CustomerSerializer,
    ProfileSerializer,
    RegisteredSerializer,
    RegisterSerializer,
    StaffCustomerUpdateSerializer,
)
from accounts.services import (
    address_create,
    address_delete,
    address_update,
    user_register,
    user_update_by_staff,
    user_update_profile,
)
from common.permissions import IsStaff


def _me(request: Request) -> User:
    return user_get(user_id=request.user.pk)


class RegisterApi(APIView):
    """Anyone may open a customer account; the email is unique whatever its letter case."""

    permission_classes = [AllowAny]
    authentication_classes: list = []
    # For the OpenAPI document (common.schema): the refusals each operation can give.
    domain_errors = (EmailTaken,)

    @extend_schema(request=RegisterSerializer, responses={201: RegisteredSerializer})
    def post(self, request: Request) -> Response:
        serializer = RegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = user_register(**serializer.validated_data)
        return Response(RegisteredSerializer(user).data, status=status.HTTP_201_CREATED)


class MeApi(APIView):
    """The signed-in customer's profile and credit."""

    domain_errors = (CustomerNotFound,)  # a valid token for an account since removed

    @extend_schema(responses={200: ProfileSerializer})
    def get(self, request: Request) -> Response:
        return Response(ProfileSerializer(_me(request)).data)

    @extend_schema(request=ProfileSerializer, responses={200: ProfileSerializer})
    def patch(self, request: Request) -> Response:
        user = _me(request)
        serializer = ProfileSerializer(user, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        if "name" in serializer.validated_data:
            user_update_profile(user=user, name=serializer.validated_data["name"])
        return Response(ProfileSerializer(user_get(user_id=user.pk)).data)


class AddressListCreateApi(generics.ListCreateAPIView):
    serializer_class = AddressSerializer

    def get_queryset(self) -> QuerySet[Address]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no caller
            return Address.objects.none()
        return address_list(owner_id=_me(self.request).pk)

    def perform_create(self, serializer: AddressSerializer) -> None:
        serializer.instance = address_create(
            owner=_me(self.request), data=serializer.validated_data
        )


class AddressDetailApi(generics.RetrieveUpdateDestroyAPIView):
    """Another customer's address is simply not found (404), never 403: ids reveal nothing."""

    serializer_class = AddressSerializer
    http_method_names = ["get", "patch", "delete", "head", "options"]
    lookup_url_kwarg = "address_id"

    def get_queryset(self) -> QuerySet[Address]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no caller
            return Address.objects.none()
        return address_list(owner_id=_me(self.request).pk)

    def perform_update(self, serializer: AddressSerializer) -> None:
        serializer.instance = address_update(
            address=serializer.instance, data=serializer.validated_data
        )

    def perform_destroy(self, instance: Address) -> None:
        address_delete(address=instance)


class CustomerSearchSerializer(serializers.Serializer):
    # A CharField refuses NUL (PostgreSQL cannot compare text with it: it was a 500,
    # found by accounts/tests/test_search_properties.py) and lone surrogates with a 400.
    search = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)


class CustomerListApi(generics.ListAPIView):
    """Staff: every customer, searchable by email or name."""

    permission_classes = [IsStaff]
    serializer_class = CustomerSerializer

    @extend_schema(
        parameters=[OpenApiParameter("search", str, description="Email or name contains")]
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[User]:
        query = CustomerSearchSerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return user_list(search=query.validated_data.get("search", ""))


class CustomerDetailApi(APIView):
    """Staff: one customer; set the credit limit or (de)activate the account."""

    permission_classes = [IsStaff]
    domain_errors = {"GET": (CustomerNotFound,), "PATCH": (CustomerNotFound, InvalidCreditLimit)}

    @extend_schema(responses={200: CustomerSerializer})
    def get(self, request: Request, user_id: int) -> Response:
        return Response(CustomerSerializer(user_get(user_id=user_id)).data)

    @extend_schema(request=StaffCustomerUpdateSerializer, responses={200: CustomerSerializer})
    def patch(self, request: Request, user_id: int) -> Response:
        user = user_get(user_id=user_id)
        serializer = StaffCustomerUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = user_update_by_staff(user=user, **serializer.validated_data)
        return Response(CustomerSerializer(user_get(user_id=user.pk)).data)
