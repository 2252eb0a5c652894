"""``/internal/``: only service tokens (scope ``internal``) get in."""

from django.urls import path

from accounts import apis

app_name = "internal"

urlpatterns = [
    path("credentials/verify/", apis.CredentialsVerifyApi.as_view(), name="credentials-verify"),
    path("customers/<int:user_id>/", apis.CustomerSummaryApi.as_view(), name="customer-summary"),
]
