"""Tests only: a controllable, persistent sandbox (the fault campaign, tests/chaos).

`SHOP_SANDBOX_FAULTS_DIR` names a directory with two files:

- `plan.json`, rewritten at any moment by the test's fault injector (read again when it changes):
  `{"delay_seconds": 0, "unavailable": false, "charge_first": false, "late_seconds": 0,
  "late_outcome": "token"}`.
  - `delay_seconds`: every charge, refund and retrieve answers this late (a charge is decided and
    recorded first, as a real provider does while its caller's deadline runs out);
  - `unavailable`: calls raise ProviderUnavailable; with `charge_first` a new charge is made and
    recorded before the error (the outcome is unknown to the caller, the money may be taken);
  - `late_seconds` > 0: a new charge answers PENDING and is decided that many seconds later:
    `late_outcome` `succeeded`, `declined`, or `token` (as the token says). Its webhook event
    becomes deliverable then; `retrieve` reports the decision from then on.
- `ledger.sqlite3`: the provider's side, which survives a SIGKILL of the payments process as a
  real provider's idempotency does: `charges` (one per idempotency key), `refunds` (one per
  key), and `events`, the webhooks the provider owes (`available_at`), delivered by the test (the
  provider's webhook sender lives outside the shop, as a real one does).

Production refuses the setting (`PaymentsSettings.check_sandbox_faults`).
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    idempotency_key TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    reference TEXT NOT NULL UNIQUE,
    amount_cents INTEGER NOT NULL,
    token TEXT NOT NULL,
    outcome TEXT NOT NULL,          -- succeeded | declined
    decide_at REAL NOT NULL,        -- unix time the outcome is known (pending before)
    brand TEXT NOT NULL,
    last4 TEXT NOT NULL,
    decline_code TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS refunds (
    idempotency_key TEXT PRIMARY KEY,
    reference TEXT NOT NULL,
    charge_reference TEXT NOT NULL,
    amount_cents INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    order_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    body TEXT NOT NULL,
    available_at REAL NOT NULL
);
"""

DEFAULT_PLAN = {
    "delay_seconds": 0.0,
    "unavailable": False,
    "charge_first": False,
    "late_seconds": 0.0,
    "late_outcome": "token",
}


@dataclass(frozen=True)
class ChargeRow:
    idempotency_key: str
    order_id: str
    user_id: str
    reference: str
    amount_cents: int
    token: str
    outcome: str
    decide_at: float
    brand: str
    last4: str
    decline_code: str


def connect(path: str | Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=10, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(SCHEMA)
    return conn


class FaultControl:
    """The plan (re-read when plan.json changes) and the ledger of one sandbox process."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.plan_path = self.directory / "plan.json"
        self.db = connect(self.directory / "ledger.sqlite3")
        self._plan_stamp: tuple[int, int] | None = None
        self._plan = dict(DEFAULT_PLAN)

    def plan(self) -> dict:
        try:
            stat = self.plan_path.stat()
        except FileNotFoundError:
            return dict(DEFAULT_PLAN)
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._plan_stamp:
            try:
                self._plan = {**DEFAULT_PLAN, **json.loads(self.plan_path.read_text())}
                self._plan_stamp = stamp
            except (ValueError, OSError):  # half-written: keep the last plan
                pass
        return dict(self._plan)

    # -- charges -----------------------------------------------------------------------------

    def charge(self, key: str) -> ChargeRow | None:
        row = self.db.execute(
            "SELECT idempotency_key, order_id, user_id, reference, amount_cents, token, outcome, decide_at, "
            "brand, last4, decline_code FROM charges WHERE idempotency_key = ?",
            (key,),
        ).fetchone()
        return ChargeRow(*row) if row else None

    def charge_by_reference(self, reference: str) -> ChargeRow | None:
        row = self.db.execute("SELECT idempotency_key FROM charges WHERE reference = ?", (reference,)).fetchone()
        return self.charge(row[0]) if row else None

    def record_charge(self, row: ChargeRow) -> ChargeRow:
        """Inserts the charge and its webhook event in one transaction; the stored one if the key
        is known already."""
        now = time.time()
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            existing = self.charge(row.idempotency_key)
            if existing is not None:
                return existing
            self.db.execute(
                "INSERT INTO charges VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.idempotency_key,
                    row.order_id,
                    row.user_id,
                    row.reference,
                    row.amount_cents,
                    row.token,
                    row.outcome,
                    row.decide_at,
                    row.brand,
                    row.last4,
                    row.decline_code,
                    now,
                ),
            )
            succeeded = row.outcome == "succeeded"
            intent = {
                "id": row.reference,
                "object": "payment_intent",
                "amount": row.amount_cents,
                "amount_received": row.amount_cents if succeeded else 0,
                "status": "succeeded" if succeeded else "requires_payment_method",
                "metadata": {"order_id": row.order_id, "user_id": row.user_id},
                "last_payment_error": None
                if succeeded
                else {"code": "card_declined", "decline_code": row.decline_code},
            }
            kind = "payment_intent.succeeded" if succeeded else "payment_intent.payment_failed"
            self._event(kind, intent, row.order_id, row.user_id, max(row.decide_at, now))
        return row

    # -- refunds -----------------------------------------------------------------------------

    def refund(self, key: str) -> tuple[str, int] | None:
        row = self.db.execute(
            "SELECT reference, amount_cents FROM refunds WHERE idempotency_key = ?", (key,)
        ).fetchone()
        return (row[0], int(row[1])) if row else None

    def record_refund(self, key: str, charge_reference: str, amount_cents: int) -> tuple[str, int]:
        now = time.time()
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            existing = self.refund(key)
            if existing is not None:
                return existing
            reference = f"sbx_re_{uuid.uuid4().hex}"
            self.db.execute(
                "INSERT INTO refunds VALUES (?, ?, ?, ?, ?)", (key, reference, charge_reference, amount_cents, now)
            )
            charge = self.charge_by_reference(charge_reference)
            if charge is not None:
                total = self.db.execute(
                    "SELECT COALESCE(SUM(amount_cents), 0) FROM refunds WHERE charge_reference = ?", (charge_reference,)
                ).fetchone()[0]
                obj = {
                    "id": f"ch_{charge.reference}",
                    "object": "charge",
                    "payment_intent": charge.reference,
                    "amount": charge.amount_cents,
                    "amount_captured": charge.amount_cents,
                    "amount_refunded": int(total),
                    "refunded": int(total) >= charge.amount_cents,
                    "metadata": {"order_id": charge.order_id, "user_id": charge.user_id},
                }
                self._event("charge.refunded", obj, charge.order_id, charge.user_id, now)
        return reference, amount_cents

    def _event(self, kind: str, obj: dict, order_id: str, user_id: str, available_at: float) -> None:
        event_id = f"evt_{uuid.uuid4().hex}"
        body = {"id": event_id, "object": "event", "type": kind, "created": int(available_at), "data": {"object": obj}}
        self.db.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
            (event_id, kind, order_id, user_id, json.dumps(body), available_at),
        )
