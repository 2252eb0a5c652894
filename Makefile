# The two commands of the README: `make run` and `make test`.
# Everything else here serves them; `make help` lists the targets.

# The newest Python 3.13, 3.12 or 3.11 that runs and can make a venv (Debian: the
# python3.x-venv package); `make PYTHON=/path/to/python3.x ...` picks another.
ifeq ($(origin PYTHON),undefined)
PYTHON := $(firstword $(foreach p,python3.13 python3.12 python3.11,\
  $(shell $(p) -c 'import ensurepip, venv' >/dev/null 2>&1 && echo $(p))))
endif
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv system-deps run test lint format check migrate seed clean bench-tokens bench-tracing bench-gateway bench-saga bench-push bench-broker bench-grpc grpc-gen asyncapi soak compose-up compose-down images prometheus-rules alerts-test k8s-secrets k8s-render

# Debian packages the tests use: command (or the file it must be) -> package (the container
# tests start dockerd when it is not running and build their images with debootstrap; on a
# systemd host, installing prometheus starts prometheus.service on :9090: the tests do not
# need it, `systemctl disable --now prometheus prometheus-node-exporter`). The test
# run starts its own PostgreSQL, RabbitMQ and Redis from theirs, unless it is told to use
# running servers (TEST_SERVERS=existing).
DEBIAN_DEPS := docker-compose:docker-compose etcd:etcd-server dockerd:docker.io \
  debootstrap:debootstrap prometheus:prometheus chromium:chromium
ifneq ($(TEST_SERVERS),existing)
DEBIAN_DEPS += /usr/lib/postgresql/*/bin/initdb:postgresql redis-server:redis-server \
  /usr/lib/rabbitmq/bin/rabbitmq-server:rabbitmq-server
endif

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): requirements/base.txt requirements/test.txt requirements/constraints.txt common/pyproject.toml \
  contracts/pyproject.toml
	@test -n "$(PYTHON)" || { echo "No Python 3.11, 3.12 or 3.13 with venv found:" \
	  "apt-get install python3 python3-venv (Debian 12 or later), or make PYTHON=/path/to/python3.x"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "$(PYTHON) is older than Python 3.11: make PYTHON=/path/to/python3.11 or later"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements/test.txt -c requirements/constraints.txt -e ./common \
	  -e ./contracts
	touch $(STAMP)

venv: $(STAMP) ## Create the virtual environment and install the pinned packages

system-deps: ## Install the Debian packages the tests need when missing (sudo when not root)
	@missing=""; for pair in $(DEBIAN_DEPS); do \
	  command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q $$missing; \
	  else sudo apt-get update -q && sudo apt-get install -y -q $$missing; fi; \
	fi

run: venv ## Start every service on the embedded defaults (SQLite, filesystem broker)
	bash scripts/run.sh

test: venv system-deps ## Lint, then every test suite, on a PostgreSQL, RabbitMQ and Redis of the run's own
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/run_tests.py

lint: venv ## ruff check and format check only
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: venv ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

check: venv ## manage.py check for every service
	for s in catalog users orders gateway; do (cd $${s}_svc && ../$(BIN)/python manage.py check) || exit 1; done

# The generated code is committed (the images and `make run` need no protoc); a test
# (tests/test_grpc_codegen.py) fails when it no longer matches contracts/proto.
grpc-gen: venv ## Regenerate contracts/python from contracts/proto (gRPC and protobuf code)
	$(BIN)/python scripts/grpc_gen.py

# Committed too, served by the gateway at /api/asyncapi/; gateway_svc/proxy/tests/test_asyncapi.py
# fails when it no longer matches contracts/events and contracts/commands.
asyncapi: venv ## Regenerate contracts/asyncapi.yaml (AsyncAPI 3.0) from the event and command schemas
	cd gateway_svc && ../$(BIN)/python manage.py asyncapi_build

migrate: venv ## Migrate every service's database
	for s in catalog users orders gateway; do (cd $${s}_svc && ../$(BIN)/python manage.py migrate --noinput -v 0) || exit 1; done

seed: migrate ## Load the demo catalog
	cd catalog_svc && ../$(BIN)/python manage.py seed_catalog

bench-tokens: venv ## Time token signing, issuing and verification (bench/token_bench.py)
	$(BIN)/python bench/token_bench.py

bench-tracing: venv ## Tracing's CPU cost per catalog request: SDK off, no endpoint, exporting (bench/tracing_cost.py)
	$(BIN)/python bench/tracing_cost.py $(BENCH_ARGS)

# BENCH_ARGS passes options through, e.g. make bench-gateway BENCH_ARGS="--duration 3s --rounds 1".
# Debian's nginx package may start a system nginx on port 80: stopped at once,
# the benchmark runs its own with its own config under a temp dir.
bench-gateway: venv ## Proxy cost: catalog direct vs gateway vs nginx (bench/gateway_bench.py)
	@missing=""; command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v nginx >/dev/null || missing="$$missing nginx"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; else sudo=sudo; fi; \
	  $$sudo apt-get update -q && $$sudo apt-get install -y -q $$missing || exit 1; \
	  case "$$missing" in *nginx*) $$sudo service nginx stop >/dev/null 2>&1 \
	    || $$sudo nginx -s stop >/dev/null 2>&1 || true;; esac; \
	fi
	$(BIN)/python bench/gateway_bench.py $(BENCH_ARGS)

# BENCH_ARGS passes options through, e.g. make bench-saga BENCH_ARGS="--rate 10 --steps 20,40".
# Side by side with a git worktree of a baseline commit by default (bench/README.md):
# BENCH_ARGS="--baseline <commit>" picks another, "--no-baseline" runs the working tree alone.
bench-saga: venv ## Order saga latency, max orders/s, event delivery, side by side with a baseline commit (bench/saga_bench.py)
	$(BIN)/python bench/saga_bench.py $(BENCH_ARGS)

# BENCH_ARGS passes options through, e.g. make bench-push BENCH_ARGS="--orders 50 --brokers rabbitmq".
bench-push: venv ## Order approval commit to an SSE client of the push channel, p50/p99 (bench/push_bench.py)
	$(BIN)/python bench/push_bench.py $(BENCH_ARGS)

# Locust load through the gateway (bench/locustfile.py; notes in bench/README.md). All of it
# comes from one IP, and the gateway limits per IP and per user: start the shop with the
# limits raised for a load run, or most answers are 429 (counted apart, not as failures):
#   GATEWAY_RATE_LIMIT_ANONYMOUS=100000/min GATEWAY_RATE_LIMIT_AUTHENTICATED=100000/min \
#   LOGIN_RATE_PER_IP=100000/min LOGIN_RATE_PER_EMAIL=100000/min make run
# LOAD_ARGS passes more Locust options, e.g. make load LOAD_ARGS="--orders 200 --settle-timeout 90".
# When LOAD_TIME is up, users get LOAD_STOP_TIMEOUT seconds to finish following their orders.
LOAD_HOST ?= http://127.0.0.1:8000
LOAD_USERS ?= 16
LOAD_SPAWN_RATE ?= 4
LOAD_TIME ?= 1m
LOAD_STOP_TIMEOUT ?= 30
LOAD_REPORT ?= var/load/report.json
LOAD_UI_PORT ?= 8089
LOAD_ARGS ?=
.PHONY: load load-ui

load: venv ## Locust load on LOAD_HOST (LOAD_USERS, LOAD_TIME; report var/load/report.json); raise the rate limits first (bench/README.md)
	$(BIN)/locust -f bench/locustfile.py --headless --only-summary --host $(LOAD_HOST) \
	  --users $(LOAD_USERS) --spawn-rate $(LOAD_SPAWN_RATE) --run-time $(LOAD_TIME) \
	  --stop-timeout $(LOAD_STOP_TIMEOUT) --report-json $(LOAD_REPORT) $(LOAD_ARGS)

load-ui: venv ## Locust's web UI on http://127.0.0.1:8089 (LOAD_UI_PORT) to start, watch and stop the load
	$(BIN)/locust -f bench/locustfile.py --web-host 127.0.0.1 --web-port $(LOAD_UI_PORT) \
	  --host $(LOAD_HOST) --users $(LOAD_USERS) --spawn-rate $(LOAD_SPAWN_RATE) \
	  --report-json $(LOAD_REPORT) $(LOAD_ARGS)

# BENCH_ARGS passes options through, e.g. make bench-grpc BENCH_ARGS="--requests 50 --baseline none".
bench-grpc: venv ## The gateway's login and order composition over gRPC vs REST (bench/grpc_bench.py)
	$(BIN)/python bench/grpc_bench.py $(BENCH_ARGS)

# BENCH_ARGS passes options through, e.g. make bench-broker BENCH_ARGS="--rounds 1".
bench-broker: venv ## The embedded broker side by side with kombu's own and RabbitMQ (bench/broker_bench.py)
	$(BIN)/python bench/broker_bench.py $(BENCH_ARGS)

# BENCH_ARGS passes options through, e.g. make soak BENCH_ARGS="--duration 120 --brokers embedded".
soak: venv ## make load against make run for 10 minutes, embedded broker then RabbitMQ (bench/soak.py)
	$(BIN)/python bench/soak.py $(BENCH_ARGS)

# The shop in Docker (compose/docker-compose.yml, scripts/compose.sh): ARGS passes more
# docker-compose up options, e.g. make compose-up ARGS="--scale catalog=2".
compose-up: ## Start the whole shop in Docker, detached (gateway on 127.0.0.1:8000; secrets in compose/.env)
	sh scripts/compose.sh up $(ARGS)

compose-down: ## Stop the Docker shop and remove its containers and volumes
	sh scripts/compose.sh down

prometheus-rules: venv ## Regenerate k8s/components/prometheus-rules/prometheusrule.yaml from compose/prometheus/alerts.yml
	$(BIN)/python k8s/components/prometheus-rules/generate.py

alerts-test: ## Check the alert rules and run their promtool unit tests (Debian's prometheus package)
	promtool check rules compose/prometheus/alerts.yml && promtool test rules compose/prometheus/alerts_test.yml

images: ## Build the project image and the Debian stand-ins for the official images (compose/offline-images.sh)
	sh compose/offline-images.sh

k8s-secrets: venv ## Secrets of k8s/overlays/local (random passwords, the JWT key pair) in its gitignored secrets/
	$(BIN)/python scripts/k8s_secrets.py

# K8S_OVERLAY=production renders the other overlay.
K8S_OVERLAY ?= local
k8s-render: ## Render k8s/overlays/$(K8S_OVERLAY) with kubectl kustomize (local: make k8s-secrets first)
	kubectl kustomize k8s/overlays/$(K8S_OVERLAY)

clean: ## Remove local databases, broker folders and test results (keeps the venv)
	rm -rf var/
