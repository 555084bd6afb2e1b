"""The provider interface: charge a card token, refund a charge, verify and parse a webhook."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from services.payments.domain import ProviderEvent
from shop.lib.errors import InvalidArgument, Unavailable


@dataclass(frozen=True)
class ChargeResult:
    """What the provider did with a charge. `succeeded` False means declined (`decline_code`)."""

    succeeded: bool
    reference: str
    captured_cents: int = 0
    brand: str = ""
    last4: str = ""
    decline_code: str = ""
    message: str = ""
    # True when the provider has not decided yet (e.g. Stripe "processing"); a webhook finishes it.
    pending: bool = False


@dataclass(frozen=True)
class RefundResult:
    reference: str
    amount_cents: int


class InvalidPaymentToken(InvalidArgument):
    default_code = "INVALID_PAYMENT_TOKEN"

    def __init__(self, message: str = "The payment token is not valid.") -> None:
        super().__init__(message, fields={"payment.token": [message]})


class ProviderUnavailable(Unavailable):
    default_code = "PAYMENT_PROVIDER_UNAVAILABLE"


def check_token_pattern(token_pattern: str, token: str) -> None:
    """The one token check: InvalidPaymentToken unless `token` matches the provider's pattern in
    full (providers use it, and orders applies the same pattern from GetPaymentRules)."""
    if re.fullmatch(token_pattern, token) is None:
        raise InvalidPaymentToken()


@runtime_checkable
class PaymentProvider(Protocol):
    name: str
    # A regular expression every token this provider can ever charge matches in full (no network):
    # GetPaymentRules hands it to callers, `check_token` applies it.
    token_pattern: str

    async def charge(
        self,
        *,
        idempotency_key: str,
        amount_cents: int,
        currency_code: str,
        token: str,
        metadata: dict[str, str],
    ) -> ChargeResult:
        """Charges `token` once per `idempotency_key` (the order id): a repeat returns the first
        result. A declined card is a result, not an exception; an unknown token raises
        InvalidPaymentToken; a provider outage raises ProviderUnavailable."""
        ...

    def check_token(self, token: str) -> None:
        """Raises InvalidPaymentToken for a token this provider can never charge (no network):
        `check_token_pattern(self.token_pattern, token)`."""
        ...

    async def retrieve(self, reference: str) -> ChargeResult:
        """The current state of a charge made earlier (a PENDING one is asked again on a repeat)."""
        ...

    async def refund(
        self, *, idempotency_key: str, charge_reference: str, amount_cents: int, reason: str
    ) -> RefundResult:
        """Refunds part or all of a charge, once per `idempotency_key` (the refund's request id)."""
        ...

    def parse_webhook(self, payload: bytes, signature: str) -> ProviderEvent:
        """Verifies the signature header over the raw body (InvalidSignature) and parses the event."""
        ...

    async def aclose(self) -> None: ...
