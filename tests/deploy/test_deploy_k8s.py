"""The Kubernetes manifests (deploy/k8s), checked on what `kubectl kustomize` renders.

Every overlay is rendered by scripts/render_k8s.py (`make k8s`), every object validated
against the Kubernetes schemas, and the rules of the deployment checked object by object:
replicas, headless gRPC Services, native gRPC probes, resources, hardened security contexts,
grace periods, PodDisruptionBudgets, migrations, secrets never literal, Redis (ephemeral, its
password from a Secret file, reached by the gateway only), and NetworkPolicies that allow exactly
the intended flows (evaluated, not just looked at).
"""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

SERVICES = ("auth", "catalog", "cart", "orders", "payments")
OVERLAYS = ("dev", "prod")
NAMESPACE = "shop"
GRPC_PORT = 50051
GATEWAY_PORT = 8000
METRICS_PORT = 9090
REDIS_PORT = 6379
# Images from a public registry, pinned to a major version (not built by this project).
THIRD_PARTY_IMAGES = ("postgres", "redis")

# gRPC flows the services need (caller -> callees); nothing else may be allowed.
CALLS = {
    "gateway": {"auth", "catalog", "cart", "orders", "payments"},
    "orders": {"catalog", "cart", "payments", "auth"},
    "cart": {"catalog", "auth"},
    "catalog": {"auth"},
    "payments": {"auth"},
    "auth": set(),
}
# Egress to public addresses (outside the cluster) and on which ports.
EXTERNAL_EGRESS = {"auth": {25, 465, 587}, "orders": {25, 465, 587}, "payments": {443}}
PRIVATE_RANGES = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}

SECRET_NAME = re.compile(r"SECRET|PASSWORD|PRIVATE_KEY|API_KEY|TOKEN|DATABASE_URL|CREDENTIAL|SERVICE_KEY$", re.I)
# Secret references the workloads make, and which may be absent (optional features).
REQUIRED_SECRETS = {
    "shop-shared",
    "auth-secrets",
    "shop-redis",
    *(f"{s}-db" for s in SERVICES),
    *(f"{s}-identity" for s in (*SERVICES, "gateway")),
}
OPTIONAL_SECRETS = {"shop-smtp", "payments-secrets"}


# ------------------------------------------------------------------------------- helpers
def objects(docs, kind, name=None):
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs, kind, name):
    found = objects(docs, kind, name)
    assert len(found) == 1, f"expected exactly one {kind}/{name}, found {len(found)}"
    return found[0]


def workloads(docs):
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")]


def pod_spec(workload):
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return workload["spec"]["template"]["spec"]


def all_containers(spec):
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def config_maps(docs):
    return {d["metadata"]["name"]: d.get("data", {}) for d in objects(docs, "ConfigMap")}


def container_env(docs, container) -> dict[str, Any]:
    """The container's environment: literal values, or the valueFrom reference (parsed YAML)."""
    env: dict[str, Any] = {}
    cms = config_maps(docs)
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(cms[source["configMapRef"]["name"]])
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", item.get("valueFrom"))
    return env


def selector_matches(selector, labels) -> bool:
    """A LabelSelector (matchLabels + matchExpressions) against a label set."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def service_deployment(docs, svc):
    return one(docs, "Deployment", svc)


def main_container(workload, name):
    containers = {c["name"]: c for c in pod_spec(workload)["containers"]}
    assert name in containers, f"{workload['metadata']['name']}: no container named {name}"
    return containers[name]


# ------------------------------------------------------------------------- rendering
def test_make_k8s_renders_and_validates_every_overlay(make_k8s_run):
    proc, out = make_k8s_run
    assert proc.returncode == 0, f"scripts/render_k8s.py failed:\n{proc.stdout}\n{proc.stderr}"
    assert sorted(p.stem for p in out.glob("*.yaml")) == sorted(OVERLAYS)


def test_overlays_are_dev_and_prod(render_k8s, repo):
    assert render_k8s.overlays(repo / "deploy" / "k8s") == sorted(OVERLAYS)


def test_kubectl_apply_k_deploy_k8s_is_the_prod_overlay(kubectl, render_k8s, repo, rendered):
    """`kubectl apply -k deploy/k8s` works and applies the production overlay."""
    root = [d for d in yaml.safe_load_all(render_k8s.render(repo / "deploy" / "k8s", kubectl)) if d]
    assert root == rendered["prod"]


def test_base_renders_alone_without_any_secret(kubectl, render_k8s, repo):
    base = [d for d in yaml.safe_load_all(render_k8s.render(repo / "deploy" / "k8s" / "base", kubectl)) if d]
    assert not objects(base, "Secret")
    for svc in SERVICES:
        assert one(base, "Deployment", svc)["spec"]["replicas"] == 2


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_matches_the_kubernetes_schemas(rendered, render_k8s, overlay):
    """Strict validation (unknown fields are errors) against the oldest and newest schemas."""
    import kubernetes_validate

    for version in (render_k8s.DEFAULT_KUBE_VERSION, kubernetes_validate.latest_version()):
        errors = render_k8s.validate(rendered[overlay], version)
        assert not errors, f"{overlay} against Kubernetes {version}:\n" + "\n".join(errors)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_is_in_the_shop_namespace(rendered, overlay):
    docs = rendered[overlay]
    assert one(docs, "Namespace", NAMESPACE)["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == (
        "restricted"
    )
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, f"{doc['kind']}/{doc['metadata']['name']}"


# ------------------------------------------------------------------------- services
@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("svc", SERVICES)
def test_service_has_deployment_headless_service_account_and_pdb(rendered, overlay, svc):
    docs = rendered[overlay]
    deployment = service_deployment(docs, svc)
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector_matches(deployment["spec"]["selector"], template_labels)

    replicas = deployment["spec"]["replicas"]
    assert replicas == 1 if overlay == "dev" else replicas >= 2, f"{overlay}: {svc} has {replicas} replicas"

    # Headless Service, port named grpc, selecting exactly these pods.
    service = one(docs, "Service", svc)
    assert service["spec"].get("clusterIP") == "None", f"{svc}: Service must be headless"
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert "grpc" in ports and ports["grpc"]["port"] == GRPC_PORT
    assert selector_matches({"matchLabels": service["spec"]["selector"]}, template_labels)
    container_ports = {p["name"]: p["containerPort"] for p in main_container(deployment, svc)["ports"]}
    target = ports["grpc"].get("targetPort", GRPC_PORT)
    assert container_ports.get(target, target) == GRPC_PORT

    # Its own ServiceAccount, no API token.
    spec = pod_spec(deployment)
    assert spec["serviceAccountName"] == svc
    one(docs, "ServiceAccount", svc)
    assert spec.get("automountServiceAccountToken") is False

    # PodDisruptionBudget: at most one pod down at a time.
    pdb = one(docs, "PodDisruptionBudget", svc)
    assert pdb["spec"].get("maxUnavailable") == 1
    assert selector_matches(pdb["spec"]["selector"], template_labels)


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("svc", SERVICES)
def test_service_probes_are_native_grpc(rendered, overlay, svc):
    container = main_container(service_deployment(rendered[overlay], svc), svc)
    for probe in ("readinessProbe", "livenessProbe"):
        assert container.get(probe, {}).get("grpc", {}).get("port") == GRPC_PORT, f"{svc}: {probe}"
    startup = container.get("startupProbe")
    assert startup is None or startup.get("grpc", {}).get("port") == GRPC_PORT


def assert_own_identity(env: dict, name: str) -> None:
    """A process gets its own identity's Secret (no other) and the public keys' ConfigMap."""
    assert env["SHOP_SERVICE_KEY"]["secretKeyRef"] == {
        "name": env["SHOP_SERVICE_KEY"]["secretKeyRef"]["name"],
        "key": "SHOP_SERVICE_KEY",
    }
    assert env["SHOP_SERVICE_KEY"]["secretKeyRef"]["name"].startswith(f"{name}-identity")
    assert env["SHOP_SERVICE_PUBLIC_KEYS"]["configMapKeyRef"]["name"].startswith("service-public-keys")
    assert "SHOP_INTERNAL_SECRET" not in env


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("svc", SERVICES)
def test_service_configuration(rendered, overlay, svc):
    """Grace period above the server's grace, connection age set, gRPC on 0.0.0.0:50051."""
    docs = rendered[overlay]
    deployment = service_deployment(docs, svc)
    env = container_env(docs, main_container(deployment, svc))
    grace = int(env.get("SHOP_GRACE_SECONDS", 10))
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] > grace
    assert int(env["SHOP_MAX_CONNECTION_AGE_MS"]) > 0
    assert env["SHOP_GRPC_ADDRESS"] == f"0.0.0.0:{GRPC_PORT}"
    assert env["SHOP_ENV"] == ("development" if overlay == "dev" else "production")
    assert env["SHOP_PAGE_TOKEN_SECRET"]["secretKeyRef"]["name"].startswith("shop-shared")  # no default
    assert_own_identity(env, svc)
    assert env["SHOP_DATABASE_URL"]["secretKeyRef"]["name"].startswith(f"{svc}-db")


# The services that send mail (password resets, email verification, order notices).
MAILERS = ("auth", "orders")


def test_prod_never_selects_the_console_mail_backend(rendered):
    """It prints reset and verification links into the logs (and production refuses to start
    with it): every prod container's environment, however it is assembled, names another one."""
    docs = rendered["prod"]
    backends = {}
    for workload in workloads(docs):
        for container in all_containers(pod_spec(workload)):
            env = container_env(docs, container)
            if "SHOP_MAIL_BACKEND" in env:
                backends[f"{workload['metadata']['name']}/{container['name']}"] = env["SHOP_MAIL_BACKEND"]
    for svc in MAILERS:
        assert f"{svc}/{svc}" in backends, f"{svc}: no SHOP_MAIL_BACKEND (the default is not for production)"
    assert not {name: value for name, value in backends.items() if value == "console"}, backends


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("svc", SERVICES)
def test_migrations_run_before_the_server(rendered, overlay, svc):
    """An init container (`python -m services.<svc> migrate`) with the server's image and env."""
    deployment = service_deployment(rendered[overlay], svc)
    spec = pod_spec(deployment)
    main = main_container(deployment, svc)
    migrate = [c for c in spec.get("initContainers", []) if c.get("args") == ["migrate"]]
    assert len(migrate) == 1, f"{svc}: no migrate init container"
    assert migrate[0]["image"] == main["image"]
    assert migrate[0].get("env") == main.get("env")
    assert migrate[0].get("envFrom") == main.get("envFrom")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_targets_are_dns_uris_of_headless_services(rendered, overlay):
    """Clients get dns:/// URIs, so round_robin reaches every pod behind a headless Service."""
    docs = rendered[overlay]
    shared = next(data for name, data in config_maps(docs).items() if name.startswith("shop-config"))
    for svc in SERVICES:
        target = shared[f"SHOP_{svc.upper()}_TARGET"]
        match = re.fullmatch(r"dns:///([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local:(\d+)", target)
        assert match, f"{svc}: target {target!r} is not a dns:/// URI of a cluster Service"
        name, namespace, port = match.groups()
        assert (name, namespace, int(port)) == (svc, NAMESPACE, GRPC_PORT)
        assert one(docs, "Service", name)["spec"]["clusterIP"] == "None"


# ------------------------------------------------------------------------- gateway
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_deployment_service_ingress_and_hpa(rendered, overlay):
    docs = rendered[overlay]
    deployment = one(docs, "Deployment", "gateway")
    assert "replicas" not in deployment["spec"], "the HorizontalPodAutoscaler owns the replica count"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    container = main_container(deployment, "gateway")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == GATEWAY_PORT
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = container_env(docs, container)
    assert env["SHOP_HTTP_HOST"] == "0.0.0.0" and int(env["SHOP_HTTP_PORT"]) == GATEWAY_PORT
    assert env["SHOP_PAGE_TOKEN_SECRET"]["secretKeyRef"]["name"].startswith("shop-shared")  # no default
    assert_own_identity(env, "gateway")
    # Limits and revocations shared by every replica through Redis.
    assert env["SHOP_REDIS_URL"]["secretKeyRef"]["name"].startswith("shop-redis")
    assert env["SHOP_REDIS_URL"]["secretKeyRef"]["key"] == "SHOP_REDIS_URL"
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] > int(env.get("SHOP_GRACE_SECONDS", 10))

    service = one(docs, "Service", "gateway")
    assert selector_matches({"matchLabels": service["spec"]["selector"]}, labels)
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports.get(service_ports["http"]["targetPort"], service_ports["http"]["targetPort"]) == GATEWAY_PORT

    ingress = one(docs, "Ingress", "gateway")
    backends = [path["backend"]["service"] for rule in ingress["spec"]["rules"] for path in rule["http"]["paths"]]
    assert backends and all(b["name"] == "gateway" and b["port"]["name"] in service_ports for b in backends)
    if overlay == "prod":
        assert ingress["spec"].get("tls"), "production Ingress must terminate TLS"

    hpa = one(docs, "HorizontalPodAutoscaler", "gateway")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway"}
    cpu = [m for m in hpa["spec"]["metrics"] if m["type"] == "Resource" and m["resource"]["name"] == "cpu"]
    assert cpu and cpu[0]["resource"]["target"]["type"] == "Utilization"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    if overlay == "prod":
        assert hpa["spec"]["minReplicas"] >= 2

    pdb = one(docs, "PodDisruptionBudget", "gateway")
    assert pdb["spec"].get("maxUnavailable") == 1 and selector_matches(pdb["spec"]["selector"], labels)


# ------------------------------------------------------------------------- all pods
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_hardened_and_has_resources(rendered, overlay):
    """Restricted pod security: non-root, read-only root, no escalation, no capabilities."""
    problems = []
    for workload in workloads(rendered[overlay]):
        name = f"{workload['kind']}/{workload['metadata']['name']}"
        spec = pod_spec(workload)
        pod_sc = spec.get("securityContext", {})
        for forbidden in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(forbidden):
                problems.append(f"{name}: {forbidden}")
        if any("hostPath" in v for v in spec.get("volumes", [])):
            problems.append(f"{name}: hostPath volume")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{name}: mounts a service account token")
        for c in all_containers(spec):
            where = f"{name}/{c['name']}"
            sc = c.get("securityContext", {})
            if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
                problems.append(f"{where}: runAsNonRoot")
            if sc.get("runAsUser", pod_sc.get("runAsUser")) in (0, None):
                problems.append(f"{where}: no non-zero runAsUser")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: readOnlyRootFilesystem")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation")
            if sc.get("privileged"):
                problems.append(f"{where}: privileged")
            if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("capabilities", {}).get("add"):
                problems.append(f"{where}: capabilities must drop ALL and add none")
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
            if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
                problems.append(f"{where}: seccompProfile")
            resources = c.get("resources", {})
            for field in ("cpu", "memory"):
                if field not in resources.get("requests", {}):
                    problems.append(f"{where}: no {field} request")
            if "memory" not in resources.get("limits", {}):
                problems.append(f"{where}: no memory limit")
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            if "/tmp" not in mounts:
                problems.append(f"{where}: no writable /tmp")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_multi_replica_workload_has_a_pdb(rendered, overlay):
    docs = rendered[overlay]
    pdbs = objects(docs, "PodDisruptionBudget")
    for deployment in objects(docs, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        matching = [p for p in pdbs if selector_matches(p["spec"]["selector"], labels)]
        assert len(matching) == 1, f"Deployment/{deployment['metadata']['name']}: {len(matching)} PDBs"
        assert matching[0]["spec"].get("maxUnavailable") == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images(rendered, overlay):
    for workload in workloads(rendered[overlay]):
        for c in all_containers(pod_spec(workload)):
            image = c["image"]
            tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else "latest"
            assert tag != "latest", f"{image}: pin a tag"
            third_party = image.split("/")[-1].split(":")[0] in THIRD_PARTY_IMAGES
            if overlay == "prod" and "@sha256:" not in image and not third_party:
                assert tag != "dev" and "/" in image.split(":")[0], f"{image}: push to a registry with a release tag"
            if overlay == "dev" and not third_party:
                assert tag == "dev"


# ------------------------------------------------------------------------- data
@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("svc", SERVICES)
def test_each_service_has_its_own_postgres(rendered, overlay, svc):
    docs = rendered[overlay]
    sts = one(docs, "StatefulSet", f"{svc}-postgres")
    claims = sts["spec"].get("volumeClaimTemplates", [])
    assert claims and claims[0]["spec"]["resources"]["requests"]["storage"]
    data_mounts = [
        m for m in main_container(sts, "postgres")["volumeMounts"] if m["name"] == claims[0]["metadata"]["name"]
    ]
    assert data_mounts, "the claim must hold the data directory"
    governing = one(docs, "Service", sts["spec"]["serviceName"])
    assert selector_matches(
        {"matchLabels": governing["spec"]["selector"]}, sts["spec"]["template"]["metadata"]["labels"]
    )

    env = container_env(docs, main_container(sts, "postgres"))
    password = env["POSTGRES_PASSWORD"]["secretKeyRef"]
    url = container_env(docs, main_container(service_deployment(docs, svc), svc))["SHOP_DATABASE_URL"]
    assert password["name"] == url["secretKeyRef"]["name"], "database and service share one Secret"
    assert password["name"].startswith(f"{svc}-db")


# ------------------------------------------------------------------------- redis
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_redis_is_one_ephemeral_pod_with_its_password_from_a_secret_file(rendered, overlay):
    """What the gateways share: one Redis pod, nothing persisted (no claim, no RDB, no AOF), the
    password from the Secret shop-redis as a file (on stdin to the server, never in argv), the
    gateway's URL from the same Secret; its pod reached by the gateway only (network policies
    below)."""
    docs = rendered[overlay]
    deployment = one(docs, "Deployment", "redis")
    assert deployment["spec"]["replicas"] == 1
    spec = pod_spec(deployment)
    container = main_container(deployment, "redis")
    assert container["image"].startswith("redis:7")
    assert spec["serviceAccountName"] == "redis" and one(docs, "ServiceAccount", "redis")
    # Ephemeral: only emptyDir and the Secret, no persistence flags but off.
    assert not objects(docs, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert {name for name, v in volumes.items() if "emptyDir" not in v} == {"password"}
    script = " ".join(container["args"])
    assert '--save ""' in script and "--appendonly no" in script and "--maxmemory-policy noeviction" in script
    # The password: a file of the Secret, read by the script, fed on stdin ("redis-server -").
    secret = volumes["password"]["secret"]
    assert secret["secretName"].startswith("shop-redis")
    assert secret["items"] == [{"key": "REDIS_PASSWORD", "path": "password"}]
    assert "redis-server - " in script and "/run/secrets/redis/password" in script
    assert not any("REDIS_PASSWORD" in str(item) for item in container.get("env", []))
    for probe in ("readinessProbe", "livenessProbe"):
        assert "/run/secrets/redis/password" in " ".join(container[probe]["exec"]["command"]), probe
    # A ClusterIP Service on the port, and the gateway's URL (same Secret) pointing at it.
    service = one(docs, "Service", "redis")
    assert selector_matches(
        {"matchLabels": service["spec"]["selector"]}, deployment["spec"]["template"]["metadata"]["labels"]
    )
    assert [p["port"] for p in service["spec"]["ports"]] == [REDIS_PORT]
    gateway = container_env(docs, main_container(one(docs, "Deployment", "gateway"), "gateway"))
    assert gateway["SHOP_REDIS_URL"]["secretKeyRef"]["name"] == secret["secretName"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_is_a_literal(rendered, overlay):
    """Secret-looking variables come from Secrets; ConfigMaps hold no secret-looking key."""
    docs = rendered[overlay]
    for name, data in config_maps(docs).items():
        leaked = [k for k in data if SECRET_NAME.search(k)]
        assert not leaked, f"ConfigMap {name} holds {leaked}"
    for workload in workloads(docs):
        for c in all_containers(pod_spec(workload)):
            for item in c.get("env", []):
                if SECRET_NAME.search(item["name"]):
                    assert "secretKeyRef" in item.get("valueFrom", {}), (
                        f"{workload['metadata']['name']}/{c['name']}: {item['name']} must come from a Secret"
                    )


def secret_refs(docs):
    refs = set()
    for workload in workloads(docs):
        for c in all_containers(pod_spec(workload)):
            for item in c.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], ref["key"], bool(ref.get("optional"))))
            for source in c.get("envFrom", []):
                if "secretRef" in source:
                    refs.add((source["secretRef"]["name"], "*", bool(source["secretRef"].get("optional"))))
        for volume in pod_spec(workload).get("volumes", []):
            if "secret" in volume:
                optional = bool(volume["secret"].get("optional"))
                for item in volume["secret"].get("items") or [{"key": "*"}]:
                    refs.add((volume["secret"]["secretName"], item["key"], optional))
    return refs


def test_prod_generates_no_secret_and_references_only_documented_ones(rendered, repo):
    docs = rendered["prod"]
    assert not objects(docs, "Secret"), "production Secrets must be created outside git"
    refs = secret_refs(docs)
    assert {name for name, _, optional in refs if not optional} == REQUIRED_SECRETS
    assert {name for name, _, optional in refs if optional} <= OPTIONAL_SECRETS
    readme = (repo / "README.md").read_text()
    for name, key, _ in refs:
        generic = re.sub(rf"^({'|'.join(SERVICES)})-", "<service>-", name)
        assert (name in readme or generic in readme) and key in readme, (
            f"README.md (Deploy section) must say how to create {name} ({key})"
        )


def test_dev_secrets_are_generated_and_marked_dev_only(rendered, repo):
    docs = rendered["dev"]
    secrets = {s["metadata"]["name"]: s for s in objects(docs, "Secret")}
    for secret in secrets.values():
        assert secret["metadata"]["labels"].get("shop.example.com/dev-only") == "true"
    # Every required reference resolves to a generated Secret holding the key.
    for name, key, optional in secret_refs(docs):
        if optional:
            continue
        assert name in secrets, f"dev: Secret {name} referenced but not generated"
        assert key in secrets[name]["data"], f"dev: Secret {name} lacks {key}"
    # The database URL of each service points at its own database, with its password.
    for svc in SERVICES:
        data = next(s["data"] for n, s in secrets.items() if n.startswith(f"{svc}-db-"))
        url = base64.b64decode(data["SHOP_DATABASE_URL"]).decode()
        password = base64.b64decode(data["POSTGRES_PASSWORD"]).decode()
        assert url == f"postgresql://{svc}:{password}@{svc}-postgres:5432/{svc}"
    # The gateway's Redis URL holds Redis's password and names the redis Service.
    redis = next(s["data"] for n, s in secrets.items() if n.startswith("shop-redis-"))
    password = base64.b64decode(redis["REDIS_PASSWORD"]).decode()
    assert "INSECURE-DEV-ONLY" in password
    assert base64.b64decode(redis["SHOP_REDIS_URL"]).decode() == (
        f"redis://:{password}@redis.{NAMESPACE}.svc.cluster.local:{REDIS_PORT}/0"
    )
    # auth signs with an Ed25519 key (PKCS#8 PEM).
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    auth = next(s["data"] for n, s in secrets.items() if n.startswith("auth-secrets-"))
    key = serialization.load_pem_private_key(base64.b64decode(auth["SHOP_JWT_PRIVATE_KEY"]), password=None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    # One identity per process, each verifiable with the public keys' ConfigMap, only as itself.
    from shop.lib.tokens import ServiceIdentity, ServiceKeys

    public = next(data for name, data in config_maps(docs).items() if name.startswith("service-public-keys-"))
    keys = ServiceKeys.parse(public["SHOP_SERVICE_PUBLIC_KEYS"])
    assert keys.names == {*SERVICES, "gateway"}
    for name in (*SERVICES, "gateway"):
        identity = next(s["data"] for n, s in secrets.items() if n.startswith(f"{name}-identity-"))
        pem = base64.b64decode(identity["SHOP_SERVICE_KEY"]).decode()
        assert "INSECURE-DEV-ONLY" in pem
        assert keys.verify(ServiceIdentity.from_pem(name, pem).mint()) == name
    readme = (repo / "deploy" / "k8s" / "overlays" / "dev" / "dev-secrets" / "README.md").read_text()
    assert "DEVELOPMENT-ONLY" in readme


def test_secrets_are_only_generated_in_the_dev_overlay(repo):
    """The base and prod trees hold no Secret manifest and no secretGenerator."""
    k8s = repo / "deploy" / "k8s"
    for path in k8s.rglob("*.yaml"):
        if path.is_relative_to(k8s / "overlays" / "dev"):
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            assert doc.get("kind") != "Secret", f"{path}: a literal Secret"
            assert "secretGenerator" not in doc, f"{path}: secretGenerator outside the dev overlay"


# ------------------------------------------------------------------------- network policies
class Pod:
    def __init__(self, name, namespace, labels, ports):
        self.name, self.namespace, self.labels = name, namespace, labels
        self.ports = ports  # {(number, protocol): port name or None}

    def resolve(self, port, protocol):
        """A NetworkPolicy port (number or name) on this pod -> the number, or None."""
        if isinstance(port, int):
            return port
        for (number, proto), name in self.ports.items():
            if name == port and proto == protocol:
                return number
        return None


def pods_of(docs):
    pods = []
    for workload in workloads(docs):
        spec = pod_spec(workload)
        ports = {
            (p["containerPort"], p.get("protocol", "TCP")): p.get("name")
            for c in spec["containers"]
            for p in c.get("ports", [])
        }
        labels = workload["spec"]["template"]["metadata"]["labels"]
        pods.append(Pod(labels["app.kubernetes.io/name"], workload["metadata"]["namespace"], labels, ports))
    return pods


# Pods outside the namespace the flows are checked against.
OUTSIDERS = [
    Pod("kube-dns", "kube-system", {"k8s-app": "kube-dns"}, {(53, "UDP"): "dns", (53, "TCP"): "dns-tcp"}),
    Pod("ingress-controller", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}, {}),
    Pod("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"}, {}),
    Pod("intruder", "default", {"app.kubernetes.io/name": "gateway"}, {}),  # right labels, wrong namespace
]


def namespace_labels(docs, namespace):
    labels = {"kubernetes.io/metadata.name": namespace}
    for ns in objects(docs, "Namespace", namespace):
        labels.update(ns["metadata"].get("labels", {}))
    return labels


def peer_matches(docs, peer, policy_namespace, pod) -> bool:
    if "ipBlock" in peer:
        return False  # addresses outside the cluster; checked separately
    ns_selector = peer.get("namespaceSelector")
    if ns_selector is None:
        if pod.namespace != policy_namespace:
            return False
    elif not selector_matches(ns_selector, namespace_labels(docs, pod.namespace)) and ns_selector != {}:
        return False
    pod_selector = peer.get("podSelector")
    return pod_selector is None or pod_selector == {} or selector_matches(pod_selector, pod.labels)


def ports_match(rule_ports, target, port, protocol) -> bool:
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        if "port" not in p or target.resolve(p["port"], protocol) == port:
            return True
    return False


def policy_types(policy):
    return policy["spec"].get("policyTypes") or (["Ingress", "Egress"] if "egress" in policy["spec"] else ["Ingress"])


def allowed(docs, direction, subject, other, port, protocol) -> bool:
    """Is `subject` allowed to receive from (Ingress) / send to (Egress) `other` on port?"""
    policies = [
        p
        for p in objects(docs, "NetworkPolicy")
        if p["metadata"]["namespace"] == subject.namespace
        and (p["spec"]["podSelector"] == {} or selector_matches(p["spec"]["podSelector"], subject.labels))
        and direction in policy_types(p)
    ]
    if not policies:
        return True  # not isolated
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    target = subject if direction == "Ingress" else other
    for policy in policies:
        for rule in policy["spec"].get(rules_key) or []:
            peers = rule.get(peers_key)
            peer_ok = not peers or any(
                peer_matches(docs, peer, policy["metadata"]["namespace"], other) for peer in peers
            )
            if peer_ok and ports_match(rule.get("ports"), target, port, protocol):
                return True
    return False


def allowed_flows(docs):
    inside = pods_of(docs)
    flows = set()
    for src in inside + OUTSIDERS:
        for dst in inside + OUTSIDERS:
            if src in OUTSIDERS and dst in OUTSIDERS:
                continue
            for port, protocol in dst.ports:
                if allowed(docs, "Egress", src, dst, port, protocol) and allowed(
                    docs, "Ingress", dst, src, port, protocol
                ):
                    flows.add((src.name, dst.name, port if protocol == "TCP" else f"{port}/{protocol}"))
    return flows


def expected_flows(docs):
    flows: set[tuple[str, str, int | str]] = set()
    for caller, callees in CALLS.items():
        flows |= {(caller, callee, GRPC_PORT) for callee in callees}
    for svc in SERVICES:
        flows.add((svc, f"{svc}-postgres", 5432))
        flows.add(("prometheus", svc, METRICS_PORT))
    flows.add(("prometheus", "gateway", METRICS_PORT))  # the gateway's metrics have their own port too
    flows.add(("gateway", "redis", REDIS_PORT))  # the only way into Redis
    for outsider in OUTSIDERS:  # the gateway is the public entry: anyone may reach port 8000
        flows.add((outsider.name, "gateway", GATEWAY_PORT))
    for pod in pods_of(docs):
        flows |= {(pod.name, "kube-dns", 53), (pod.name, "kube-dns", "53/UDP")}
    return flows


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_allow_exactly_the_intended_flows(rendered, overlay):
    docs = rendered[overlay]
    actual, expected = allowed_flows(docs), expected_flows(docs)
    assert not actual - expected, f"flows allowed but not intended: {sorted(actual - expected, key=str)}"
    assert not expected - actual, f"intended flows blocked: {sorted(expected - actual, key=str)}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_namespace_denies_by_default(rendered, overlay):
    default_deny = [
        p
        for p in objects(rendered[overlay], "NetworkPolicy")
        if p["spec"]["podSelector"] == {}
        and set(policy_types(p)) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert default_deny, "a default-deny NetworkPolicy for the whole namespace"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_egress_to_the_internet_is_narrow(rendered, overlay):
    """Only mail (auth, orders) and Stripe (payments) leave the cluster, never to private ranges."""
    docs = rendered[overlay]
    external: dict[str, set[int]] = {}
    for policy in objects(docs, "NetworkPolicy"):
        for rule in policy["spec"].get("egress") or []:
            blocks = [peer["ipBlock"] for peer in rule.get("to") or [] if "ipBlock" in peer]
            if not blocks:
                continue
            assert rule.get("ports"), f"{policy['metadata']['name']}: egress to addresses on every port"
            for block in blocks:
                if block["cidr"] == "0.0.0.0/0":
                    assert PRIVATE_RANGES <= set(block.get("except", [])), policy["metadata"]["name"]
            name = policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
            external.setdefault(name, set()).update(p["port"] for p in rule["ports"])
    assert external == EXTERNAL_EGRESS


# ------------------------------------------------------------------------- docs
def test_readme_documents_the_deployment(repo):
    readme = (repo / "README.md").read_text()
    assert "```mermaid" in readme
    for needle in (
        "docker compose build",
        "docker compose up",
        "gen-secrets.sh",
        "docker push",
        "kubectl apply -k deploy/k8s",
        "create secret generic",
        "rollout status",
        "rollout undo",
        "scale deployment",
        "/readyz",
        "make k8s",
    ):
        assert needle in readme, f"README.md (Deploy section) should cover `{needle}`"


def test_rendered_output_goes_to_var_k8s(render_k8s, repo):
    assert Path(render_k8s.DEFAULT_OUT) == repo / "var" / "k8s"
    assert "var/" in (repo / ".gitignore").read_text().split()


def test_render_script_fails_cleanly_without_kubectl(repo, tmp_path):
    import os
    import sys

    proc = subprocess.run(
        [sys.executable, str(repo / "scripts" / "render_k8s.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECTL": str(tmp_path / "no-such-kubectl")},
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and "kubectl not found" in proc.stderr
