"""A Docker engine and the project's images for the container tests.

``ensure_dockerd()`` starts ``dockerd`` in the background when none answers (as root,
or through sudo), as a newcomer's machine has Debian's ``docker.io`` installed but
not started; a daemon started here is left running, like the system service it
stands in for. ``ensure_images()`` runs compose/offline-images.sh: the stand-ins for
the official images (built from Debian's packages, no registry needed) and the
project image, each built once and reused (layers too), and returns the variables
that point compose at them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMPOSE_DIR = REPO / "compose"
DOCKERD_LOG = REPO / "var" / "dockerd.log"
START_TIMEOUT = 60.0
# Cold: debootstrap, the stand-ins and the project image (about 4 minutes here).
BUILD_TIMEOUT = float(os.environ.get("TEST_IMAGE_BUILD_TIMEOUT", "1200"))
ESHOP_TAG = os.environ.get("ESHOP_TAG", "latest")
ESHOP_IMAGE = f"eshop:{ESHOP_TAG}"


def _sudo() -> list[str]:
    return [] if os.geteuid() == 0 else ["sudo", "-n"]


def docker_answers() -> bool:
    result = subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=30)
    return result.returncode == 0


def ensure_dockerd() -> None:
    """A Docker engine that answers, started here when none does."""
    if shutil.which("docker") is None:
        raise RuntimeError("the `docker` command is missing: apt-get install docker.io")
    if docker_answers():
        return
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    if not os.access(dockerd, os.X_OK):
        raise RuntimeError("no Docker engine answers and `dockerd` is missing: install docker.io")
    DOCKERD_LOG.parent.mkdir(parents=True, exist_ok=True)
    with DOCKERD_LOG.open("ab") as log:
        subprocess.Popen(
            [*_sudo(), dockerd],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # it outlives the test run, as a system daemon would
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if docker_answers():
            return
        time.sleep(0.5)
    raise RuntimeError(f"dockerd did not answer within {START_TIMEOUT:.0f}s; see {DOCKERD_LOG}")


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key] = value
    return values


def ensure_images() -> dict[str, str]:
    """Build what is missing; the image variables compose and the tests use
    (``PYTHON_IMAGE``, ``POSTGRES_IMAGE``, ..., and ``ESHOP_IMAGE``)."""
    ensure_dockerd()
    result = subprocess.run(
        ["sh", str(COMPOSE_DIR / "offline-images.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=BUILD_TIMEOUT,
        env={**os.environ, "ESHOP_TAG": ESHOP_TAG},
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"compose/offline-images.sh failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return {**read_env_file(COMPOSE_DIR / "offline.env"), "ESHOP_IMAGE": ESHOP_IMAGE}
