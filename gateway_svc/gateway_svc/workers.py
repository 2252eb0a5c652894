"""The gateway's gunicorn worker: uvicorn on uvloop and httptools, tuned for proxying.

gunicorn keeps process management (signals, graceful reloads, the common
config); each worker runs one asyncio event loop that proxies many requests
at once, which is what a gateway mostly does: wait on upstreams.
"""

from uvicorn_worker import UvicornWorker


class GatewayWorker(UvicornWorker):
    CONFIG_KWARGS = {
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "on",
        # The proxy writes its own access line (with the request id); the upstream's
        # Date and Server headers are relayed rather than doubled.
        "access_log": False,
        "server_header": False,
        "date_header": False,
        # The proxy reads X-Forwarded-For itself, trusting NUM_PROXIES hops only;
        # uvicorn would otherwise believe any local client's header.
        "proxy_headers": False,
    }
