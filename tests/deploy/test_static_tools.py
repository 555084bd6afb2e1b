"""Real linters on the deployment files: hadolint and checkov on the Dockerfile (and hadolint on
the offline stand-ins' Dockerfiles), checkov on the rendered Kubernetes overlays, compose-lint on
docker-compose.yml. No failed check; each skip is justified beside it (deploy/lint/*.yaml, the
`checkov.io/skipN` annotations of deploy/k8s, `# hadolint ignore=` comments).

The tools live in a venv of their own, .tools/static, installed from deploy/lint/requirements.txt
(every package pinned) when missing or out of date: checkov's dependency tree stays out of uv.lock.
Without PyPI they are skipped, except under CI=true, where they must run.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / ".tools" / "static"
REQUIREMENTS = REPO / "deploy" / "lint" / "requirements.txt"
LINT = REPO / "deploy" / "lint"

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def tools() -> Path:
    """The bin/ directory of the tool venv, (re)installed when the pinned list changed."""
    stamp = TOOLS / ".requirements.sha256"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if not (stamp.exists() and stamp.read_text() == wanted):
        if not (TOOLS / "bin" / "python").exists():
            venv.EnvBuilder(with_pip=True, clear=True).create(TOOLS)
        proc = subprocess.run(
            [str(TOOLS / "bin" / "python"), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if proc.returncode != 0:
            reason = f"could not install the static-check tools into {TOOLS}:\n{proc.stderr[-2000:]}"
            if os.environ.get("CI") == "true":
                pytest.fail(reason)
            pytest.skip(reason)
        stamp.write_text(wanted)
    return TOOLS / "bin"


def run(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


def checkov_summary(proc: subprocess.CompletedProcess) -> list[dict]:
    assert proc.stdout.strip(), proc.stderr[-3000:]
    reports = json.loads(proc.stdout)
    return reports if isinstance(reports, list) else [reports]


def failed_checks(reports: list[dict]) -> list[str]:
    return [
        f"{check['check_id']} {check['resource']} ({check['file_path']})"
        for report in reports
        for check in report.get("results", {}).get("failed_checks", [])
    ]


def test_hadolint_dockerfiles(tools: Path):
    files = [REPO / "Dockerfile", *sorted((REPO / "deploy" / "offline").glob("*.Dockerfile"))]
    proc = run(tools / "hadolint", "--no-color", "--failure-threshold", "style", *files)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_checkov_dockerfile(tools: Path):
    proc = run(tools / "checkov", "--config-file", LINT / "checkov-dockerfile.yaml", "-f", "Dockerfile", "-o", "json")
    reports = checkov_summary(proc)
    assert not failed_checks(reports)
    (report,) = reports
    assert report["summary"]["failed"] == 0 and report["summary"]["passed"] >= 50, report["summary"]
    assert report["summary"]["skipped"] == 0, report["summary"]


def test_checkov_rendered_kubernetes_overlays(tools: Path, make_k8s_run):
    proc, out = make_k8s_run
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.glob("*.yaml")) == ["dev.yaml", "prod.yaml"]
    checked = run(tools / "checkov", "--config-file", LINT / "checkov-k8s.yaml", "-d", out, "-o", "json")
    reports = checkov_summary(checked)
    failed = failed_checks(reports)
    assert not failed, "\n".join(failed)
    summary = reports[0]["summary"]
    assert summary["passed"] >= 1000 and summary["parsing_errors"] == 0, summary
    # Every per-resource skip carries its reason (the annotation's text after `=`).
    for report in reports:
        for check in report["results"].get("skipped_checks", []):
            assert len((check.get("check_result") or {}).get("suppress_comment", "")) > 20, check["check_id"]


def test_compose_lint(tools: Path):
    proc = run(
        tools / "compose-lint",
        "check",
        "--fail-on",
        "low",
        "--strict-config",
        "--config",
        LINT / "compose-lint.yml",
        "--format",
        "json",
        "docker-compose.yml",
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
