from django.urls import path

from catalog import apis

app_name = "catalog"

urlpatterns = [
    path("products/", apis.ProductListCreateApi.as_view(), name="product-list"),
    path("products/<int:product_id>/", apis.ProductDetailApi.as_view(), name="product-detail"),
    path("products/<int:product_id>/stock/", apis.ProductStockApi.as_view(), name="product-stock"),
    path("categories/", apis.CategoryListCreateApi.as_view(), name="category-list"),
    path("categories/<int:category_id>/", apis.CategoryDetailApi.as_view(), name="category-detail"),
]
