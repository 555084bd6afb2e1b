"""The Stripe provider, on the official `stripe` SDK (async calls through its httpx client).

Charges are PaymentIntents created and confirmed at once with the card token as payment method
(idempotency key = order id); refunds are Refunds of that PaymentIntent (idempotency key = the
refund's request id); webhooks are verified with `stripe.Webhook.construct_event`.
`stripe_api_base` points the SDK elsewhere (tests use a local fake of Stripe's API)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import stripe

from services.payments.domain import InvalidSignature, ProviderEvent, parse_event
from services.payments.providers.base import (
    ChargeResult,
    InvalidPaymentToken,
    ProviderUnavailable,
    RefundResult,
    check_token_pattern,
)
from shop.lib.errors import InvalidArgument, ShopError

# Stripe error codes that mean "this payment method token is not usable" (→ 400, nothing recorded).
# Card Tokens (tok_…) and PaymentMethods (pm_…); Stripe itself still judges them at charge time.
TOKEN_PATTERN = r"(tok|pm)_[A-Za-z0-9_]{1,250}"
_INVALID_TOKEN_CODES = {
    "resource_missing",
    "token_already_used",
    "payment_method_invalid_parameter",
    "payment_method_unexpected_state",
}


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if obj is None:
        return default
    try:
        value = obj[key]
    except (KeyError, TypeError, IndexError):
        value = getattr(obj, key, default)
    return default if value is None else value


def _card_of(intent: Any) -> tuple[str, str]:
    method = _get(intent, "payment_method")
    card = _get(method, "card") if not isinstance(method, str) else None
    if card is None:
        charge = _get(intent, "latest_charge")
        card = _get(_get(charge, "payment_method_details"), "card") if not isinstance(charge, str) else None
    return str(_get(card, "brand", "")), str(_get(card, "last4", ""))


def _provider_error(
    exc: stripe.StripeError, *, failed: str = "The payment provider failed", code: str = "PAYMENT_PROVIDER_ERROR"
) -> ShopError:
    """A Stripe error the call does not handle itself: a connection failure, throttling or Stripe's
    own error is ProviderUnavailable (worth a retry); any other is `code`."""
    if isinstance(exc, (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError)):
        return ProviderUnavailable(f"The payment provider is unavailable: {type(exc).__name__}.")
    return ShopError(f"{failed}: {type(exc).__name__}.", code=code)


def _result(intent: Any, amount_cents: int) -> ChargeResult:
    """A PaymentIntent as a ChargeResult."""
    status = _get(intent, "status", "")
    brand, last4 = _card_of(intent)
    reference = str(_get(intent, "id", ""))
    if status == "succeeded":
        received = int(_get(intent, "amount_received", 0) or amount_cents)
        return ChargeResult(True, reference, captured_cents=received, brand=brand, last4=last4)
    if status == "processing":
        return ChargeResult(False, reference, brand=brand, last4=last4, pending=True)
    # requires_action (3-D Secure), requires_payment_method, canceled: not paid.
    error = _get(intent, "last_payment_error")
    code = str(_get(error, "decline_code") or _get(error, "code") or status or "card_declined")
    return ChargeResult(False, reference, brand=brand, last4=last4, decline_code=code)


class StripeProvider:
    name = "stripe"
    token_pattern = TOKEN_PATTERN

    def __init__(
        self,
        *,
        api_key: str,
        webhook_secret: str,
        api_base: str = "https://api.stripe.com",
        timeout: float = 20.0,
        max_network_retries: int = 0,
        tolerance: int = 300,
    ) -> None:
        self.webhook_secret = webhook_secret
        self.tolerance = tolerance
        self._http = stripe.HTTPXClient(timeout=timeout)
        self.client = stripe.StripeClient(
            api_key or "sk_missing",
            base_addresses={"api": api_base.rstrip("/")},
            http_client=self._http,
            max_network_retries=max_network_retries,
        )
        self._configured = bool(api_key)

    def _require_key(self) -> None:
        if not self._configured:
            raise ShopError("The Stripe provider has no STRIPE_API_KEY.", code="PAYMENT_PROVIDER_MISCONFIGURED")

    def check_token(self, token: str) -> None:
        check_token_pattern(self.token_pattern, token)

    async def charge(
        self,
        *,
        idempotency_key: str,
        amount_cents: int,
        currency_code: str,
        token: str,
        metadata: dict[str, str],
    ) -> ChargeResult:
        self._require_key()
        params: dict[str, Any] = {
            "amount": amount_cents,
            "currency": currency_code.lower(),
            "payment_method_types": ["card"],
            "confirm": True,
            "metadata": metadata,
            "expand": ["payment_method"],
        }
        if token.startswith("tok_"):  # a card Token (Stripe.js / test tokens): wrap it in a PaymentMethod
            params["payment_method_data"] = {"type": "card", "card": {"token": token}}
        else:  # a PaymentMethod id (pm_...)
            params["payment_method"] = token
        try:
            intent = await self.client.v1.payment_intents.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        except stripe.CardError as exc:
            error = exc.error
            intent = _get(error, "payment_intent")
            card = _get(_get(error, "payment_method"), "card")
            return ChargeResult(
                succeeded=False,
                reference=str(_get(intent, "id", "")),
                brand=str(_get(card, "brand", "")),
                last4=str(_get(card, "last4", "")),
                decline_code=str(_get(error, "decline_code") or exc.code or "card_declined"),
                message=str(_get(error, "message", "Your card was declined.")),
            )
        except stripe.InvalidRequestError as exc:
            if exc.code in _INVALID_TOKEN_CODES or (exc.param or "").startswith("payment_method"):
                raise InvalidPaymentToken() from None
            raise InvalidArgument(
                "The payment provider refused the charge request.", code="PAYMENT_REQUEST_INVALID"
            ) from None
        except stripe.StripeError as exc:
            raise _provider_error(exc) from None
        return _result(intent, amount_cents)

    async def retrieve(self, reference: str) -> ChargeResult:
        self._require_key()
        try:
            intent = await self.client.v1.payment_intents.retrieve_async(
                reference, params={"expand": ["payment_method"]}
            )
        except stripe.StripeError as exc:
            raise _provider_error(exc) from None
        return _result(intent, int(_get(intent, "amount", 0)))

    async def refund(
        self, *, idempotency_key: str, charge_reference: str, amount_cents: int, reason: str
    ) -> RefundResult:
        self._require_key()
        params: dict[str, Any] = {
            "payment_intent": charge_reference,
            "amount": amount_cents,
            "metadata": {"reason": reason[:500]} if reason else {},
        }
        try:
            refund = await self.client.v1.refunds.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise _provider_error(exc, failed="The payment provider refused the refund", code="REFUND_FAILED") from None
        return RefundResult(str(_get(refund, "id", "")), int(_get(refund, "amount", amount_cents)))

    def parse_webhook(self, payload: bytes, signature: str) -> ProviderEvent:
        if not self.webhook_secret or not signature:
            raise InvalidSignature()
        try:
            stripe.Webhook.construct_event(payload, signature, self.webhook_secret, tolerance=self.tolerance)
        except stripe.SignatureVerificationError:
            raise InvalidSignature() from None
        except (ValueError, UnicodeDecodeError):
            raise InvalidArgument("The webhook body is not JSON.", code="INVALID_EVENT") from None
        return parse_event(json.loads(payload))

    async def aclose(self) -> None:
        close = getattr(self._http, "close_async", None)
        if close is not None:
            with contextlib.suppress(Exception):  # closing an idle client must not fail shutdown
                await close()
