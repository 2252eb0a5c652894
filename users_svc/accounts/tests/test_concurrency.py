"""Credit reserved by many threads at once, on the real database."""

import threading
from decimal import Decimal
from uuid import uuid4

import pytest
from django.db import connections

from accounts.models import CreditAccount, CreditReservation
from accounts.services import credit_reserve
from accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_twenty_threads_never_reserve_over_the_limit():
    user = UserFactory()
    CreditAccount.objects.filter(pk=user.pk).update(credit_limit=Decimal("100.00"))
    barrier = threading.Barrier(20)
    states: list[str] = []

    def reserve() -> None:
        try:
            barrier.wait()
            reservation = credit_reserve(
                customer_id=user.pk, order_id=uuid4(), amount=Decimal("15.00")
            )
            states.append(reservation.state)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=reserve) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    account = CreditAccount.objects.get(pk=user.pk)
    assert states.count(CreditReservation.State.CAPTURED) == 6  # 6 × 15 = 90 ≤ 100 < 105
    assert states.count(CreditReservation.State.REFUSED) == 14
    assert account.reserved == Decimal("90.00")
    assert account.available >= 0
    user.refresh_from_db()
    assert user.order_count == 6
