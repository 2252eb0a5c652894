"""A minimal project for testing ``common`` on its own, as every service uses it."""

from pathlib import Path

from common.settings import service_defaults

BASE_DIR = Path(__file__).resolve().parents[3]  # the common/ distribution folder

_defaults = service_defaults(service="common", base_dir=BASE_DIR)
globals().update(_defaults)

ROOT_URLCONF = "common.tests.urls"
# The relay's tests run it by hand on every row; the tests of publishing on commit
# turn this back on.
OUTBOX_PUBLISH_ON_COMMIT = False
