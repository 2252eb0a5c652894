from django.urls import path

from orders import apis

app_name = "orders"

urlpatterns = [
    path("", apis.OrderListCreateApi.as_view(), name="order-list"),
    path("<str:order_id>/", apis.OrderDetailApi.as_view(), name="order-detail"),
    path("<str:order_id>/cancel/", apis.OrderCancelApi.as_view(), name="order-cancel"),
]
