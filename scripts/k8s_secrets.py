"""Write the Secrets of the local Kubernetes overlay: random values, the JWT key pair and
the services' message signing keys (signing/<service>.pem, signing/public/<service>.pem).

    python scripts/k8s_secrets.py                  # into k8s/overlays/local/secrets/
    python scripts/k8s_secrets.py --out DIR        # elsewhere (the tests use a temp dir)
    python scripts/k8s_secrets.py --force          # new values for everything

`make k8s-secrets` runs it. The overlay's secretGenerator reads the files (kustomize
puts a hash of their content in each Secret's name, so a changed Secret rolls the pods
that use it). The folder is gitignored: nothing here is ever committed.

Each service connects to RabbitMQ as a user of its own (common.broker_access): the
broker imports rabbitmq-config/definitions.json (those users, their rights, password
hashes only) at every boot, through rabbitmq-config/rabbitmq.conf.

Files that exist are kept: a PostgreSQL, RabbitMQ or Redis that already initialised its
volume with a password would refuse a new one. --force starts over (delete the
overlay's PersistentVolumeClaims too). The key pair comes from the gateway's own
command, `manage.py generate_jwt_keys`, pointed at the output folder by JWT_PRIVATE_KEY
and JWT_PUBLIC_KEY, exactly as the gateway reads them.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from common import broker_access  # the broker's users and rights (eshop-common)

REPO = Path(__file__).resolve().parents[1]

DEFAULT_OUT = REPO / "k8s" / "overlays" / "local" / "secrets"

# Each service: its own database (a PostgreSQL StatefulSet <service>-db) and Redis
# database number; every service shares the broker and the cache server.
SERVICES = {"gateway": 0, "catalog": 1, "users": 2, "orders": 3}
DB_USER = "eshop"
# The broker's administrator (its management UI); each service has a user of its own.
BROKER_ADMIN = broker_access.ADMIN_USER
# Mounted there from the rabbitmq-config Secret (overlays/local/rabbitmq.yaml).
BROKER_CONFIG_MOUNT = "/etc/rabbitmq/eshop"
# The broker's full in-cluster name: KEDA's operator (another namespace) reads the same
# BROKER_URL to count a queue's messages (k8s/components/keda), and the apps resolve it too.
BROKER_HOST = "rabbitmq.eshop.svc"
REDIS_HOST = "redis"


def password() -> str:
    """Safe in a URL's user info part without quoting: hex."""
    return secrets.token_hex(24)


def write_env(path: Path, values: dict[str, str]) -> None:
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    path.chmod(0o600)


def read_env(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def env_files(out: Path) -> dict[str, dict[str, str]]:
    """Every .env file of the overlay with fresh values: {file name: {key: value}}."""
    broker_password, redis_password = password(), password()
    files: dict[str, dict[str, str]] = {
        # The administrator, also as the image's default user: should a RabbitMQ version
        # create one beside the imported definitions, it is this one, never guest.
        "rabbitmq.env": {
            "RABBITMQ_DEFAULT_USER": BROKER_ADMIN,
            "RABBITMQ_DEFAULT_PASS": broker_password,
        },
        "redis.env": {"REDIS_PASSWORD": redis_password},
    }
    for service, cache_db in SERVICES.items():
        db_password, service_broker_password = password(), password()
        files[f"{service}-db.env"] = {"POSTGRES_PASSWORD": db_password}
        files[f"{service}.env"] = {
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DATABASE_URL": f"postgres://{DB_USER}:{db_password}@{service}-db:5432/{service}",
            "BROKER_URL": f"amqp://{service}:{service_broker_password}@{BROKER_HOST}:5672//",
            "CACHE_URL": f"redis://:{redis_password}@{REDIS_HOST}:6379/{cache_db}",
        }
    return files


def broker_config_files(files: dict[str, dict[str, str]]) -> dict[str, str]:
    """rabbitmq-config/: the definitions of the users whose passwords ``files`` holds
    (hashes only) and the rabbitmq.conf that imports them at boot."""
    passwords = {
        service: str(urlsplit(files[f"{service}.env"]["BROKER_URL"]).password)
        for service in SERVICES
    }
    document = broker_access.definitions(
        passwords, admin_password=files["rabbitmq.env"]["RABBITMQ_DEFAULT_PASS"]
    )
    return {
        "rabbitmq-config/definitions.json": json.dumps(document, indent=2) + "\n",
        "rabbitmq-config/rabbitmq.conf": broker_access.RABBITMQ_CONF.format(
            path=f"{BROKER_CONFIG_MOUNT}/definitions.json"
        ),
    }


def generate_jwt_keys(jwt_dir: Path) -> None:
    """The gateway's RS256 pair, made by the gateway's own management command."""
    jwt_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="eshop-k8s-keys-") as var_dir:
        environment = {
            key: value
            for key, value in os.environ.items()
            # The command needs no database or broker: nothing of the shell's may leak in.
            if not key.startswith(("DATABASE_", "BROKER_", "CACHE_", "JWT_", "GATEWAY_"))
        }
        environment.update(
            ENVIRONMENT="local",
            VAR_DIR=var_dir,
            BROKER_URL="memory://",
            JWT_PRIVATE_KEY=str(jwt_dir / "private.pem"),
            JWT_PUBLIC_KEY=str(jwt_dir / "public.pem"),
            JWT_RETIRED_KEYS=str(Path(var_dir) / "retired"),
        )
        subprocess.run(
            [sys.executable, "manage.py", "generate_jwt_keys"],
            cwd=REPO / "gateway_svc",
            env=environment,
            check=True,
            stdout=subprocess.DEVNULL,
        )


def generate_signing_keys(signing_dir: Path) -> None:
    """An Ed25519 pair per service for signed messages (common.signing), made by the
    services' own command; a pair that exists is kept."""
    signing_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="eshop-k8s-keys-") as var_dir:
        environment = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("DATABASE_", "BROKER_", "CACHE_", "MESSAGE_SIGNING_"))
        }
        environment.update(ENVIRONMENT="local", VAR_DIR=var_dir, BROKER_URL="memory://")
        subprocess.run(
            [
                sys.executable,
                "manage.py",
                "generate_signing_keys",
                "--private-dir",
                str(signing_dir),
                "--public-dir",
                str(signing_dir / "public"),
            ],
            cwd=REPO / "orders_svc",
            env=environment,
            check=True,
            stdout=subprocess.DEVNULL,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the folder to write")
    parser.add_argument("--force", action="store_true", help="replace existing values")
    options = parser.parse_args(argv)
    out: Path = options.out
    if options.force and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)

    files = env_files(out)
    existing = [name for name in files if (out / name).exists()]
    if existing and len(existing) != len(files):
        # Half a set would pair a new password with an old one: refuse, say how to fix.
        missing = sorted(set(files) - set(existing))
        print(
            f"{out}: some secrets are missing ({', '.join(missing)}); "
            "run with --force to make a new set (and delete the overlay's volumes)",
            file=sys.stderr,
        )
        return 1
    if existing:
        files = {name: read_env(out / name) for name in files}
    else:
        for name, values in files.items():
            write_env(out / name, values)
    # The broker's users from the passwords above, when missing: delete rabbitmq-config/
    # to apply a changed common.broker_access with the same passwords.
    for name, text in broker_config_files(files).items():
        if not (out / name).exists():
            (out / name).parent.mkdir(mode=0o700, exist_ok=True)
            (out / name).write_text(text)
            (out / name).chmod(0o600)
    if not (out / "jwt" / "private.pem").exists():
        generate_jwt_keys(out / "jwt")
    generate_signing_keys(out / "signing")  # each pair only if missing
    state = "kept" if existing else "written"
    print(f"Secrets of the local overlay {state} in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
