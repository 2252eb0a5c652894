"""Create or update a local staff superuser, idempotently (used by `make run`)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction


class Command(BaseCommand):
    help = "Create the demo staff user for this service's Django admin, or reset its password."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True)
        parser.add_argument("--password", required=True)

    @transaction.atomic
    def handle(self, *args: Any, email: str, password: str, **options: Any) -> None:
        user_model = get_user_model()
        login_field = user_model.USERNAME_FIELD
        lookup = {f"{login_field}__iexact": email}
        user = user_model._default_manager.filter(**lookup).first()
        created = user is None
        if created:
            user = user_model(**{login_field: email})
            if login_field != "email" and hasattr(user, "email"):
                user.email = email
        user.is_staff = True
        user.is_superuser = True
        user.is_active = True
        user.set_password(password)
        user.save()
        verb = "Created" if created else "Updated"
        self.stdout.write(self.style.SUCCESS(f"{verb} staff user {email}"))
