"""The generated protobuf package must match protos/ (run `make protos` after editing a .proto)."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_up_to_date(tmp_path):
    subprocess.run(
        [sys.executable, str(ROOT / "scripts/gen_protos.py"), str(tmp_path)], check=True, capture_output=True
    )
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert generated, "the generator produced nothing"
    stale = [
        str(p)
        for p in generated
        if not (ROOT / "libs" / p).exists() or not filecmp.cmp(tmp_path / p, ROOT / "libs" / p, shallow=False)
    ]
    assert not stale, f"generated code is stale, run `make protos`: {stale}"
    committed = {p.relative_to(ROOT / "libs") for p in (ROOT / "libs/shop").rglob("*_pb2*.py*")}
    assert committed == {p for p in generated if "_pb2" in p.name}, "generated files without a .proto"


def test_buf_lint_passes():
    result = subprocess.run(
        [str(Path(sys.executable).parent / "buf"), "lint", "protos"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
