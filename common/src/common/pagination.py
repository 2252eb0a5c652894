"""The page shape every list answers: ``{"count", "next", "previous", "results"}``."""

from rest_framework import pagination


class PageNumberPagination(pagination.PageNumberPagination):
    """``?page=`` and a bounded ``?page_size=``."""

    page_size_query_param = "page_size"
    max_page_size = 100
