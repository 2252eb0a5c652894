"""Reads of the users service: querysets and lookups, never writes."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.db.models import Q, QuerySet

from accounts.errors import CustomerNotFound
from accounts.models import Address, CreditReservation, User


def user_list(*, search: str = "") -> QuerySet[User]:
    users = User.objects.select_related("credit")
    if search := search.strip():
        users = users.filter(Q(email__icontains=search) | Q(name__icontains=search))
    return users


def user_get(*, user_id: int | str) -> User:
    try:
        return User.objects.select_related("credit").get(pk=int(user_id))
    except (User.DoesNotExist, ValueError, TypeError):
        raise CustomerNotFound(f"There is no customer with id {user_id}.") from None


def user_claims(*, user: User) -> dict[str, Any]:
    """The identity claims the gateway puts in this user's tokens."""
    return {
        "sub": str(user.pk),
        "email": user.email,
        "name": user.name,
        "is_staff": user.is_staff,
        "roles": user.roles,
    }


def address_list(*, owner_id: int | str) -> QuerySet[Address]:
    return Address.objects.filter(owner_id=int(owner_id))


def credit_reservation_get(*, order_id: UUID) -> CreditReservation | None:
    return CreditReservation.objects.filter(order_id=order_id).first()
