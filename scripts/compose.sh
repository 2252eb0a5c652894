#!/bin/sh
# `make compose-up` and `make compose-down`: the whole shop in Docker (compose/).
#
#   sh scripts/compose.sh up      # secrets once, images, start detached, wait for the gateway
#   sh scripts/compose.sh down    # stop and remove containers, networks and volumes
#   sh scripts/compose.sh <any docker-compose arguments>    # ps, logs -f, exec, ...
#
# compose/.env holds the stack's secrets, written with random values on first use and
# never committed, and so are compose/secrets/signing/ (the services' message signing
# keys). When no registry answers (or ESHOP_OFFLINE=1), compose runs on the
# stand-ins compose/offline-images.sh builds from Debian's packages.
set -eu
cd "$(dirname "$0")/.."

project=${COMPOSE_PROJECT_NAME:-eshop}
env_file=compose/.env
port=${GATEWAY_PORT:-8000}
if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo -n"; fi

compose() { docker-compose -p "$project" -f compose/docker-compose.yml --env-file "$env_file" "$@"; }

ensure_docker() {
  docker info >/dev/null 2>&1 && return 0
  command -v dockerd >/dev/null || [ -x /usr/sbin/dockerd ] || {
    echo "No Docker engine: install Docker (Debian: apt-get install docker.io docker-compose)" >&2
    exit 1
  }
  echo "==> starting dockerd (log: var/dockerd.log)"
  mkdir -p var
  $sudo sh -c 'nohup dockerd >>var/dockerd.log 2>&1 &'
  i=0
  until docker info >/dev/null 2>&1; do
    i=$((i + 1)); [ "$i" -lt 120 ] || { echo "dockerd did not start: see var/dockerd.log" >&2; exit 1; }
    sleep 0.5
  done
}

write_secrets() {
  # Missing ones only: an existing file keeps its values (the volumes were made with
  # them) and gains any secret a newer compose file asks for.
  umask 077
  python3 - "$env_file" <<'PY'
import pathlib, secrets, sys
path = pathlib.Path(sys.argv[1])
makers = {
    "SECRET_KEY": lambda: secrets.token_urlsafe(50),
    "POSTGRES_PASSWORD": lambda: secrets.token_hex(16),
    "RABBITMQ_PASSWORD": lambda: secrets.token_hex(16),
    "RABBITMQ_CATALOG_PASSWORD": lambda: secrets.token_hex(16),
    "RABBITMQ_USERS_PASSWORD": lambda: secrets.token_hex(16),
    "RABBITMQ_ORDERS_PASSWORD": lambda: secrets.token_hex(16),
    "RABBITMQ_GATEWAY_PASSWORD": lambda: secrets.token_hex(16),
    "REDIS_PASSWORD": lambda: secrets.token_hex(16),
    "GRAFANA_ADMIN_PASSWORD": lambda: secrets.token_hex(16),
}
text = path.read_text() if path.exists() else (
    "# compose/docker-compose.yml's secrets, made by `make compose-up`. Never commit.\n"
)
present = {line.split("=", 1)[0] for line in text.splitlines() if "=" in line}
missing = [key for key in makers if key not in present]
if missing:
    if text and not text.endswith("\n"):
        text += "\n"
    text += "".join(f"{key}={makers[key]()}\n" for key in missing)
    path.write_text(text)
    print(f"==> {path}: random values for {', '.join(missing)} (keep it; never commit it)")
PY
}

write_signing_keys() {
  # An Ed25519 pair per service that signs messages (common.signing), made once and kept:
  # the files behind the compose file's `secrets:`. Containers run as uid 10001 and read
  # their key through a bind mount, so the files are readable by all, in folders only
  # their owner may enter (0700).
  keys=compose/secrets/signing
  mkdir -p "$keys/public"
  chmod 700 compose/secrets "$keys"
  for service in catalog users orders; do
    [ -f "$keys/$service.pem" ] && continue
    openssl genpkey -algorithm ed25519 -out "$keys/$service.pem.tmp"
    openssl pkey -in "$keys/$service.pem.tmp" -pubout -out "$keys/public/$service.pem"
    chmod 644 "$keys/$service.pem.tmp" "$keys/public/$service.pem"
    mv "$keys/$service.pem.tmp" "$keys/$service.pem"
    echo "==> $keys/$service.pem: ${service}'s message signing key (keep it; never commit it)"
  done
}

use_offline_images() {
  if [ "${ESHOP_OFFLINE:-}" != 1 ]; then
    docker image inspect "${POSTGRES_IMAGE:-postgres:15}" >/dev/null 2>&1 && return 1
    docker pull -q "${POSTGRES_IMAGE:-postgres:15}" >/dev/null 2>&1 && return 1
    echo "==> no image registry answers: building stand-ins from Debian's packages"
  fi
  sh compose/offline-images.sh
  set -a; . compose/offline.env; set +a
  return 0
}

case "${1:-}" in
  up)
    shift
    started=$(date +%s)
    ensure_docker
    write_secrets
    write_signing_keys
    if use_offline_images; then
      build=--no-build
      echo "==> no tracing backend: Jaeger has no Debian stand-in (spans are not exported)"
    else
      build=--build
      # Traces to Jaeger unless told otherwise (OTEL_EXPORTER_OTLP_ENDPOINT set, even empty).
      if [ -z "${OTEL_EXPORTER_OTLP_ENDPOINT+set}" ]; then
        export OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4318
        export COMPOSE_PROFILES="${COMPOSE_PROFILES:+$COMPOSE_PROFILES,}tracing"
      fi
    fi
    compose up -d $build "$@"
    echo "==> waiting for the gateway on http://127.0.0.1:$port/"
    i=0
    until python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/ready/', timeout=3)" 2>/dev/null; do
      i=$((i + 1))
      if [ "$i" -ge 300 ]; then
        echo "The gateway did not become ready; \`sh scripts/compose.sh ps\` and \`... logs\` tell why." >&2
        exit 1
      fi
      sleep 1
    done
    echo "==> the shop answers on http://127.0.0.1:$port/ ($(( $(date +%s) - started ))s)"
    case "${COMPOSE_PROFILES:-}" in *tracing*) echo "==> traces: http://127.0.0.1:${JAEGER_UI_PORT:-16686}/";; esac
    ;;
  down)
    shift
    [ -f "$env_file" ] || { echo "No $env_file: nothing was started with make compose-up."; exit 0; }
    [ -f compose/offline.env ] && { set -a; . compose/offline.env; set +a; }
    compose --profile ops --profile tracing down -v --remove-orphans "$@"
    ;;
  *)
    [ -f compose/offline.env ] && { set -a; . compose/offline.env; set +a; }
    compose "$@"
    ;;
esac
