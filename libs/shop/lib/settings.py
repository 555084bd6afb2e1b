"""Settings every process shares, read from SHOP_* environment variables (pydantic-settings).

A service's own `config.py` subclasses `ServiceSettings`. In production the process refuses to
start with a default or weak secret, or without its service key (`check_production`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Development-only defaults: fine on a laptop, refused when SHOP_ENV=production.
DEV_PAGE_TOKEN_SECRET = "dev-page-token-secret-change-me-0123456789"
MIN_SECRET_LENGTH = 32
# The longest access-token lifetime auth may be configured with; verifiers keep a revoked session
# in their cache at least this long (plus clock skew), so a revoked token can never outlive it.
MAX_ACCESS_TOKEN_TTL_SECONDS = 60 * 60


class BaseShopSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOP_", extra="ignore", frozen=False)

    env: Literal["development", "test", "production"] = "development"
    log_level: str = "INFO"
    # This process's service identity: its own Ed25519 private key (PKCS#8 PEM; secret), as text
    # or a file; it signs the `x-shop-service` tokens of its outgoing calls (shop.lib.tokens).
    service_key: str = ""
    service_key_file: str = ""
    # Every service's public key (not secret): a JSON object name -> PEM, or a JWKS with the
    # service names as `kid`; as text or a file. Incoming service identities are checked against it.
    service_public_keys: str = ""
    service_public_keys_file: str = ""
    # HMAC secret that makes page tokens tamper-evident.
    page_token_secret: str = DEV_PAGE_TOKEN_SECRET
    jwt_issuer: str = "shop-auth"
    jwt_audience: str = "shop"
    # Targets of the services: a comma-separated host:port list (round-robin over all of them)
    # or a gRPC URI such as dns:///catalog:50051.
    auth_target: str = "127.0.0.1:50051"
    catalog_target: str = "127.0.0.1:50052"
    cart_target: str = "127.0.0.1:50053"
    orders_target: str = "127.0.0.1:50054"
    payments_target: str = "127.0.0.1:50055"
    # Default deadline of outgoing RPCs, seconds.
    rpc_timeout_seconds: float = 10.0
    # How often token verifiers poll auth for revoked sessions (revocation reaches them within ~this).
    revocation_poll_seconds: float = 1.0
    # Verifiers refuse writes (503 REVOCATIONS_UNAVAILABLE) when no revocation poll has succeeded
    # for this long: a logged-out session must not keep buying while auth cannot be asked.
    revocation_max_staleness_seconds: float = Field(default=30.0, ge=2.0, le=300.0)
    # OTLP/HTTP traces endpoint (e.g. http://otel-collector:4318/v1/traces); empty turns tracing off.
    otlp_endpoint: str = ""

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def service_key_pem(self) -> str:
        return _inline_or_file(self.service_key, self.service_key_file)

    def service_public_keys_text(self) -> str:
        return _inline_or_file(self.service_public_keys, self.service_public_keys_file)

    def weak_secrets(self) -> list[str]:
        """Names of secrets that are defaults, too short or missing; production refuses to start with any."""
        weak = []
        value = self.page_token_secret
        if value == DEV_PAGE_TOKEN_SECRET or len(value) < MIN_SECRET_LENGTH:
            weak.append("SHOP_PAGE_TOKEN_SECRET")
        if not (self.service_key.strip() or self.service_key_file.strip()):
            weak.append("SHOP_SERVICE_KEY")
        if not (self.service_public_keys.strip() or self.service_public_keys_file.strip()):
            weak.append("SHOP_SERVICE_PUBLIC_KEYS")
        return weak

    @model_validator(mode="after")
    def check_production(self) -> BaseShopSettings:
        if self.is_production:
            weak = self.weak_secrets()
            if weak:
                raise ValueError(
                    "production refuses default, weak or missing secrets (at least "
                    f"{MIN_SECRET_LENGTH} characters, not the development default; a service key "
                    f"and the services' public keys): {', '.join(weak)}"
                )
            # Processes that send mail mix in MailSettings: the console backend would print
            # password-reset and verification links (account takeover material) into the logs.
            if getattr(self, "mail_backend", None) == "console":
                raise ValueError("production refuses SHOP_MAIL_BACKEND=console (it logs reset links): use smtp")
        return self


class ServiceSettings(BaseShopSettings):
    """Settings of a gRPC service process."""

    database_url: str = ""
    # Connections per process: pool_size kept open, up to max_overflow more under load.
    db_pool_size: int = 5
    db_max_overflow: int = 10
    grpc_address: str = "127.0.0.1:0"
    # Seconds in-flight RPCs get to finish after SIGTERM (Kubernetes' grace period must exceed it).
    grace_seconds: float = 10.0
    # Connections are recycled after this age so scaled-up replicas receive traffic; RPCs already
    # running on a recycled connection get the grace below to finish (longer than any deadline we set).
    max_connection_age_ms: int = 30_000
    max_connection_age_grace_ms: int = 60_000
    metrics_port: int = 0
    # How often readiness probes the database (and how long one probe may take), seconds.
    readiness_probe_seconds: float = Field(default=2.0, gt=0, le=30)
    run_migrations: bool = True
    # Testing only: exit the process abruptly at a named step (crash-safety tests).
    crash_at: str = Field(default="", description="testing only")

    @model_validator(mode="after")
    def check_crash_at(self) -> ServiceSettings:
        if self.crash_at and self.is_production:
            raise ValueError("SHOP_CRASH_AT is for tests only")
        return self


def _inline_or_file(value: str, path: str) -> str:
    """A setting given inline, else the content of the file named by its `_FILE` twin, else ""."""
    if value.strip():
        return value
    if path.strip():
        return Path(path.strip()).read_text()
    return ""
