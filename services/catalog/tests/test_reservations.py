"""Internal stock RPCs against PostgreSQL: all-or-none reservations, idempotency, no oversell
under concurrency, no deadlocks, commit/release/restock rules, the TTL sweep, batch reads."""

from __future__ import annotations

import asyncio
import random
import uuid

import grpc

from services.catalog.server import sweep_once
from services.catalog.tests.helpers import rpc_error
from shop.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from shop.lib.clients import ServiceClients
from shop.lib.settings import BaseShopSettings
from tests.harness import identity_settings

R = catalog_pb2


def reserve_request(reservation_id, *lines):
    return R.ReserveStockRequest(
        reservation_id=reservation_id, lines=[R.StockLine(product_id=p, quantity=q) for p, q in lines]
    )


def reservation_row(suite, reservation_id):
    return suite.sql("catalog", "SELECT status FROM reservations WHERE id = %s", (reservation_id,))


async def test_reserve_is_all_or_none(suite, catalog):
    stub = suite.stub("catalog")
    plenty, short = await catalog.product(stock=10), await catalog.product(stock=2)
    rid = str(uuid.uuid4())
    error = await rpc_error(stub.ReserveStock(reserve_request(rid, (plenty, 5), (short, 3))))
    assert error.grpc_code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.code == "INSUFFICIENT_STOCK"
    assert error.details == {"productIds": [short]}
    assert (catalog.stock(plenty), catalog.stock(short)) == (10, 2)
    assert reservation_row(suite, rid) == []
    assert suite.sql("catalog", "SELECT count(*) FROM reservation_lines WHERE reservation_id = %s", (rid,)) == [(0,)]
    # the same id may be retried once stock allows it
    response = await stub.ReserveStock(reserve_request(rid, (plenty, 5), (short, 2)))
    assert response.reservation.status == R.RESERVATION_STATUS_RESERVED
    assert (catalog.stock(plenty), catalog.stock(short)) == (5, 0)


async def test_reserve_is_idempotent_and_merges_duplicate_lines(suite, catalog):
    stub = suite.stub("catalog")
    a, b = await catalog.product(stock=10), await catalog.product(stock=10)
    rid = str(uuid.uuid4())
    first = await stub.ReserveStock(reserve_request(rid, (b, 1), (a, 2), (b, 2)))
    assert [(line.product_id, line.quantity) for line in first.reservation.lines] == sorted([(a, 2), (b, 3)])
    again = await stub.ReserveStock(reserve_request(rid, (a, 2), (b, 3)))
    assert again.reservation == first.reservation
    # concurrent repeats never reserve twice
    repeats = await asyncio.gather(*(stub.ReserveStock(reserve_request(rid, (a, 2), (b, 3))) for _ in range(10)))
    assert all(r.reservation == first.reservation for r in repeats)
    assert (catalog.stock(a), catalog.stock(b)) == (8, 7)
    # the same id with other lines is refused, nothing changes
    error = await rpc_error(stub.ReserveStock(reserve_request(rid, (a, 1))))
    assert error.code == "RESERVATION_MISMATCH"
    assert (catalog.stock(a), catalog.stock(b)) == (8, 7)


async def test_concurrent_twins_of_a_new_reservation_reserve_once(suite, catalog):
    stub = suite.stub("catalog")
    product = await catalog.product(stock=100)
    rid = str(uuid.uuid4())
    results = await asyncio.gather(*(stub.ReserveStock(reserve_request(rid, (product, 7))) for _ in range(20)))
    assert {r.reservation.id for r in results} == {rid}
    assert catalog.stock(product) == 93


async def test_bad_reservation_requests_change_nothing(suite, catalog):
    stub = suite.stub("catalog")
    product = await catalog.product(stock=5)
    archived = await catalog.product(stock=5)
    suite.sql("catalog", "UPDATE products SET status = 'ARCHIVED' WHERE id = %s RETURNING id", (archived,))
    cases = [
        (reserve_request("", (product, 1)), "VALIDATION_ERROR"),
        (reserve_request("x" * 65, (product, 1)), "VALIDATION_ERROR"),
        (reserve_request(str(uuid.uuid4())), "VALIDATION_ERROR"),
        (reserve_request(str(uuid.uuid4()), (product, 0)), "VALIDATION_ERROR"),
        (reserve_request(str(uuid.uuid4()), (product, -3)), "VALIDATION_ERROR"),
        (reserve_request(str(uuid.uuid4()), (product, 2_000_000_000)), "VALIDATION_ERROR"),
        (reserve_request(str(uuid.uuid4()), ("not-a-uuid", 1)), "VALIDATION_ERROR"),
        (reserve_request(str(uuid.uuid4()), (str(uuid.uuid4()), 1)), "PRODUCT_UNAVAILABLE"),
        (reserve_request(str(uuid.uuid4()), (archived, 1)), "PRODUCT_UNAVAILABLE"),
    ]
    for request, code in cases:
        error = await rpc_error(stub.ReserveStock(request))
        assert error.code == code, (request, error)
    assert catalog.stock(product) == 5 and catalog.stock(archived) == 5
    error = await rpc_error(stub.ReserveStock(reserve_request(str(uuid.uuid4()), ("not-a-uuid", 1))))
    assert "lines[0].productId" in error.fields


async def test_internal_rpcs_refuse_users_anonymous_and_the_gateway(suite, catalog):
    product = await catalog.product(stock=5)
    request = reserve_request(str(uuid.uuid4()), (product, 1))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{suite.ports['catalog']}")
    try:
        anonymous = catalog_pb2_grpc.CatalogServiceStub(channel)
        error = await rpc_error(anonymous.ReserveStock(request))
        assert error.grpc_code == grpc.StatusCode.PERMISSION_DENIED
        error = await rpc_error(
            anonymous.RecordPurchases(R.RecordPurchasesRequest(order_id="o", user_id=str(uuid.uuid4())))
        )
        assert error.grpc_code == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await channel.close()
    gateway = ServiceClients(BaseShopSettings(**{**suite.common(), **identity_settings("gateway")}), "gateway")
    try:
        error = await rpc_error(gateway.catalog.ReserveStock(request))
        assert error.grpc_code == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await gateway.close()
    assert catalog.stock(product) == 5


async def test_commit_release_restock_rules(suite, catalog):
    stub = suite.stub("catalog")
    product = await catalog.product(stock=10)

    released = str(uuid.uuid4())
    await stub.ReserveStock(reserve_request(released, (product, 4)))
    assert catalog.stock(product) == 6
    for _ in range(2):  # idempotent
        response = await stub.ReleaseReservation(R.ReleaseReservationRequest(reservation_id=released))
        assert response.reservation.status == R.RESERVATION_STATUS_RELEASED
    assert catalog.stock(product) == 10
    # (committing a released reservation re-takes its stock: test_checkout_protocol.py)
    error = await rpc_error(stub.RestockReservation(R.RestockReservationRequest(reservation_id=released)))
    assert error.code == "RESERVATION_RELEASED"
    # a repeat of the released reservation returns it, and reserves nothing again
    again = await stub.ReserveStock(reserve_request(released, (product, 4)))
    assert again.reservation.status == R.RESERVATION_STATUS_RELEASED
    assert catalog.stock(product) == 10

    committed = str(uuid.uuid4())
    await stub.ReserveStock(reserve_request(committed, (product, 3)))
    error = await rpc_error(stub.RestockReservation(R.RestockReservationRequest(reservation_id=committed)))
    assert error.code == "RESERVATION_NOT_COMMITTED"
    for _ in range(2):
        response = await stub.CommitReservation(R.CommitReservationRequest(reservation_id=committed))
        assert response.reservation.status == R.RESERVATION_STATUS_COMMITTED
    assert catalog.stock(product) == 7
    error = await rpc_error(stub.ReleaseReservation(R.ReleaseReservationRequest(reservation_id=committed)))
    assert (error.http_status, error.code) == (409, "RESERVATION_COMMITTED")
    assert catalog.stock(product) == 7
    for _ in range(2):  # restock is idempotent
        response = await stub.RestockReservation(R.RestockReservationRequest(reservation_id=committed))
        assert response.reservation.status == R.RESERVATION_STATUS_RESTOCKED
    assert catalog.stock(product) == 10

    unknown = str(uuid.uuid4())
    for call, request in (
        (stub.CommitReservation, R.CommitReservationRequest(reservation_id=unknown)),
        (stub.ReleaseReservation, R.ReleaseReservationRequest(reservation_id=unknown)),
        (stub.RestockReservation, R.RestockReservationRequest(reservation_id=unknown)),
    ):
        error = await rpc_error(call(request))
        assert (error.http_status, error.code) == (404, "RESERVATION_NOT_FOUND")


async def test_hundred_concurrent_reservations_for_the_last_ten_units(suite, catalog):
    stub = suite.stub("catalog")
    product = await catalog.product(stock=10)
    results = await asyncio.gather(
        *(stub.ReserveStock(reserve_request(str(uuid.uuid4()), (product, 1))) for _ in range(100)),
        return_exceptions=True,
    )
    ok = [r for r in results if not isinstance(r, Exception)]
    failed = [r for r in results if isinstance(r, Exception)]
    assert len(ok) == 10
    assert all(isinstance(e, grpc.aio.AioRpcError) and e.code() == grpc.StatusCode.FAILED_PRECONDITION for e in failed)
    assert catalog.stock(product) == 0
    assert suite.sql(
        "catalog", "SELECT coalesce(sum(quantity), 0) FROM reservation_lines WHERE product_id = %s", (product,)
    ) == [(10,)]


async def test_fifty_concurrent_multi_line_reservations_never_deadlock(suite, catalog):
    stub = suite.stub("catalog")
    products = [await catalog.product(stock=1000) for _ in range(5)]
    rng = random.Random(7)
    requests = []
    for _ in range(50):
        lines = [(p, rng.randint(1, 3)) for p in products]
        rng.shuffle(lines)
        requests.append(reserve_request(str(uuid.uuid4()), *lines))
    results = await asyncio.gather(*(stub.ReserveStock(r) for r in requests), return_exceptions=True)
    errors = [r for r in results if isinstance(r, Exception)]
    assert errors == []
    for product in products:
        taken = sum(line.quantity for r in requests for line in r.lines if line.product_id == product)
        assert catalog.stock(product) == 1000 - taken


async def test_batch_get_products_any_status_and_missing_ids(suite, catalog):
    stub = suite.stub("catalog")
    active, archived = await catalog.product(), await catalog.product()
    suite.sql("catalog", "UPDATE products SET status = 'ARCHIVED' WHERE id = %s RETURNING id", (archived,))
    missing = str(uuid.uuid4())
    response = await stub.BatchGetProducts(
        R.BatchGetProductsRequest(product_ids=[archived, missing, active, "garbage", active])
    )
    assert [p.id for p in response.products] == [archived, active]
    assert response.products[0].status == R.PRODUCT_STATUS_ARCHIVED
    error = await rpc_error(
        stub.BatchGetProducts(R.BatchGetProductsRequest(product_ids=[str(uuid.uuid4()) for _ in range(201)]))
    )
    assert error.http_status == 400


async def test_record_purchases_is_idempotent_and_validated(suite, catalog):
    stub = suite.stub("catalog")
    product = await catalog.product()
    user = str(uuid.uuid4())
    request = R.RecordPurchasesRequest(order_id=str(uuid.uuid4()), user_id=user, product_ids=[product, product])
    await stub.RecordPurchases(request)
    await stub.RecordPurchases(request)
    assert suite.sql("catalog", "SELECT count(*) FROM purchases WHERE user_id = %s", (user,)) == [(1,)]
    for bad in (
        R.RecordPurchasesRequest(order_id="", user_id=user, product_ids=[product]),
        R.RecordPurchasesRequest(order_id="o1", user_id="nope", product_ids=[product]),
        R.RecordPurchasesRequest(order_id="o1", user_id=user, product_ids=["nope"]),
    ):
        error = await rpc_error(stub.RecordPurchases(bad))
        assert error.http_status == 400
    assert suite.sql("catalog", "SELECT count(*) FROM purchases WHERE user_id = %s", (user,)) == [(1,)]


async def test_expired_reservations_are_released_by_the_sweep_loop(suite, catalog):
    """A second catalog server on the suite's database, with a tiny TTL and sweep interval."""
    product = await catalog.product(stock=10)
    from services.catalog.server import build_server

    server = build_server(
        suite.service_settings(
            "catalog",
            grpc_address="127.0.0.1:0",
            reservation_ttl_seconds=0.3,
            sweep_interval_seconds=0.1,
            run_migrations=False,
        )
    )
    await server.start()
    clients = ServiceClients(
        BaseShopSettings(**{**suite.common(), **identity_settings("orders"), "catalog_target": server.address}),
        "orders",
    )
    try:
        expiring, committed = str(uuid.uuid4()), str(uuid.uuid4())
        await clients.catalog.ReserveStock(reserve_request(expiring, (product, 4)))
        await clients.catalog.ReserveStock(reserve_request(committed, (product, 1)))
        await clients.catalog.CommitReservation(R.CommitReservationRequest(reservation_id=committed))
        sweeps_before = server.runtime.sweeps
        for _ in range(200):
            if reservation_row(suite, expiring) == [("RELEASED",)]:
                break
            await asyncio.sleep(0.05)
        assert reservation_row(suite, expiring) == [("RELEASED",)]
        assert server.runtime.sweeps > sweeps_before
        assert reservation_row(suite, committed) == [("COMMITTED",)]
        assert catalog.stock(product) == 9
        # a paid order committing it late takes the stock again while it is there
        response = await clients.catalog.CommitReservation(R.CommitReservationRequest(reservation_id=expiring))
        assert response.reservation.status == R.RESERVATION_STATUS_COMMITTED
        assert catalog.stock(product) == 5
    finally:
        await clients.close()
        await server.stop(grace=0.5)


async def test_sweep_once_leaves_fresh_reservations_alone(suite, catalog):
    stub = suite.stub("catalog")
    product = await catalog.product(stock=3)
    rid = str(uuid.uuid4())
    await stub.ReserveStock(reserve_request(rid, (product, 2)))
    await sweep_once(suite.servers["catalog"].runtime)
    assert reservation_row(suite, rid) == [("RESERVED",)]
    assert catalog.stock(product) == 1


async def test_nul_in_internal_ids_is_400(suite, catalog):
    stub = suite.stub("catalog")
    product = await catalog.product(stock=2)
    error = await rpc_error(stub.ReserveStock(reserve_request("r\x00", (product, 1))))
    assert error.http_status == 400
    error = await rpc_error(
        stub.RecordPurchases(
            R.RecordPurchasesRequest(order_id="o\x00", user_id=str(uuid.uuid4()), product_ids=[product])
        )
    )
    assert error.http_status == 400
    assert catalog.stock(product) == 2
