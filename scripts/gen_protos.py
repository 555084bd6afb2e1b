"""Generate the Python protobuf/gRPC package from protos/ into libs/shop/ (or another dir).

Usage: python scripts/gen_protos.py [OUTPUT_ROOT]
The generated modules are importable as `shop.<service>.v1.<service>_pb2(_grpc)`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.glob("shop/*/v1/*.proto"))


def generate(out_root: Path) -> None:
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    files = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    # The mypy-protobuf plugins live next to the interpreter (the venv's bin/).
    bin_dir = Path(sys.executable).parent
    args = [
        "grpc_tools.protoc",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # Every generated directory is a regular package.
    for proto in proto_files():
        package_dir = out_root / proto.parent.relative_to(PROTO_ROOT)
        for directory in (package_dir, package_dir.parent):
            (directory / "__init__.py").touch()


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "libs")
