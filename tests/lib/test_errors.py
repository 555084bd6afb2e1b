"""The one error mapping: ShopError → google.rpc.Status → RemoteError → HTTP status, round trip."""

from __future__ import annotations

import grpc
import pytest

from shop.lib import errors


class FakeRpcError(grpc.RpcError):
    def __init__(self, status: grpc.Status) -> None:
        self._status = status

    def code(self):
        return self._status.code

    def details(self):
        return self._status.details

    def trailing_metadata(self):
        return self._status.trailing_metadata


def round_trip(error: errors.ShopError) -> errors.RemoteError:
    return errors.decode_rpc_error(FakeRpcError(errors.to_grpc_status(error)))


@pytest.mark.parametrize(
    ("error", "http", "code"),
    [
        (errors.ValidationError({"priceCents": ["must be > 0"]}), 400, "VALIDATION_ERROR"),
        (errors.Unauthenticated("no"), 401, "UNAUTHENTICATED"),
        (errors.PermissionDenied("no"), 403, "FORBIDDEN"),
        (errors.NotFound("x", code="PRODUCT_NOT_FOUND"), 404, "PRODUCT_NOT_FOUND"),
        (errors.AlreadyExists("x", code="SKU_TAKEN"), 409, "SKU_TAKEN"),
        (errors.Conflict("x", code="INSUFFICIENT_STOCK"), 409, "INSUFFICIENT_STOCK"),
        (errors.Aborted("x"), 409, "ABORTED"),
        (errors.ResourceExhausted("x", code="TOO_MANY_ATTEMPTS", retry_after=42), 429, "TOO_MANY_ATTEMPTS"),
        (errors.PaymentDeclined("declined"), 402, "PAYMENT_DECLINED"),
        (errors.Unavailable("down"), 503, "UNAVAILABLE"),
    ],
)
def test_round_trip_keeps_code_and_maps_http(error, http, code):
    remote = round_trip(error)
    assert remote.code == code
    assert remote.http_status == http
    assert remote.message == error.message


def test_details_fields_and_retry_after_survive():
    remote = round_trip(errors.Conflict("short", code="INSUFFICIENT_STOCK", details={"productIds": ["a", "b"]}))
    assert remote.details == {"productIds": ["a", "b"]}
    remote = round_trip(errors.ValidationError({"email": ["is not valid", "is too long"]}))
    assert remote.fields == {"email": ["is not valid", "is too long"]}
    remote = round_trip(errors.ResourceExhausted("slow down", retry_after=42))
    assert remote.retry_after == 42


def test_remote_error_re_raises_as_the_same_class():
    again = round_trip(errors.Conflict("short", code="INSUFFICIENT_STOCK", details={"productIds": ["a"]}))
    error = again.to_shop_error()
    assert isinstance(error, errors.Conflict)
    assert (error.code, error.details) == ("INSUFFICIENT_STOCK", {"productIds": ["a"]})
    assert isinstance(round_trip(errors.PaymentDeclined("no")).to_shop_error(), errors.PaymentDeclined)


def test_plain_grpc_errors_without_details_get_default_codes():
    status = grpc.Status()
    remote = errors.decode_rpc_error(FakeRpcError(_status(grpc.StatusCode.UNAVAILABLE, "connect failed")))
    assert (remote.code, remote.http_status) == ("SERVICE_UNAVAILABLE", 503)
    remote = errors.decode_rpc_error(FakeRpcError(_status(grpc.StatusCode.UNKNOWN, "Traceback: secret")))
    assert (remote.code, remote.http_status, remote.message) == ("INTERNAL", 500, "Internal error.")
    assert status is not None


def _status(code: grpc.StatusCode, details: str):
    class _S(grpc.Status):
        pass

    status = _S()
    status.code, status.details, status.trailing_metadata = code, details, ()
    return status
