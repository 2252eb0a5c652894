"""What the catalog's business rules refuse, each with a stable code."""

from rest_framework import status

from common.problems import DomainError


class ProductNotFound(DomainError):
    code = "product_not_found"
    status = status.HTTP_404_NOT_FOUND
    title = "No such product."


class CategoryNotFound(DomainError):
    code = "category_not_found"
    status = status.HTTP_404_NOT_FOUND
    title = "No such category."


class InvalidStockAdjustment(DomainError):
    code = "invalid_stock_adjustment"
    status = status.HTTP_400_BAD_REQUEST
    title = "The stock change is not possible."


class InvalidReservation(DomainError):
    code = "invalid_reservation"
    status = status.HTTP_400_BAD_REQUEST
    title = "The reservation request is not valid."
