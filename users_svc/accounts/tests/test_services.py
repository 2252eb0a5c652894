import importlib
from decimal import Decimal
from uuid import uuid4

import pytest
from django.apps import apps as django_apps
from django.core.exceptions import ValidationError

from accounts.errors import (
    EmailTaken,
    InvalidCredentials,
    InvalidCreditLimit,
    InvalidCreditRequest,
)
from accounts.models import CreditAccount, CreditReservation, User
from accounts.services import (
    credentials_verify,
    credit_reject,
    credit_release,
    credit_reserve,
    user_register,
    user_update_by_staff,
)
from accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db
State = CreditReservation.State


def account(user) -> CreditAccount:
    return CreditAccount.objects.get(pk=user.pk)


def with_limit(limit: str):
    user = UserFactory()
    CreditAccount.objects.filter(pk=user.pk).update(credit_limit=Decimal(limit))
    return user


def test_register_stores_a_lower_case_email_and_the_default_credit():
    user = user_register(email=" Ann@Example.COM ", password="correct horse battery", name="Ann")
    assert user.email == "ann@example.com"
    assert account(user).credit_limit == Decimal("1000.00")
    assert account(user).available == Decimal("1000.00")


def test_register_refuses_an_email_taken_in_another_letter_case():
    user_register(email="ann@example.com", password="correct horse battery")
    with pytest.raises(EmailTaken):
        user_register(email="ANN@example.com", password="correct horse battery")


def test_register_refuses_a_weak_password():
    with pytest.raises(ValidationError) as error:
        user_register(email="ann@example.com", password="12345678")
    assert "password" in error.value.message_dict


def test_credentials_verify_accepts_the_right_password_in_any_email_case():
    user = UserFactory(email="bob@example.com")
    assert credentials_verify(email="BOB@example.com", password="correct horse battery") == user


@pytest.mark.parametrize(
    ("email", "password"),
    [("bob@example.com", "wrong"), ("nobody@example.com", "correct horse battery")],
)
def test_credentials_verify_refuses_wrong_credentials(email, password):
    UserFactory(email="bob@example.com")
    with pytest.raises(InvalidCredentials):
        credentials_verify(email=email, password=password)


def test_credentials_verify_refuses_a_deactivated_user():
    UserFactory(email="bob@example.com", is_active=False)
    with pytest.raises(InvalidCredentials):
        credentials_verify(email="bob@example.com", password="correct horse battery")


def orders_of(user) -> int:
    user.refresh_from_db()
    return user.order_count


def test_reserve_spends_credit_and_counts_the_order():
    user = with_limit("100.00")
    reservation = credit_reserve(customer_id=user.pk, order_id=uuid4(), amount=Decimal("60.00"))
    assert reservation.state == State.CAPTURED
    assert account(user).available == Decimal("40.00")
    assert orders_of(user) == 1


def test_reserve_is_all_or_nothing_over_the_limit():
    user = with_limit("100.00")
    reservation = credit_reserve(customer_id=user.pk, order_id=uuid4(), amount=Decimal("100.01"))
    assert (reservation.state, reservation.reason) == (State.REFUSED, "credit_limit_exceeded")
    assert account(user).reserved == Decimal("0.00")
    assert orders_of(user) == 0


def test_reserve_up_to_exactly_the_limit_is_fine():
    user = with_limit("100.00")
    assert (
        credit_reserve(customer_id=user.pk, order_id=uuid4(), amount=Decimal("100.00")).state
        == State.CAPTURED
    )
    assert account(user).available == Decimal("0.00")


def test_reserve_is_idempotent_by_order_id():
    user = with_limit("100.00")
    order_id = uuid4()
    first = credit_reserve(customer_id=user.pk, order_id=order_id, amount=Decimal("30.00"))
    second = credit_reserve(customer_id=user.pk, order_id=order_id, amount=Decimal("30.00"))
    assert first.pk == second.pk
    assert account(user).reserved == Decimal("30.00")
    assert orders_of(user) == 1


def test_reserve_refuses_unknown_and_inactive_customers():
    inactive = UserFactory(is_active=False)
    unknown = credit_reserve(customer_id=987654, order_id=uuid4(), amount=Decimal("1"))
    refused = credit_reserve(customer_id=inactive.pk, order_id=uuid4(), amount=Decimal("1"))
    assert unknown.reason == "customer_not_found"
    assert refused.reason == "customer_inactive"
    assert account(inactive).reserved == 0
    assert orders_of(inactive) == 0


@pytest.mark.parametrize("amount", [Decimal("0"), Decimal("-5")])
def test_reserve_rejects_a_non_positive_amount(amount):
    with pytest.raises(InvalidCreditRequest):
        credit_reserve(customer_id=UserFactory().pk, order_id=uuid4(), amount=amount)


def test_release_gives_the_credit_back_once_and_leaves_the_count_to_the_cancel():
    user = with_limit("100.00")
    order_id = uuid4()
    credit_reserve(customer_id=user.pk, order_id=order_id, amount=Decimal("25.00"))

    credit_release(order_id=order_id)
    assert credit_release(order_id=order_id).state == State.RELEASED

    assert account(user).reserved == Decimal("0.00")
    assert orders_of(user) == 1  # the cancel saga's step: order.cancelled uncounts it


def test_a_rejection_gives_the_credit_back_and_uncounts_the_order_once():
    user = with_limit("100.00")
    order_id = uuid4()
    credit_reserve(customer_id=user.pk, order_id=order_id, amount=Decimal("25.00"))

    credit_reject(order_id=order_id)
    credit_reject(order_id=order_id)

    assert account(user).reserved == Decimal("0.00")
    assert orders_of(user) == 0


def test_a_rejection_of_a_refusal_or_of_credit_held_before_changes_only_the_credit():
    user = with_limit("100.00")
    refused = credit_reserve(customer_id=user.pk, order_id=uuid4(), amount=Decimal("500.00"))
    held = CreditReservation.objects.create(
        order_id=uuid4(), customer=user, amount=Decimal("25.00"), state=State.HELD
    )
    CreditAccount.objects.filter(pk=user.pk).update(reserved=Decimal("25.00"))
    User.objects.filter(pk=user.pk).update(order_count=3)

    assert credit_reject(order_id=refused.order_id).state == State.REFUSED
    assert credit_reject(order_id=held.order_id).state == State.RELEASED

    assert account(user).reserved == Decimal("0.00")
    assert orders_of(user) == 3  # a hold from before was never counted


def test_a_reserve_arriving_after_its_release_spends_nothing():
    user = with_limit("100.00")
    order_id = uuid4()
    credit_reject(order_id=order_id)  # the saga gave up (timeout) before users answered

    late = credit_reserve(customer_id=user.pk, order_id=order_id, amount=Decimal("10.00"))

    assert late.state == State.RELEASED
    assert account(user).reserved == 0
    assert orders_of(user) == 0


def test_the_migration_moves_holds_from_before_to_credit_spent():
    migration = importlib.import_module("accounts.migrations.0004_reserve_spends_credit")
    user = with_limit("100.00")
    held = CreditReservation.objects.create(
        order_id=uuid4(), customer=user, amount=Decimal("25.00"), state=State.HELD
    )
    CreditAccount.objects.filter(pk=user.pk).update(reserved=Decimal("25.00"))

    migration.holds_capture(django_apps, None)

    held.refresh_from_db()
    assert held.state == State.CAPTURED
    assert orders_of(user) == 1
    credit_reject(order_id=held.order_id)  # and a rejection gives it back as any other
    assert (account(user).reserved, orders_of(user)) == (Decimal("0.00"), 0)


def test_staff_cannot_set_a_limit_below_the_credit_in_use():
    user = with_limit("100.00")
    credit_reserve(customer_id=user.pk, order_id=uuid4(), amount=Decimal("80.00"))

    with pytest.raises(InvalidCreditLimit):
        user_update_by_staff(user=user, credit_limit=Decimal("50.00"))
    assert user_update_by_staff(user=user, credit_limit=Decimal("80.00")).credit.available == 0
