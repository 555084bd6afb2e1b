"""What the orders service's checkout relies on to call the catalog fewer times, against
PostgreSQL and a real gRPC server: reservations answer each line with the product as it was when
reserved (priced_lines); unknown or non-ACTIVE products are PRODUCT_UNAVAILABLE with nothing
reserved; a repeat with `renew` extends a live reservation or re-takes a released one; committing
a released reservation re-takes its stock or fails leaving everything as it was; a commit with
`user_id` records the purchases (once) and verifies the user's reviews."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc

from services.catalog.tests.helpers import rpc_error
from services.catalog.tests.test_reservations import reservation_row, reserve_request
from shop.catalog.v1 import catalog_pb2 as R


def commit_request(reservation_id, user_id=""):
    return R.CommitReservationRequest(reservation_id=reservation_id, user_id=user_id)


def priced(reservation):
    return [
        (line.product_id, line.quantity, line.sku, line.name, line.unit_price_cents, line.currency_code)
        for line in reservation.priced_lines
    ]


def expires_at(suite, reservation_id) -> datetime:
    return suite.sql("catalog", "SELECT expires_at FROM reservations WHERE id = %s", (reservation_id,))[0][0]


def take_away(suite, product_id, stock):
    suite.sql("catalog", "UPDATE products SET stock = %s WHERE id = %s RETURNING id", (stock, product_id))


async def test_priced_lines_are_the_products_as_they_were_when_reserved(suite, catalog):
    stub = suite.stub("catalog")
    a = await catalog.product(stock=10, sku=f"A-{uuid.uuid4().hex[:8]}", name="Alpha", price_cents=1999)
    b = await catalog.product(stock=10, sku=f"B-{uuid.uuid4().hex[:8]}", name="Beta", price_cents=250, currency="EUR")
    snapshot = {
        a: (suite.sql("catalog", "SELECT sku FROM products WHERE id = %s", (a,))[0][0], "Alpha", 1999, "USD"),
        b: (suite.sql("catalog", "SELECT sku FROM products WHERE id = %s", (b,))[0][0], "Beta", 250, "EUR"),
    }
    rid = str(uuid.uuid4())
    first = (await stub.ReserveStock(reserve_request(rid, (b, 2), (a, 1), (b, 1)))).reservation
    expected = [(p, q, *snapshot[p]) for p, q in sorted([(a, 1), (b, 3)])]
    assert priced(first) == expected
    assert [(line.product_id, line.quantity) for line in first.lines] == [line[:2] for line in expected]
    # the product changes afterwards: the reservation keeps what was reserved
    suite.sql("catalog", "UPDATE products SET price_cents = 5000, name = 'Renamed' WHERE id = %s RETURNING id", (a,))
    again = (await stub.ReserveStock(reserve_request(rid, (a, 1), (b, 3)))).reservation
    assert priced(again) == expected and again == first
    assert priced((await stub.CommitReservation(commit_request(rid))).reservation) == expected
    assert (
        priced((await stub.RestockReservation(R.RestockReservationRequest(reservation_id=rid))).reservation) == expected
    )
    released = str(uuid.uuid4())
    await stub.ReserveStock(reserve_request(released, (b, 1)))
    answer = (await stub.ReleaseReservation(R.ReleaseReservationRequest(reservation_id=released))).reservation
    assert priced(answer) == [(b, 1, *snapshot[b])]
    # lines reserved before the snapshot columns existed answer with the product as it is now
    suite.sql(
        "catalog",
        "UPDATE reservation_lines SET sku = NULL, name = NULL, unit_price_cents = NULL, "
        "currency_code = NULL WHERE reservation_id = %s RETURNING product_id",
        (rid,),
    )
    legacy = (await stub.ReserveStock(reserve_request(rid, (a, 1), (b, 3)))).reservation
    assert priced(legacy) == sorted([(a, 1, snapshot[a][0], "Renamed", 5000, "USD"), (b, 3, *snapshot[b])])


async def test_unknown_archived_or_draft_products_are_unavailable_and_nothing_is_reserved(suite, catalog):
    stub = suite.stub("catalog")
    plenty, short = await catalog.product(stock=10), await catalog.product(stock=1)
    archived, draft = await catalog.product(stock=10), await catalog.product(stock=10, status="DRAFT")
    suite.sql("catalog", "UPDATE products SET status = 'ARCHIVED' WHERE id = %s RETURNING id", (archived,))
    missing = str(uuid.uuid4())
    rid = str(uuid.uuid4())
    error = await rpc_error(
        stub.ReserveStock(reserve_request(rid, (plenty, 2), (short, 5), (archived, 1), (draft, 1), (missing, 1)))
    )
    assert error.grpc_code == grpc.StatusCode.FAILED_PRECONDITION and error.http_status == 409
    assert error.code == "PRODUCT_UNAVAILABLE"
    assert error.details == {"productIds": sorted([archived, draft, missing])}
    assert [catalog.stock(p) for p in (plenty, short, archived, draft)] == [10, 1, 10, 10]
    assert reservation_row(suite, rid) == []
    assert suite.sql("catalog", "SELECT count(*) FROM reservation_lines WHERE reservation_id = %s", (rid,)) == [(0,)]
    # only short products: INSUFFICIENT_STOCK, listing just those
    error = await rpc_error(stub.ReserveStock(reserve_request(rid, (plenty, 2), (short, 5))))
    assert (error.code, error.details) == ("INSUFFICIENT_STOCK", {"productIds": [short]})
    assert (catalog.stock(plenty), catalog.stock(short), reservation_row(suite, rid)) == (10, 1, [])


async def test_renew_extends_a_reserved_reservation(suite, catalog):
    stub = suite.stub("catalog")
    product = await catalog.product(stock=10)
    rid = str(uuid.uuid4())
    await stub.ReserveStock(reserve_request(rid, (product, 3)))
    past = datetime.now(UTC) - timedelta(minutes=5)
    suite.sql("catalog", "UPDATE reservations SET expires_at = %s WHERE id = %s RETURNING id", (past, rid))
    # a plain repeat changes nothing
    plain = (await stub.ReserveStock(reserve_request(rid, (product, 3)))).reservation
    assert plain.expire_time.ToDatetime(tzinfo=UTC) == past
    assert expires_at(suite, rid) == past
    before = datetime.now(UTC)
    request = reserve_request(rid, (product, 3))
    request.renew = True
    renewed = (await stub.ReserveStock(request)).reservation
    ttl = suite.servers["catalog"].runtime.settings.reservation_ttl_seconds
    assert renewed.status == R.RESERVATION_STATUS_RESERVED
    assert expires_at(suite, rid) >= before + timedelta(seconds=ttl)
    assert renewed.expire_time.ToDatetime(tzinfo=UTC) >= before + timedelta(seconds=ttl) - timedelta(seconds=1)
    assert catalog.stock(product) == 7  # nothing taken twice
    # renewing with other lines is still a mismatch
    other = reserve_request(rid, (product, 4))
    other.renew = True
    assert (await rpc_error(stub.ReserveStock(other))).code == "RESERVATION_MISMATCH"
    assert catalog.stock(product) == 7


async def test_renew_retakes_a_released_reservation_or_fails_when_the_stock_is_gone(suite, catalog):
    stub = suite.stub("catalog")
    product = await catalog.product(stock=10)
    rid = str(uuid.uuid4())
    await stub.ReserveStock(reserve_request(rid, (product, 4)))
    await stub.ReleaseReservation(R.ReleaseReservationRequest(reservation_id=rid))
    assert catalog.stock(product) == 10
    # without renew a repeat answers RELEASED and takes nothing
    assert (
        await stub.ReserveStock(reserve_request(rid, (product, 4)))
    ).reservation.status == R.RESERVATION_STATUS_RELEASED
    assert catalog.stock(product) == 10
    request = reserve_request(rid, (product, 4))
    request.renew = True
    renewed = (await stub.ReserveStock(request)).reservation
    assert renewed.status == R.RESERVATION_STATUS_RESERVED
    assert reservation_row(suite, rid) == [("RESERVED",)]
    assert catalog.stock(product) == 6
    assert expires_at(suite, rid) > datetime.now(UTC) + timedelta(seconds=60)
    # renewing again extends it and takes nothing more
    assert (await stub.ReserveStock(request)).reservation.status == R.RESERVATION_STATUS_RESERVED
    assert catalog.stock(product) == 6

    # released, then another reservation takes the stock: renew fails and nothing changes
    await stub.ReleaseReservation(R.ReleaseReservationRequest(reservation_id=rid))
    other = str(uuid.uuid4())
    await stub.ReserveStock(reserve_request(other, (product, 8)))
    assert catalog.stock(product) == 2
    error = await rpc_error(stub.ReserveStock(request))
    assert (error.http_status, error.code, error.details) == (409, "INSUFFICIENT_STOCK", {"productIds": [product]})
    assert reservation_row(suite, rid) == [("RELEASED",)]
    assert catalog.stock(product) == 2

    # COMMITTED and RESTOCKED are answered unchanged
    renew_other = reserve_request(other, (product, 8))
    renew_other.renew = True
    await stub.CommitReservation(commit_request(other))
    assert (await stub.ReserveStock(renew_other)).reservation.status == R.RESERVATION_STATUS_COMMITTED
    await stub.RestockReservation(R.RestockReservationRequest(reservation_id=other))
    assert (await stub.ReserveStock(renew_other)).reservation.status == R.RESERVATION_STATUS_RESTOCKED
    assert catalog.stock(product) == 10


async def test_commit_of_a_released_reservation_retakes_or_fails_changing_nothing(suite, catalog):
    stub = suite.stub("catalog")
    a, b = await catalog.product(stock=5), await catalog.product(stock=5)
    late = str(uuid.uuid4())
    await stub.ReserveStock(reserve_request(late, (a, 3), (b, 1)))
    await stub.ReleaseReservation(R.ReleaseReservationRequest(reservation_id=late))
    assert (catalog.stock(a), catalog.stock(b)) == (5, 5)
    committed = (await stub.CommitReservation(commit_request(late))).reservation
    assert committed.status == R.RESERVATION_STATUS_COMMITTED
    assert (catalog.stock(a), catalog.stock(b)) == (2, 4)
    again = (await stub.CommitReservation(commit_request(late))).reservation  # a repeat takes nothing
    assert again.status == R.RESERVATION_STATUS_COMMITTED and (catalog.stock(a), catalog.stock(b)) == (2, 4)

    gone = str(uuid.uuid4())
    await stub.ReserveStock(reserve_request(gone, (a, 1), (b, 2)))
    await stub.ReleaseReservation(R.ReleaseReservationRequest(reservation_id=gone))
    take_away(suite, b, 1)  # a's line could be taken, b's cannot: all or nothing
    error = await rpc_error(stub.CommitReservation(commit_request(gone, str(uuid.uuid4()))))
    assert (error.http_status, error.code) == (409, "RESERVATION_RELEASED")
    assert error.details == {"productIds": [b]}
    assert reservation_row(suite, gone) == [("RELEASED",)]
    assert (catalog.stock(a), catalog.stock(b)) == (2, 1)
    assert suite.sql("catalog", "SELECT count(*) FROM purchases WHERE order_id = %s", (gone,)) == [(0,)]


async def test_commit_with_user_id_records_purchases_once_and_verifies_reviews(suite, catalog):
    stub = suite.stub("catalog")
    reviews = suite.servers["catalog"].runtime.reviews
    a, b, unrelated = await catalog.product(), await catalog.product(), await catalog.product()
    user, someone_else = str(uuid.uuid4()), str(uuid.uuid4())
    for product in (a, unrelated):
        await reviews.create_review(product, user, "CUSTOMER", 4, "Nice", "Good.")
    await reviews.create_review(b, someone_else, "CUSTOMER", 2, "Meh", "Bad.")
    rid = str(uuid.uuid4())
    await stub.ReserveStock(reserve_request(rid, (a, 1), (b, 2)))
    for _ in range(2):  # the repeat is a no-op
        response = await stub.CommitReservation(commit_request(rid, user.upper()))
        assert response.reservation.status == R.RESERVATION_STATUS_COMMITTED
        assert suite.sql(
            "catalog", "SELECT product_id, order_id FROM purchases WHERE user_id = %s ORDER BY product_id", (user,)
        ) == sorted([(a, rid), (b, rid)])
    verified = dict(
        suite.sql("catalog", "SELECT product_id, verified_purchase FROM reviews WHERE user_id = %s", (user,))
    )
    assert verified == {a: True, unrelated: False}
    assert suite.sql("catalog", "SELECT verified_purchase FROM reviews WHERE user_id = %s", (someone_else,)) == [
        (False,)
    ]
    assert (catalog.stock(a), catalog.stock(b)) == (9, 8)
    # without user_id nothing is recorded
    plain = str(uuid.uuid4())
    await stub.ReserveStock(reserve_request(plain, (unrelated, 1)))
    await stub.CommitReservation(commit_request(plain))
    assert suite.sql("catalog", "SELECT count(*) FROM purchases WHERE order_id = %s", (plain,)) == [(0,)]


async def test_commit_validates_its_ids(suite, catalog):
    stub = suite.stub("catalog")
    product = await catalog.product(stock=5)
    rid = str(uuid.uuid4())
    await stub.ReserveStock(reserve_request(rid, (product, 1)))
    for bad_user in ("nope", "1234", str(uuid.uuid4()) + "\x00"):
        error = await rpc_error(stub.CommitReservation(commit_request(rid, bad_user)))
        assert error.http_status == 400 and "userId" in error.fields
    for bad_id in ("", "x" * 65, "r\x00"):
        error = await rpc_error(stub.CommitReservation(commit_request(bad_id, str(uuid.uuid4()))))
        assert error.http_status == 400
    bad_renew = reserve_request("", (product, 1))
    bad_renew.renew = True
    assert (await rpc_error(stub.ReserveStock(bad_renew))).http_status == 400
    unknown = await rpc_error(stub.CommitReservation(commit_request(str(uuid.uuid4()), str(uuid.uuid4()))))
    assert (unknown.http_status, unknown.code) == (404, "RESERVATION_NOT_FOUND")
    assert reservation_row(suite, rid) == [("RESERVED",)]
    assert catalog.stock(product) == 4
    assert suite.sql("catalog", "SELECT count(*) FROM purchases WHERE order_id = %s", (rid,)) == [(0,)]
