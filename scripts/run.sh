#!/usr/bin/env bash
# `make run`: prepare every service on the embedded defaults, then start them all.
# Idempotent: migrations, seeding and the demo admin can run any number of times.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

# Optional local overrides (honcho reads the same file for the processes).
if [ -f .env ]; then set -a; . ./.env; set +a; fi

DEMO_ADMIN_EMAIL=${DEMO_ADMIN_EMAIL:-admin@example.com}
DEMO_ADMIN_PASSWORD=${DEMO_ADMIN_PASSWORD:-admin}

for service in catalog users orders gateway; do
  echo "==> ${service}: migrate"
  (cd "${service}_svc" && python manage.py migrate --noinput -v 0 \
     && python manage.py ensure_admin --email "$DEMO_ADMIN_EMAIL" --password "$DEMO_ADMIN_PASSWORD")
done
echo "==> gateway: JWT signing key (created on first start)"
(cd gateway_svc && python manage.py generate_jwt_keys)
echo "==> catalog: seed demo products"
(cd catalog_svc && python manage.py seed_catalog)

cat <<BANNER

  E-commerce platform, embedded mode (SQLite in var/, filesystem broker in var/broker/)

    gateway   http://127.0.0.1:8000/api/auth/token/   JWKS /.well-known/jwks.json
    catalog   http://127.0.0.1:8001/api/catalog/products/   docs /api/docs/   admin /admin/
    users     http://127.0.0.1:8002/api/users/register/   me /api/users/me/
    orders    http://127.0.0.1:8003/admin/
    every service: /health/  /ready/  /metrics  /api/schema/  /api/docs/

  Demo staff user: ${DEMO_ADMIN_EMAIL} / ${DEMO_ADMIN_PASSWORD}
    (a customer account with staff rights in users_svc, so it logs in at the gateway,
     and a local admin account in every service's Django admin)
  Ctrl-C stops everything.

BANNER
exec honcho start -f Procfile
