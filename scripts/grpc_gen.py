"""Generate the Python code of contracts/proto (``make grpc-gen``) into contracts/python.

The .proto files are mapped under the virtual path ``eshop_contracts/`` so that the
generated modules import each other as ``eshop_contracts.users.v1...``: generated at
the proto root as they stand, they would be ``users.v1`` and ``catalog.v1``, and a bare
``catalog`` is the catalog service's Django app. Every folder gets an ``__init__.py``
so the editable install (contracts/pyproject.toml) finds the packages.

    python scripts/grpc_gen.py              # regenerate contracts/python/eshop_contracts
    python scripts/grpc_gen.py --out DIR    # elsewhere (tests/test_grpc_codegen.py compares)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROTO_ROOT = REPO / "contracts" / "proto"
PACKAGE = "eshop_contracts"
OUT_DEFAULT = REPO / "contracts" / "python"
_GENERATED = ("*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py")


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out: Path) -> list[Path]:
    """Write the generated modules under ``out/eshop_contracts``; return the files written."""
    from grpc_tools import protoc

    package_dir = out / PACKAGE
    for pattern in _GENERATED:  # a removed .proto leaves no module behind
        for stale in package_dir.rglob(pattern):
            stale.unlink()
    package_dir.mkdir(parents=True, exist_ok=True)
    well_known = Path(protoc.__file__).parent / "_proto"
    arguments = [
        "grpc_tools.protoc",
        f"-I{PACKAGE}={PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *(str(path) for path in proto_files()),
    ]
    if protoc.main(arguments) != 0:
        raise SystemExit("protoc failed (its message is above)")
    written = [path for pattern in _GENERATED for path in package_dir.rglob(pattern)]
    for folder in {path.parent for path in written} | {package_dir}:
        while folder != out:
            init = folder / "__init__.py"
            if not init.exists():
                init.write_text("")
            folder = folder.parent
    return sorted(written)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DEFAULT)
    args = parser.parse_args()
    written = generate(args.out)
    for path in written:
        print(path.relative_to(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
