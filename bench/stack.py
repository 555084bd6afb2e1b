"""The processes under test, all real and on free 127.0.0.1 ports.

- `create_databases()`: one fresh PostgreSQL database per service on the server at
  SHOP_TEST_DATABASE_URL or 127.0.0.1:5432 (None when none answers), dropped by the returned callable.
- `start_shop()`: scripts/run_local.py (migrations, seed, five services × replicas, gateway) with
  rate limits off, SHOP_LOG_LEVEL=WARNING, bcrypt cost 4 and the gateway's product cache off.
- `shop_processes()`: the pids of its services and gateway, found by walking /proc for the children
  of run_local (`python -m services.<name>` / `python -m gateway`), named catalog, catalog#2, ….
- `start_cached_gateway()`: a second `python -m gateway` with the first one's environment (read from
  /proc/<pid>/environ), another port and SHOP_PRODUCT_CACHE_TTL_SECONDS=1.
- `start_baseline()`: `python -m bench.baseline` on the catalog's database.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from bench import procfs

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("auth", "catalog", "cart", "orders", "payments")
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "Bench-Admin-Passw0rd"
REPLICA_PORT_STEP = 10  # as scripts/run_local.py
READY_TIMEOUT_SECONDS = 180


def create_databases() -> tuple[dict[str, str], Callable[[], None]] | None:
    import psycopg
    from psycopg import sql

    admin_url = os.environ.get("SHOP_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        with psycopg.connect(admin_url, connect_timeout=3):
            pass
    except psycopg.Error:
        return None
    names = {service: f"shop_bench_{service}_{uuid.uuid4().hex[:8]}" for service in SERVICES}
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for name in names.values():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop() -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            for name in names.values():
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    base = admin_url.rsplit("/", 1)[0]
    return {service: f"{base}/{name}" for service, name in names.items()}, drop


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base_port(replicas: int) -> int:
    """A base port such that the services' ports (base + index + 10 × replica) are all free."""
    for _ in range(200):
        base = random.randrange(20000, 30000, 100)
        ports = [base + i + REPLICA_PORT_STEP * r for i in range(len(SERVICES)) for r in range(replicas)]
        if all(port_free(p) for p in ports):
            return base
    raise SystemExit("no free block of ports for the services")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_process(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def start_shop(var_dir: Path, http_port: int, replicas: int, urls: dict[str, str] | None) -> subprocess.Popen:
    env = {
        **os.environ,
        "SHOP_VAR_DIR": str(var_dir),
        "SHOP_HTTP_PORT": str(http_port),
        "SHOP_GATEWAY_METRICS_PORT": str(free_port()),  # not the default HTTP port + 1000: probed free
        "SHOP_LOCAL_BASE_PORT": str(free_base_port(replicas)),
        "SHOP_ADMIN_EMAIL": ADMIN_EMAIL,
        "SHOP_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "SHOP_RATE_LIMIT_PER_MINUTE": "0",
        "SHOP_AUTH_RATE_LIMIT_PER_MINUTE": "0",
        "SHOP_LOG_LEVEL": "WARNING",
        "SHOP_BCRYPT_ROUNDS": "4",
        "SHOP_PRODUCT_CACHE_TTL_SECONDS": "0",
    }
    for service, url in (urls or {}).items():
        env[f"SHOP_{service.upper()}_DATABASE_URL"] = url
    var_dir.mkdir(parents=True, exist_ok=True)
    return start_process(
        [sys.executable, "-m", "scripts.run_local", "--replicas", str(replicas)], env, var_dir / "run_local.log"
    )


def wait_ready(url: str, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited during start (code {process.returncode})")
        try:
            response = httpx.get(url, timeout=5)
            # A gateway's /readyz is 200 once any backend answers: wait until it sees them all.
            services = response.json().get("services", {}) if url.endswith("/readyz") else {}
            if response.status_code == 200 and all(status == "SERVING" for status in services.values()):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.3)
    raise SystemExit(f"{what} was not ready at {url} within {READY_TIMEOUT_SECONDS} s")


def process_name(pid: int) -> str | None:
    """`catalog` for `python -m services.catalog`, `gateway` for `python -m gateway`, else None."""
    args = procfs.cmdline(pid)
    if "-m" not in args or args.index("-m") + 1 >= len(args):
        return None
    module = args[args.index("-m") + 1]
    if module == "gateway":
        return "gateway"
    if module.startswith("services.") and "migrate" not in args:
        return module.removeprefix("services.")
    return None


def shop_processes(run_local: subprocess.Popen) -> dict[str, int]:
    """gateway, auth, catalog, catalog#2, … → pid, in a fixed order."""
    found: dict[str, list[int]] = {}
    for pid in procfs.children(run_local.pid):
        name = process_name(pid)
        if name:
            found.setdefault(name, []).append(pid)
    named = {}
    for name in ("gateway", *SERVICES):
        for replica, pid in enumerate(found.get(name, [])):
            named[name if replica == 0 else f"{name}#{replica + 1}"] = pid
    if "gateway" not in named or not all(s in named for s in SERVICES):
        raise SystemExit(f"could not find every process of the shop under run_local: {named}")
    return named


def start_cached_gateway(gateway_pid: int, port: int, metrics_port: int, log: Path) -> subprocess.Popen:
    # Metrics on a port of its own: the first gateway holds its, and no public port serves them.
    env = {
        **procfs.environ(gateway_pid),
        "SHOP_HTTP_PORT": str(port),
        "SHOP_PRODUCT_CACHE_TTL_SECONDS": "1",
        "SHOP_METRICS_PORT": str(metrics_port),
    }
    return start_process([sys.executable, "-m", "gateway"], env, log)


def start_baseline(port: int, database_url: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return start_process(
        [sys.executable, "-m", "bench.baseline", "--port", str(port), "--database-url", database_url], env, log
    )


def start_hop(
    back_port: int, mid_port: int, front_port: int, db_urls: dict[str, str], log: Path
) -> tuple[subprocess.Popen, subprocess.Popen, subprocess.Popen]:
    """bench/hop.py's three processes: the back (gRPC on the catalog's database), the mid (gRPC on
    the cart's database, calling the back) and the front (FastAPI) calling both."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    hop = [sys.executable, "-m", "bench.hop"]
    back = start_process([*hop, "back", "--port", str(back_port), "--database-url", db_urls["catalog"]], env, log)
    backend = f"127.0.0.1:{back_port}"
    mid = start_process(
        [*hop, "mid", "--port", str(mid_port), "--database-url", db_urls["cart"], "--backend", backend], env, log
    )
    front = start_process(
        [*hop, "front", "--port", str(front_port), "--backend", backend, "--cart-backend", f"127.0.0.1:{mid_port}"],
        env,
        log,
    )
    return back, mid, front


def stop(process: subprocess.Popen, timeout: float = 60) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
