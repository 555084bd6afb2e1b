"""The sandbox's test-only fault control (SHOP_SANDBOX_FAULTS_DIR, used by tests/chaos): refused in
production, a plan that makes the provider unavailable, slow or late, and a ledger that survives
the process (a new provider on the same directory knows every charge and refund)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from pydantic import ValidationError

from services.payments.config import PaymentsSettings
from services.payments.providers import build_provider
from services.payments.providers.base import ProviderUnavailable
from services.payments.providers.sandbox import SandboxProvider
from services.payments.providers.sandbox_faults import FaultControl, connect
from tests.harness import identity_settings

STRONG = {**identity_settings("payments"), "page_token_secret": "p" * 40, "sandbox_webhook_secret": "s" * 40}


def test_production_refuses_the_fault_control(tmp_path):
    with pytest.raises(ValidationError, match="SHOP_SANDBOX_FAULTS_DIR"):
        PaymentsSettings(env="production", sandbox_faults_dir=str(tmp_path), **STRONG)
    assert not PaymentsSettings(env="production", **STRONG).sandbox_faults_dir


def test_the_fault_control_needs_the_sandbox(tmp_path):
    with pytest.raises(ValidationError, match="SHOP_SANDBOX_FAULTS_DIR"):
        PaymentsSettings(payment_provider="stripe", sandbox_faults_dir=str(tmp_path))


def test_build_provider_wires_it(tmp_path):
    provider = build_provider(PaymentsSettings(sandbox_faults_dir=str(tmp_path)))
    assert isinstance(provider, SandboxProvider) and provider.faults is not None
    default = build_provider(PaymentsSettings())
    assert isinstance(default, SandboxProvider) and default.faults is None


def provider(directory) -> SandboxProvider:
    return SandboxProvider(webhook_secret="s" * 40, faults=FaultControl(directory))


def plan(directory, **values) -> None:
    (directory / "plan.json").write_text(json.dumps(values))


async def charge(sandbox, key, token="tok_visa"):
    return await sandbox.charge(
        idempotency_key=key,
        amount_cents=1234,
        currency_code="USD",
        token=token,
        metadata={"order_id": key, "user_id": "u1"},
    )


async def test_the_ledger_survives_the_process(tmp_path):
    first = await charge(provider(tmp_path), "order-1")
    again = await charge(provider(tmp_path), "order-1")  # "after a restart"
    assert first == again and first.succeeded and first.captured_cents == 1234
    refund = await provider(tmp_path).refund(
        idempotency_key="r1", charge_reference=first.reference, amount_cents=1234, reason="x"
    )
    assert (
        await provider(tmp_path).refund(
            idempotency_key="r1", charge_reference=first.reference, amount_cents=1234, reason="x"
        )
        == refund
    )
    db = connect(tmp_path / "ledger.sqlite3")
    assert db.execute("SELECT count(*) FROM charges").fetchone()[0] == 1
    kinds = [row[0] for row in db.execute("SELECT type FROM events ORDER BY available_at")]
    assert kinds == ["payment_intent.succeeded", "charge.refunded"]


async def test_unavailable_charges_nothing_unless_charge_first(tmp_path):
    sandbox = provider(tmp_path)
    plan(tmp_path, unavailable=True)
    with pytest.raises(ProviderUnavailable):
        await charge(sandbox, "order-2")
    assert sandbox.faults.charge("order-2") is None
    plan(tmp_path, unavailable=True, charge_first=True)
    await asyncio.sleep(0.01)
    with pytest.raises(ProviderUnavailable):
        await charge(sandbox, "order-3")
    assert sandbox.faults.charge("order-3").outcome == "succeeded"  # taken, answer lost
    plan(tmp_path)
    await asyncio.sleep(0.01)
    assert (await charge(sandbox, "order-3")).succeeded


async def test_late_charges_answer_pending_then_the_decision(tmp_path):
    sandbox = provider(tmp_path)
    plan(tmp_path, late_seconds=0.3, late_outcome="declined")
    pending = await charge(sandbox, "order-4")
    assert pending.pending and not pending.succeeded
    assert (await sandbox.retrieve(pending.reference)).pending
    await asyncio.sleep(0.35)
    decided = await sandbox.retrieve(pending.reference)
    assert not decided.pending and not decided.succeeded and decided.decline_code
    event = connect(tmp_path / "ledger.sqlite3").execute("SELECT type, available_at FROM events").fetchone()
    assert event[0] == "payment_intent.payment_failed" and event[1] > time.time() - 1


async def test_delay(tmp_path):
    sandbox = provider(tmp_path)
    plan(tmp_path, delay_seconds=0.2)
    started = time.monotonic()
    await charge(sandbox, "order-5")
    assert time.monotonic() - started >= 0.2
    assert sandbox.faults.charge("order-5") is not None
