from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ServiceLauncher


@pytest.fixture
def services(tmp_path: Path) -> Iterator[ServiceLauncher]:
    """Start named services as real processes; all are stopped and their databases dropped."""
    launcher = ServiceLauncher(tmp_path)
    try:
        yield launcher
    finally:
        launcher.stop_all()
