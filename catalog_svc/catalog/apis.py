"""The catalog's HTTP API: thin views over selectors and services."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.errors import CategoryNotFound, InvalidStockAdjustment, ProductNotFound
from catalog.filters import ProductFilter
from catalog.models import Category, Product
from catalog.selectors import category_get, category_list, product_get, product_list
from catalog.serializers import (
    CategorySerializer,
    ProductSerializer,
    ProductUpdateSerializer,
    ProductWriteSerializer,
    StockAdjustSerializer,
    StockSerializer,
)
from catalog.services import (
    category_create,
    product_create,
    product_retire,
    product_update,
    stock_adjust,
)
from common.http import client_has_current, etag_for
from common.permissions import IsStaff, IsStaffOrReadOnly


def _is_staff(request: Request) -> bool:
    return bool(request.user and request.user.is_staff)


class ProductListCreateApi(generics.ListCreateAPIView):
    """Products on sale (staff also see retired ones); staff add products."""

    permission_classes = [IsStaffOrReadOnly]
    serializer_class = ProductSerializer
    filterset_class = ProductFilter

    def get_queryset(self):
        return product_list(include_inactive=_is_staff(self.request))

    def get_serializer_class(self):
        # The browsable API builds its form from this: staff see the write fields.
        return ProductWriteSerializer if self.request.method == "POST" else ProductSerializer

    @extend_schema(request=ProductWriteSerializer, responses={201: ProductSerializer})
    def post(self, request: Request) -> Response:
        serializer = ProductWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        product = product_create(**serializer.validated_data)
        data = ProductSerializer(product_get(product_id=product.pk, include_inactive=True)).data
        location = reverse("catalog:product-detail", kwargs={"product_id": product.pk})
        return Response(data, status=status.HTTP_201_CREATED, headers={"Location": location})


class ProductDetailApi(APIView):
    """One product, with a strong ETag; staff change or retire it."""

    permission_classes = [IsStaffOrReadOnly]
    # For the OpenAPI document (common.schema): the refusals each operation can give.
    domain_errors = (ProductNotFound,)

    def _product(self, request: Request, product_id: int) -> Product:
        return product_get(product_id=product_id, include_inactive=_is_staff(request))

    @extend_schema(
        responses={200: ProductSerializer, 304: OpenApiResponse(description="Not modified")}
    )
    def get(self, request: Request, product_id: int) -> Response:
        data = ProductSerializer(self._product(request, product_id)).data
        etag = etag_for(data)
        if client_has_current(request, etag):
            return Response(status=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
        return Response(data, headers={"ETag": etag})

    @extend_schema(request=ProductUpdateSerializer, responses={200: ProductSerializer})
    def patch(self, request: Request, product_id: int) -> Response:
        product = self._product(request, product_id)
        serializer = ProductUpdateSerializer(product, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        product_update(product=product, data=serializer.validated_data)
        data = ProductSerializer(product_get(product_id=product.pk, include_inactive=True)).data
        return Response(data, headers={"ETag": etag_for(data)})

    @extend_schema(responses={204: None})
    def delete(self, request: Request, product_id: int) -> Response:
        """Retire the product: it leaves the public catalog; past orders still name it."""
        product_retire(product=self._product(request, product_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProductStockApi(APIView):
    """Staff receive or write off units; reserved units cannot be written off."""

    permission_classes = [IsStaff]
    domain_errors = (ProductNotFound, InvalidStockAdjustment)

    @extend_schema(request=StockAdjustSerializer, responses={200: StockSerializer})
    def post(self, request: Request, product_id: int) -> Response:
        product = product_get(product_id=product_id, include_inactive=True)
        serializer = StockAdjustSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        stock = stock_adjust(product=product, delta=serializer.validated_data["delta"])
        data = {
            "product_id": product.pk,
            "on_hand": stock.on_hand,
            "reserved": stock.reserved,
            "available": stock.available,
        }
        return Response(StockSerializer(data).data)


class CategoryListCreateApi(generics.ListCreateAPIView):
    permission_classes = [IsStaffOrReadOnly]
    serializer_class = CategorySerializer

    def get_queryset(self):
        return category_list()

    def perform_create(self, serializer: CategorySerializer) -> None:
        serializer.instance = category_create(**serializer.validated_data)


class CategoryDetailApi(APIView):
    permission_classes = [IsStaffOrReadOnly]
    domain_errors = (CategoryNotFound,)

    @extend_schema(responses={200: CategorySerializer})
    def get(self, request: Request, category_id: int) -> Response:
        category: Category = category_get(category_id=category_id)
        return Response(CategorySerializer(category).data)
