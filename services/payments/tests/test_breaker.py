"""The provider circuit breaker on its own: closed → open after N consecutive failures → one trial
after the cool-down → closed on success, open again on failure. Answers are not failures."""

from __future__ import annotations

import asyncio

import pytest

from services.payments.providers.base import InvalidPaymentToken, ProviderUnavailable
from services.payments.providers.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def ok() -> str:
    return "ok"


async def down() -> str:
    raise ProviderUnavailable("The payment provider is unavailable: test.")


async def timeout() -> str:
    raise TimeoutError


async def refused() -> str:
    raise InvalidPaymentToken()


async def test_opens_after_consecutive_failures_and_fails_fast():
    clock = Clock()
    breaker = CircuitBreaker(failures=3, reset_seconds=30, clock=clock)
    calls = 0

    async def counted():
        nonlocal calls
        calls += 1
        return await down()

    for _ in range(2):
        with pytest.raises(ProviderUnavailable):
            await breaker.call(counted)
    assert breaker.state == CLOSED
    with pytest.raises(ProviderUnavailable):
        await breaker.call(counted)
    assert breaker.state == OPEN and calls == 3
    clock.now += 10
    for _ in range(5):
        with pytest.raises(ProviderUnavailable) as info:
            await breaker.call(counted)
        assert info.value.code == "PAYMENT_PROVIDER_UNAVAILABLE" and info.value.retry_after == 20
    with pytest.raises(ProviderUnavailable):
        breaker.check()
    assert calls == 3  # failed fast: the provider was not called


async def test_a_success_or_an_answer_resets_the_count():
    breaker = CircuitBreaker(failures=2, reset_seconds=30, clock=Clock())
    for step in (down, ok, down, refused, down, ok):
        with pytest.raises(Exception) if step is not ok else _nothing():
            await breaker.call(step)
        assert breaker.state == CLOSED  # never two failures in a row
    with pytest.raises(TimeoutError):
        await breaker.call(timeout)
    with pytest.raises(TimeoutError):
        await breaker.call(timeout)
    assert breaker.state == OPEN  # timeouts count as failures


async def test_one_trial_after_the_cool_down():
    clock = Clock()
    breaker = CircuitBreaker(failures=1, reset_seconds=5, clock=clock)
    with pytest.raises(ProviderUnavailable):
        await breaker.call(down)
    assert breaker.state == OPEN
    clock.now += 5
    assert breaker.state == HALF_OPEN
    breaker.check()  # a trial may go
    # the trial fails: open again for a full cool-down
    with pytest.raises(ProviderUnavailable):
        await breaker.call(down)
    assert breaker.state == OPEN
    clock.now += 5
    # while the trial is in flight, other calls fail fast; its success closes the breaker
    release = asyncio.Event()

    async def slow_ok():
        await release.wait()
        return "ok"

    trial = asyncio.ensure_future(breaker.call(slow_ok))
    await asyncio.sleep(0)
    with pytest.raises(ProviderUnavailable):
        await breaker.call(ok)
    release.set()
    assert await trial == "ok"
    assert breaker.state == CLOSED
    assert await breaker.call(ok) == "ok"


async def test_a_cancelled_trial_frees_the_slot():
    clock = Clock()
    breaker = CircuitBreaker(failures=1, reset_seconds=5, clock=clock)
    with pytest.raises(ProviderUnavailable):
        await breaker.call(down)
    clock.now += 5
    trial = asyncio.ensure_future(breaker.call(asyncio.sleep, 10))
    await asyncio.sleep(0)
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    assert await breaker.call(ok) == "ok"
    assert breaker.state == CLOSED


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
