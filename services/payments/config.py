"""Settings of the payments service (SHOP_* environment variables; Stripe's keys by their own names)."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, model_validator

from shop.lib.settings import MIN_SECRET_LENGTH, ServiceSettings

# Development-only default for the sandbox provider's webhook secret (refused in production).
DEV_SANDBOX_WEBHOOK_SECRET = "whsec_sandbox_dev_secret_change_me_0123456789"


class PaymentsSettings(ServiceSettings):
    database_url: str = "sqlite:///var/payments.db"
    grpc_address: str = "127.0.0.1:50055"

    # Which provider charges cards: the built-in sandbox (no network) or Stripe.
    payment_provider: Literal["sandbox", "stripe"] = "sandbox"
    # Secret of the sandbox provider's webhooks (same scheme as Stripe's: t=..,v1=..).
    sandbox_webhook_secret: str = DEV_SANDBOX_WEBHOOK_SECRET
    # Seconds a webhook signature's timestamp may differ from now.
    webhook_tolerance_seconds: int = 300

    # Stripe: plain STRIPE_API_KEY / STRIPE_WEBHOOK_SECRET, as Stripe's own docs name them.
    stripe_api_key: str = Field(default="", validation_alias=AliasChoices("STRIPE_API_KEY", "stripe_api_key"))
    stripe_webhook_secret: str = Field(
        default="", validation_alias=AliasChoices("STRIPE_WEBHOOK_SECRET", "stripe_webhook_secret")
    )
    # Base address of Stripe's API (tests point it at a local fake server).
    stripe_api_base: str = "https://api.stripe.com"
    stripe_timeout_seconds: float = 20.0
    # The SDK's own retries: none. Retries belong to the caller's gRPC retry policy (with its budget)
    # and the order's recovery, behind the provider breaker; SDK retries inside would multiply them.
    stripe_max_network_retries: int = 0

    # The provider circuit breaker (providers/breaker.py): this many consecutive provider failures
    # (outage, timeout) make calls fail fast with PAYMENT_PROVIDER_UNAVAILABLE for the cool-down,
    # then one trial call decides. Keeps a dead provider from holding every caller for its timeout.
    provider_breaker_failures: int = Field(default=5, ge=1)
    provider_breaker_reset_seconds: float = Field(default=30.0, gt=0)

    # Tests only (the fault campaign, tests/chaos): a directory holding the sandbox's fault plan
    # (`plan.json`, rewritten by the injector) and its persistent ledger (`ledger.sqlite3`). Empty:
    # the sandbox is the plain in-memory one. Production refuses it (like SHOP_CRASH_AT).
    sandbox_faults_dir: str = Field(default="", description="testing only")

    def weak_secrets(self) -> list[str]:
        weak = super().weak_secrets()
        if self.payment_provider == "sandbox" and (
            self.sandbox_webhook_secret == DEV_SANDBOX_WEBHOOK_SECRET
            or len(self.sandbox_webhook_secret) < MIN_SECRET_LENGTH
        ):
            weak.append("SHOP_SANDBOX_WEBHOOK_SECRET")
        return weak

    @model_validator(mode="after")
    def check_sandbox_faults(self) -> PaymentsSettings:
        if self.sandbox_faults_dir and self.is_production:
            raise ValueError("SHOP_SANDBOX_FAULTS_DIR is for tests only")
        if self.sandbox_faults_dir and self.payment_provider != "sandbox":
            raise ValueError("SHOP_SANDBOX_FAULTS_DIR needs SHOP_PAYMENT_PROVIDER=sandbox")
        return self

    @model_validator(mode="after")
    def check_stripe(self) -> PaymentsSettings:
        if self.is_production and self.payment_provider == "stripe":
            missing = [
                name
                for name, value in (
                    ("STRIPE_API_KEY", self.stripe_api_key),
                    ("STRIPE_WEBHOOK_SECRET", self.stripe_webhook_secret),
                )
                if not value
            ]
            if missing:
                raise ValueError(f"production refuses the stripe provider without {', '.join(missing)}")
        return self
