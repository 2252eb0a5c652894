"""URLs of the gateway (Django's part; the proxy path never gets here, see proxy/app.py)."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularSwaggerView
from graphql_api.views import graphql_view
from proxy.apis import AsyncApiDocumentApi, GatewayStatusApi, MergedSchemaApi
from statuspage.views import status_page_view

from common.urls import service_urlpatterns
from identity.apis import JwksApi

urlpatterns = [
    path("api/auth/", include("identity.urls")),
    path(".well-known/jwks.json", JwksApi.as_view(), name="jwks"),
    # The whole system's API document; before the common patterns so it wins.
    path("api/schema/", MergedSchemaApi.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    # Every event and command (contracts/asyncapi.yaml, proxy/asyncapi.py).
    path("api/asyncapi/", AsyncApiDocumentApi.as_view(), name="asyncapi"),
    path("internal/status/", GatewayStatusApi.as_view(), name="gateway-status"),
    # The operators' status page, inside the admin (staff only, the admin's login).
    path("admin/status/", admin.site.admin_view(status_page_view), name="admin-status"),
    *service_urlpatterns(),
    # GraphQL reads over the services' APIs; GraphiQL on a browser's GET (graphql_api/).
    path("graphql/", graphql_view, name="graphql"),
    # The storefront's pages: last, so that every path above keeps its meaning.
    path("", include("storefront.urls")),
]

handler400 = "common.problems.bad_request_view"
handler403 = "common.problems.permission_denied_view"
handler404 = "common.problems.not_found_view"
handler500 = "common.problems.server_error_view"
