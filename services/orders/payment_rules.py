"""The payment provider's token rule, kept by orders: a checkout refuses a token the provider can
never charge before it records anything, without an RPC to payments per checkout.

Payments hands the rule out as data (GetPaymentRules: a pattern a chargeable token matches in
full, and how long it may be kept); the same pattern is what payments' own CheckPaymentMethod and
CreateCharge apply, so a token refused here would be refused there. One request at a time asks for
it when it is missing or old; the others wait for that answer. A payments service of the previous
version (UNIMPLEMENTED) is asked CheckPaymentMethod per checkout instead, as before.
"""

from __future__ import annotations

import asyncio
import re
import time

import grpc

from shop.lib.clients import ServiceClients
from shop.lib.errors import InvalidArgument
from shop.payments.v1 import payments_pb2

INVALID_TOKEN_MESSAGE = "The payment token is not valid."


class PaymentRules:
    def __init__(self, clients: ServiceClients) -> None:
        self.clients = clients
        self._pattern: re.Pattern[str] | None = None
        self._ask_each_time = False  # payments of the previous version: no GetPaymentRules
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def check(self, method: str, token: str) -> None:
        """INVALID_PAYMENT_TOKEN (400, `payment.token`) for a token the provider can never charge;
        the method and the token's shape were checked already (domain.validate_payment)."""
        pattern = await self._current()
        if pattern is None:
            await self.clients.payments.CheckPaymentMethod(
                payments_pb2.CheckPaymentMethodRequest(method=method, token=token)
            )
        elif pattern.fullmatch(token) is None:
            raise InvalidArgument(
                INVALID_TOKEN_MESSAGE, code="INVALID_PAYMENT_TOKEN", fields={"payment.token": [INVALID_TOKEN_MESSAGE]}
            )

    async def _current(self) -> re.Pattern[str] | None:
        """The pattern while it is fresh, else asked of payments (None: ask CheckPaymentMethod)."""
        if time.monotonic() < self._expires_at:
            return None if self._ask_each_time else self._pattern
        async with self._lock:
            if time.monotonic() >= self._expires_at:  # else another request has just asked
                await self._refresh()
        return None if self._ask_each_time else self._pattern

    async def _refresh(self) -> None:
        try:
            rules = await self.clients.payments.GetPaymentRules(payments_pb2.GetPaymentRulesRequest())
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise  # payments is down: so is the checkout (it could not charge either)
            self._ask_each_time, self._expires_at = True, time.monotonic() + 60
            return
        self._pattern = re.compile(rules.token_pattern)
        self._ask_each_time = False
        self._expires_at = time.monotonic() + max(1, rules.max_age_seconds)
