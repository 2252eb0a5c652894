"""URLs of the orders service."""

from django.urls import include, path

from common.urls import service_urlpatterns

urlpatterns = [
    path("api/orders/", include("orders.urls")),
    *service_urlpatterns(),
]

handler400 = "common.problems.bad_request_view"
handler403 = "common.problems.permission_denied_view"
handler404 = "common.problems.not_found_view"
handler500 = "common.problems.server_error_view"
