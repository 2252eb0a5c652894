"""Permissions every service uses the same way."""

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView


def _is_staff(request: Request) -> bool:
    user = request.user
    return bool(user and user.is_authenticated and user.is_staff)


class IsStaff(BasePermission):
    """Staff only."""

    message = "Only staff may do this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return _is_staff(request)


class IsStaffOrReadOnly(BasePermission):
    """Anyone may read; only staff may write."""

    message = "Only staff may change this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return request.method in SAFE_METHODS or _is_staff(request)


class IsOwnerOrStaff(BasePermission):
    """Signed-in callers see their own objects (``owner_id`` by default); staff see all."""

    message = "This belongs to someone else."
    owner_field = "owner_id"

    def has_permission(self, request: Request, view: APIView) -> bool:
        return bool(request.user and request.user.is_authenticated)

    def has_object_permission(self, request: Request, view: APIView, obj: Any) -> bool:
        if _is_staff(request):
            return True
        field = getattr(view, "owner_field", self.owner_field)
        return str(getattr(obj, field)) == str(request.user.pk)


class IsInternalService(BasePermission):
    """Only service tokens (scope ``internal``): customer tokens get 403 on ``/internal/``."""

    message = "Only services may call internal endpoints."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return bool(
            request.user
            and request.user.is_authenticated
            and getattr(request.user, "is_service", False)
        )
