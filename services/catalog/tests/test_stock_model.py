"""The stock protocol as a state machine (hypothesis): reserve, renew (of live and of released
reservations), release, commit (also of released ones), restock, expire and adjust, in any order
and with repeats, against the catalog's stock use cases (stock.py) on PostgreSQL (and on SQLite, the embedded
default, whose statements differ in places), checked after every step against a pure-Python model of what each product's stock and each reservation's
status must be. Conservation holds throughout: stock on hand + held by live reservations + sold
(committed) = initial stock + adjustments, and stock never goes below 0.

Runs `STOCK_MODEL_EXAMPLES` state machines of up to 30 steps (25 in `make test`; a longer run:
`STOCK_MODEL_EXAMPLES=500 .venv/bin/python -m pytest services/catalog/tests/test_stock_model.py`).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from services.catalog.domain import products as product_rules
from services.catalog.domain import stock as stock_rules
from services.catalog.models import Category, Product
from services.catalog.products import Products
from services.catalog.server import MIGRATIONS_DIR
from services.catalog.stock import Stock
from shop.lib.db import Database, utcnow
from shop.lib.errors import Conflict
from shop.lib.migrations import upgrade_async
from shop.lib.pagination import PageTokens

EXAMPLES = int(os.environ.get("STOCK_MODEL_EXAMPLES", "25"))
PRODUCTS = 3
SHORT_TTL = 0.001  # already expired when the next `expire` step looks
LONG_TTL = 3600.0
BUYER = str(uuid.uuid4())


@dataclass
class ModelReservation:
    lines: dict[int, int]  # product index → quantity
    status: str
    short_lived: bool


@dataclass
class Model:
    stock: list[int]
    initial: list[int]
    adjusted: list[int] = field(default_factory=lambda: [0] * PRODUCTS)
    reservations: dict[str, ModelReservation] = field(default_factory=dict)

    def held(self, index: int, *statuses: str) -> int:
        return sum(r.lines.get(index, 0) for r in self.reservations.values() if r.status in statuses)


class World:
    """One event loop and one migrated database for every state machine of the test."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.db = Database(url)
        self.products = Products(self.db, PageTokens("stock-model"))
        self.stock = Stock(self.db)
        self.run(upgrade_async(MIGRATIONS_DIR, url))
        self.category = f"model-{uuid.uuid4().hex[:8]}"
        self.run(self._category())

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    async def _category(self) -> None:
        async with self.db.transaction() as session:
            session.add(Category(slug=self.category, name="Stock model", created_at=utcnow()))

    async def new_products(self, stocks: list[int]) -> list[str]:
        ids = [str(uuid.uuid4()) for _ in stocks]
        async with self.db.transaction() as session:
            for product_id, stock in zip(ids, stocks, strict=True):
                session.add(
                    Product(
                        id=product_id,
                        sku=f"M-{product_id[:12]}",
                        name="Model product",
                        description="",
                        price_cents=100,
                        currency="USD",
                        category_slug=self.category,
                        images=[],
                        stock=stock,
                        status=product_rules.ACTIVE,
                        created_at=utcnow(),
                        updated_at=utcnow(),
                    )
                )
        return ids

    async def stocks(self, ids: list[str]) -> list[int]:
        rows = await self.products.batch_get(ids)
        by_id = {row.id: row.stock for row in rows}
        return [by_id[product_id] for product_id in ids]

    def close(self) -> None:
        self.run(self.db.dispose())
        self.loop.close()


WORLD: World | None = None


class StockMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        assert WORLD is not None
        self.world: World = WORLD
        self.ids: list[str] = []
        self.model = Model(stock=[], initial=[])

    def run(self, coroutine):
        return self.world.run(coroutine)

    @precondition(lambda self: not self.ids)
    @rule(stocks=st.lists(st.integers(0, 6), min_size=PRODUCTS, max_size=PRODUCTS))
    def start(self, stocks):
        self.ids = self.run(self.world.new_products(stocks))
        self.model = Model(stock=list(stocks), initial=list(stocks))

    def lines_of(self, reservation: ModelReservation) -> list[tuple[str, int]]:
        return sorted((self.ids[index], quantity) for index, quantity in reservation.lines.items())

    @precondition(lambda self: self.ids)
    @rule(
        lines=st.dictionaries(st.integers(0, PRODUCTS - 1), st.integers(1, 3), min_size=1, max_size=PRODUCTS),
        short_lived=st.booleans(),
    )
    def reserve(self, lines, short_lived):
        reservation_id = str(uuid.uuid4())
        wanted = ModelReservation(lines=lines, status=stock_rules.RESERVED, short_lived=short_lived)
        enough = all(self.model.stock[index] >= quantity for index, quantity in lines.items())
        ttl = SHORT_TTL if short_lived else LONG_TTL
        try:
            view = self.run(self.world.stock.reserve(reservation_id, self.lines_of(wanted), ttl))
        except Conflict as exc:
            assert not enough and exc.code == "INSUFFICIENT_STOCK"
            return
        assert enough and view.status == stock_rules.RESERVED
        for index, quantity in lines.items():
            self.model.stock[index] -= quantity
        self.model.reservations[reservation_id] = wanted

    @precondition(lambda self: self.model.reservations)
    @rule(data=st.data())
    def repeat_reserve(self, data):
        """A repeat of ReserveStock with the same id never reserves again: it answers the status."""
        reservation_id = data.draw(st.sampled_from(list(self.model.reservations)))  # creation order: stable on replay
        reservation = self.model.reservations[reservation_id]
        view = self.run(self.world.stock.reserve(reservation_id, self.lines_of(reservation), LONG_TTL))
        assert view.status == reservation.status

    def _existing(self, data) -> tuple[str, ModelReservation]:
        reservation_id = data.draw(st.sampled_from(list(self.model.reservations)))  # creation order: stable on replay
        return reservation_id, self.model.reservations[reservation_id]

    @precondition(lambda self: self.model.reservations)
    @rule(data=st.data())
    def release(self, data):
        reservation_id, reservation = self._existing(data)
        try:
            self.run(self.world.stock.release_reservation(reservation_id))
        except Conflict as exc:
            assert (
                reservation.status in (stock_rules.COMMITTED, stock_rules.RESTOCKED)
                and exc.code == "RESERVATION_COMMITTED"
            )
            return
        assert reservation.status in (stock_rules.RESERVED, stock_rules.RELEASED)
        if reservation.status == stock_rules.RESERVED:
            for index, quantity in reservation.lines.items():
                self.model.stock[index] += quantity
            reservation.status = stock_rules.RELEASED

    def _enough(self, reservation: ModelReservation) -> bool:
        return all(self.model.stock[index] >= quantity for index, quantity in reservation.lines.items())

    def _take(self, reservation: ModelReservation) -> None:
        for index, quantity in reservation.lines.items():
            self.model.stock[index] -= quantity

    @precondition(lambda self: self.model.reservations)
    @rule(data=st.data(), short_lived=st.booleans())
    def renew(self, data, short_lived):
        """A repeat with renew: RESERVED gets a new expiry; RELEASED is re-taken all or none
        (INSUFFICIENT_STOCK when the stock is not there, and it stays RELEASED); COMMITTED and
        RESTOCKED are answered unchanged."""
        reservation_id, reservation = self._existing(data)
        ttl = SHORT_TTL if short_lived else LONG_TTL
        try:
            view = self.run(self.world.stock.reserve(reservation_id, self.lines_of(reservation), ttl, renew=True))
        except Conflict as exc:
            assert reservation.status == stock_rules.RELEASED and not self._enough(reservation)
            assert exc.code == "INSUFFICIENT_STOCK"
            return
        if reservation.status == stock_rules.RELEASED:
            assert self._enough(reservation)
            self._take(reservation)
            reservation.status = stock_rules.RESERVED
        if reservation.status == stock_rules.RESERVED:
            reservation.short_lived = short_lived  # the new expiry
        assert view.status == reservation.status

    @precondition(lambda self: self.model.reservations)
    @rule(data=st.data(), with_user=st.booleans())
    def commit(self, data, with_user):
        """RESERVED -> COMMITTED; RELEASED is re-taken all or none and committed, else
        RESERVATION_RELEASED with nothing changed; COMMITTED/RESTOCKED stay as they are.
        (With a user id the purchases are recorded too: that changes no stock.)"""
        reservation_id, reservation = self._existing(data)
        user_id = BUYER if with_user else None
        try:
            view = self.run(self.world.stock.commit_reservation(reservation_id, user_id))
        except Conflict as exc:
            assert reservation.status == stock_rules.RELEASED and not self._enough(reservation)
            assert exc.code == "RESERVATION_RELEASED"
            return
        if reservation.status == stock_rules.RELEASED:
            assert self._enough(reservation)
            self._take(reservation)
        if reservation.status in (stock_rules.RESERVED, stock_rules.RELEASED):
            reservation.status = stock_rules.COMMITTED
        assert view.status == reservation.status

    @precondition(lambda self: self.model.reservations)
    @rule(data=st.data())
    def restock(self, data):
        reservation_id, reservation = self._existing(data)
        try:
            self.run(self.world.stock.restock_reservation(reservation_id))
        except Conflict as exc:
            expected = {stock_rules.RESERVED: "RESERVATION_NOT_COMMITTED", stock_rules.RELEASED: "RESERVATION_RELEASED"}
            assert exc.code == expected.get(reservation.status)
            return
        assert reservation.status in (stock_rules.COMMITTED, stock_rules.RESTOCKED)
        if reservation.status == stock_rules.COMMITTED:
            for index, quantity in reservation.lines.items():
                self.model.stock[index] += quantity
            reservation.status = stock_rules.RESTOCKED

    @precondition(lambda self: self.ids)
    @rule()
    def expire(self):
        """The sweep: reservations past their TTL (the short-lived ones) go back to the shelf."""
        self.run(self.world.stock.release_expired(utcnow() + timedelta(seconds=60)))
        for reservation in self.model.reservations.values():
            if reservation.status == stock_rules.RESERVED and reservation.short_lived:
                for index, quantity in reservation.lines.items():
                    self.model.stock[index] += quantity
                reservation.status = stock_rules.RELEASED

    @precondition(lambda self: self.ids)
    @rule(index=st.integers(0, PRODUCTS - 1), delta=st.integers(-4, 4).filter(bool))
    def adjust(self, index, delta):
        try:
            stock = self.run(self.world.stock.adjust_stock(self.ids[index], delta, "model", None, "ADMIN", None))
        except Conflict as exc:
            assert self.model.stock[index] + delta < 0 and exc.code == "INSUFFICIENT_STOCK"
            return
        self.model.stock[index] += delta
        self.model.adjusted[index] += delta
        assert stock == self.model.stock[index]

    @invariant()
    def matches_the_model(self):
        if not self.ids:
            return
        stocks = self.run(self.world.stocks(self.ids))
        assert stocks == self.model.stock
        for index in range(PRODUCTS):
            live = self.model.held(index, stock_rules.RESERVED)
            sold = self.model.held(index, stock_rules.COMMITTED)
            assert stocks[index] >= 0
            assert stocks[index] + live + sold == self.model.initial[index] + self.model.adjusted[index]


@pytest.fixture(params=["postgresql", "sqlite"])
def world(request, databases, tmp_path):
    global WORLD
    url = databases.create("stockmodel") if request.param == "postgresql" else f"sqlite:///{tmp_path}/catalog.db"
    WORLD = World(url)
    yield WORLD
    WORLD.close()
    WORLD = None


def test_the_stock_protocol_matches_its_model(world):
    run_state_machine_as_test(
        StockMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=30,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
