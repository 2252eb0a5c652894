"""Writes of the users service: registration, profiles, addresses and the credit the saga drives."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.contrib.auth import authenticate
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.db.models.functions import Greatest

from accounts.errors import (
    EmailTaken,
    InvalidCredentials,
    InvalidCreditLimit,
    InvalidCreditRequest,
)
from accounts.models import Address, CreditAccount, CreditReservation, User, normalize_email
from accounts.selectors import credit_reservation_get
from common.sql import prepared, row_insert

logger = logging.getLogger(__name__)

State = CreditReservation.State

_TAKEN = {"email": ["A user with this email address already exists."]}


def user_register(*, email: str, password: str, name: str = "") -> User:
    """A new customer with the default credit limit; the email is unique whatever its case."""
    email = normalize_email(email)
    if User.objects.filter(email=email).exists():
        raise EmailTaken("One or more fields are not valid; see errors.", errors=_TAKEN)
    candidate = User(email=email, name=name)
    try:
        validate_password(password, user=candidate)
    except ValidationError as error:
        raise ValidationError({"password": error.messages}) from error
    # Hashed before the transaction: the hash takes about half a second of CPU, and on
    # SQLite a transaction holds the database's one write lock (sign-ups under load made
    # the others wait past the lock timeout: "database is locked").
    candidate.set_password(password)
    try:
        with transaction.atomic():
            candidate.save()
            return candidate
    except IntegrityError:  # registered concurrently a moment ago
        raise EmailTaken("One or more fields are not valid; see errors.", errors=_TAKEN) from None


def credentials_verify(*, email: str, password: str) -> User:
    """The active user with these credentials, or ``InvalidCredentials``.

    Django's ``authenticate`` hashes even for unknown emails, so timing does not
    tell whether an address has an account.
    """
    user = authenticate(email=normalize_email(email), password=password)
    if user is None:
        raise InvalidCredentials()
    return user


@transaction.atomic
def user_update_profile(*, user: User, name: str) -> User:
    user.name = name
    user.save(update_fields=["name"])
    return user


@transaction.atomic
def user_update_by_staff(
    *, user: User, credit_limit: Decimal | None = None, is_active: bool | None = None
) -> User:
    """Staff set a customer's credit limit (never below credit in use) or (de)activate them."""
    if credit_limit is not None:
        account = CreditAccount.objects.select_for_update().get(user=user)
        if credit_limit < account.reserved:
            raise InvalidCreditLimit(
                "One or more fields are not valid; see errors.",
                errors={
                    "credit_limit": [f"Must be at least {account.reserved}, the credit in use."]
                },
            )
        account.credit_limit = credit_limit
        account.save(update_fields=["credit_limit", "updated_at"])
    if is_active is not None:
        user.is_active = is_active
        user.save(update_fields=["is_active"])
    user.refresh_from_db()
    return user


@transaction.atomic
def address_create(*, owner: User, data: dict[str, Any]) -> Address:
    if data.get("is_default"):
        Address.objects.filter(owner=owner, is_default=True).update(is_default=False)
    return Address.objects.create(owner=owner, **data)


@transaction.atomic
def address_update(*, address: Address, data: dict[str, Any]) -> Address:
    if data.get("is_default"):
        Address.objects.filter(owner_id=address.owner_id, is_default=True).exclude(
            pk=address.pk
        ).update(is_default=False)
    for field, value in data.items():
        setattr(address, field, value)
    address.save()
    return address


@transaction.atomic
def address_delete(*, address: Address) -> None:
    address.delete()


def _refuse(
    order_id: UUID, customer_id: int | None, amount: Decimal, reason: str
) -> CreditReservation:
    customer = customer_id if User.objects.filter(pk=customer_id).exists() else None
    return CreditReservation.objects.create(
        order_id=order_id, customer_id=customer, amount=amount, state=State.REFUSED, reason=reason
    )


def _reserve(order_id: UUID, customer_id: int, amount: Decimal) -> CreditReservation:
    """Spend the credit and count the order, or record the refusal.

    The account's locking read and the writes are plain SQL (the two updates and the
    reservation's INSERT in one round trip on PostgreSQL): through the ORM
    (select_for_update with its join, two F() updates) they cost about 1 ms of the users
    worker's 5.5 ms an order in compiling alone (issue #16, py-spy).
    """
    account_table, user_table = CreditAccount._meta.db_table, User._meta.db_table
    # SQLite has no row locks (its writer lock serialises reserves).
    lock = " FOR UPDATE OF a" if connection.features.has_select_for_update_of else ""
    with connection.cursor() as cursor:
        # Table names from the models' own meta; values are parameters.
        read = prepared(
            cursor,
            f"SELECT a.credit_limit - a.reserved, u.is_active FROM {account_table} a "  # noqa: S608
            f"JOIN {user_table} u ON u.id = a.user_id WHERE a.user_id = %s{lock}",
        )
        cursor.execute(read, [customer_id])
        account = cursor.fetchone()
        if account is None:
            return _refuse(order_id, None, amount, "customer_not_found")
        available, active = account
        if not active:
            return _refuse(order_id, customer_id, amount, "customer_inactive")
        # SQLite hands back a decimal column as a float.
        if Decimal(str(available)) < amount:
            return _refuse(order_id, customer_id, amount, "credit_limit_exceeded")
    reservation = CreditReservation(
        order_id=order_id, customer_id=customer_id, amount=amount, state=State.CAPTURED
    )
    # objects.create(), less the ORM's compiling, after the updates in the same round trip
    # (a repeated order id fails there, and the whole transaction with it).
    row_insert(
        reservation,
        after=[
            (
                f"UPDATE {account_table} SET reserved = reserved + %s WHERE user_id = %s",  # noqa: S608
                [amount, customer_id],
            ),
            # order_count_add(delta=1) in one statement: the account row is locked, so the
            # customer exists.
            (
                f"UPDATE {user_table} SET order_count = order_count + 1 WHERE id = %s",  # noqa: S608
                [customer_id],
            ),
        ],
    )
    return reservation


def credit_reserve(*, customer_id: int, order_id: UUID, amount: Decimal) -> CreditReservation:
    """Spend ``amount`` of the customer's credit on an order, all of it or none.

    Returns the reservation, ``captured`` (the credit is spent and the order
    counted; ``order.rejected`` or the cancel saga gives it back) or ``refused``
    (``credit_limit_exceeded``, ``customer_not_found``, ``customer_inactive``).
    Idempotent by order id: a
    repeated command, even a concurrent one, gets the first outcome (the order id
    is unique: its INSERT fails, everything is rolled back and the first outcome
    read; no read ahead of the first try, one statement fewer per saga).
    """
    if amount <= 0:
        raise InvalidCreditRequest(f"The amount must be positive, not {amount}.")
    try:
        with transaction.atomic():
            return _reserve(order_id, customer_id, amount)
    except IntegrityError:
        existing = credit_reservation_get(order_id=order_id)
        if existing is None:
            raise
        return existing


def _locked_reservation(order_id: UUID) -> CreditReservation | None:
    return CreditReservation.objects.select_for_update().filter(order_id=order_id).first()


def _release(order_id: UUID) -> tuple[CreditReservation, str]:
    """``credit_release``'s work; also returns the state the reservation was in."""
    reservation = _locked_reservation(order_id)
    if reservation is None:
        try:
            with transaction.atomic():
                marker = CreditReservation.objects.create(order_id=order_id, state=State.RELEASED)
                return marker, ""
        except IntegrityError:
            reservation = CreditReservation.objects.select_for_update().get(order_id=order_id)
    before = reservation.state
    if before in (State.RELEASED, State.REFUSED):
        return reservation, before
    CreditAccount.objects.filter(pk=reservation.customer_id).update(
        reserved=F("reserved") - reservation.amount
    )
    reservation.state = State.RELEASED
    reservation.save(update_fields=["state", "updated_at"])
    return reservation, before


@transaction.atomic
def credit_release(*, order_id: UUID) -> CreditReservation:
    """Give the order's credit back (the cancel saga's step). Idempotent.

    Releasing an order never reserved leaves a ``released`` marker so a late
    reserve command for it spends nothing. The order count is the cancel's
    event's to correct (``order.cancelled``).
    """
    return _release(order_id)[0]


# No savepoint: its consumer's transaction (inbox row and all) fails as one.
@transaction.atomic(savepoint=False)
def credit_reject(*, order_id: UUID) -> CreditReservation:
    """``order.rejected`` reached users: the order's credit comes back and it no longer
    counts (``credit_release``, and the count the reserve added)."""
    reservation, before = _release(order_id)
    if before == State.CAPTURED and reservation.customer_id is not None:
        order_count_add(customer_id=reservation.customer_id, delta=-1)
    return reservation


def order_count_add(*, customer_id: int, delta: int) -> None:
    """Count a customer's orders that stand: +1 when its credit is spent, -1 when the
    order is rejected or cancelled.

    In place with ``F()`` (concurrent consumers lose nothing), never below
    zero. An account deleted since has nothing left to count.
    """
    count = F("order_count") + delta if delta >= 0 else Greatest(F("order_count") + delta, 0)
    if not User.objects.filter(pk=customer_id).update(order_count=count):
        logger.warning("order count of customer %s not changed: no such account", customer_id)
