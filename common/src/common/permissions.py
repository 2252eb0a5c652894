"""Permissions every service uses the same way."""

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
