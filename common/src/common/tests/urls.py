"""Views that fail on purpose, to check how every kind of error is answered."""

from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import Http404
from django.urls import path
from rest_framework import exceptions, serializers
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response

from common.permissions import IsInternalService
from common.problems import DomainError
from common.urls import service_urlpatterns


class OutOfTea(DomainError):
    code = "out_of_tea"
    status = 409
    title = "No tea left."


class NameSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=5)
    age = serializers.IntegerField(min_value=0)


@api_view(["GET"])
@permission_classes([AllowAny])
def domain_error(request):
    raise OutOfTea("The pot is empty.", product_ids=[1, 2])


@api_view(["POST"])
@permission_classes([AllowAny])
def validation_error(request):
    serializer = NameSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    return Response(serializer.data)


@api_view(["GET"])
@permission_classes([AllowAny])
def django_404(request):
    raise Http404("gone")


@api_view(["GET"])
@permission_classes([AllowAny])
def django_403(request):
    raise PermissionDenied


@api_view(["GET"])
@permission_classes([AllowAny])
def throttled(request):
    raise exceptions.Throttled(wait=12.3)


@api_view(["GET"])
@permission_classes([IsAuthenticated])
def private(request):
    return Response({})


@api_view(["GET"])
@permission_classes([AllowAny])
def crash(request):
    raise RuntimeError("boom")


@api_view(["GET"])
@permission_classes([IsAuthenticated])
def whoami(request):
    user = request.user
    return Response(
        {
            "id": user.id,
            "email": user.email,
            "is_staff": user.is_staff,
            "roles": list(user.roles),
            "scope": list(user.scope),
        }
    )


@api_view(["GET"])
@permission_classes([IsInternalService])
def internal(request):
    return Response({"caller": request.user.id})


@api_view(["GET"])
@permission_classes([AllowAny])
def database_answer(request):
    """A request that asks the database, on the request's own connection."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 40 + 2")
        (answer,) = cursor.fetchone()
    return Response({"answer": answer})


urlpatterns = [
    path("t/database/", database_answer),
    path("t/whoami/", whoami),
    path("internal/t/", internal),
    path("t/domain/", domain_error),
    path("t/validation/", validation_error),
    path("t/404/", django_404),
    path("t/403/", django_403),
    path("t/throttled/", throttled),
    path("t/private/", private),
    path("t/crash/", crash),
    *service_urlpatterns(),
]

handler500 = "common.problems.server_error_view"
handler404 = "common.problems.not_found_view"
