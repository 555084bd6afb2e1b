"""CreateCharge / ListPayments / CreateRefund over gRPC with a service identity (sandbox provider),
against the suite's real payments server and its PostgreSQL database."""

from __future__ import annotations

import asyncio
import re
import uuid

import grpc
import pytest

from shop.lib.clients import make_channel
from shop.lib.errors import decode_rpc_error
from shop.payments.v1 import payments_pb2, payments_pb2_grpc

S = payments_pb2.PaymentStatus


def new_order_id() -> str:
    return str(uuid.uuid4())


def charge_request(order_id: str, token: str = "tok_visa", amount: int = 5000, **extra):
    return payments_pb2.CreateChargeRequest(
        order_id=order_id,
        user_id="user-1",
        amount_cents=amount,
        currency_code="USD",
        method="card",
        token=token,
        **extra,
    )


def sandbox(suite):
    return suite.servers["payments"].definition.servicers[0][1].runtime.provider


def rows(suite, table: str, order_id: str) -> list[tuple]:
    return suite.sql("payments", f"SELECT * FROM {table} WHERE order_id = %s", (order_id,))


def payment_row(suite, order_id: str) -> tuple:
    found = suite.sql(
        "payments",
        "SELECT status, captured_cents, refunded_cents, brand, last4, decline_code FROM payments WHERE order_id = %s",
        (order_id,),
    )
    assert len(found) == 1
    return found[0]


async def expect_error(call, grpc_code: grpc.StatusCode, code: str):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    remote = decode_rpc_error(info.value)
    assert (remote.grpc_code, remote.code) == (grpc_code, code), (remote.grpc_code, remote.code, remote.message)
    return remote


@pytest.fixture
def payments(suite):
    return suite.stub("payments")


# -- sandbox tokens ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "brand", "last4"), [("tok_visa", "visa", "4242"), ("tok_mastercard", "mastercard", "4444")]
)
async def test_succeeding_tokens_record_brand_and_last4(suite, payments, token, brand, last4):
    order_id = new_order_id()
    response = await payments.CreateCharge(charge_request(order_id, token, amount=1234))
    payment = response.payment
    assert payment.status == S.PAYMENT_STATUS_SUCCEEDED
    assert (payment.brand, payment.last4) == (brand, last4)
    assert (payment.amount_cents, payment.captured_cents, payment.refunded_cents) == (1234, 1234, 0)
    assert payment.order_id == order_id and payment.provider == "sandbox" and payment.provider_reference
    assert payment_row(suite, order_id) == ("SUCCEEDED", 1234, 0, brand, last4, "")


@pytest.mark.parametrize(
    ("token", "decline_code"),
    [("tok_chargeDeclined", "card_declined"), ("tok_chargeDeclinedInsufficientFunds", "insufficient_funds")],
)
async def test_declining_tokens_are_payment_declined_and_recorded(suite, payments, token, decline_code):
    order_id = new_order_id()
    remote = await expect_error(
        payments.CreateCharge(charge_request(order_id, token)), grpc.StatusCode.FAILED_PRECONDITION, "PAYMENT_DECLINED"
    )
    assert remote.http_status == 402
    assert remote.details["declineCode"] == decline_code
    status, captured, refunded, _brand, _last4, stored_code = payment_row(suite, order_id)
    assert (status, captured, refunded, stored_code) == ("DECLINED", 0, 0, decline_code)
    # A decline is final for the order: a retry, even with a good token, is declined again, no new charge.
    before = sandbox(suite).charge_count
    await expect_error(
        payments.CreateCharge(charge_request(order_id, "tok_visa")),
        grpc.StatusCode.FAILED_PRECONDITION,
        "PAYMENT_DECLINED",
    )
    assert sandbox(suite).charge_count == before
    assert payment_row(suite, order_id)[0] == "DECLINED"


@pytest.mark.parametrize("token", ["tok_unknown", "pm_card_visa", "TOK_VISA"])
async def test_unknown_token_is_400_and_records_nothing(suite, payments, token):
    order_id = new_order_id()
    await expect_error(
        payments.CreateCharge(charge_request(order_id, token)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAYMENT_TOKEN",
    )
    assert rows(suite, "payments", order_id) == []


async def test_invalid_charge_arguments_are_400_and_record_nothing(suite, payments):
    order_id = new_order_id()
    for request, field in [
        (charge_request(order_id, amount=0), "amountCents"),
        (charge_request(order_id, amount=-5), "amountCents"),
        (charge_request("", amount=100), "orderId"),
        (
            payments_pb2.CreateChargeRequest(order_id=order_id, amount_cents=100, currency_code="US", token="tok_visa"),
            "currencyCode",
        ),
        (charge_request(order_id, token=""), "payment.token"),
    ]:
        remote = await expect_error(
            payments.CreateCharge(request), grpc.StatusCode.INVALID_ARGUMENT, "VALIDATION_ERROR"
        )
        assert field in remote.fields
    assert rows(suite, "payments", order_id) == []


async def test_invalid_token_then_good_token_charges(suite, payments):
    """An invalid token records nothing, so the order can still be charged afterwards."""
    order_id = new_order_id()
    await expect_error(
        payments.CreateCharge(charge_request(order_id, "tok_bogus")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAYMENT_TOKEN",
    )
    response = await payments.CreateCharge(charge_request(order_id, "tok_mastercard"))
    assert response.payment.status == S.PAYMENT_STATUS_SUCCEEDED


# -- idempotency ---------------------------------------------------------------------------------


async def test_repeated_charge_returns_the_stored_payment(suite, payments):
    order_id = new_order_id()
    before = sandbox(suite).charge_count
    first = await payments.CreateCharge(charge_request(order_id))
    second = await payments.CreateCharge(charge_request(order_id))
    # even with another token: the order was charged already
    third = await payments.CreateCharge(charge_request(order_id, "tok_mastercard"))
    assert first.payment == second.payment == third.payment
    assert sandbox(suite).charge_count == before + 1
    assert len(rows(suite, "payments", order_id)) == 1


async def test_repeat_with_another_amount_is_refused(suite, payments):
    order_id = new_order_id()
    await payments.CreateCharge(charge_request(order_id, amount=1000))
    await expect_error(
        payments.CreateCharge(charge_request(order_id, amount=2000)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CHARGE_MISMATCH",
    )
    assert payment_row(suite, order_id)[:3] == ("SUCCEEDED", 1000, 0)


async def test_ten_concurrent_charges_for_one_order_make_one_payment(suite, payments):
    order_id = new_order_id()
    before = sandbox(suite).charge_count
    responses = await asyncio.gather(*(payments.CreateCharge(charge_request(order_id)) for _ in range(10)))
    assert len({response.payment.id for response in responses}) == 1
    assert all(response.payment.status == S.PAYMENT_STATUS_SUCCEEDED for response in responses)
    assert len(rows(suite, "payments", order_id)) == 1
    assert sandbox(suite).charge_count == before + 1


async def test_ten_concurrent_declined_charges_make_one_declined_payment(suite, payments):
    order_id = new_order_id()
    before = sandbox(suite).charge_count
    results = await asyncio.gather(
        *(payments.CreateCharge(charge_request(order_id, "tok_chargeDeclined")) for _ in range(10)),
        return_exceptions=True,
    )
    assert all(
        isinstance(result, grpc.RpcError) and decode_rpc_error(result).code == "PAYMENT_DECLINED" for result in results
    )
    assert len(rows(suite, "payments", order_id)) == 1
    assert sandbox(suite).charge_count == before + 1


# -- callers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token", ["tok_visa", "tok_mastercard", "tok_chargeDeclined", "tok_chargeDeclinedInsufficientFunds"]
)
async def test_check_payment_method_accepts_the_sandbox_tokens(payments, token):
    await payments.CheckPaymentMethod(payments_pb2.CheckPaymentMethodRequest(method="card", token=token))


async def test_payment_rules_say_what_check_payment_method_does(payments):
    """GetPaymentRules is CheckPaymentMethod's token rule as data (orders applies it itself)."""
    rules = await payments.GetPaymentRules(payments_pb2.GetPaymentRulesRequest())
    assert rules.max_age_seconds > 0
    pattern = re.compile(rules.token_pattern)
    for token in ("tok_visa", "tok_mastercard", "tok_chargeDeclined", "tok_x", "tok_visa2", "xtok_visa", "tok_"):
        try:
            await payments.CheckPaymentMethod(payments_pb2.CheckPaymentMethodRequest(method="card", token=token))
            accepted = True
        except grpc.aio.AioRpcError as exc:
            assert decode_rpc_error(exc).code == "INVALID_PAYMENT_TOKEN", token
            accepted = False
        assert (pattern.fullmatch(token) is not None) == accepted, token


async def test_check_payment_method_refuses_bad_input_and_records_nothing(suite, payments):
    before = suite.sql("payments", "SELECT count(*) FROM payments")
    await expect_error(
        payments.CheckPaymentMethod(payments_pb2.CheckPaymentMethodRequest(method="card", token="tok_x")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAYMENT_TOKEN",
    )
    await expect_error(
        payments.CheckPaymentMethod(payments_pb2.CheckPaymentMethodRequest(method="card", token="")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "VALIDATION_ERROR",
    )
    await expect_error(
        payments.CheckPaymentMethod(payments_pb2.CheckPaymentMethodRequest(method="cash", token="tok_visa")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "VALIDATION_ERROR",
    )
    assert suite.sql("payments", "SELECT count(*) FROM payments") == before


async def test_a_user_token_is_refused_on_internal_rpcs(suite):
    user = await suite.register()
    channel = make_channel(f"127.0.0.1:{suite.ports['payments']}", "payments", service_tokens=None)
    try:
        stub = payments_pb2_grpc.PaymentsServiceStub(channel)
        metadata = (("authorization", f"Bearer {user['tokens']['accessToken']}"),)
        order_id = new_order_id()
        await expect_error(
            stub.CreateCharge(charge_request(order_id), metadata=metadata),
            grpc.StatusCode.PERMISSION_DENIED,
            "FORBIDDEN",
        )
        await expect_error(
            stub.CheckPaymentMethod(
                payments_pb2.CheckPaymentMethodRequest(method="card", token="tok_visa"), metadata=metadata
            ),
            grpc.StatusCode.PERMISSION_DENIED,
            "FORBIDDEN",
        )
        await expect_error(
            stub.CreateRefund(payments_pb2.CreateRefundRequest(order_id=order_id, request_id="r1"), metadata=metadata),
            grpc.StatusCode.PERMISSION_DENIED,
            "FORBIDDEN",
        )
        await expect_error(
            stub.ListPayments(payments_pb2.ListPaymentsRequest(order_id=order_id), metadata=metadata),
            grpc.StatusCode.PERMISSION_DENIED,
            "FORBIDDEN",
        )
        # and nobody at all
        await expect_error(stub.CreateCharge(charge_request(order_id)), grpc.StatusCode.PERMISSION_DENIED, "FORBIDDEN")
        assert rows(suite, "payments", order_id) == []
    finally:
        await channel.close()


# -- refunds -------------------------------------------------------------------------------------


def refund_request(order_id: str, amount: int = 0, request_id: str | None = None, reason: str = "customer asked"):
    return payments_pb2.CreateRefundRequest(
        order_id=order_id, amount_cents=amount, reason=reason, request_id=request_id or uuid.uuid4().hex
    )


async def charged(payments, amount: int = 5000) -> str:
    order_id = new_order_id()
    await payments.CreateCharge(charge_request(order_id, amount=amount))
    return order_id


async def test_partial_then_full_refund(suite, payments):
    order_id = await charged(payments, 5000)
    first = await payments.CreateRefund(refund_request(order_id, 1500, reason="damaged"))
    assert first.refund.amount_cents == 1500 and first.refund.status == payments_pb2.REFUND_STATUS_SUCCEEDED
    assert first.refund.provider_reference and first.refund.reason == "damaged"
    assert first.payment.status == S.PAYMENT_STATUS_PARTIALLY_REFUNDED
    assert (first.payment.captured_cents, first.payment.refunded_cents) == (5000, 1500)
    rest = await payments.CreateRefund(refund_request(order_id, 0))  # 0 = what remains
    assert rest.refund.amount_cents == 3500
    assert rest.payment.status == S.PAYMENT_STATUS_REFUNDED
    assert payment_row(suite, order_id)[:3] == ("REFUNDED", 5000, 5000)
    listed = await payments.ListPayments(payments_pb2.ListPaymentsRequest(order_id=order_id))
    assert [p.status for p in listed.payments] == [S.PAYMENT_STATUS_REFUNDED]
    assert [r.amount_cents for r in listed.refunds] == [1500, 3500]
    assert listed.payments[0].captured_cents - listed.payments[0].refunded_cents == 0
    # nothing remains: even "what remains" is refused
    await expect_error(
        payments.CreateRefund(refund_request(order_id, 0)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "REFUND_EXCEEDS_CAPTURED",
    )


async def test_refund_exceeding_what_remains_is_409_and_changes_nothing(suite, payments):
    order_id = await charged(payments, 2000)
    await payments.CreateRefund(refund_request(order_id, 500))
    before_refunds = rows(suite, "refunds", order_id)
    before_payment = payment_row(suite, order_id)
    refunds_before = sandbox(suite).refund_count
    remote = await expect_error(
        payments.CreateRefund(refund_request(order_id, 1501)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "REFUND_EXCEEDS_CAPTURED",
    )
    assert remote.http_status == 409 and remote.details["remainingCents"] == 1500
    assert rows(suite, "refunds", order_id) == before_refunds
    assert payment_row(suite, order_id) == before_payment
    assert sandbox(suite).refund_count == refunds_before


async def test_refund_is_idempotent_by_request_id(suite, payments):
    order_id = await charged(payments, 3000)
    request = refund_request(order_id, 1000, request_id="refund-" + uuid.uuid4().hex)
    first = await payments.CreateRefund(request)
    second = await payments.CreateRefund(request)
    assert first.refund == second.refund
    assert payment_row(suite, order_id)[:3] == ("PARTIALLY_REFUNDED", 3000, 1000)
    assert len(rows(suite, "refunds", order_id)) == 1
    # the same key for another order is refused
    other = await charged(payments, 3000)
    await expect_error(
        payments.CreateRefund(refund_request(other, 100, request_id=request.request_id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "IDEMPOTENCY_KEY_REUSED",
    )
    assert rows(suite, "refunds", other) == []


async def test_refund_errors_change_nothing(suite, payments):
    await expect_error(
        payments.CreateRefund(refund_request(new_order_id(), 100)), grpc.StatusCode.NOT_FOUND, "PAYMENT_NOT_FOUND"
    )
    order_id = await charged(payments, 1000)
    remote = await expect_error(
        payments.CreateRefund(refund_request(order_id, -1)), grpc.StatusCode.INVALID_ARGUMENT, "VALIDATION_ERROR"
    )
    assert "amountCents" in remote.fields
    remote = await expect_error(
        payments.CreateRefund(payments_pb2.CreateRefundRequest(order_id=order_id, amount_cents=10)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "VALIDATION_ERROR",
    )
    assert "requestId" in remote.fields
    assert rows(suite, "refunds", order_id) == []
    assert payment_row(suite, order_id)[:3] == ("SUCCEEDED", 1000, 0)
    # a declined payment captured nothing to refund
    declined = new_order_id()
    with pytest.raises(grpc.aio.AioRpcError):
        await payments.CreateCharge(charge_request(declined, "tok_chargeDeclined"))
    await expect_error(
        payments.CreateRefund(refund_request(declined, 0)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "REFUND_EXCEEDS_CAPTURED",
    )


async def test_concurrent_refunds_never_exceed_captured(suite, payments):
    order_id = await charged(payments, 1000)
    results = await asyncio.gather(
        *(payments.CreateRefund(refund_request(order_id, 300)) for _ in range(10)), return_exceptions=True
    )
    succeeded = [r for r in results if not isinstance(r, BaseException)]
    failed = [decode_rpc_error(r).code for r in results if isinstance(r, grpc.RpcError)]
    assert len(succeeded) == 3
    assert failed == ["REFUND_EXCEEDS_CAPTURED"] * 7
    status, captured, refunded = payment_row(suite, order_id)[:3]
    assert (status, captured, refunded) == ("PARTIALLY_REFUNDED", 1000, 900)
    total = suite.sql(
        "payments", "SELECT COALESCE(SUM(amount_cents), 0) FROM refunds WHERE order_id = %s", (order_id,)
    )[0][0]
    assert total == refunded
    # "what remains" from many callers at once: exactly one takes the last 100
    results = await asyncio.gather(
        *(payments.CreateRefund(refund_request(order_id, 0)) for _ in range(5)), return_exceptions=True
    )
    assert sum(1 for r in results if not isinstance(r, BaseException)) == 1
    assert payment_row(suite, order_id)[:3] == ("REFUNDED", 1000, 1000)


async def test_list_payments_of_an_unknown_order_is_empty(payments):
    listed = await payments.ListPayments(payments_pb2.ListPaymentsRequest(order_id=new_order_id()))
    assert list(listed.payments) == [] and list(listed.refunds) == []
