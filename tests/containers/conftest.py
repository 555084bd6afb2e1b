"""The container suite's engine, images and compose stack (tests/containers/).

What runs: the six shop images built from the committed Dockerfile with the docker CLI and
BuildKit (`DOCKER_BUILDKIT=1 docker build --network host --target X`; docker-py and
testcontainers build through the legacy API, which refuses `RUN --mount`), then the committed
docker-compose.yml brought up by the compose CLI (`docker compose up -d --wait`) under a project
name of its own, catalog scaled to 2. Every request a test sends goes to the gateway's port
published on 127.0.0.1, or into the project's own containers (`docker exec`).

Where the engine comes from: the one that answers; else, under CI=true (or as root where dockerd
is installed), deploy/offline/setup-engine.sh installs and starts Debian's engine and Compose v2.
The base images the Dockerfile and compose name come from deploy/offline/make-base-images.sh (no
registry is reachable on these machines; cached: tags that exist are kept). Under CI=true the
suite must run: no engine is a failure there, a skip elsewhere.

Clean-up is ours (no Ryuk reaper: its image cannot be pulled): `down -v` and the image tags of
the run are removed in the fixture's finalizer, whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, TypeGuard

import httpx
import pytest

# testcontainers on 127.0.0.1 without its reaper (TC_HOST, TESTCONTAINERS_CONNECTION_MODE,
# TESTCONTAINERS_RYUK_DISABLED) for every use of a test session: set at the import of
# tests/harness.py (the root conftest.py imports it too).
import tests.harness  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
TARGETS = ("auth", "catalog", "cart", "orders", "payments", "gateway")
CI = os.environ.get("CI") == "true"
CATALOG_REPLICAS = 2
DEV_SECRETS = REPO / "deploy" / "compose" / "dev-secrets"
ADMIN_EMAIL = "admin@example.com"

TIMINGS: dict[str, float] = {}


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.section("container suite timings")
        for name, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{name:<28} {seconds:7.1f} s")


@contextlib.contextmanager
def timed(name: str):
    started = time.monotonic()
    try:
        yield
    finally:
        TIMINGS[name] = TIMINGS.get(name, 0.0) + time.monotonic() - started


def _docker_cli() -> str | None:
    # Debian's /usr/bin/docker first: it builds with BuildKit built in, where a newer CLI on PATH
    # may need a buildx plugin that is not installed.
    for candidate in (os.environ.get("DOCKER"), "/usr/bin/docker", shutil.which("docker")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def _answers(docker: str | None) -> TypeGuard[str]:
    if not docker:
        return False
    try:
        info = subprocess.run([docker, "info"], capture_output=True, timeout=30, check=False)
        compose = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return info.returncode == 0 and compose.returncode == 0


def _unavailable(reason: str) -> NoReturn:
    if CI:
        pytest.fail(f"the container suite must run under CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker() -> str:
    """The docker CLI of an engine that answers, with `docker compose` (started when it can be)."""
    cli = _docker_cli()
    if _answers(cli):
        return cli
    can_start = os.geteuid() == 0 and shutil.which("apt-get") and (CI or shutil.which("dockerd"))
    if not can_start:
        _unavailable(
            "no Docker engine answers and none can be started here (needs root, apt and dockerd; "
            "deploy/offline/setup-engine.sh installs and starts one)"
        )
    with timed("engine setup"):
        proc = subprocess.run(
            ["bash", str(REPO / "deploy" / "offline" / "setup-engine.sh")],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    cli = _docker_cli()
    if proc.returncode != 0 or not _answers(cli):
        _unavailable(f"deploy/offline/setup-engine.sh could not start an engine:\n{proc.stderr[-3000:]}")
    return cli


def _run(
    args: list[str], *, env: dict | None = None, timeout: float = 600, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False, input=input
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


@pytest.fixture(scope="session")
def images(docker: str) -> Iterator[str]:
    """The six images, built from the committed Dockerfile; yields their tag (removed after)."""
    env = {**os.environ, "DOCKER": docker}
    # The stand-ins need debootstrap (Debian; setup-engine.sh installs it). Without it, e.g. on a
    # workstation with its own engine and a registry, the build pulls the real base images.
    if CI or shutil.which("debootstrap"):
        with timed("base images"):
            _run(["bash", str(REPO / "deploy" / "offline" / "make-base-images.sh")], env=env, timeout=1200)
    tag = f"ctest-{uuid.uuid4().hex[:8]}"
    env["DOCKER_BUILDKIT"] = "1"
    try:
        with timed("build (6 images)"):
            for target in TARGETS:
                _run(
                    [
                        docker,
                        "build",
                        "--quiet",
                        "--network",
                        "host",
                        "--target",
                        target,
                        "-t",
                        f"shop/{target}:{tag}",
                        ".",
                    ],
                    env=env,
                    timeout=1200,
                )
        yield tag
    finally:
        # Tags only: the layers stay cached for the next run.
        _run([docker, "image", "rm", *(f"shop/{t}:{tag}" for t in TARGETS)], check=False, timeout=120)


@dataclass
class Stack:
    """The compose project under test and an HTTP client on its published gateway."""

    docker: str
    project: str
    env: dict
    base_url: str = ""
    notes: dict = field(default_factory=dict)
    _client: httpx.Client | None = field(default=None, init=False, repr=False)

    @property
    def http(self) -> httpx.Client:
        """The client on the published gateway (made by connect(), so after up())."""
        assert self._client is not None, "the stack is not connected: up() first"
        return self._client

    def compose(self, *args: str, timeout: float = 600, check: bool = True, env: dict | None = None):
        return _run(
            [self.docker, "compose", "-p", self.project, "-f", str(REPO / "docker-compose.yml"), *args],
            env={**self.env, **(env or {})},
            timeout=timeout,
            check=check,
        )

    def up(self, label: str = "compose up --wait") -> None:
        with timed(label):
            self.compose("up", "-d", "--wait", "--no-build", "--scale", f"catalog={CATALOG_REPLICAS}")
        self.connect()

    def connect(self) -> None:
        published = self.compose("port", "gateway", "8000").stdout.strip()
        host, _, port = published.rpartition(":")
        # Safety: the tests talk to the loopback address only.
        assert host == "127.0.0.1", published
        self.base_url = f"http://127.0.0.1:{port}"
        if self._client is not None:
            self._client.close()
        self._client = httpx.Client(base_url=self.base_url, timeout=30)
        self.wait_ready()

    def wait_ready(self, seconds: float = 90) -> dict:
        deadline = time.monotonic() + seconds
        last: object = None
        while time.monotonic() < deadline:
            try:
                response = self.http.get("/readyz", timeout=5)
                last = body = response.json()
                # Every one SERVING: /readyz is 200 as soon as any backend is (issue 11).
                if response.status_code == 200 and all(s == "SERVING" for s in body["services"].values()):
                    return body
            except (httpx.HTTPError, ValueError) as exc:
                last = exc
            time.sleep(0.5)
        raise AssertionError(f"the gateway did not see every service SERVING within {seconds} s: {last}")

    def container_ids(self, service: str) -> list[str]:
        return self.compose("ps", "-q", service).stdout.split()

    def inspect(self, container: str) -> dict:
        return json.loads(_run([self.docker, "inspect", container]).stdout)[0]

    def exec(self, container: str, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        return _run([self.docker, "exec", container, *command], check=check, timeout=60)

    def docker_cmd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return _run([self.docker, *args], check=check, timeout=120)

    def rpc_counts(self, container: str, service_pattern: str = "catalog") -> int:
        """RPCs of the service that this container handled, from its own metrics endpoint (inside
        the container, 127.0.0.1:9090): shop_rpc_requests_total summed, health checks left out."""
        script = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9090/metrics', timeout=5).read().decode())"
        text = self.exec(container, "python", "-c", script).stdout
        total = 0
        for line in text.splitlines():
            match = re.match(r"shop_rpc_requests_total\{([^}]*)\} ([0-9.e+]+)$", line)
            if match and service_pattern in match.group(1).lower() and "health" not in match.group(1).lower():
                total += int(float(match.group(2)))
        return total

    def redis_cli(self, *args: str, auth: bool = True) -> str:
        """redis-cli inside the project's Redis container, with the password of its secret (as
        REDISCLI_AUTH, never in argv) unless auth is False."""
        (container,) = self.container_ids("redis")
        login = 'REDISCLI_AUTH="$(cat /run/secrets/redis_password)" ' if auth else ""
        return self.exec(container, "sh", "-c", login + 'exec redis-cli "$@"', "redis-cli", *args).stdout.strip()

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "80", check=False, timeout=120).stdout


# Module scope: the stack is down before the rest of a `make test` session runs.
@pytest.fixture(scope="module")
def stack(docker: str, images: str):
    project = f"shoptest{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DOCKER_BUILDKIT": "1",
        "COMPOSE_PROJECT_NAME": project,
        "SHOP_IMAGE_TAG": images,
        # A free port of the loopback address (127.0.0.1::8000), never another interface.
        "SHOP_PUBLISH": "127.0.0.1:",
        # Every test request comes from one address (the bridge's): the limits are not under test.
        "SHOP_RATE_LIMIT_PER_MINUTE": "100000",
        "SHOP_AUTH_RATE_LIMIT_PER_MINUTE": "100000",
    }
    for name in ("SHOP_ENV", "SHOP_SECRETS_DIR", "SHOP_SEED_DEMO_DATA"):
        env.pop(name, None)
    running = Stack(docker=docker, project=project, env=env)
    try:
        running.up()
        yield running
    except BaseException:
        print(running.logs())
        raise
    finally:
        if running._client is not None:
            running._client.close()
        with timed("compose down -v"):
            running.compose("down", "-v", "--remove-orphans", "--timeout", "10", check=False, timeout=300)


def admin_password() -> str:
    return (DEV_SECRETS / "admin_password").read_text().strip()
