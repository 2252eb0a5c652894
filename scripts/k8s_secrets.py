"""Write the Secrets of the local Kubernetes overlay: random values and the JWT key pair.

    python scripts/k8s_secrets.py                  # into k8s/overlays/local/secrets/
    python scripts/k8s_secrets.py --out DIR        # elsewhere (the tests use a temp dir)
    python scripts/k8s_secrets.py --force          # new values for everything

`make k8s-secrets` runs it. The overlay's secretGenerator reads the files (kustomize
puts a hash of their content in each Secret's name, so a changed Secret rolls the pods
that use it). The folder is gitignored: nothing here is ever committed.

Files that exist are kept: a PostgreSQL, RabbitMQ or Redis that already initialised its
volume with a password would refuse a new one. --force starts over (delete the
overlay's PersistentVolumeClaims too). The key pair comes from the gateway's own
command, `manage.py generate_jwt_keys`, pointed at the output folder by JWT_PRIVATE_KEY
and JWT_PUBLIC_KEY, exactly as the gateway reads them.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "k8s" / "overlays" / "local" / "secrets"

# Each service: its own database (a PostgreSQL StatefulSet <service>-db) and Redis
# database number; every service shares the broker and the cache server.
SERVICES = {"gateway": 0, "catalog": 1, "users": 2, "orders": 3}
DB_USER = "eshop"
BROKER_USER = "eshop"
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


def env_files(out: Path) -> dict[str, dict[str, str]]:
    """Every .env file of the overlay with fresh values: {file name: {key: value}}."""
    broker_password, redis_password = password(), password()
    files: dict[str, dict[str, str]] = {
        "rabbitmq.env": {
            "RABBITMQ_DEFAULT_USER": BROKER_USER,
            "RABBITMQ_DEFAULT_PASS": broker_password,
        },
        "redis.env": {"REDIS_PASSWORD": redis_password},
    }
    for service, cache_db in SERVICES.items():
        db_password = password()
        files[f"{service}-db.env"] = {"POSTGRES_PASSWORD": db_password}
        files[f"{service}.env"] = {
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DATABASE_URL": f"postgres://{DB_USER}:{db_password}@{service}-db:5432/{service}",
            "BROKER_URL": f"amqp://{BROKER_USER}:{broker_password}@{BROKER_HOST}:5672//",
            "CACHE_URL": f"redis://:{redis_password}@{REDIS_HOST}:6379/{cache_db}",
        }
    return files


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
    for name, values in files.items():
        if name not in existing:
            write_env(out / name, values)
    if not (out / "jwt" / "private.pem").exists():
        generate_jwt_keys(out / "jwt")
    state = "kept" if existing else "written"
    print(f"Secrets of the local overlay {state} in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
