from django.urls import path

from accounts import apis

app_name = "accounts"

urlpatterns = [
    path("register/", apis.RegisterApi.as_view(), name="register"),
    path("me/", apis.MeApi.as_view(), name="me"),
    path("me/addresses/", apis.AddressListCreateApi.as_view(), name="address-list"),
    path("me/addresses/<int:address_id>/", apis.AddressDetailApi.as_view(), name="address-detail"),
    path("", apis.CustomerListApi.as_view(), name="customer-list"),
    path("<int:user_id>/", apis.CustomerDetailApi.as_view(), name="customer-detail"),
]
