#!/bin/sh
# The image's entrypoint: one role of one service per container.
#
#   SERVICE=catalog eshop web         # gunicorn on 0.0.0.0:$PORT (default: the service's port)
#                                    # (the gateway also on $GATEWAY_INTERNAL_PORT when set)
#   SERVICE=catalog eshop grpc        # manage.py grpc_serve on 0.0.0.0:$GRPC_PORT (catalog 50051,
#                                    # users 50052, orders 50053)
#   SERVICE=catalog eshop worker      # the Celery worker of the service's queue
#   SERVICE=orders  eshop relay       # the outbox relay          (orders)
#   SERVICE=orders  eshop watchdog    # the saga watchdog         (orders)
#   SERVICE=catalog eshop consumer    # the event consumer        (catalog, users)
#   SERVICE=catalog eshop queues      # declare its event queues, then exit
#   SERVICE=catalog eshop migrate     # migrations, then exit
#   SERVICE=gateway eshop keys        # the token key pair, once (kept when present)
#   SERVICE=catalog eshop seed        # the demo catalog (idempotent)
#   SERVICE=users   eshop manage <command> [args]   # any manage.py command
#   eshop healthcheck                 # the image's HEALTHCHECK: /ready/ of a web role, the
#                                    # gRPC health service of a grpc role
#   eshop broker-users [--out DIR]    # RabbitMQ's users and rights (common.broker_access)
# Anything else runs as a command in the service's folder.
set -eu

role=${1:-web}
[ $# -gt 0 ] && shift

if [ "$role" = healthcheck ]; then
  # Only web roles serve /ready/; other roles are healthy while they run. The role and
  # port come from the file the entrypoint wrote (a healthcheck gets none of its env).
  read -r running port < /tmp/eshop-role 2>/dev/null || exit 0
  [ "$running" = grpc ] && exec python -m common.grpc_probe "127.0.0.1:$port"
  [ "$running" = web ] || exit 0
  exec python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/ready/', timeout=5)"
fi

if [ "$role" = broker-users ]; then
  # No service's role: the broker's definitions for every service, from the passwords
  # in the environment, where the rabbitmq container reads them (compose's volume).
  exec python -m common.broker_access --out /app/var/rabbitmq --mounted-at /etc/rabbitmq/eshop "$@"
fi

case "${SERVICE:-}" in
  gateway) default_port=8000 ;;
  catalog) default_port=8001; default_grpc_port=50051 ;;
  users) default_port=8002; default_grpc_port=50052 ;;
  orders) default_port=8003; default_grpc_port=50053 ;;
  *) echo "eshop: set SERVICE to gateway, catalog, users or orders (got '${SERVICE:-}')" >&2; exit 64 ;;
esac
export PORT="${PORT:-$default_port}"
cd "/app/${SERVICE}_svc"
# The healthcheck asks /ready/ where it is served: the gateway's internal port if it has one.
probe_port=$PORT
if [ "$SERVICE" = gateway ] && [ -n "${GATEWAY_INTERNAL_PORT:-}" ]; then
  probe_port=$GATEWAY_INTERNAL_PORT
fi
if [ "$role" = grpc ]; then
  export GRPC_PORT="${GRPC_PORT:-${default_grpc_port:-}}"
  probe_port=$GRPC_PORT
fi
echo "$role $probe_port" > /tmp/eshop-role 2>/dev/null || true

only() {  # only <services...>: the role exists for these services alone
  for allowed in "$@"; do [ "$SERVICE" = "$allowed" ] && return 0; done
  echo "eshop: the $role role is for $*, not $SERVICE" >&2
  exit 64
}

case "$role" in
  web)
    if [ "$SERVICE" = gateway ]; then
      set -- -k gateway_svc.workers.GatewayWorker gateway_svc.asgi:application "$@"
      # The operators' surface (admin, /metrics, probes, /internal/) on a second port,
      # never published; the first port then answers 404 for it (GATEWAY_INTERNAL_PORT).
      if [ -n "${GATEWAY_INTERNAL_PORT:-}" ]; then
        set -- --bind "0.0.0.0:$GATEWAY_INTERNAL_PORT" "$@"
      fi
    else
      set -- "${SERVICE}_svc.wsgi" "$@"
    fi
    exec gunicorn -c python:common.gunicorn_conf --bind "0.0.0.0:$PORT" "$@" ;;
  worker)
    only catalog users orders
    exec celery -A "${SERVICE}_svc" worker -Q "${QUEUE_PREFIX:-}$SERVICE" -n "$SERVICE@%h" \
      -P threads -c "${WORKER_CONCURRENCY:-4}" -l INFO --without-gossip --without-mingle "$@" ;;
  grpc) only catalog users orders; exec python manage.py grpc_serve --bind "0.0.0.0:$GRPC_PORT" "$@" ;;
  relay) only orders; exec python manage.py outbox_relay "$@" ;;
  watchdog) only orders; exec python manage.py saga_watchdog "$@" ;;
  consumer) only catalog users; exec python manage.py consume_events "$@" ;;
  queues) only catalog users; exec python manage.py consume_events --setup-only "$@" ;;
  migrate) exec python manage.py migrate --noinput "$@" ;;
  keys) only gateway; exec python manage.py generate_jwt_keys "$@" ;;
  seed) only catalog; exec python manage.py seed_catalog --no-progress "$@" ;;
  manage) exec python manage.py "$@" ;;
  *) exec "$role" "$@" ;;
esac
