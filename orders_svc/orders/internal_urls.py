"""``/internal/``: only service tokens (scope ``internal``) get in."""

from django.urls import path

from orders import internal_apis

app_name = "internal"

urlpatterns = [
    path("sagas/", internal_apis.SagaListApi.as_view(), name="saga-list"),
]
