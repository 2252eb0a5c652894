"""The storefront's pages, at the gateway's root (included last: the API's paths come first)."""

from django.urls import path

from storefront import views

app_name = "storefront"

urlpatterns = [
    path("", views.product_list_view, name="products"),
    path("products/<int:product_id>/", views.product_detail_view, name="product"),
    path("cart/", views.cart_view, name="cart"),
    path("cart/add/", views.cart_add_view, name="cart-add"),
    path("cart/update/", views.cart_update_view, name="cart-update"),
    path("checkout/", views.checkout_view, name="checkout"),
    path("orders/", views.order_list_view, name="orders"),
    path("orders/<uuid:order_id>/", views.order_detail_view, name="order"),
    path("orders/<uuid:order_id>/status/", views.order_status_view, name="order-status"),
    path("orders/<uuid:order_id>/cancel/", views.order_cancel_view, name="order-cancel"),
    path("account/", views.account_view, name="account"),
    path("account/addresses/", views.address_list_view, name="addresses"),
    path(
        "account/addresses/<int:address_id>/delete/",
        views.address_delete_view,
        name="address-delete",
    ),
    path("signup/", views.sign_up_view, name="signup"),
    path("signin/", views.sign_in_view, name="signin"),
    path("signout/", views.sign_out_view, name="signout"),
]
