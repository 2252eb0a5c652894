import io

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction

from accounts.models import User

pytestmark = pytest.mark.django_db


def test_email_is_the_login():
    user = User.objects.create_user("ann@example.com", "s3cret-pass", name="Ann")
    assert User.USERNAME_FIELD == "email"
    assert user.check_password("s3cret-pass")
    assert not user.is_staff


def test_the_same_email_in_other_letter_case_is_refused_by_the_database():
    User.objects.create_user("ann@example.com", "x")
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create_user("ANN@Example.com", "x")


def test_createsuperuser_asks_for_an_email(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-long-enough-password")
    call_command(
        "createsuperuser",
        "--noinput",
        "--email",
        "root@example.com",
        "--name",
        "Root",
        stdout=io.StringIO(),
    )
    user = User.objects.get(email="root@example.com")
    assert user.is_superuser
    assert user.is_staff


def test_ensure_admin_works_with_the_email_user_model():
    call_command("ensure_admin", email="admin@example.com", password="admin", stdout=io.StringIO())
    assert User.objects.get(email="admin@example.com").is_staff
