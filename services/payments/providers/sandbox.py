"""The sandbox provider (the default): deterministic test tokens, no network.

tok_visa / tok_mastercard succeed (visa 4242 / mastercard 4444); tok_chargeDeclined and
tok_chargeDeclinedInsufficientFunds are declined (card_declined / insufficient_funds); anything
else is INVALID_PAYMENT_TOKEN. Charges and refunds are idempotent by key within the process (an
in-memory ledger, like the provider's own idempotency; concurrent charges of one key share the
first one). Webhooks use Stripe's signature scheme with `sandbox_webhook_secret`."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from services.payments.domain import ProviderEvent, parse_event, verify_signature
from services.payments.providers.base import ChargeResult, InvalidPaymentToken, RefundResult
from shop.lib.errors import NotFound

SUCCEEDING = {"tok_visa": ("visa", "4242"), "tok_mastercard": ("mastercard", "4444")}
DECLINING = {
    "tok_chargeDeclined": ("visa", "0002", "card_declined"),
    "tok_chargeDeclinedInsufficientFunds": ("visa", "9995", "insufficient_funds"),
}


class SandboxProvider:
    name = "sandbox"

    def __init__(self, *, webhook_secret: str, tolerance: int = 300) -> None:
        self.webhook_secret = webhook_secret
        self.tolerance = tolerance
        self._charges: dict[str, ChargeResult] = {}
        self._refunds: dict[str, RefundResult] = {}
        self._charging: dict[str, asyncio.Future[ChargeResult]] = {}
        # How many distinct charges the "provider" made (tests prove retries never double-charge).
        self.charge_count = 0
        self.refund_count = 0
        # Test hook: seconds each charge and refund "spends at the provider" (0: none).
        self.delay_seconds = 0.0

    async def charge(
        self,
        *,
        idempotency_key: str,
        amount_cents: int,
        currency_code: str,
        token: str,
        metadata: dict[str, str],
    ) -> ChargeResult:
        """One charge per key, also for concurrent callers (as a real provider's idempotency): the
        first caller's charge is shared by every caller of the same key while it is in flight."""
        self.check_token(token)
        if idempotency_key in self._charges:
            return self._charges[idempotency_key]
        in_flight = self._charging.get(idempotency_key)
        if in_flight is None:
            in_flight = asyncio.ensure_future(self._charge(idempotency_key, amount_cents, token))
            self._charging[idempotency_key] = in_flight
            in_flight.add_done_callback(lambda _: self._charging.pop(idempotency_key, None))
        return await asyncio.shield(in_flight)

    async def _charge(self, idempotency_key: str, amount_cents: int, token: str) -> ChargeResult:
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        reference = f"sbx_pi_{uuid.uuid4().hex}"
        if token in SUCCEEDING:
            brand, last4 = SUCCEEDING[token]
            result = ChargeResult(True, reference, captured_cents=amount_cents, brand=brand, last4=last4)
        else:
            brand, last4, code = DECLINING[token]
            result = ChargeResult(
                False, reference, brand=brand, last4=last4, decline_code=code, message="Your card was declined."
            )
        self._charges[idempotency_key] = result
        self.charge_count += 1
        return result

    def check_token(self, token: str) -> None:
        if token not in SUCCEEDING and token not in DECLINING:
            raise InvalidPaymentToken()

    async def retrieve(self, reference: str) -> ChargeResult:
        for result in self._charges.values():
            if result.reference == reference:
                return result
        raise NotFound("No such sandbox charge.", code="PAYMENT_NOT_FOUND")

    async def refund(
        self, *, idempotency_key: str, charge_reference: str, amount_cents: int, reason: str
    ) -> RefundResult:
        if idempotency_key not in self._refunds:
            if self.delay_seconds:
                await asyncio.sleep(self.delay_seconds)
        if idempotency_key not in self._refunds:
            self._refunds[idempotency_key] = RefundResult(f"sbx_re_{uuid.uuid4().hex}", amount_cents)
            self.refund_count += 1
        return self._refunds[idempotency_key]

    def parse_webhook(self, payload: bytes, signature: str) -> ProviderEvent:
        verify_signature(payload, signature, self.webhook_secret, now=time.time(), tolerance=self.tolerance)
        try:
            body = json.loads(payload)
        except ValueError:
            from shop.lib.errors import InvalidArgument

            raise InvalidArgument("The webhook body is not JSON.", code="INVALID_EVENT") from None
        return parse_event(body)

    async def aclose(self) -> None:
        return None
