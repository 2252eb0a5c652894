"""Shapes of the users API (see API.md)."""

from __future__ import annotations

from decimal import Decimal

from rest_framework import serializers

from accounts.models import Address, User


class RegisterSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(write_only=True, style={"input_type": "password"})
    name = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")


class RegisteredSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "email", "name"]


class ProfileSerializer(serializers.ModelSerializer):
    """``me``: the customer's own profile and credit."""

    credit_limit = serializers.DecimalField(
        source="credit.credit_limit", max_digits=12, decimal_places=2, read_only=True
    )
    credit_available = serializers.DecimalField(
        source="credit.available", max_digits=12, decimal_places=2, read_only=True
    )

    class Meta:
        model = User
        fields = ["id", "email", "name", "credit_limit", "credit_available", "date_joined"]
        read_only_fields = ["id", "email", "date_joined"]


class CustomerSerializer(ProfileSerializer):
    """What staff see of a customer."""

    class Meta(ProfileSerializer.Meta):
        fields = [*ProfileSerializer.Meta.fields, "is_active", "is_staff", "order_count"]
        read_only_fields = fields


class StaffCustomerUpdateSerializer(serializers.Serializer):
    credit_limit = serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=Decimal("0.00"), required=False
    )
    is_active = serializers.BooleanField(required=False)


class AddressSerializer(serializers.ModelSerializer):
    country = serializers.RegexField(
        r"^[A-Za-z]{2}$",
        max_length=2,
        help_text="ISO 3166-1 alpha-2 code, e.g. FR.",
        error_messages={"invalid": "Use a two-letter ISO 3166-1 code, such as FR."},
    )

    class Meta:
        model = Address
        fields = [
            "id",
            "label",
            "recipient",
            "line1",
            "line2",
            "city",
            "postal_code",
            "country",
            "is_default",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate_country(self, value: str) -> str:
        return value.upper()


class CredentialsSerializer(serializers.Serializer):
    """A login's limits (users.v1 CheckCredentials, grpc_api.py), checked before any hashing."""

    email = serializers.CharField(max_length=254)
    password = serializers.CharField(max_length=4096, style={"input_type": "password"})


class CustomerSummarySerializer(CustomerSerializer):
    """What other services learn of a customer (users.v1 GetCustomerSummary, grpc_api.py)."""

    roles = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta(CustomerSerializer.Meta):
        fields = [*CustomerSerializer.Meta.fields, "roles"]
        read_only_fields = fields
