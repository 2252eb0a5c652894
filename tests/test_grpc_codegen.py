"""The generated gRPC code in contracts/python is what contracts/proto makes (make grpc-gen)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from eshop_contracts.users.v1 import users_pb2

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("grpc_gen", REPO / "scripts" / "grpc_gen.py")
grpc_gen = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(grpc_gen)  # type: ignore[union-attr]

COMMITTED = REPO / "contracts" / "python"


def _generated(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): path.read_text()
        for pattern in ("*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py")
        for path in (root / grpc_gen.PACKAGE).rglob(pattern)
    }


def test_the_committed_code_is_what_the_proto_files_generate(tmp_path):
    grpc_gen.generate(tmp_path)

    fresh, committed = _generated(tmp_path), _generated(COMMITTED)

    assert fresh, "nothing was generated"
    stale = sorted(
        name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name)
    )
    assert not stale, f"stale generated code, run `make grpc-gen`: {stale}"


def test_every_proto_file_is_one_package_per_service_and_version():
    for proto in grpc_gen.proto_files():
        service, version = proto.relative_to(grpc_gen.PROTO_ROOT).parts[:2]
        assert f"package {service}.{version};" in proto.read_text(), proto


def test_the_installed_package_is_the_committed_one():
    # make venv installs contracts/ editable: a copy elsewhere would hide a stale check.
    assert Path(users_pb2.__file__).resolve().is_relative_to(COMMITTED)
