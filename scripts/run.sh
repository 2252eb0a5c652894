#!/usr/bin/env bash
# `make run`: prepare every service on the embedded defaults, then start them all under
# supervisord, which restarts a process that dies (see scripts/supervisord_conf.py).
# Idempotent: migrations, seeding and the demo admin can run any number of times.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

# Optional local overrides, exported: supervisord passes them on to every process.
# ENV_FILE names another file (tests/local_run.py points it at none).
env_file=${ENV_FILE:-.env}
if [ -f "$env_file" ]; then set -a; . "$env_file"; set +a; fi
# Databases, broker folders, the supervisord config, pidfile and control socket
# (a relative VAR_DIR is taken from the repository root).
VAR_DIR=${VAR_DIR:-var}
case "$VAR_DIR" in /*) ;; *) VAR_DIR=$PWD/$VAR_DIR ;; esac
export VAR_DIR

DEMO_ADMIN_EMAIL=${DEMO_ADMIN_EMAIL:-admin@example.com}
DEMO_ADMIN_PASSWORD=${DEMO_ADMIN_PASSWORD:-admin}

for service in catalog users orders gateway; do
  echo "==> ${service}: migrate"
  (cd "${service}_svc" && python manage.py migrate --noinput -v 0 \
     && python manage.py ensure_admin --email "$DEMO_ADMIN_EMAIL" --password "$DEMO_ADMIN_PASSWORD")
done
echo "==> gateway: JWT signing key (created on first start)"
(cd gateway_svc && python manage.py generate_jwt_keys)
echo "==> message signing keys, one pair per service (created on first start, var/signing/)"
(cd orders_svc && python manage.py generate_signing_keys)
echo "==> catalog: seed demo products"
(cd catalog_svc && python manage.py seed_catalog)
# The event consumers' queues and bindings: an event published before its consumer's
# queue exists is not kept for it, so they are declared before the orders relay starts.
for service in catalog users; do
  echo "==> ${service}: declare its event queue"
  (cd "${service}_svc" && python manage.py consume_events --setup-only)
done

# Service discovery (common.discovery): static by default. DISCOVERY=etcd also runs a
# local etcd (data in var/etcd/) and a register_service sidecar per service, from a
# combined Procfile written to $VAR_DIR/Procfile.etcd.
DISCOVERY=${DISCOVERY:-static}
procfile=Procfile
case "$DISCOVERY" in
  etcd)
    ETCD_URL=${ETCD_URL:-http://127.0.0.1:2379}
    export DISCOVERY ETCD_URL
    mkdir -p "$VAR_DIR"
    cp Procfile "$VAR_DIR/Procfile.etcd"
    if [ "$ETCD_URL" != "http://127.0.0.1:2379" ]; then
      discovery="etcd at ${ETCD_URL} (not started here)"
    elif (exec 3<>/dev/tcp/127.0.0.1/2379) 2>/dev/null; then
      discovery="etcd at ${ETCD_URL} (already running, not started here)"
    else
      command -v etcd >/dev/null || {
        echo "DISCOVERY=etcd needs etcd: run 'make system-deps' (Debian package etcd-server)" >&2
        exit 1
      }
      mkdir -p var/etcd && chmod 700 var/etcd
      # etcd reads ETCD_* variables as flags: ours are for the services, not for it.
      echo "etcd: exec env -u ETCD_URL -u ETCD_PREFIX etcd --name eshop-local --data-dir var/etcd" \
        "--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379" \
        "--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380" \
        "--initial-cluster eshop-local=http://127.0.0.1:2380 --logger zap --log-level warn" \
        >> "$VAR_DIR/Procfile.etcd"
      discovery="etcd at ${ETCD_URL} (local, data in var/etcd/)"
    fi
    port=8001
    for service in catalog users orders; do
      bind_variable="${service^^}_BIND"
      bind=${!bind_variable:-127.0.0.1:${port}}
      echo "${service}_registrar: cd ${service}_svc && exec python manage.py register_service" \
        "--name ${service} --url http://127.0.0.1:${bind##*:}" >> "$VAR_DIR/Procfile.etcd"
      port=$((port + 1))
    done
    discovery="${discovery}; a register_service sidecar per service"
    procfile=$VAR_DIR/Procfile.etcd
    ;;
  dns) discovery="dns (CATALOG_DNS, USERS_DNS, ORDERS_DNS)" ;;
  *) discovery="${DISCOVERY} (CATALOG_URL, USERS_URL, ORDERS_URL)" ;;
esac
conf=$(python scripts/supervisord_conf.py --procfile "$procfile" --var-dir "$VAR_DIR")

cat <<BANNER

  E-commerce platform, embedded mode (SQLite in var/, filesystem broker in var/broker/)

    gateway   http://${GATEWAY_BIND:-127.0.0.1:8000}/api/auth/token/   JWKS /.well-known/jwks.json
    catalog   http://${CATALOG_BIND:-127.0.0.1:8001}/api/catalog/products/   docs /api/docs/   admin /admin/
    users     http://${USERS_BIND:-127.0.0.1:8002}/api/users/register/   me /api/users/me/
    orders    http://${ORDERS_BIND:-127.0.0.1:8003}/admin/
    every service: /health/  /ready/  /metrics  /api/schema/  /api/docs/
    background: a Celery worker per service but the gateway; orders' saga watchdog
      and outbox relay; catalog's and users' event consumers (see the Procfile)
    service discovery: ${discovery}

  Demo staff user: ${DEMO_ADMIN_EMAIL} / ${DEMO_ADMIN_PASSWORD}
    (a customer account with staff rights in users_svc, so it logs in at the gateway,
     and a local admin account in every service's Django admin)
  A process that dies is started again (supervisord logs "exited:" and "spawned:").
  Process status, from another terminal:
    .venv/bin/supervisorctl -c ${conf} status
  Ctrl-C stops everything.

BANNER
exec supervisord -c "$conf"
