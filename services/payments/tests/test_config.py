"""Settings of the payments service: provider choice, Stripe's plain env names, production refusals."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.payments.config import PaymentsSettings
from services.payments.providers import build_provider
from services.payments.providers.sandbox import SandboxProvider
from services.payments.providers.stripe import StripeProvider
from tests.harness import identity_settings

STRONG = {**identity_settings("payments"), "page_token_secret": "p" * 40}


def test_sandbox_is_the_default(monkeypatch):
    monkeypatch.delenv("SHOP_PAYMENT_PROVIDER", raising=False)
    settings = PaymentsSettings()
    assert settings.payment_provider == "sandbox"
    assert isinstance(build_provider(settings), SandboxProvider)


def test_stripe_keys_come_from_their_plain_names(monkeypatch):
    monkeypatch.setenv("SHOP_PAYMENT_PROVIDER", "stripe")
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_from_env")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_from_env")
    monkeypatch.setenv("SHOP_STRIPE_API_BASE", "http://127.0.0.1:9")
    settings = PaymentsSettings()
    assert (settings.stripe_api_key, settings.stripe_webhook_secret) == ("sk_test_from_env", "whsec_from_env")
    assert settings.stripe_api_base == "http://127.0.0.1:9"
    assert isinstance(build_provider(settings), StripeProvider)


def test_unknown_provider_is_refused(monkeypatch):
    monkeypatch.setenv("SHOP_PAYMENT_PROVIDER", "paypal")
    with pytest.raises(ValidationError):
        PaymentsSettings()


@pytest.mark.parametrize("missing", [{}, {"stripe_api_key": "sk_live_x"}, {"stripe_webhook_secret": "whsec_x"}])
def test_production_refuses_stripe_without_key_and_secret(monkeypatch, missing):
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET", raising=False)
    with pytest.raises(ValidationError, match="STRIPE_"):
        PaymentsSettings(env="production", payment_provider="stripe", **STRONG, **missing)
    settings = PaymentsSettings(
        env="production",
        payment_provider="stripe",
        stripe_api_key="sk_live_x",
        stripe_webhook_secret="whsec_x",
        **STRONG,
    )
    assert settings.payment_provider == "stripe"


def test_production_refuses_the_default_sandbox_webhook_secret():
    with pytest.raises(ValidationError, match="SHOP_SANDBOX_WEBHOOK_SECRET"):
        PaymentsSettings(env="production", **STRONG)
    assert PaymentsSettings(env="production", sandbox_webhook_secret="s" * 40, **STRONG).is_production


def test_provider_breaker_settings(monkeypatch):
    settings = PaymentsSettings()
    assert (settings.provider_breaker_failures, settings.provider_breaker_reset_seconds) == (5, 30.0)
    assert settings.stripe_max_network_retries == 0
    monkeypatch.setenv("SHOP_PROVIDER_BREAKER_FAILURES", "2")
    monkeypatch.setenv("SHOP_PROVIDER_BREAKER_RESET_SECONDS", "7.5")
    settings = PaymentsSettings()
    assert (settings.provider_breaker_failures, settings.provider_breaker_reset_seconds) == (2, 7.5)
    monkeypatch.setenv("SHOP_PROVIDER_BREAKER_FAILURES", "0")
    with pytest.raises(ValidationError):
        PaymentsSettings()
