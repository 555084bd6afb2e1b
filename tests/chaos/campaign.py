"""A Jepsen-style fault campaign of the checkout (issue 9), seeded and reproducible.

One seed → one `random.Random(seed)` that decides everything the campaign chooses: the products
and their (small) stock, the buyers (at least 20), what each buys, with which card, when it
starts, whether it cancels after paying, and the fault schedule: when which fault happens and
its parameters. Timing still varies from run to run (a fault lands in whatever is in flight).

Faults (tests/chaos/stack.py runs every service as a process):
- `kill_orders`, `kill_catalog`, `kill_payments`: SIGKILL, down for a while, started again on the
  same port with the same database;
- `provider_slow` (answers later than the orders service's deadline, the charge already made),
  `provider_unavailable` (outage; sometimes after charging, the answer lost), `provider_late`
  (answers PENDING; the outcome, SUCCEEDED or DECLINED, is decided seconds later and told by a
  webhook), through the sandbox's fault plan;
- webhooks: every event the provider owes (sandbox ledger) is delivered by the campaign acting as
  the provider's sender: after a random delay (so out of order), some twice, redelivered until
  answered 200 (as providers do);
- `expire_reservations`: RESERVED reservations of in-flight orders get `expires_at` in the past
  in the catalog's database; its sweep (every second here) releases them;
- `cancel_inflight`: POST /api/v1/orders/{id}/cancel of an order still PENDING, as its owner.

Then faults stop, everything runs, recovery gets up to 60 s, and the invariants are checked in
the databases (and the sandbox's ledger, the provider's own books): see `check_invariants`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from services.payments.domain import signature_header
from services.payments.providers.sandbox_faults import connect as connect_ledger
from tests.chaos.stack import ADMIN_EMAIL, ADMIN_PASSWORD, WEBHOOK_SECRET, Stack

ADDRESS = {
    "firstName": "Ada",
    "lastName": "Lovelace",
    "line1": "1 Main Street",
    "city": "London",
    "postalCode": "N1 1AA",
    "country": "GB",
}
FAULT_KINDS = (
    "kill_orders",
    "kill_catalog",
    "kill_payments",
    "provider_slow",
    "provider_unavailable",
    "provider_late",
    "expire_reservations",
    "cancel_inflight",
)
RETRYABLE_STATUSES = {500, 502, 503, 504}
KEPT_STATUSES = {"PAID", "PROCESSING", "SHIPPED", "DELIVERED"}
SOLD_STATUSES = {"PAID", "PROCESSING", "SHIPPED"}


@dataclass
class Config:
    buyers: int = 24
    products: int = 3
    run_seconds: float = 20.0
    recovery_seconds: float = 60.0
    replay_sample: int = 8


@dataclass
class Buyer:
    index: int
    lines: list[tuple[int, int]]  # (product index, quantity)
    token: str
    start_at: float
    cancel_after_paid: bool
    key: str
    user: dict[str, Any] = field(default_factory=dict)
    answers: list[int | str] = field(default_factory=list)
    final: tuple[int, str, str | None] | None = None  # (HTTP status, error code or "", order id)
    final_body: dict | None = None
    cancel_answers: list[int | str] = field(default_factory=list)

    @property
    def user_id(self) -> str:
        return self.user["user"]["id"]

    def body(self) -> dict:
        return {"shippingAddress": ADDRESS, "payment": {"method": "card", "token": self.token}}


@dataclass
class Fault:
    at: float
    kind: str
    params: dict[str, Any]


@dataclass
class Violation:
    invariant: str
    subject: str  # an order id, a product id
    detail: str

    def __str__(self) -> str:
        return f"[{self.invariant}] {self.subject}: {self.detail}"


@dataclass
class SeedReport:
    seed: int
    buyers: int = 0
    checkouts: int = 0
    outcomes: collections.Counter = field(default_factory=collections.Counter)
    answers: collections.Counter = field(default_factory=collections.Counter)
    faults: collections.Counter = field(default_factory=collections.Counter)
    fault_log: list[str] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the campaign itself failed (not an invariant)
    orders_by_status: collections.Counter = field(default_factory=collections.Counter)
    settled_after: float | None = None
    seconds: float = 0.0

    def render(self) -> str:
        lines = [
            f"seed {self.seed}: {self.buyers} buyers, {self.checkouts} checkouts attempted, {self.seconds:.0f} s",
            f"  final answers: {dict(sorted(self.outcomes.items()))}",
            f"  every answer:  {dict(sorted(self.answers.items()))}",
            f"  orders:        {dict(sorted(self.orders_by_status.items()))}",
            f"  faults:        {dict(sorted(self.faults.items()))}",
            "  settled:       "
            + (
                f"after {self.settled_after:.1f} s"
                if self.settled_after is not None
                else "NOT within the recovery window"
            ),
            f"  violations:    {len(self.violations)}",
        ]
        lines += [f"    - {violation}" for violation in self.violations]
        lines += [f"  CAMPAIGN ERROR: {error}" for error in self.errors]
        return "\n".join(lines)


def _key(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class Campaign:
    """One seed against a running `Stack` (shared by the seeds of one run; every seed makes its
    own products, users and orders and checks only those)."""

    def __init__(self, stack: Stack, seed: int, config: Config | None = None) -> None:
        self.stack = stack
        self.seed = seed
        self.config = config or Config()
        self.rng = random.Random(seed)
        self.report = SeedReport(seed)
        self._client: httpx.AsyncClient | None = None  # the gateway's, while run() runs
        self.admin_headers: dict[str, str] = {}
        self.products: list[dict[str, Any]] = []
        self.buyers: list[Buyer] = []
        self.schedule: list[Fault] = []
        self.by_user: dict[str, Buyer] = {}
        self._plan_version = 0
        self._restarting: dict[str, asyncio.Lock] = {}
        self._delivered: set[str] = set()
        self._seen_events: set[str] = set()
        self._first_delivery: dict[str, float] = {}
        self._event_order: dict[str, list[str]] = collections.defaultdict(list)  # order id → event ids as made
        self._webhook_tasks: set[asyncio.Task] = set()
        self._stop_webhooks = asyncio.Event()
        self._t0 = 0.0

    # -- the plan: everything the seed decides ---------------------------------------------------

    def plan(self) -> None:
        rng, config = self.rng, self.config
        for _ in range(config.products):
            self.products.append({"stock": rng.randint(3, 6), "price": rng.choice([1500, 2500, 4000, 7000, 12000])})
        tokens = (
            ["tok_visa"] * 14
            + ["tok_mastercard"] * 2
            + ["tok_chargeDeclined"] * 2
            + ["tok_chargeDeclinedInsufficientFunds"]
        )
        for index in range(config.buyers):
            count = 1 if rng.random() < 0.7 else 2
            chosen = rng.sample(range(config.products), count)
            lines = [(product, 1 if rng.random() < 0.75 else 2) for product in chosen]
            self.buyers.append(
                Buyer(
                    index=index,
                    lines=lines,
                    token=rng.choice(tokens),
                    start_at=rng.uniform(0, config.run_seconds * 0.75),
                    cancel_after_paid=rng.random() < 0.15,
                    key=_key(rng),
                )
            )
        count = rng.randint(7, 11)
        times = sorted(rng.uniform(0.5, config.run_seconds) for _ in range(count))
        for at in times:
            kind = rng.choice(FAULT_KINDS)
            params: dict[str, Any] = {}
            if kind.startswith("kill_"):
                params = {"down_seconds": round(rng.uniform(0.2, 3.0), 2)}
            elif kind == "provider_slow":
                params = {"delay_seconds": round(rng.uniform(5.0, 7.0), 2), "for_seconds": round(rng.uniform(2, 6), 2)}
            elif kind == "provider_unavailable":
                params = {"charge_first": rng.random() < 0.5, "for_seconds": round(rng.uniform(1, 5), 2)}
            elif kind == "provider_late":
                params = {
                    "late_seconds": round(rng.uniform(1.5, 6.0), 2),
                    "late_outcome": rng.choice(["token", "token", "succeeded", "declined"]),
                    "for_seconds": round(rng.uniform(2, 7), 2),
                }
            elif kind == "expire_reservations":
                params = {"fraction": round(rng.uniform(0.3, 1.0), 2), "pick": rng.random()}
            elif kind == "cancel_inflight":
                params = {"count": rng.randint(1, 3), "pick": rng.random()}
            self.schedule.append(Fault(round(at, 2), kind, params))

    @property
    def http(self) -> httpx.AsyncClient:
        assert self._client is not None, "the campaign is not running: run() first"
        return self._client

    # -- set-up through the gateway --------------------------------------------------------------

    async def _post(self, url: str, **kwargs: Any) -> httpx.Response:
        """A set-up request, repeated while the shop answers 5xx (a channel still reconnecting to
        a service restarted by the previous seed)."""
        deadline = time.monotonic() + 60
        while True:
            try:
                response = await self.http.post(url, **kwargs)
                if response.status_code not in RETRYABLE_STATUSES:
                    return response
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                return response
            await asyncio.sleep(0.5)

    async def wait_ready(self) -> None:
        """Until the gateway sees every service SERVING (its /readyz)."""
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await self.http.get("/readyz", timeout=5)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway did not see every service SERVING within 60 s")
            await asyncio.sleep(0.5)

    async def setup(self) -> None:
        await self.wait_ready()
        response = await self._post("/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        assert response.status_code == 200, response.text
        self.admin_headers = {"Authorization": f"Bearer {response.json()['data']['tokens']['accessToken']}"}
        response = await self._post(
            "/api/v1/categories", json={"slug": "chaos", "name": "Chaos"}, headers=self.admin_headers
        )
        assert response.status_code in (201, 409), response.text
        for index, product in enumerate(self.products):
            sku = f"CHAOS-{self.seed}-{index}-{uuid.uuid4().hex[:6].upper()}"
            response = await self._post(
                "/api/v1/products",
                headers=self.admin_headers,
                json={
                    "sku": sku,
                    "name": f"Chaos product {sku}",
                    "description": "Made by the fault campaign.",
                    "priceCents": product["price"],
                    "currency": "USD",
                    "categorySlug": "chaos",
                    "stock": product["stock"],
                },
            )
            assert response.status_code == 201, response.text
            product["id"] = response.json()["data"]["id"]
        semaphore = asyncio.Semaphore(8)

        async def prepare(buyer: Buyer) -> None:
            async with semaphore:
                email = f"chaos-{self.seed}-{buyer.index}-{uuid.uuid4().hex[:8]}@example.com"
                response = await self._post(
                    "/api/v1/auth/register",
                    json={
                        "email": email,
                        "password": "Passw0rd!x",
                        "firstName": "Chaos",
                        "lastName": f"Buyer{buyer.index}",
                    },
                )
                assert response.status_code == 201, response.text
                data = response.json()["data"]
                buyer.user = {**data, "headers": {"Authorization": f"Bearer {data['tokens']['accessToken']}"}}
                for product, quantity in buyer.lines:
                    response = await self._post(
                        "/api/v1/cart/items",
                        headers=buyer.user["headers"],
                        json={"productId": self.products[product]["id"], "quantity": quantity},
                    )
                    assert response.status_code == 200, response.text

        await asyncio.gather(*(prepare(buyer) for buyer in self.buyers))
        self.by_user = {buyer.user_id: buyer for buyer in self.buyers}
        self.report.buyers = len(self.buyers)

    # -- the buyers ------------------------------------------------------------------------------

    def _elapsed(self) -> float:
        return time.monotonic() - self._t0

    async def _sleep_until(self, at: float) -> None:
        delay = at - self._elapsed()
        if delay > 0:
            await asyncio.sleep(delay)

    async def buy(self, buyer: Buyer, give_up_at: float) -> None:
        await self._sleep_until(buyer.start_at)
        self.report.checkouts += 1
        headers = {**buyer.user["headers"], "Idempotency-Key": buyer.key}
        while True:
            try:
                response = await self.http.post("/api/v1/orders", json=buyer.body(), headers=headers, timeout=40)
            except httpx.HTTPError as exc:
                buyer.answers.append(type(exc).__name__)
                self.report.answers[type(exc).__name__] += 1
            else:
                code = _error_code(response)
                label = f"{response.status_code} {code}".strip()
                buyer.answers.append(label)
                self.report.answers[label] += 1
                retry = response.status_code in RETRYABLE_STATUSES or code == "REQUEST_IN_PROGRESS"
                if not retry:
                    body = response.json()
                    buyer.final = (response.status_code, code, self._order_id_of(buyer, response.status_code, body))
                    buyer.final_body = body
                    self.report.outcomes[label] += 1
                    break
            if self._elapsed() > give_up_at:
                self.report.outcomes["no final answer"] += 1
                return
            await asyncio.sleep(0.5 + self.rng_for(buyer, "retry").random() * 0.5)
        status, _code, order_id = buyer.final
        if status == 201 and buyer.cancel_after_paid:
            assert order_id is not None  # a 201 answer carries its order
            await self.cancel(buyer, order_id, buyer.cancel_answers, give_up_at)

    def rng_for(self, buyer: Buyer, what: str) -> random.Random:
        """A per-buyer stream (timing varies, so a shared stream would hand out different numbers)."""
        return random.Random(f"{self.seed}:{buyer.index}:{what}:{len(buyer.answers)}")

    def _order_id_of(self, buyer: Buyer, status: int, body: dict) -> str | None:
        if status == 201:
            return body["data"]["id"]
        details = (body.get("error") or {}).get("details") or {}
        if details.get("orderId"):
            return details["orderId"]
        rows = self.stack.sql(
            "orders", "SELECT id FROM orders WHERE user_id = %s AND idempotency_key = %s", (buyer.user_id, buyer.key)
        )
        return rows[0][0] if rows else None

    async def cancel(
        self, buyer: Buyer, order_id: str, answers: list, give_up_at: float, *, retry: bool = True
    ) -> None:
        while True:
            try:
                response = await self.http.post(
                    f"/api/v1/orders/{order_id}/cancel",
                    json={"reason": "chaos"},
                    headers=buyer.user["headers"],
                    timeout=40,
                )
            except httpx.HTTPError as exc:
                answers.append(type(exc).__name__)
            else:
                code = _error_code(response)
                answers.append(f"{response.status_code} {code}".strip())
                if not (response.status_code in RETRYABLE_STATUSES or code == "PAYMENT_IN_PROGRESS"):
                    return
            if not retry or self._elapsed() > give_up_at:
                return
            await asyncio.sleep(1.0)

    # -- the injector ----------------------------------------------------------------------------

    def _seed_orders(self, status: str | None = None) -> list[tuple[str, str]]:
        """(order id, user id) of this seed's orders, in a stable order (by user index, then id)."""
        rows = self.stack.sql(
            "orders", "SELECT id, user_id, status FROM orders WHERE user_id = ANY(%s)", (list(self.by_user),)
        )
        rows = [(order_id, user_id) for order_id, user_id, st in rows if status is None or st == status]
        return sorted(rows, key=lambda row: (self.by_user[row[1]].index, row[0]))

    async def inject(self, fault: Fault) -> None:
        kind, params = fault.kind, fault.params
        self.report.faults[kind] += 1
        note = f"{self._elapsed():6.2f}s {kind} {params}"
        if kind.startswith("kill_"):
            service = kind.removeprefix("kill_")
            lock = self._restarting.setdefault(service, asyncio.Lock())
            if lock.locked():  # still down or starting from the previous kill
                self.report.faults[f"{kind}_while_down"] += 1
                self.report.fault_log.append(note + " → already down")
                return
            async with lock:
                await self.stack.kill(service)
                self.report.fault_log.append(note)
                await asyncio.sleep(params["down_seconds"])
                await self.stack.restart(service)
            return
        elif kind.startswith("provider_"):
            plan = {
                "provider_slow": {"delay_seconds": params.get("delay_seconds", 0)},
                "provider_unavailable": {"unavailable": True, "charge_first": params.get("charge_first", False)},
                "provider_late": {
                    "late_seconds": params.get("late_seconds", 0),
                    "late_outcome": params.get("late_outcome", "token"),
                },
            }[kind]
            self._plan_version += 1
            version = self._plan_version
            self.stack.set_plan(plan)

            async def revert() -> None:
                await asyncio.sleep(params["for_seconds"])
                if self._plan_version == version:
                    self.stack.set_plan({})

            task = asyncio.create_task(revert())
            self._webhook_tasks.add(task)
            task.add_done_callback(self._webhook_tasks.discard)
        elif kind == "expire_reservations":
            reserved = self.stack.sql(
                "catalog",
                "SELECT id FROM reservations WHERE status = 'RESERVED' AND id = ANY(%s) ORDER BY id",
                ([order_id for order_id, _ in self._seed_orders()],),
            )
            ids = [row[0] for row in reserved]
            chosen = _pick(ids, params["fraction"], params["pick"])
            if chosen:
                self.stack.sql(
                    "catalog",
                    "UPDATE reservations SET expires_at = now() - interval '1 second' "
                    "WHERE id = ANY(%s) AND status = 'RESERVED'",
                    (chosen,),
                )
            self.report.faults["reservations_expired"] += len(chosen)
            note += f" → expired {chosen}"
        elif kind == "cancel_inflight":
            pending = self._seed_orders("PENDING")
            chosen = _pick(pending, params["count"] / max(len(pending), 1), params["pick"])[: params["count"]]
            answers: list = []
            for order_id, user_id in chosen:
                await self.cancel(self.by_user[user_id], order_id, answers, 0, retry=False)
            for answer in answers:
                self.report.faults[f"cancel_inflight_answer {answer}"] += 1
            note += f" → {list(zip([c[0] for c in chosen], answers, strict=False))}"
        self.report.fault_log.append(note)

    async def injector(self) -> None:
        """Each fault at its time, in its own task (a restart takes seconds on a busy machine and
        must not push the later faults out of the window); then waits for every restart."""

        async def one(fault: Fault) -> None:
            await self._sleep_until(fault.at)
            try:
                await self.inject(fault)
            except Exception as exc:  # noqa: BLE001 - a failed injection is reported, the run goes on
                self.report.fault_log.append(f"{fault.kind} failed: {exc!r}")
                self.report.faults[f"{fault.kind}_failed"] += 1

        await asyncio.gather(*(one(fault) for fault in self.schedule))

    # -- the provider's webhook sender -----------------------------------------------------------

    async def webhook_sender(self) -> None:
        ledger = connect_ledger(self.stack.faults_dir / "ledger.sqlite3")
        try:
            while not self._stop_webhooks.is_set():
                rows = ledger.execute(
                    "SELECT id, type, order_id, user_id, body, available_at FROM events "
                    "WHERE available_at <= ? ORDER BY available_at, id",
                    (time.time(),),
                ).fetchall()
                for event_id, kind, order_id, user_id, body, _available in rows:
                    if event_id in self._seen_events or user_id not in self.by_user:
                        continue
                    self._seen_events.add(event_id)
                    self._event_order[order_id].append(event_id)
                    buyer = self.by_user[user_id]
                    refunded = json.loads(body)["data"]["object"].get("amount_refunded", 0)
                    rng = random.Random(f"{self.seed}:{buyer.index}:{kind}:{refunded}")
                    copies = 2 if rng.random() < 0.4 else 1
                    if copies == 2:
                        self.report.faults["webhook_duplicate"] += 1
                    for _ in range(copies):
                        task = asyncio.create_task(self._deliver(event_id, order_id, body.encode(), rng.uniform(0, 4)))
                        self._webhook_tasks.add(task)
                        task.add_done_callback(self._webhook_tasks.discard)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop_webhooks.wait(), 0.3)
        finally:
            ledger.close()

    async def _deliver(self, event_id: str, order_id: str, body: bytes, delay: float) -> None:
        await asyncio.sleep(delay)
        while True:
            header = signature_header(body, WEBHOOK_SECRET, int(time.time()))
            try:
                response = await self.http.post(
                    "/api/v1/payments/webhooks/sandbox",
                    content=body,
                    timeout=20,
                    headers={"Sandbox-Signature": header, "Content-Type": "application/json"},
                )
                status = response.status_code
            except httpx.HTTPError:
                status = 0
            if status == 200:
                if event_id not in self._first_delivery:
                    self._first_delivery[event_id] = time.time()
                    made = self._event_order[order_id]
                    if any(later in self._first_delivery for later in made[made.index(event_id) + 1 :]):
                        self.report.faults["webhook_out_of_order"] += 1
                self._delivered.add(event_id)
                return
            if 400 <= status < 500 and status != 409:
                self.report.violations.append(Violation("webhook", order_id, f"event {event_id} refused {status}"))
                return
            self.report.faults["webhook_redelivered"] += 1
            await asyncio.sleep(1.0)

    def _pending_webhooks(self, ledger) -> list[str]:
        rows = ledger.execute("SELECT id, user_id FROM events").fetchall()
        return [event_id for event_id, user_id in rows if user_id in self.by_user and event_id not in self._delivered]

    # -- the run ---------------------------------------------------------------------------------

    async def run(self) -> SeedReport:
        started = time.monotonic()
        self.plan()
        async with httpx.AsyncClient(base_url=self.stack.base_url, timeout=40) as http:
            self._client = http
            await self.setup()
            initial = {
                p["id"]: int(self.stack.sql("catalog", "SELECT stock FROM products WHERE id = %s", (p["id"],))[0][0])
                for p in self.products
            }
            self._t0 = time.monotonic()
            give_up_at = self.config.run_seconds + self.config.recovery_seconds
            buyers = [asyncio.create_task(self.buy(buyer, give_up_at)) for buyer in self.buyers]
            sender = asyncio.create_task(self.webhook_sender())
            try:
                await self.injector()
                await self._sleep_until(self.config.run_seconds)
                # Faults stop: a normal provider, every service up.
                self._plan_version += 1
                self.stack.set_plan({})
                for service in ("catalog", "payments", "orders"):
                    if not self.stack.running(service):
                        await self.stack.restart(service)
                recovery_started = self._elapsed()
                ledger = connect_ledger(self.stack.faults_dir / "ledger.sqlite3")
                try:
                    while True:
                        if all(task.done() for task in buyers) and self._settled(ledger):
                            self.report.settled_after = self._elapsed() - recovery_started
                            break
                        if self._elapsed() - recovery_started > self.config.recovery_seconds:
                            break
                        await asyncio.sleep(0.5)
                    # Webhooks the provider still owes are delivered (a last chance) before judging.
                    await asyncio.sleep(0.5)
                finally:
                    ledger.close()
            finally:
                self._stop_webhooks.set()
                for task in [*buyers, sender, *self._webhook_tasks]:
                    task.cancel()
                await asyncio.gather(*buyers, sender, *self._webhook_tasks, return_exceptions=True)
            self.check_invariants(initial)
            await self.check_replays()
        self.report.seconds = time.monotonic() - started
        return self.report

    def _settled(self, ledger) -> bool:
        orders = self._seed_orders()
        ids = [order_id for order_id, _ in orders]
        if self._seed_orders("PENDING"):
            return False
        outbox = self.stack.sql(
            "orders", "SELECT count(*) FROM outbox WHERE order_id = ANY(%s) AND state = 'pending'", (ids,)
        )[0][0]
        if outbox:
            return False
        reserved = self.stack.sql(
            "catalog", "SELECT count(*) FROM reservations WHERE id = ANY(%s) AND status = 'RESERVED'", (ids,)
        )[0][0]
        return not reserved and not self._pending_webhooks(ledger)

    # -- the invariants --------------------------------------------------------------------------

    def check_invariants(self, initial: dict[str, int]) -> None:
        v = self.report.violations
        product_ids = list(initial)
        orders = {
            row[0]: row
            for row in self.stack.sql(
                "orders",
                "SELECT id, user_id, status, total_cents, stage FROM orders WHERE user_id = ANY(%s)",
                (list(self.by_user),),
            )
        }
        order_ids = list(orders)
        self.report.orders_by_status.update(row[2] for row in orders.values())

        # 1. Stock is conserved: on hand + RESERVED + COMMITTED = initial + adjustments, never below 0;
        #    the units of sold orders are the committed units.
        lines: collections.defaultdict[str, dict[str, int]] = collections.defaultdict(dict)
        for status, product_id, quantity in self.stack.sql(
            "catalog",
            "SELECT r.status, l.product_id, COALESCE(SUM(l.quantity), 0) FROM reservation_lines l "
            "JOIN reservations r ON r.id = l.reservation_id WHERE l.product_id = ANY(%s) GROUP BY r.status, l.product_id",
            (product_ids,),
        ):
            lines[product_id][status] = int(quantity)
        adjusted = dict(
            self.stack.sql(
                "catalog",
                "SELECT product_id, COALESCE(SUM(delta), 0) FROM stock_adjustments WHERE product_id = ANY(%s) "
                "GROUP BY product_id",
                (product_ids,),
            )
        )
        on_hand = dict(self.stack.sql("catalog", "SELECT id, stock FROM products WHERE id = ANY(%s)", (product_ids,)))
        sold_units: collections.Counter[str] = collections.Counter()
        for order_id, product_id, quantity in self.stack.sql(
            "orders", "SELECT order_id, product_id, quantity FROM order_items WHERE order_id = ANY(%s)", (order_ids,)
        ):
            if orders[order_id][2] in SOLD_STATUSES:
                sold_units[product_id] += int(quantity)
        for product_id in product_ids:
            held = lines[product_id]
            stock = int(on_hand[product_id])
            expected = initial[product_id] + int(adjusted.get(product_id, 0))
            total = stock + held.get("RESERVED", 0) + held.get("COMMITTED", 0)
            if total != expected:
                v.append(
                    Violation(
                        "stock conserved",
                        product_id,
                        f"on hand {stock} + reserved {held.get('RESERVED', 0)} + committed "
                        f"{held.get('COMMITTED', 0)} = {total}, expected {expected}",
                    )
                )
            if stock < 0:
                v.append(Violation("stock >= 0", product_id, f"on hand {stock}"))
            if sold_units[product_id] != held.get("COMMITTED", 0):
                oversold = sold_units[product_id] - expected
                v.append(
                    Violation(
                        "sold = committed",
                        product_id,
                        f"{sold_units[product_id]} units in paid orders, {held.get('COMMITTED', 0)} committed"
                        + (f", {expected} ever in stock: OVERSOLD by {oversold}" if oversold > 0 else ""),
                    )
                )

        # 2. Money: captured − refunded in payments' books and in the provider's (the sandbox
        #    ledger) is what the order kept; one charge per order.
        payments = collections.defaultdict(list)
        for order_id, captured, refunded, status, reference in self.stack.sql(
            "payments",
            "SELECT order_id, captured_cents, refunded_cents, status, provider_reference FROM payments "
            "WHERE order_id = ANY(%s)",
            (order_ids,),
        ):
            payments[order_id].append((int(captured), int(refunded), status, reference))
        ledger = connect_ledger(self.stack.faults_dir / "ledger.sqlite3")
        try:
            charges = collections.defaultdict(list)
            for order_id, reference, amount, outcome, decide_at in ledger.execute(
                "SELECT order_id, reference, amount_cents, outcome, decide_at FROM charges"
            ):
                if order_id in orders:
                    charges[order_id].append((reference, int(amount), outcome, decide_at))
            for order_id, decide_at, created_at in ledger.execute(
                "SELECT order_id, decide_at, created_at FROM charges"
            ):
                if order_id in orders and decide_at > created_at + 0.5:
                    self.report.faults["provider_charges_answered_late"] += 1
            refunds: collections.Counter[str] = collections.Counter()
            for reference, amount in ledger.execute("SELECT charge_reference, amount_cents FROM refunds"):
                refunds[reference] += int(amount)
        finally:
            ledger.close()
        for order_id, (_, _user, status, total, stage) in orders.items():
            kept = int(total) if status in KEPT_STATUSES else 0
            rows = payments.get(order_id, [])
            if len(rows) > 1:
                v.append(Violation("one payment per order", order_id, f"{len(rows)} payments rows"))
            books = sum(captured - refunded for captured, refunded, _, _ in rows)
            if books != kept:
                v.append(
                    Violation(
                        "money kept (payments)",
                        order_id,
                        f"order {status} (stage {stage}) keeps {kept}, payments captured−refunded = {books} "
                        f"{[(c, r, s) for c, r, s, _ in rows]}",
                    )
                )
            provider_charges = charges.get(order_id, [])
            captures = [c for c in provider_charges if c[2] == "succeeded" and c[3] <= time.time()]
            if len(captures) > 1 or len(provider_charges) > 1:
                v.append(Violation("one capture per order", order_id, f"provider charges {provider_charges}"))
            at_provider = sum(amount - refunds[reference] for reference, amount, *_ in captures)
            if at_provider != kept:
                v.append(
                    Violation(
                        "money kept (provider)",
                        order_id,
                        f"order {status} (stage {stage}) keeps {kept}, the provider holds {at_provider} "
                        f"(charges {[(c[1], c[2]) for c in provider_charges]}, "
                        f"refunded {[refunds[c[0]] for c in provider_charges]})",
                    )
                )
            if rows and provider_charges and rows[0][3] and rows[0][3] != provider_charges[0][0]:
                v.append(
                    Violation(
                        "one capture per order",
                        order_id,
                        f"payments recorded {rows[0][3]}, the provider charged {provider_charges[0][0]}",
                    )
                )

        # 3. Orders are final; a paid order's stock is committed; a failed one holds none.
        reservations = dict(
            self.stack.sql("catalog", "SELECT id, status FROM reservations WHERE id = ANY(%s)", (order_ids,))
        )
        for order_id, (_, _user, status, _total, stage) in orders.items():
            reservation = reservations.get(order_id)
            if status == "PENDING":
                v.append(Violation("no order left PENDING", order_id, f"stage {stage}, reservation {reservation}"))
            elif status in SOLD_STATUSES and reservation != "COMMITTED":
                v.append(Violation("paid ⇒ committed", order_id, f"order {status}, reservation {reservation}"))
            elif status in ("PAYMENT_FAILED", "CANCELLED") and reservation in ("RESERVED", "COMMITTED"):
                v.append(Violation("failed ⇒ stock returned", order_id, f"order {status}, reservation {reservation}"))

        # 4. What a buyer was answered agrees with its order.
        for buyer in self.buyers:
            if buyer.final is None:
                continue
            status, code, order_id = buyer.final
            if not order_id or order_id not in orders:
                if status == 201:
                    v.append(
                        Violation("answer ⇒ order", str(order_id), f"buyer {buyer.index} was answered 201, no order")
                    )
                continue
            order = orders[order_id]
            if (
                status == 201
                and order[2] not in KEPT_STATUSES
                and not (
                    order[2] == "CANCELLED"
                    and (
                        buyer.cancel_after_paid
                        or self._cancelled_by_injector(order_id)
                        or self._stock_lost_after_payment(order_id)
                    )
                )
            ):
                v.append(
                    Violation("answer ⇒ order", order_id, f"buyer {buyer.index} was answered 201, order {order[2]}")
                )
            elif status == 402 and order[2] in KEPT_STATUSES:
                v.append(
                    Violation("answer ⇒ order", order_id, f"buyer {buyer.index} was answered 402, order {order[2]}")
                )

    def _stock_lost_after_payment(self, order_id: str) -> bool:
        """The documented rule for a paid order whose reservation lapsed (here: expired early by
        the injector while catalog was down) and whose units were sold meanwhile: CANCELLED
        STOCK_UNAVAILABLE and refunded in full (the money checks above prove the refund)."""
        rows = self.stack.sql("orders", "SELECT failure_code FROM orders WHERE id = %s", (order_id,))
        return bool(rows) and rows[0][0] == "STOCK_UNAVAILABLE"

    def _cancelled_by_injector(self, order_id: str) -> bool:
        return any(order_id in line and "cancel_inflight" in line for line in self.report.fault_log)

    async def check_replays(self) -> None:
        """A replay of an Idempotency-Key (same body) returns the first final answer; a buyer that
        had none when recovery ended gets one now."""
        for buyer in self.buyers:
            if buyer.final is not None:
                continue
            self.report.outcomes["no final answer by the end of recovery"] += 1
            headers = {**buyer.user["headers"], "Idempotency-Key": buyer.key}
            try:
                response = await self.http.post("/api/v1/orders", json=buyer.body(), headers=headers, timeout=40)
                code = _error_code(response)
                label = f"{response.status_code} {code}".strip()
            except httpx.HTTPError as exc:
                response, label = None, type(exc).__name__
            order_id = self._order_id_of(buyer, 0, {})
            if response is None or response.status_code in RETRYABLE_STATUSES or code == "REQUEST_IN_PROGRESS":
                self.report.violations.append(
                    Violation(
                        "a final answer after recovery",
                        str(order_id),
                        f"buyer {buyer.index} key {buyer.key}: still {label}; its last answers {buyer.answers[-4:]}",
                    )
                )
            else:
                self.report.outcomes[f"{label} (after recovery)"] += 1
        answered = [buyer for buyer in self.buyers if buyer.final is not None]
        sample = random.Random(f"{self.seed}:replays").sample(answered, min(self.config.replay_sample, len(answered)))
        for buyer in sorted(sample, key=lambda b: b.index):
            headers = {**buyer.user["headers"], "Idempotency-Key": buyer.key}
            try:
                response = await self.http.post("/api/v1/orders", json=buyer.body(), headers=headers, timeout=40)
            except httpx.HTTPError as exc:
                self.report.violations.append(Violation("replay", buyer.key, f"replay failed: {exc!r}"))
                continue
            self.report.faults["replays"] += 1
            body = response.json()
            code = _error_code(response)
            replay = (response.status_code, code, self._order_id_of(buyer, response.status_code, body))
            first = buyer.final
            assert first is not None  # `answered` holds only buyers with a final answer
            if replay != first:
                self.report.violations.append(
                    Violation(
                        "replay = first answer",
                        str(first[2]),
                        f"buyer {buyer.index} key {buyer.key}: first {buyer.final}, replay {replay}",
                    )
                )


def _error_code(response: httpx.Response) -> str:
    if response.status_code < 400:
        return ""
    with contextlib.suppress(ValueError, AttributeError, KeyError, TypeError):
        return response.json()["error"]["code"]
    return ""


def _pick(items: list, fraction: float, pick: float) -> list:
    """A deterministic subset: `fraction` of the items (at least one when any), starting at `pick`."""
    if not items:
        return []
    count = max(1, round(len(items) * min(fraction, 1.0)))
    start = int(pick * len(items))
    return [items[(start + i) % len(items)] for i in range(count)]


async def run_campaign(
    stack: Stack, seeds: list[int], config: Config | None = None, per_seed_timeout: float = 240
) -> list[SeedReport]:
    reports = []
    for seed in seeds:
        campaign = Campaign(stack, seed, config)
        try:
            report = await asyncio.wait_for(campaign.run(), per_seed_timeout)
        except TimeoutError:
            report = campaign.report
            report.errors.append(f"did not finish in {per_seed_timeout} s")
        except Exception as exc:  # noqa: BLE001 - reported; the next seeds still run
            report = campaign.report
            report.errors.append(f"{type(exc).__name__}: {exc}"[:2000])
        print(report.render(), flush=True)
        print("  fault log:\n    " + "\n    ".join(report.fault_log), flush=True)
        reports.append(report)
        # The next seed starts on a healthy stack with a normal provider.
        stack.set_plan({})
        for service in ("catalog", "payments", "orders"):
            if not stack.running(service):
                await stack.restart(service)
    return reports


def dumps(reports: list[SeedReport]) -> str:
    return json.dumps(
        [
            {
                "seed": r.seed,
                "buyers": r.buyers,
                "checkouts": r.checkouts,
                "outcomes": dict(r.outcomes),
                "faults": dict(r.faults),
                "orders": dict(r.orders_by_status),
                "settled_after": r.settled_after,
                "violations": [str(x) for x in r.violations],
                "errors": r.errors,
            }
            for r in reports
        ],
        indent=1,
    )
