"""`make run`: the whole shop on one machine with SQLite under var/.

Migrates each service, creates the admin, seeds the demo catalog, starts the five services (and
REPLICAS instances of each) on 127.0.0.1:50051-50055 (+10 per extra replica) and the gateway on
http://127.0.0.1:8000 (its metrics on SHOP_GATEWAY_METRICS_PORT, default the HTTP port + 1000),
waits until every service instance answers SERVING to its own gRPC health check and the gateway's
/readyz sees every one SERVING too (its 200 alone does not mean "all up": the gateway is ready while
some backends are down), prints where everything is, and stops every process cleanly on Ctrl-C or SIGTERM. Data
persists in var/ between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Overridable so tests can run a second, isolated copy beside a developer's own `make run`.
VAR = Path(os.environ.get("SHOP_VAR_DIR", ROOT / "var")).resolve()
LOGS = VAR / "log"
SERVICES = ("auth", "catalog", "cart", "orders", "payments")
IDENTITIES = ("gateway", *SERVICES)  # each has its own key pair (shop.lib.tokens)
BASE_PORT = int(os.environ.get("SHOP_LOCAL_BASE_PORT", "50051"))
REPLICA_PORT_STEP = 10
GATEWAY_PORT = int(os.environ.get("SHOP_HTTP_PORT", "8000"))
_METRICS_DEFAULT = GATEWAY_PORT + 1000 if GATEWAY_PORT + 1000 <= 65535 else GATEWAY_PORT - 1000
GATEWAY_METRICS_PORT = int(os.environ.get("SHOP_GATEWAY_METRICS_PORT", str(_METRICS_DEFAULT)))
STOP_TIMEOUT_SECONDS = 20


def port(service: str, replica: int) -> int:
    return BASE_PORT + SERVICES.index(service) + REPLICA_PORT_STEP * replica


def targets(replicas: int) -> dict[str, str]:
    return {
        f"SHOP_{service.upper()}_TARGET": ",".join(f"127.0.0.1:{port(service, r)}" for r in range(replicas))
        for service in SERVICES
    }


def private_file(path: Path, make: Callable[[], str]) -> str:
    """A secret kept under var/ (0600), made once and reused so data and logins persist."""
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


def dev_private_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )


def service_keys() -> dict[str, Path]:
    """One Ed25519 key per identity under var/service-keys/ (0600), made once: each process is
    given only its own (SHOP_SERVICE_KEY_FILE) and everyone's public keys."""
    directory = VAR / "service-keys"
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    paths = {name: directory / f"{name}.pem" for name in IDENTITIES}
    for path in paths.values():
        private_file(path, dev_private_key)
    return paths


def identity_env(env: dict[str, str], name: str, keys: dict[str, Path]) -> dict[str, str]:
    env = {key: value for key, value in env.items() if key != "SHOP_SERVICE_KEY"}
    env["SHOP_SERVICE_KEY_FILE"] = str(keys[name])
    return env


def base_env(replicas: int) -> dict[str, str]:
    VAR.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **targets(replicas)}
    env.setdefault("SHOP_ENV", "development")
    env.setdefault("SHOP_MAIL_BACKEND", "file")
    env.setdefault("SHOP_MAIL_DIR", str(VAR / "mail"))
    # Email links land on the web UI, which the gateway serves.
    env.setdefault("SHOP_FRONTEND_URL", f"http://127.0.0.1:{GATEWAY_PORT}")
    env["PYTHONUNBUFFERED"] = "1"
    key_path = VAR / "jwt-private-key.pem"
    private_file(key_path, dev_private_key)
    env.setdefault("SHOP_JWT_PRIVATE_KEY_FILE", str(key_path))
    from shop.lib.tokens import public_keys_json

    keys = {name: path.read_text() for name, path in service_keys().items()}
    env["SHOP_SERVICE_PUBLIC_KEYS"] = public_keys_json(keys)
    return env


def service_env(env: dict[str, str], service: str, replica: int) -> dict[str, str]:
    env = identity_env(env, service, service_keys())
    env.setdefault("SHOP_DATABASE_URL", f"sqlite:///{VAR / (service + '.db')}")
    env["SHOP_DATABASE_URL"] = os.environ.get(f"SHOP_{service.upper()}_DATABASE_URL", env["SHOP_DATABASE_URL"])
    env["SHOP_GRPC_ADDRESS"] = f"127.0.0.1:{port(service, replica)}"
    if service == "catalog":
        env.setdefault("SHOP_SEED_DEMO_DATA", "true")
    return env


def check_alive(processes: list[tuple[str, subprocess.Popen]]) -> None:
    for name, process in processes:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode}; see {LOGS / (name + '.log')}")


def is_serving(address: str) -> bool:
    """The instance's own gRPC health check says SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            # types-grpcio-health-checking declares HealthStub without its methods
            response = health_pb2_grpc.HealthStub(channel).Check(  # type: ignore[attr-defined]
                health_pb2.HealthCheckRequest(), timeout=2
            )
        except grpc.RpcError:
            return False
    return response.status == health_pb2.HealthCheckResponse.SERVING


def wait_serving(addresses: list[str], processes: list[tuple[str, subprocess.Popen]], timeout: float = 120) -> None:
    """Until every service instance is SERVING by its own check."""
    deadline = time.monotonic() + timeout
    waiting = list(addresses)
    while waiting:
        check_alive(processes)
        waiting = [address for address in waiting if not is_serving(address)]
        if not waiting:
            return
        if time.monotonic() >= deadline:
            raise RuntimeError(f"not SERVING within {timeout:.0f} s: {', '.join(waiting)}")
        time.sleep(0.5)


def wait_ready(url: str, processes: list[tuple[str, subprocess.Popen]], timeout: float = 120) -> None:
    """Until the gateway's /readyz sees every backend SERVING through its own channels. A 200 alone
    is not enough: it comes as soon as one backend answers, and a channel that tried a service
    before it listened waits out its reconnect backoff (the first login then answered 503)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        check_alive(processes)
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310  # nosec B310  # our own http:// URL on localhost
                services = json.load(response)["services"]
                last = ", ".join(f"{name} {status}" for name, status in services.items())
                if all(status == "SERVING" for status in services.values()):
                    return
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not see every service SERVING within {timeout:.0f} s ({last})")


def stop_all(processes: list[tuple[str, subprocess.Popen]]) -> None:
    for _, process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    for name, process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{name} did not stop in time; killing it", flush=True)
            process.kill()
            process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replicas", type=int, default=1, help="instances of every service (default 1)")
    args = parser.parse_args()
    replicas = max(1, args.replicas)
    LOGS.mkdir(parents=True, exist_ok=True)
    python = sys.executable

    admin_password = os.environ.get("SHOP_ADMIN_PASSWORD") or private_file(
        VAR / "admin-password", lambda: secrets.token_urlsafe(12) + "aA1"
    )
    env = base_env(replicas)
    env["SHOP_ADMIN_PASSWORD"] = admin_password

    # Migrations first, one process per service, so replicas never migrate one SQLite file at once.
    for service in SERVICES:
        print(f"migrating {service} …", flush=True)
        subprocess.run(
            [python, "-m", f"services.{service}", "migrate"], cwd=ROOT, check=True, env=service_env(env, service, 0)
        )

    processes: list[tuple[str, subprocess.Popen]] = []
    stopping = False

    def on_signal(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    def start(name: str, module: str, process_env: dict[str, str]) -> None:
        log = open(LOGS / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        process = subprocess.Popen(
            [python, "-m", module],
            cwd=ROOT,
            env=process_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        processes.append((name, process))

    try:
        for service in SERVICES:
            for replica in range(replicas):
                name = service if replica == 0 else f"{service}-{replica + 1}"
                start(name, f"services.{service}", service_env(env, service, replica))
        gateway_env = {
            **identity_env(env, "gateway", service_keys()),
            "SHOP_HTTP_HOST": "127.0.0.1",
            "SHOP_HTTP_PORT": str(GATEWAY_PORT),
            "SHOP_METRICS_PORT": str(GATEWAY_METRICS_PORT),
        }
        start("gateway", "gateway", gateway_env)
        wait_serving([f"127.0.0.1:{port(service, r)}" for service in SERVICES for r in range(replicas)], processes)
        wait_ready(f"http://127.0.0.1:{GATEWAY_PORT}/readyz", processes)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"start failed: {exc}", file=sys.stderr, flush=True)
        stop_all(processes)
        return 1

    print_summary(replicas, admin_password)
    while not stopping:
        for name, process in processes:
            if process.poll() is not None:
                print(
                    f"{name} exited with code {process.returncode}; stopping everything (see {LOGS / (name + '.log')})",
                    file=sys.stderr,
                    flush=True,
                )
                stopping = True
                break
        time.sleep(0.5)
    print("stopping …", flush=True)
    stop_all(processes)
    print("stopped.", flush=True)
    return 0


def print_summary(replicas: int, admin_password: str) -> None:
    base = f"http://127.0.0.1:{GATEWAY_PORT}"
    lines = [
        "",
        "The shop is running.",
        f"  storefront      {base}/   admin console {base}/admin",
        f"  REST API        {base}/api/v1   (docs {base}/docs, OpenAPI {base}/openapi.json)",
        f"  health          {base}/healthz  {base}/readyz",
        f"  metrics         http://127.0.0.1:{GATEWAY_METRICS_PORT}/metrics (gateway)",
    ]
    for service in SERVICES:
        addresses = ", ".join(f"127.0.0.1:{port(service, r)}" for r in range(replicas))
        lines.append(f"  {service:<15} gRPC {addresses}")
    lines += [
        f"  admin           admin@example.com / {admin_password}",
        f"  data            {VAR} (SQLite), mail in {VAR / 'mail'}, logs in {LOGS}",
        "Press Ctrl-C to stop.",
        "",
    ]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
