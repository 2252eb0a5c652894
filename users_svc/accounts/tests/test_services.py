from decimal import Decimal
from uuid import uuid4

import pytest
from django.core.exceptions import ValidationError

from accounts.errors import (
    CreditReservationNotFound,
    CreditReservationStateConflict,
    EmailTaken,
    InvalidCredentials,
    InvalidCreditLimit,
    InvalidCreditRequest,
)
from accounts.models import CreditAccount, CreditReservation
from accounts.services import (
    credentials_verify,
    credit_capture,
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


def test_reserve_holds_credit():
    user = with_limit("100.00")
    reservation = credit_reserve(customer_id=user.pk, order_id=uuid4(), amount=Decimal("60.00"))
    assert reservation.state == State.HELD
    assert account(user).available == Decimal("40.00")


def test_reserve_is_all_or_nothing_over_the_limit():
    user = with_limit("100.00")
    reservation = credit_reserve(customer_id=user.pk, order_id=uuid4(), amount=Decimal("100.01"))
    assert (reservation.state, reservation.reason) == (State.REFUSED, "credit_limit_exceeded")
    assert account(user).reserved == Decimal("0.00")


def test_reserve_up_to_exactly_the_limit_is_fine():
    user = with_limit("100.00")
    assert (
        credit_reserve(customer_id=user.pk, order_id=uuid4(), amount=Decimal("100.00")).state
        == State.HELD
    )
    assert account(user).available == Decimal("0.00")


def test_reserve_is_idempotent_by_order_id():
    user = with_limit("100.00")
    order_id = uuid4()
    first = credit_reserve(customer_id=user.pk, order_id=order_id, amount=Decimal("30.00"))
    second = credit_reserve(customer_id=user.pk, order_id=order_id, amount=Decimal("30.00"))
    assert first.pk == second.pk
    assert account(user).reserved == Decimal("30.00")


def test_reserve_refuses_unknown_and_inactive_customers():
    inactive = UserFactory(is_active=False)
    unknown = credit_reserve(customer_id=987654, order_id=uuid4(), amount=Decimal("1"))
    refused = credit_reserve(customer_id=inactive.pk, order_id=uuid4(), amount=Decimal("1"))
    assert unknown.reason == "customer_not_found"
    assert refused.reason == "customer_inactive"
    assert account(inactive).reserved == 0


@pytest.mark.parametrize("amount", [Decimal("0"), Decimal("-5")])
def test_reserve_rejects_a_non_positive_amount(amount):
    with pytest.raises(InvalidCreditRequest):
        credit_reserve(customer_id=UserFactory().pk, order_id=uuid4(), amount=amount)


def test_capture_keeps_the_credit_in_use_and_is_idempotent():
    user = with_limit("100.00")
    order_id = uuid4()
    credit_reserve(customer_id=user.pk, order_id=order_id, amount=Decimal("25.00"))

    credit_capture(order_id=order_id)
    assert credit_capture(order_id=order_id).state == State.CAPTURED

    assert account(user).reserved == Decimal("25.00")


def test_capture_of_an_unknown_or_released_order_is_refused():
    user = with_limit("100.00")
    order_id = uuid4()
    credit_reserve(customer_id=user.pk, order_id=order_id, amount=Decimal("25.00"))
    credit_release(order_id=order_id)

    with pytest.raises(CreditReservationStateConflict):
        credit_capture(order_id=order_id)
    with pytest.raises(CreditReservationNotFound):
        credit_capture(order_id=uuid4())


@pytest.mark.parametrize("capture_first", [False, True])
def test_release_gives_the_credit_back_once(capture_first):
    user = with_limit("100.00")
    order_id = uuid4()
    credit_reserve(customer_id=user.pk, order_id=order_id, amount=Decimal("25.00"))
    if capture_first:
        credit_capture(order_id=order_id)

    credit_release(order_id=order_id)
    credit_release(order_id=order_id)

    assert account(user).reserved == Decimal("0.00")


def test_a_reserve_arriving_after_its_release_holds_nothing():
    user = with_limit("100.00")
    order_id = uuid4()
    credit_release(order_id=order_id)

    late = credit_reserve(customer_id=user.pk, order_id=order_id, amount=Decimal("10.00"))

    assert late.state == State.RELEASED
    assert account(user).reserved == 0


def test_staff_cannot_set_a_limit_below_the_credit_in_use():
    user = with_limit("100.00")
    credit_reserve(customer_id=user.pk, order_id=uuid4(), amount=Decimal("80.00"))

    with pytest.raises(InvalidCreditLimit):
        user_update_by_staff(user=user, credit_limit=Decimal("50.00"))
    assert user_update_by_staff(user=user, credit_limit=Decimal("80.00")).credit.available == 0
