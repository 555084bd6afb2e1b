"""Payment providers behind one interface (base.PaymentProvider); `build_provider` picks one from
the `payment_provider` setting."""

from __future__ import annotations

from services.payments.config import PaymentsSettings
from services.payments.providers.base import PaymentProvider

PROVIDER_NAMES = ("sandbox", "stripe")


def build_provider(settings: PaymentsSettings) -> PaymentProvider:
    if settings.payment_provider == "stripe":
        from services.payments.providers.stripe import StripeProvider

        return StripeProvider(
            api_key=settings.stripe_api_key,
            webhook_secret=settings.stripe_webhook_secret,
            api_base=settings.stripe_api_base,
            timeout=settings.stripe_timeout_seconds,
            max_network_retries=settings.stripe_max_network_retries,
            tolerance=settings.webhook_tolerance_seconds,
        )
    from services.payments.providers.sandbox import SandboxProvider

    if settings.sandbox_faults_dir:
        from services.payments.providers.sandbox_faults import FaultControl

        return SandboxProvider(
            webhook_secret=settings.sandbox_webhook_secret,
            tolerance=settings.webhook_tolerance_seconds,
            faults=FaultControl(settings.sandbox_faults_dir),
        )
    return SandboxProvider(webhook_secret=settings.sandbox_webhook_secret, tolerance=settings.webhook_tolerance_seconds)
