"""Property tests (Hypothesis) of the gateway's request handling, driven as uvicorn drives it.

The ASGI application gets scopes as uvicorn builds them (any method token, decoded path
and raw target, query bytes, header bytes, bodies in pieces) and proxies them to a real
upstream: a uvicorn server on loopback (any method, any target) that answers as a
service would and records what reached it. The properties: every request gets the
upstream's answer or one of the gateway's documented problems, never an exception or a
5xx of its own; a valid request reaches the upstream unchanged; the composition's path
answers 200 for the one order there is and a 404 problem for anything else, without
sending an id that is not a UUID on; the operators' paths answer 404 on any port but
the internal one. Last, uvicorn with the read deadlines (gateway_svc.deadlines) gets
raw request bytes over a socket and answers each with an HTTP status below 500.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import string
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import grpc
import httptools
import jwt
import pytest
import uvicorn
from eshop_contracts.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from eshop_contracts.users.v1 import users_pb2, users_pb2_grpc
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from common.discovery.static import StaticDiscovery
from gateway_svc.deadlines import ReadDeadlineProtocol
from identity.keys import signing_key
from proxy.app import GatewayApp, internal_path
from proxy.routes import routes_from_settings
from proxy.runtime import Runtime

PROPERTY = settings(
    max_examples=100,
    deadline=None,
    # The same cases on every run (a reviewer sees what CI saw); no example database.
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Each example is a real HTTP exchange (or two): fewer of them.
PROPERTY_HTTP = settings(PROPERTY, max_examples=60)
UNLIMITED = "1000000/min"
ORDER_ID = "5f0c9a9e-2f64-4a8e-9a51-8d9e6f6a2b10"
ORDER_ID_HEX = ORDER_ID.replace("-", "")
PRODUCT = {
    "id": 7,
    "sku": "SKU-7",
    "name": "Mug",
    "slug": "mug",
    "description": "",
    "price": "4.50",
    "currency": "EUR",
    "category": 1,
    "active": True,
    "stock_available": 3,
    "sold": 0,
    "created_at": "2026-01-01T00:00:00Z",
    "updated_at": "2026-01-01T00:00:00Z",
}
ORDER = {
    "id": ORDER_ID,
    "customer_id": "1001",
    "status": "APPROVED",
    "lines": [{"product_id": 7, "quantity": 2, "unit_price": "4.50"}],
}
CUSTOMER = {
    "id": 1001,
    "email": "ann@example.com",
    "name": "Ann",
    "credit_limit": "1000.00",
    "credit_available": "1000.00",
    "date_joined": "2026-01-01T00:00:00Z",
    "is_active": True,
    "is_staff": False,
    "order_count": 1,
    "roles": ["customer"],
}
# What the gateway itself may answer on the proxy and composition paths (problem details).
GATEWAY_OWN = {401, 404, 405, 408, 413, 414, 429}
TCHAR = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"


# ------------------------------------------------------------------ the real upstream


@dataclass
class Upstream:
    """A uvicorn server on loopback standing in for every service; records each target."""

    received: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    url: str = ""

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        target = scope["raw_path"] + (
            b"?" + scope["query_string"] if scope["query_string"] else b""
        )
        self.received.append((scope["method"], target, body))
        path: str = scope["path"]
        status, document = 200, {"method": scope["method"], "target": target.decode("latin-1")}
        if path.lower() in (f"/api/orders/{ORDER_ID}/", f"/api/orders/{ORDER_ID_HEX}/"):
            document = ORDER
        elif path.startswith("/api/orders/") and path.count("/") == 4:
            status, document = 404, {"status": 404, "code": "order_not_found"}
        payload = json.dumps(document).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"x-upstream", b"yes"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    def targets_under(self, prefix: bytes) -> list[bytes]:
        return [target for _, target, _ in self.received if target.startswith(prefix)]


def serve(app: Any, **options: Any) -> tuple[uvicorn.Server, threading.Thread, int]:
    """uvicorn on a free loopback port, in a thread of its own (no signal handlers there)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", access_log=False, **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    return server, thread, sock.getsockname()[1]


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    stand_in = Upstream()
    server, thread, port = serve(stand_in, lifespan="off")
    stand_in.url = f"http://127.0.0.1:{port}"
    yield stand_in
    server.should_exit = True
    thread.join(timeout=10)


class StandInCatalog(catalog_pb2_grpc.CatalogServiceServicer):
    def GetProducts(self, request, context):
        found = [catalog_pb2.Product(**PRODUCT)] if PRODUCT["id"] in request.ids else []
        missing = [pid for pid in request.ids if pid != PRODUCT["id"]]
        return catalog_pb2.GetProductsResponse(products=found, missing_ids=missing)


class StandInUsers(users_pb2_grpc.UsersServiceServicer):
    def GetCustomerSummary(self, request, context):
        if request.user_id != str(CUSTOMER["id"]):
            context.abort(grpc.StatusCode.NOT_FOUND, "no such customer")
        return users_pb2.CustomerSummary(**CUSTOMER)


@pytest.fixture(scope="module")
def grpc_upstream() -> Iterator[str]:
    """catalog.v1 and users.v1 on one loopback gRPC server, answering as the services would."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    catalog_pb2_grpc.add_CatalogServiceServicer_to_server(StandInCatalog(), server)
    users_pb2_grpc.add_UsersServiceServicer_to_server(StandInUsers(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for the gateway, in a thread: its pooled connections outlive examples."""
    event_loop = asyncio.new_event_loop()
    thread = threading.Thread(target=event_loop.run_forever, daemon=True)
    thread.start()
    yield event_loop
    event_loop.call_soon_threadsafe(event_loop.stop)
    thread.join(timeout=10)
    event_loop.close()


async def reached_django(scope: dict, receive: Any, send: Any) -> None:
    """Django's place: what is not proxied answers 299 here (so a test can tell)."""
    await send({"type": "http.response.start", "status": 299, "headers": []})
    await send({"type": "http.response.body", "body": b""})


@pytest.fixture
def gateway(settings, gateway_keys, upstream, grpc_upstream) -> GatewayApp:
    settings.GATEWAY_GRPC = {
        **settings.GATEWAY_GRPC,
        "TARGETS": {"catalog": grpc_upstream, "users": grpc_upstream},
    }
    settings.GATEWAY = {
        **settings.GATEWAY,
        "INTERNAL_PORT": 8080,
        "REDIS_URL": "",
        "ROUTE_DEFAULTS": {
            **settings.GATEWAY["ROUTE_DEFAULTS"],
            "anonymous_rate": UNLIMITED,
            "authenticated_rate": UNLIMITED,
            "max_body_bytes": 2048,
        },
    }
    config = settings.GATEWAY
    urls = {service: [upstream.url] for service in ("catalog", "users", "orders")}
    return GatewayApp(
        reached_django,
        runtime_factory=lambda: Runtime(
            routes=routes_from_settings(config),
            discovery=StaticDiscovery(urls=urls),
            config=config,
            num_proxies=0,
        ),
    )


@pytest.fixture
def access_token(gateway_keys, settings) -> str:
    """A customer's access token, signed with the gateway's key."""
    now = int(time.time())
    key = signing_key()
    claims = {
        "sub": "1001",
        "email": "ann@example.com",
        "name": "Ann",
        "is_staff": False,
        "roles": ["customer"],
        "token_type": "access",
        "iat": now,
        "exp": now + 3600,
        "jti": uuid.uuid4().hex,
        "iss": settings.JWT["ISSUER"],
        "aud": settings.JWT["AUDIENCE"],
    }
    return jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": key.kid})


# ------------------------------------------------------------------ driving the ASGI app


@dataclass
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def scope_of(
    method: str,
    raw_path: bytes,
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    port: int | None = 8000,
) -> dict[str, Any]:
    """The scope uvicorn builds for one request (its path: the raw one, percent-decoded)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", port) if port is not None else None,
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": method,
        "root_path": "",
        "path": unquote(raw_path.decode("ascii")),
        "raw_path": raw_path,
        "query_string": query,
        "headers": headers or [],
        "state": {},
    }


def call(
    loop: asyncio.AbstractEventLoop, app: GatewayApp, scope: dict, chunks: Sequence[bytes] = ()
) -> Answer:
    messages = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks or [b""])
    ]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run_coroutine_threadsafe(app(scope, receive, send), loop).result(timeout=60)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Answer(start["status"], {k.lower(): v for k, v in start["headers"]}, body)


def assert_a_gateway_problem(answer: Answer) -> None:
    assert answer.status in GATEWAY_OWN, (answer.status, answer.body)
    assert answer.headers[b"content-type"] == b"application/problem+json"
    assert answer.json()["status"] == answer.status


# ------------------------------------------------------------------ strategies

# The methods an ASGI scope can hold: uvicorn's parser (llhttp) refuses any other with a
# 400 before the application is called (the wire test below sends any token).
methods = st.sampled_from(
    [
        *("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"),
        *("PROPFIND", "MKCOL", "COPY", "MOVE", "LOCK", "SEARCH", "PURGE", "REPORT", "QUERY"),
    ]
)
any_method_tokens = methods | st.text(alphabet=TCHAR, min_size=1, max_size=12)
# A path as a client writes it: any text, percent-encoded where it must be.
path_tails = st.text(max_size=40).map(lambda text: quote(text, safe="/:@!$&'()*+,;=~"))
query_strings = st.one_of(
    st.text(alphabet=string.printable.strip().replace("#", ""), max_size=60).map(str.encode),
    st.text(max_size=30).map(lambda text: quote(text, safe="=&").encode()),
)
# Header values as uvicorn's parser lets them through: visible ASCII, space, tab and
# obs-text (0x80-0xFF); a control character is a 400 before the application is called.
header_values = st.binary(max_size=60).map(
    lambda raw: bytes(b for b in raw if (b >= 0x20 and b != 0x7F) or b == 0x09).strip()
)
header_names = st.sampled_from(
    [
        b"authorization",
        b"content-type",
        b"content-length",
        b"x-request-id",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"host",
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"te",
        b"upgrade",
        b"expect",
        b"traceparent",
        b"tracestate",
        b"baggage",
        b"accept",
        b"cookie",
        b"idempotency-key",
    ]
) | st.text(alphabet=TCHAR.lower(), min_size=1, max_size=16).map(str.encode)
content_types = st.sampled_from(
    [
        b"application/json",
        b"application/json; charset=utf-16",
        b"application/x-www-form-urlencoded",
        b"multipart/form-data; boundary=x",
        b"text/plain",
        b"application/problem+json",
        b"*/*",
        b"",
    ]
)


@st.composite
def requests(draw: st.DrawFn, token: str) -> tuple[dict, list[bytes]]:
    service = draw(st.sampled_from(["catalog", "users", "orders"]))
    raw_path = f"/api/{service}/{draw(path_tails)}".encode()
    headers = draw(st.lists(st.tuples(header_names, header_values), max_size=6))
    if draw(st.booleans()):
        headers.append((b"content-type", draw(content_types)))
    authorization = draw(
        st.sampled_from([None, f"Bearer {token}".encode(), b"Bearer x.y.z", b"Basic YTpi"])
    )
    if authorization is not None:
        headers.append((b"authorization", authorization))
    body = draw(st.binary(max_size=3000))
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=3)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    scope = scope_of(draw(methods), raw_path, draw(query_strings), headers)
    return scope, chunks


# ------------------------------------------------------------------ the proxy path


@PROPERTY_HTTP
@given(data=st.data())
def test_any_request_gets_the_upstreams_answer_or_a_gateway_problem(
    gateway, loop, access_token, data
):
    scope, chunks = data.draw(requests(access_token))

    answer = call(loop, gateway, scope, chunks)

    if answer.headers.get(b"x-upstream") == b"yes":
        assert answer.status < 500, answer.body
    else:
        assert_a_gateway_problem(answer)


@pytest.mark.parametrize(
    ("path", "query"),
    [(b"/api/catalog/products/", b"ids=" + b"1," * 4000), (b"/api/catalog/" + b"a" * 8000, b"")],
    ids=["long query", "long path"],
)
def test_a_url_longer_than_the_services_read_is_a_414_problem_never_passed_on(
    gateway, loop, upstream, path, query
):
    before = len(upstream.received)

    answer = call(loop, gateway, scope_of("GET", path, query))

    assert_a_gateway_problem(answer)
    assert (answer.status, answer.json()["code"]) == (414, "uri_too_long")
    assert len(upstream.received) == before
    just_fits = call(loop, gateway, scope_of("GET", b"/api/catalog/products/", b"q=" + b"a" * 7976))
    assert just_fits.status == 200


def test_a_token_header_nested_thousands_deep_is_a_401_on_the_proxy_path(gateway, loop):
    header = base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).rstrip(b"=")
    authorization = b"Bearer " + header + b".e30.x"
    scope = scope_of("GET", b"/api/orders/", headers=[(b"authorization", authorization)])

    answer = call(loop, gateway, scope)

    assert answer.status == 401
    assert_a_gateway_problem(answer)


@PROPERTY_HTTP
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    tail=path_tails,
    query=query_strings,
    body=st.binary(max_size=1000),
)
def test_a_valid_request_reaches_the_upstream_unchanged(
    gateway, loop, upstream, access_token, method, tail, query, body
):
    raw_path = f"/api/users/echo/{tail}".encode()
    headers = [(b"authorization", f"Bearer {access_token}".encode())]

    answer = call(loop, gateway, scope_of(method, raw_path, query, headers), [body])

    assert answer.status == 200, answer.body
    sent = raw_path + (b"?" + query if query else b"")
    assert upstream.received[-1] == (method, sent, body)


# ------------------------------------------------------------------ the composition's path

order_ids = st.one_of(
    st.text(min_size=1, max_size=40).filter(lambda text: "/" not in text),
    st.uuids().map(str),
    st.sampled_from(
        [ORDER_ID, ORDER_ID.upper(), ORDER_ID_HEX, "..", ".", "?a", "#", ORDER_ID + "?x"]
    ),
    st.text(alphabet="0123456789abcdefABCDEF-٣", min_size=36, max_size=36),
)


@PROPERTY_HTTP
@given(order_id=order_ids)
@example(order_id=f"{ORDER_ID[:-1]}٣")  # a digit of another script: no UUID
@example(order_id="?page=1")  # once asked orders for its list
def test_the_composition_answers_the_order_or_a_404_problem(
    gateway, loop, upstream, access_token, order_id
):
    raw_path = f"/api/orders/{quote(order_id, safe='')}/details/".encode()
    headers = [(b"authorization", f"Bearer {access_token}".encode())]
    before = len(upstream.targets_under(b"/api/orders/"))

    answer = call(loop, gateway, scope_of("GET", raw_path, headers=headers))

    if order_id.lower() in (ORDER_ID, ORDER_ID_HEX):
        assert answer.status == 200, answer.body
        details = answer.json()
        assert details["order"]["id"] == ORDER_ID
        assert [line["product"] for line in details["lines"]] == [PRODUCT]
        assert details["customer"] == CUSTOMER
        assert details["warnings"] == []
        return
    assert answer.status == 404, answer.body
    assert answer.headers[b"content-type"] == b"application/problem+json"
    assert answer.json()["code"] == "order_not_found"
    asked = upstream.targets_under(b"/api/orders/")[before:]
    if not is_uuid(order_id):
        assert asked == [], asked  # nothing but a UUID goes on to orders
    else:
        assert asked == [f"/api/orders/{order_id}/".encode()]


def is_uuid(text: str) -> bool:
    """A UUID in ASCII hex, hyphenated where a UUID is or not at all (orders reads both)."""
    digits = text.replace("-", "")
    if not (text.isascii() and len(digits) == 32 and all(c in string.hexdigits for c in digits)):
        return False
    hyphens_after = [len(text[:i].replace("-", "")) for i, c in enumerate(text) if c == "-"]
    return len(set(hyphens_after)) == len(hyphens_after) <= 4 and set(hyphens_after) <= {
        8,
        12,
        16,
        20,
    }


@PROPERTY
@given(method=methods.filter(lambda m: m != "GET"), authorized=st.booleans())
def test_the_composition_is_read_only_and_needs_a_token(
    gateway, loop, access_token, method, authorized
):
    headers = [(b"authorization", f"Bearer {access_token}".encode())] if authorized else []
    raw_path = f"/api/orders/{ORDER_ID}/details/".encode()

    answer = call(loop, gateway, scope_of(method, raw_path, headers=headers))

    assert answer.status == 405
    assert answer.headers[b"allow"] == b"GET"
    unauthenticated = call(loop, gateway, scope_of("GET", raw_path))
    assert unauthenticated.status == 401
    assert_a_gateway_problem(unauthenticated)


# ------------------------------------------------------------------ the ports


@PROPERTY
@given(
    path=st.text(max_size=30).map(lambda text: quote("/" + text, safe="/")),
    port=st.sampled_from([8000, 8080, 9999, None]),
)
@example(path="/admin/", port=8000)
@example(path="//metrics", port=None)
def test_operators_paths_answer_404_on_every_port_but_the_internal_one(gateway, loop, path, port):
    scope = scope_of("GET", path.encode(), port=port)
    assume(not scope["path"].startswith("/api/"))  # proxied: not Django's

    answer = call(loop, gateway, scope)

    if internal_path(scope["path"]) and port != 8080:
        assert answer.status == 404
        assert answer.json()["code"] == "not_found"
    else:
        assert answer.status == 299  # on to Django


# ------------------------------------------------------------------ bytes on the wire


class QuickDeadlines(ReadDeadlineProtocol):
    """The deadlines of production, shortened: an unfinished request costs a test 0.3 s."""

    head_timeout = 0.3
    body_timeout = 0.3


@pytest.fixture
def wire(gateway) -> Iterator[int]:
    """The gateway under uvicorn with the read deadlines, as its worker runs it."""
    server, thread, port = serve(gateway, http=QuickDeadlines, lifespan="on")
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def exchange(port: int, raw: bytes) -> int | None:
    """Send raw bytes; the status of the first answer, or None if the connection closed."""
    status: list[int] = []
    done = threading.Event()

    class Callbacks:
        def on_headers_complete(self) -> None:
            status.append(parser.get_status_code())

        def on_message_complete(self) -> None:
            done.set()

    parser = httptools.HttpResponseParser(Callbacks())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(raw)
        while not done.is_set():
            data = connection.recv(65536)
            if not data:
                break
            parser.feed_data(data)
    return status[0] if status else None


request_lines = st.one_of(
    st.tuples(any_method_tokens, path_tails, query_strings).map(
        lambda parts: f"{parts[0]} /api/catalog/{parts[1]}?{parts[2].decode()} HTTP/1.1".encode()
    ),
    st.binary(max_size=60).map(lambda raw: bytes(b for b in raw if b not in b"\r\n")),
)


@PROPERTY_HTTP
@given(
    line=request_lines,
    headers=st.lists(st.tuples(header_names, header_values), max_size=5),
    body=st.binary(max_size=200),
    finished=st.integers(0, 9),
)
def test_any_bytes_on_the_wire_get_an_answer_below_500(wire, line, headers, body, finished):
    head = line + b"\r\n" + b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    raw = head + b"host: gateway\r\ncontent-length: %d\r\n\r\n" % len(body) + body
    if not finished:  # sometimes the client stops half-way: the deadline answers
        raw = raw[: len(raw) // 2]

    status = exchange(wire, raw)

    # uvicorn's 400 for what is not HTTP, the deadline's 408, the gateway's or the
    # upstream's answer, or (a protocol upgrade uvicorn refuses) a closed connection:
    # never a 5xx.
    assert status is None or status < 500, status
