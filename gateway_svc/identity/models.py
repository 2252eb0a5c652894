"""What the gateway remembers of the refresh tokens it issued: ids and dates, never a token.

A refresh token is a bearer credential: whoever holds its text can log in as
its owner. The signature already proves a token is ours, so its ``jti`` is
all that is needed to look it up; storing the text (as SimpleJWT's
``token_blacklist`` app did) would hand every live session to anyone who
reads the table, a backup or the admin.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class RefreshTokenFamily(models.Model):
    """One login and every refresh token rotated from it (the ``fam`` claim).

    Revoked as a whole: on logout, and when a spent token of the family comes
    back (reuse means someone else holds a copy, and we cannot tell which
    holder is the customer, so neither keeps the session).
    """

    class RevokedReason(models.TextChoices):
        LOGOUT = "logout", "logout"
        REUSE = "reuse", "a rotated refresh token was used again"
        INACTIVE = "inactive", "the account is no longer active"
        STAFF = "staff", "revoked by staff"

    id = models.CharField(primary_key=True, max_length=64)
    subject = models.CharField(max_length=255, db_index=True)  # the ``sub`` claim
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=16, choices=RevokedReason.choices, blank=True)

    class Meta:
        verbose_name_plural = "refresh token families"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"family {self.id} of {self.subject}"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class IssuedRefreshToken(models.Model):
    """One refresh token of a family, by its ``jti``; ``used_at`` is set when it is rotated."""

    jti = models.CharField(max_length=255, unique=True)
    family = models.ForeignKey(RefreshTokenFamily, on_delete=models.CASCADE, related_name="tokens")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"refresh token {self.jti}"
