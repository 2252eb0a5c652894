"""What the gateway knows of the client at the edge: path limits and the scheme it used."""

import pytest

from common.discovery.static import StaticDiscovery
from proxy.app import GatewayApp
from proxy.routes import PathLimit, Rate, routes_from_settings
from proxy.runtime import Runtime


def runtime(settings, num_proxies: int) -> Runtime:
    return Runtime(
        routes={},
        discovery=StaticDiscovery(urls={}),
        config=settings.GATEWAY,
        num_proxies=num_proxies,
    )


def test_route_path_limits_apply_to_their_methods_and_paths_only(settings):
    settings.GATEWAY = {
        **settings.GATEWAY,
        "ROUTES": {
            **settings.GATEWAY["ROUTES"],
            "users": {
                **settings.GATEWAY["ROUTES"]["users"],
                "limits": [(["post"], "/api/users/register/", "20/hour")],
            },
        },
    }
    users = routes_from_settings(settings.GATEWAY)["users"]

    (limit,) = users.limits_for("POST", "/api/users/register/")

    assert limit == PathLimit(frozenset({"POST"}), "/api/users/register/", Rate(20, 3600))
    assert users.limits_for("GET", "/api/users/register/") == ()
    assert users.limits_for("POST", "/api/users/me/addresses/") == ()


def test_sign_ups_are_not_limited_on_their_own_by_default_locally(settings):
    assert routes_from_settings(settings.GATEWAY)["users"].limits == ()


@pytest.mark.parametrize(
    ("num_proxies", "header", "expected"),
    [
        (0, b"https", "http"),  # nobody in front of us to believe
        (1, b"https", "https"),
        (1, b"http", "http"),
        (1, b"HTTPS", "https"),
        (1, b"https, http", "http"),  # the entry our own proxy wrote is the last
        (1, b"gopher", "http"),
        (1, None, "http"),
    ],
)
def test_the_client_scheme_comes_from_our_own_proxies_only(settings, num_proxies, header, expected):
    scope = {"scheme": "http"}
    assert runtime(settings, num_proxies).client_scheme(scope, header) == expected


def test_upstreams_are_told_the_client_scheme():
    scope = {"scheme": "http", "headers": [(b"x-forwarded-proto", b"https")]}
    headers = dict(
        GatewayApp.upstream_headers(
            scope,
            (),
            b"rid",
            "10.0.0.2",
            None,
            None,
            {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"},
            scheme="https",
        )
    )
    assert headers["X-Forwarded-Proto"] == "https"
