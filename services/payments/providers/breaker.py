"""A circuit breaker in front of the payment provider (one per process).

closed     calls go through; `failures` consecutive failures (outage, timeout, connection error)
           open it. An answer (a decline, an invalid token, a refused refund) is not a failure:
           the provider is up.
open       calls fail fast with PAYMENT_PROVIDER_UNAVAILABLE (UNAVAILABLE + RetryInfo with the
           seconds left) without reaching the provider, for `reset_seconds`.
half-open  after the cool-down one trial call goes through (others still fail fast): a success
           closes the breaker, a failure opens it for another full cool-down.

A small class rather than a library: the failure classification and the error callers get are
ours, and asyncio needs no locking here (state changes happen between awaits)."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog

from services.payments.providers.base import ProviderUnavailable
from shop.lib.errors import Unavailable

log = structlog.get_logger("payments")

T = TypeVar("T")

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


def is_failure(exc: BaseException) -> bool:
    """The provider did not answer: an outage (UNAVAILABLE), a timeout, a broken connection."""
    return isinstance(exc, Unavailable | TimeoutError | ConnectionError)


class CircuitBreaker:
    def __init__(self, *, failures: int, reset_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        if failures < 1 or reset_seconds <= 0:
            raise ValueError("the breaker needs failures >= 1 and reset_seconds > 0")
        self.failures = failures
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._consecutive = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return CLOSED
        if self._clock() - self._opened_at >= self.reset_seconds:
            return HALF_OPEN
        return OPEN

    def reset(self) -> None:
        self._consecutive, self._opened_at, self._trial_in_flight = 0, None, False

    def check(self) -> None:
        """Raises PAYMENT_PROVIDER_UNAVAILABLE when a call now would fail fast (so that a caller
        can refuse before recording anything); takes no trial slot."""
        state = self.state
        if state == OPEN or (state == HALF_OPEN and self._trial_in_flight):
            raise self._open_error()

    async def call(self, function: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        self.check()
        trial = self.state == HALF_OPEN
        if trial:
            self._trial_in_flight = True
        try:
            result = await function(*args, **kwargs)
        except BaseException as exc:
            if is_failure(exc):
                self._failed()
            elif isinstance(exc, Exception):
                self._succeeded()  # an answer: the provider is up
            # (a cancelled call tells nothing about the provider)
            raise
        else:
            self._succeeded()
            return result
        finally:
            if trial:
                self._trial_in_flight = False

    def _failed(self) -> None:
        self._consecutive += 1
        if self._opened_at is not None or self._consecutive >= self.failures:
            # (a failed trial opens it again for a full cool-down)
            log.warning("provider.breaker_opened", failures=self._consecutive, reset_seconds=self.reset_seconds)
            self._opened_at = self._clock()

    def _succeeded(self) -> None:
        if self._opened_at is not None:
            log.info("provider.breaker_closed")
        self._consecutive, self._opened_at = 0, None

    def _open_error(self) -> ProviderUnavailable:
        left = self.reset_seconds if self._opened_at is None else self.reset_seconds - (self._clock() - self._opened_at)
        return ProviderUnavailable(
            "The payment provider keeps failing; calls are paused. Retry later.",
            details={"breaker": self.state},
            retry_after=max(1, math.ceil(left)),
        )
