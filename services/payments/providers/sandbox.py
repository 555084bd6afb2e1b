"""The sandbox provider (the default): deterministic test tokens, no network.

tok_visa / tok_mastercard succeed (visa 4242 / mastercard 4444); tok_chargeDeclined and
tok_chargeDeclinedInsufficientFunds are declined (card_declined / insufficient_funds); anything
else is INVALID_PAYMENT_TOKEN. Charges and refunds are idempotent by key within the process (an
in-memory ledger, like the provider's own idempotency; concurrent charges of one key share the
first one). Webhooks use Stripe's signature scheme with `sandbox_webhook_secret`.

Tests only: with a `FaultControl` (SHOP_SANDBOX_FAULTS_DIR, see sandbox_faults.py) the ledger is a
SQLite file that survives the process, and a fault plan makes the provider slow, unavailable or
late (PENDING, decided later, told by a webhook)."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid

from services.payments.domain import ProviderEvent, parse_event, verify_signature
from services.payments.providers.base import (
    ChargeResult,
    ProviderUnavailable,
    RefundResult,
    check_token_pattern,
)
from shop.lib.errors import NotFound

SUCCEEDING = {"tok_visa": ("visa", "4242"), "tok_mastercard": ("mastercard", "4444")}
DECLINING = {
    "tok_chargeDeclined": ("visa", "0002", "card_declined"),
    "tok_chargeDeclinedInsufficientFunds": ("visa", "9995", "insufficient_funds"),
}
# The sandbox charges its test tokens and nothing else.
TOKEN_PATTERN = "|".join(re.escape(token) for token in sorted({*SUCCEEDING, *DECLINING}))


class SandboxProvider:
    name = "sandbox"
    token_pattern = TOKEN_PATTERN

    def __init__(self, *, webhook_secret: str, tolerance: int = 300, faults=None) -> None:
        # Tests only: the fault plan and the persistent ledger (sandbox_faults.FaultControl).
        self.faults = faults
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
        if self.faults is not None:
            stored = self.faults.charge(idempotency_key)
            if stored is not None:
                await self._fault_delay()
                return self._from_row(stored)
        elif idempotency_key in self._charges:
            return self._charges[idempotency_key]
        in_flight = self._charging.get(idempotency_key)
        if in_flight is None:
            if self.faults is not None:
                in_flight = asyncio.ensure_future(self._faulty_charge(idempotency_key, amount_cents, token, metadata))
            else:
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

    # -- tests only: the fault plan and the persistent ledger -----------------------------------

    async def _fault_delay(self) -> None:
        plan = self.faults.plan()
        if plan["delay_seconds"]:
            await asyncio.sleep(float(plan["delay_seconds"]))
        if plan["unavailable"]:
            raise ProviderUnavailable("The sandbox provider is unavailable (fault plan).")

    async def _faulty_charge(
        self, idempotency_key: str, amount_cents: int, token: str, metadata: dict[str, str]
    ) -> ChargeResult:
        from services.payments.providers.sandbox_faults import ChargeRow

        plan = self.faults.plan()
        if plan["unavailable"] and not plan["charge_first"]:
            raise ProviderUnavailable("The sandbox provider is unavailable (fault plan).")
        late = float(plan["late_seconds"] or 0)
        outcome = "succeeded" if token in SUCCEEDING else "declined"
        if late > 0 and plan["late_outcome"] in ("succeeded", "declined"):
            outcome = plan["late_outcome"]
        brand, last4 = SUCCEEDING.get(token) or DECLINING[token][:2]
        decline_code = "" if outcome == "succeeded" else (DECLINING.get(token) or ("", "", "card_declined"))[2]
        row = self.faults.record_charge(
            ChargeRow(
                idempotency_key=idempotency_key,
                order_id=metadata.get("order_id", idempotency_key),
                user_id=metadata.get("user_id", ""),
                reference=f"sbx_pi_{uuid.uuid4().hex}",
                amount_cents=amount_cents,
                token=token,
                outcome=outcome,
                decide_at=time.time() + late,
                brand=brand,
                last4=last4,
                decline_code=decline_code,
            )
        )
        self.charge_count += 1
        await self._fault_delay()
        return self._from_row(row)

    @staticmethod
    def _from_row(row) -> ChargeResult:
        if time.time() < row.decide_at:
            return ChargeResult(False, row.reference, brand=row.brand, last4=row.last4, pending=True)
        if row.outcome == "succeeded":
            return ChargeResult(True, row.reference, captured_cents=row.amount_cents, brand=row.brand, last4=row.last4)
        return ChargeResult(
            False,
            row.reference,
            brand=row.brand,
            last4=row.last4,
            decline_code=row.decline_code,
            message="Your card was declined.",
        )

    def check_token(self, token: str) -> None:
        check_token_pattern(self.token_pattern, token)

    async def retrieve(self, reference: str) -> ChargeResult:
        if self.faults is not None:
            await self._fault_delay()
            row = self.faults.charge_by_reference(reference)
            if row is None:
                raise NotFound("No such sandbox charge.", code="PAYMENT_NOT_FOUND")
            return self._from_row(row)
        for result in self._charges.values():
            if result.reference == reference:
                return result
        raise NotFound("No such sandbox charge.", code="PAYMENT_NOT_FOUND")

    async def refund(
        self, *, idempotency_key: str, charge_reference: str, amount_cents: int, reason: str
    ) -> RefundResult:
        if self.faults is not None:
            stored = self.faults.refund(idempotency_key)
            if stored is None:
                plan = self.faults.plan()
                if plan["unavailable"] and not plan["charge_first"]:
                    raise ProviderUnavailable("The sandbox provider is unavailable (fault plan).")
                stored = self.faults.record_refund(idempotency_key, charge_reference, amount_cents)
                self.refund_count += 1
            await self._fault_delay()
            return RefundResult(*stored)
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
