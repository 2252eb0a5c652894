"""Customers and staff (one user model, email is the login), their addresses and credit."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Lower
from django.utils import timezone

from common.models import TimeStampedModel


def normalize_email(email: str) -> str:
    """One spelling per address: surrounding spaces dropped, all lower case."""
    return email.strip().lower()


class UserManager(BaseUserManager["User"]):
    """Creates users by email (``createsuperuser`` asks for an email, not a username)."""

    use_in_migrations = True

    def get_by_natural_key(self, username: str | None) -> User:
        return self.get(email=normalize_email(username or ""))

    def _create(self, email: str, password: str | None, **fields: Any) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=normalize_email(email), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **fields: Any) -> User:
        fields.setdefault("is_staff", False)
        fields.setdefault("is_superuser", False)
        return self._create(email, password, **fields)

    def create_superuser(self, email: str, password: str | None = None, **fields: Any) -> User:
        fields.update(is_staff=True, is_superuser=True)
        return self._create(email, password, **fields)


class User(AbstractBaseUser, PermissionsMixin):
    email = models.EmailField("email address", max_length=254, unique=True)
    name = models.CharField(max_length=150, blank=True)
    is_staff = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)
    # Orders whose credit was reserved, less those rejected or cancelled since (the
    # reserve counts one; order.rejected and order.cancelled take it back).
    order_count = models.PositiveIntegerField(default=0)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["name"]

    class Meta:
        ordering = ["email"]
        constraints = [
            # One account per address whatever the letter case, even if a writer skips normalizing.
            models.UniqueConstraint(Lower("email"), name="user_email_unique_ci"),
        ]

    def __str__(self) -> str:
        return self.email

    @property
    def roles(self) -> list[str]:
        return ["staff"] if self.is_staff else ["customer"]


def default_limit() -> Decimal:
    from django.conf import settings

    return Decimal(settings.CUSTOMER_DEFAULT_CREDIT_LIMIT)


class Address(TimeStampedModel):
    owner = models.ForeignKey(User, on_delete=models.CASCADE, related_name="addresses")
    label = models.CharField(max_length=50, blank=True, help_text="For example Home or Work.")
    recipient = models.CharField(max_length=150)
    line1 = models.CharField(max_length=200)
    line2 = models.CharField(max_length=200, blank=True)
    city = models.CharField(max_length=100)
    postal_code = models.CharField(max_length=20)
    country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2 code, e.g. FR.")
    is_default = models.BooleanField(default=False)

    class Meta:
        ordering = ["-is_default", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner"], condition=Q(is_default=True), name="one_default_address"
            ),
        ]
        verbose_name_plural = "addresses"

    def __str__(self) -> str:
        return f"{self.recipient}, {self.line1}, {self.postal_code} {self.city} ({self.country})"


class CreditAccount(models.Model):
    """What a customer may owe: ``available = credit_limit - reserved``, never negative.

    ``reserved`` counts credit held for pending orders and credit captured by
    approved ones; cancelling an order gives its credit back. (There is no
    payment or settlement in this system, so captured credit stays in use.)
    """

    user = models.OneToOneField(
        User, primary_key=True, on_delete=models.CASCADE, related_name="credit"
    )
    credit_limit = models.DecimalField(max_digits=12, decimal_places=2, default=default_limit)
    reserved = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0.00"))
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(credit_limit__gte=0), name="credit_limit_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(reserved__gte=0), name="credit_reserved_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(reserved__lte=F("credit_limit")), name="credit_available_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}: {self.available} available of {self.credit_limit}"

    @property
    def available(self):
        return self.credit_limit - self.reserved


class CreditReservation(TimeStampedModel):
    """Credit spent on one order (the saga's step in users), one per order id:
    ``captured`` when reserved (``held`` only in rows from before reserving spent it),
    ``released`` when the order was rejected or cancelled."""

    class State(models.TextChoices):
        HELD = "held"
        CAPTURED = "captured"
        RELEASED = "released"
        REFUSED = "refused"

    order_id = models.UUIDField(unique=True)
    # Empty only for the marker a release leaves when it arrives before its reserve.
    customer = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.PROTECT, related_name="credit_reservations"
    )
    amount = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    state = models.CharField(max_length=10, choices=State.choices, db_index=True)
    reason = models.CharField(max_length=40, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gte=0), name="credit_reservation_amount_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.order_id}: {self.amount} ({self.state})"
