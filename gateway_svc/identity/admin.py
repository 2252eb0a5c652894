"""Refresh tokens in the admin: ids, dates and revocation; there is no token text to show."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from identity.models import IssuedRefreshToken, RefreshTokenFamily


class _ReadOnly(admin.ModelAdmin):
    """Written only by identity.services: the admin looks, and revokes families."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class IssuedRefreshTokenInline(admin.TabularInline):
    model = IssuedRefreshToken
    fields = ("jti", "created_at", "expires_at", "used_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(RefreshTokenFamily)
class RefreshTokenFamilyAdmin(_ReadOnly):
    list_display = ("id", "subject", "created_at", "revoked_at", "revoked_reason")
    list_filter = ("revoked_reason",)
    search_fields = ("=id", "=subject")
    inlines = [IssuedRefreshTokenInline]
    actions = ["revoke"]

    @admin.action(description="Revoke the selected families (their customers must log in again)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[RefreshTokenFamily]) -> None:
        revoked = queryset.filter(revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoked_reason=RefreshTokenFamily.RevokedReason.STAFF
        )
        self.message_user(request, f"{revoked} families revoked.")


@admin.register(IssuedRefreshToken)
class IssuedRefreshTokenAdmin(_ReadOnly):
    list_display = ("jti", "family", "created_at", "expires_at", "used_at")
    search_fields = ("=jti", "=family__id", "=family__subject")
    list_select_related = ("family",)
