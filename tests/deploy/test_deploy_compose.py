"""docker-compose.yml, checked statically (no Docker engine needed), plus its helper scripts.

The compose file is parsed as YAML (anchors and merge keys resolved, as compose does) and
checked: the right services, only the gateway publishing a port, health checks everywhere,
start order through `service_healthy`, memory limits, hardening, secrets only as compose
secrets (defaulting to the committed development-only set), Redis ephemeral and reached by the
gateway alone. gen-secrets.sh, the PostgreSQL init script and Redis's start script are executed
for real where openssl / PostgreSQL / redis-server are available.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

SERVICES = ("auth", "catalog", "cart", "orders", "payments")
APPS = (*SERVICES, "gateway")
DEV_SECRETS = "./deploy/compose/dev-secrets"
SECRET_NAME = re.compile(r"SECRET|PASSWORD|PRIVATE_KEY|API_KEY|TOKEN|DATABASE_URL|CREDENTIAL|SERVICE_KEY$", re.I)
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}")

# Start order: who must be healthy before whom (the gRPC dependencies plus the database).
DEPENDS = {
    "auth": {"postgres"},
    "catalog": {"postgres", "auth"},
    "cart": {"postgres", "auth", "catalog"},
    "payments": {"postgres", "auth"},
    "orders": {"postgres", "auth", "catalog", "cart", "payments"},
    "gateway": {*SERVICES, "redis"},
}
# ...except Redis: the gateway starts after it but does not wait for it to be healthy (without
# Redis it limits per process, with a logged warning).
STARTED_ONLY = {("gateway", "redis")}


@pytest.fixture(scope="module")
def compose(repo: Path) -> dict:
    return yaml.safe_load((repo / "docker-compose.yml").read_text())


def interpolate_default(value: str) -> str:
    """${VAR:-default} -> default (what compose uses when VAR is unset)."""
    return INTERPOLATION.sub(lambda m: m.group(2) or "", value)


def env_of(service: dict) -> dict:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def secret_files(compose: dict, repo: Path) -> dict[str, Path]:
    """compose secret name -> the file it reads when SHOP_SECRETS_DIR is unset."""
    return {name: repo / interpolate_default(spec["file"]) for name, spec in compose["secrets"].items()}


def assert_ed25519_pem(path: Path) -> None:
    """auth signs access tokens with an Ed25519 key given as PKCS#8 PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ed25519.Ed25519PrivateKey), f"{path}: not an Ed25519 key"


def assert_service_keys(files: dict[str, Path]) -> None:
    """One Ed25519 identity per app, each verifiable with the public keys' set (and only as itself)."""
    from shop.lib.tokens import ServiceIdentity, ServiceKeys

    keys = ServiceKeys.parse(files["service_public_keys"].read_text())
    assert keys.names == set(APPS)
    for name in APPS:
        assert_ed25519_pem(files[f"{name}_service_key"])
        assert keys.verify(ServiceIdentity.from_pem(name, files[f"{name}_service_key"].read_text()).mint()) == name


def test_services(compose):
    assert set(compose["services"]) == {"postgres", "redis", *APPS}


def test_only_the_gateway_publishes_a_port(compose):
    for name, service in compose["services"].items():
        if name == "gateway":
            ports = service["ports"]
            assert len(ports) == 1 and interpolate_default(str(ports[0])).endswith(":8000")
            # Loopback by default, like `make run`.
            assert interpolate_default(str(ports[0])).startswith("127.0.0.1:")
        else:
            assert not service.get("ports"), f"{name} must not publish ports"
            assert service.get("network_mode") != "host", name


def test_every_service_has_a_healthcheck(compose):
    for name, service in compose["services"].items():
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name}: no healthcheck"
    for svc in SERVICES:
        test = compose["services"][svc]["healthcheck"]["test"]
        assert test[:4] == ["CMD", "python", "-m", "shop.lib.healthcheck"] and test[4] == "127.0.0.1:50051"
    assert "/healthz" in " ".join(compose["services"]["gateway"]["healthcheck"]["test"])


def test_start_order_waits_for_healthy_dependencies(compose):
    for name, wanted in DEPENDS.items():
        depends = compose["services"][name].get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on needs the long form with conditions"
        assert set(depends) == wanted, name
        for dependency, spec in depends.items():
            wanted_condition = "service_started" if (name, dependency) in STARTED_ONLY else "service_healthy"
            assert spec.get("condition") == wanted_condition, f"{name} -> {dependency}"


def test_memory_limits(compose):
    for name, service in compose["services"].items():
        limit = service.get("mem_limit") or (
            service.get("deploy", {}).get("resources", {}).get("limits", {}).get("memory")
        )
        assert limit, f"{name}: no memory limit"


def test_apps_are_built_from_the_dockerfile_targets_and_hardened(compose):
    for name in APPS:
        service = compose["services"][name]
        assert service["build"] == {"context": ".", "target": name}
        assert service.get("read_only") is True, f"{name}: read-only root filesystem"
        assert any(str(t).split(":")[0] == "/tmp" for t in service.get("tmpfs", [])), f"{name}: tmpfs /tmp"
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        # Longer than the server's shutdown grace (SHOP_GRACE_SECONDS, 10 s).
        grace = int(env_of(service).get("SHOP_GRACE_SECONDS", 10))
        assert int(str(service["stop_grace_period"]).rstrip("s")) > grace, name
        assert "user" not in service or service["user"] not in ("root", "0", 0), name


def test_services_listen_on_grpc_port_and_find_each_other_by_dns(compose):
    for name in APPS:
        env = env_of(compose["services"][name])
        if name != "gateway":
            assert env["SHOP_GRPC_ADDRESS"] == "0.0.0.0:50051"
        for svc in SERVICES:
            assert env[f"SHOP_{svc.upper()}_TARGET"] == f"dns:///{svc}:50051"
    gateway = env_of(compose["services"]["gateway"])
    assert (gateway["SHOP_HTTP_HOST"], str(gateway["SHOP_HTTP_PORT"])) == ("0.0.0.0", "8000")


def test_no_secret_is_a_literal(compose):
    """Secret-looking variables are never given a value in the compose file."""
    for name, service in compose["services"].items():
        for key, value in env_of(service).items():
            if not SECRET_NAME.search(key):
                continue
            if key.endswith("_FILE"):
                assert str(value).startswith("/run/secrets/"), f"{name}: {key}"
            else:
                assert value is None, f"{name}: {key} must come from a compose secret, not the environment"


def test_secrets_are_compose_secrets_exported_by_the_entrypoint(compose):
    """Each app gets exactly its secrets, mounted under names the entry point exports."""
    # Every process (the gateway too) refuses a default page token secret and a missing identity
    # in production.
    needed = {"SHOP_SERVICE_KEY", "SHOP_SERVICE_PUBLIC_KEYS", "SHOP_PAGE_TOKEN_SECRET"}
    for name in APPS:
        mounted = compose["services"][name].get("secrets", [])
        targets = {}
        for item in mounted:
            assert isinstance(item, dict), f"{name}: use the long form with a target"
            targets[item["target"]] = item["source"]
        assert needed <= set(targets), name
        for target in targets:
            assert re.fullmatch(r"(SHOP|STRIPE)_[A-Z0-9_]+", target), f"{name}: {target} is not exported"
        if name != "gateway":
            assert targets["SHOP_DATABASE_URL"] == f"{name}_database_url"
        # Each process holds its own identity's key and no other.
        assert targets["SHOP_SERVICE_KEY"] == f"{name}_service_key"
        assert targets["SHOP_SERVICE_PUBLIC_KEYS"] == "service_public_keys"
        assert not [s for s in targets.values() if s.endswith("_service_key") and s != f"{name}_service_key"]
        # Least privilege: only auth holds the signing key and the admin password.
        assert ("SHOP_JWT_PRIVATE_KEY" in targets) == (name == "auth")
        assert ("SHOP_ADMIN_PASSWORD" in targets) == (name == "auth")
        assert ("STRIPE_API_KEY" in targets) == (name == "payments")
        assert ("SHOP_SANDBOX_WEBHOOK_SECRET" in targets) == (name == "payments")


def test_secret_files_default_to_the_dev_only_set(compose, repo):
    for name, spec in compose["secrets"].items():
        assert set(spec) == {"file"}, name
        match = INTERPOLATION.match(spec["file"])
        assert match and match.group(1) == "SHOP_SECRETS_DIR" and match.group(2) == DEV_SECRETS, name
    files = secret_files(compose, repo)
    for name, path in files.items():
        assert path.is_file(), f"secret {name}: {path} missing"
    readme = (repo / "deploy" / "compose" / "dev-secrets" / "README.md").read_text()
    assert "DEVELOPMENT-ONLY" in readme
    # The dev database URLs match the dev passwords the init script gives the roles.
    for svc in SERVICES:
        password = files[f"{svc}_db_password"].read_text().strip()
        url = files[f"{svc}_database_url"].read_text().strip()
        assert url == f"postgresql://{svc}:{password}@postgres:5432/{svc}"
    assert_ed25519_pem(files["jwt_private_key"])
    assert_service_keys(files)
    redis_password = files["redis_password"].read_text().strip()
    assert "INSECURE-DEV-ONLY" in redis_password
    assert files["redis_url"].read_text().strip() == f"redis://:{redis_password}@redis:6379/0"
    # The real secrets directory is never committed.
    assert "/secrets/" in (repo / "deploy" / "compose" / ".gitignore").read_text().split()


def test_redis_is_hardened_ephemeral_and_reached_by_the_gateway_only(compose, repo):
    redis = compose["services"]["redis"]
    assert redis["image"].startswith("redis:7")
    # Hardened like the apps: read-only root, no capabilities at all, no new privileges, not root.
    assert redis.get("read_only") is True
    assert redis.get("cap_drop") == ["ALL"] and not redis.get("cap_add")
    assert "no-new-privileges:true" in redis.get("security_opt", [])
    uid, _, gid = str(redis["user"]).partition(":")
    assert int(uid) >= 10000 and int(gid) >= 10000
    assert redis["deploy"]["resources"]["limits"]["memory"]
    # Ephemeral: nothing persists (no RDB snapshots, no AOF, no volume; /data a tmpfs).
    command = redis["command"]
    assert command[command.index("--save") + 1] == "" and command[command.index("--appendonly") + 1] == "no"
    assert [v for v in redis.get("volumes", []) if not v.endswith(":ro")] == []
    assert any(str(t).split(":")[0] == "/data" for t in redis["tmpfs"])
    assert "--maxmemory" in command and command[command.index("--maxmemory-policy") + 1] == "noeviction"
    # The password from a compose secret, started by the committed script (never in argv).
    assert command[:2] == ["sh", "/usr/local/bin/shop-redis-server"]
    assert "./deploy/compose/redis-server.sh:/usr/local/bin/shop-redis-server:ro" in redis["volumes"]
    assert redis["secrets"] == ["redis_password"]
    assert "redis_password" in " ".join(redis["healthcheck"]["test"])
    # Only the gateway shares its network, which has no route out.
    assert redis["networks"] == ["redis"] and compose["networks"]["redis"] == {"internal": True}
    for name, service in compose["services"].items():
        if name not in ("redis", "gateway"):
            assert "redis" not in (service.get("networks") or ["default"]), name
    gateway = compose["services"]["gateway"]
    assert set(gateway["networks"]) == {"default", "redis"}
    targets = {item["target"]: item["source"] for item in gateway["secrets"]}
    assert targets["SHOP_REDIS_URL"] == "redis_url"
    assert "SHOP_REDIS_URL" not in env_of(gateway)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(not (shutil.which("redis-server") and shutil.which("redis-cli")), reason="no redis-server")
def test_redis_start_script_requires_the_password_and_refuses_dev_secrets_in_production(repo, tmp_path):
    script = repo / "deploy" / "compose" / "redis-server.sh"
    password = repo / "deploy" / "compose" / "dev-secrets" / "redis_password"
    env = {**os.environ, "REDIS_PASSWORD_FILE": str(password)}
    env.pop("SHOP_ENV", None)
    refused = subprocess.run(
        ["sh", str(script)],
        env={**env, "SHOP_ENV": "production"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert refused.returncode == 78 and "INSECURE-DEV-ONLY" in refused.stderr
    (tmp_path / "bad").write_text("has space@and:colon\n")
    refused = subprocess.run(
        ["sh", str(script)],
        env={**env, "REDIS_PASSWORD_FILE": str(tmp_path / "bad")},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert refused.returncode == 78, refused.stderr

    port = str(_free_port())
    server = subprocess.Popen(
        [
            "sh",
            str(script),
            "--port",
            port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def cli(*args: str, auth: bool = True) -> str:
            cli_env = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
            if auth:
                cli_env["REDISCLI_AUTH"] = password.read_text().strip()
            return subprocess.run(
                ["redis-cli", "-p", port, *args], env=cli_env, capture_output=True, text=True, timeout=10, check=False
            ).stdout.strip()

        deadline = time.monotonic() + 10
        while cli("ping") != "PONG" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert cli("ping") == "PONG"
        # The password is required, and never on the server's command line.
        assert cli("ping", auth=False).startswith("NOAUTH")
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes().decode(errors="replace")
        assert "INSECURE-DEV-ONLY" not in cmdline
        # What the gateway sends works; the @dangerous commands do not.
        assert cli("zadd", "k", "1", "a") == "1" and cli("eval", "return redis.call('lpush', 'l', 1)", "0") == "1"
        for dangerous in (["flushall"], ["config", "get", "dir"], ["keys", "*"], ["shutdown"]):
            assert cli(*dangerous).startswith("NOPERM"), dangerous
    finally:
        server.terminate()
        server.wait(10)


def test_postgres_gets_one_database_per_service(compose, repo):
    postgres = compose["services"]["postgres"]
    assert env_of(postgres)["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert {s if isinstance(s, str) else s["source"] for s in postgres["secrets"]} == {
        "postgres_password",
        *(f"{svc}_db_password" for svc in SERVICES),
    }
    mounts = [v for v in postgres["volumes"] if "docker-entrypoint-initdb.d" in v]
    assert mounts and mounts[0].startswith("./deploy/compose/postgres-init.sh:")
    assert (repo / "deploy" / "compose" / "postgres-init.sh").is_file()
    assert any(v.startswith("pgdata:") for v in postgres["volumes"])


def test_the_test_harness_postgres_fallback_runs_the_compose_image(compose):
    """tests/harness.py starts a testcontainers PostgreSQL when none answers: the image compose
    runs, which deploy/offline/make-base-images.sh makes where no registry is reachable."""
    from tests.harness import POSTGRES_FALLBACK_IMAGE

    assert compose["services"]["postgres"]["image"] == POSTGRES_FALLBACK_IMAGE


def test_testcontainers_uses_the_loopback_address_and_no_reaper():
    """Set by tests/harness.py at its import, before testcontainers reads them (at its own import)."""
    from testcontainers.core.config import testcontainers_config as config

    from tests.harness import TESTCONTAINERS_ENV

    assert set(TESTCONTAINERS_ENV) <= set(os.environ)
    assert config.tc_host_override == os.environ["TC_HOST"]
    assert config.connection_mode_override is not None
    assert config.connection_mode_override.value == os.environ["TESTCONTAINERS_CONNECTION_MODE"]
    assert config.ryuk_disabled == (os.environ["TESTCONTAINERS_RYUK_DISABLED"] == "true")


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl not installed")
def test_gen_secrets_creates_every_compose_secret(compose, repo, tmp_path):
    out = tmp_path / "secrets"
    script = repo / "deploy" / "compose" / "gen-secrets.sh"
    subprocess.run(["sh", str(script), str(out)], check=True, capture_output=True, timeout=60)
    expected = {Path(interpolate_default(spec["file"])).name for spec in compose["secrets"].values()}
    assert {p.name for p in out.iterdir()} == expected
    for svc in SERVICES:
        password = (out / f"{svc}_db_password").read_text().strip()
        assert len(password) >= 32
        assert (out / f"{svc}_database_url").read_text().strip() == (
            f"postgresql://{svc}:{password}@postgres:5432/{svc}"
        )
    assert_ed25519_pem(out / "jwt_private_key.pem")
    assert_service_keys(
        {name: out / Path(interpolate_default(spec["file"])).name for name, spec in compose["secrets"].items()}
    )
    redis_password = (out / "redis_password").read_text().strip()
    assert len(redis_password) >= 32 and redis_password.isalnum()
    assert (out / "redis_url").read_text().strip() == f"redis://:{redis_password}@redis:6379/0"
    for name in ("page_token_secret", "sandbox_webhook_secret"):
        assert len((out / name).read_text().strip()) >= 32, name  # what production demands
    assert (out / "stripe_api_key").read_text() == ""
    # Re-running keeps what exists.
    before = {
        name: (out / name).read_text()
        for name in ("page_token_secret", "orders_service_key.pem", "service_public_keys.json")
    }
    subprocess.run(["sh", str(script), str(out)], check=True, capture_output=True, timeout=60)
    assert {name: (out / name).read_text() for name in before} == before
    assert (out.stat().st_mode & 0o777) == 0o700


def _local_postgres() -> dict[str, str] | None:
    if not shutil.which("psql"):
        return None
    env = {
        **os.environ,
        "PGHOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PGUSER": os.environ.get("PGUSER", "postgres"),
    }
    probe = subprocess.run(
        ["psql", "-XAtc", "select rolsuper from pg_roles where rolname = current_user", "-d", "postgres"],
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return env if probe.returncode == 0 and probe.stdout.strip() == "t" else None


def test_postgres_init_script_creates_isolated_databases(repo, tmp_path):
    """Runs the init script against a local PostgreSQL (superuser access), with throwaway names."""
    env = _local_postgres()
    if env is None:
        pytest.skip("no local PostgreSQL superuser access on 127.0.0.1:5432")
    suffix = uuid.uuid4().hex[:8]
    names = [f"zz_deploy_{suffix}_a", f"zz_deploy_{suffix}_b"]
    for name in names:
        (tmp_path / f"{name}_db_password").write_text(f"pw-{name}-'quoted'\n")
    try:
        subprocess.run(
            ["sh", str(repo / "deploy" / "compose" / "postgres-init.sh")],
            env={**env, "SHOP_DB_SERVICES": " ".join(names), "SHOP_DB_SECRETS_DIR": str(tmp_path)},
            check=True,
            capture_output=True,
            timeout=60,
        )

        def query(sql: str, db: str = "postgres") -> str:
            return subprocess.run(
                ["psql", "-XAtc", sql, "-d", db], env=env, capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()

        a, b = names
        assert query(f"select pg_get_userbyid(datdba) from pg_database where datname = '{a}'") == a
        # Each role may connect to its own database only.
        assert query(f"select has_database_privilege('{a}', '{a}', 'CONNECT')") == "t"
        assert query(f"select has_database_privilege('{a}', '{b}', 'CONNECT')") == "f"
        assert query(f"select rolsuper or rolcreatedb or rolcreaterole from pg_roles where rolname = '{a}'") == "f"
    finally:
        for name in names:
            subprocess.run(
                [
                    "psql",
                    "-Xq",
                    "-d",
                    "postgres",
                    "-c",
                    f"drop database if exists {name}",
                    "-c",
                    f"drop role if exists {name}",
                ],
                env=env,
                capture_output=True,
                timeout=30,
                check=False,
            )
