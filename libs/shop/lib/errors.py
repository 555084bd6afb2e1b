"""Typed errors shared by every service, and their one mapping to and from `google.rpc.Status`.

Domain code raises a `ShopError` subclass with a stable public `code` (the `ErrorInfo.reason`);
the server interceptor turns it into a rich gRPC status, and the gateway turns that status into
the REST error envelope with one table (`HTTP_STATUS_BY_GRPC_CODE`). No handler invents its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "shop"
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


class ShopError(Exception):
    """An error a caller can act on. `details` values must be JSON-serialisable."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    default_code: str = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        fields: dict[str, list[str]] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details or {}
        self.fields = fields or {}
        self.retry_after = retry_after


class InvalidArgument(ShopError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    default_code = "VALIDATION_ERROR"


class ValidationError(InvalidArgument):
    """Invalid fields: `fields` maps a camelCase field name to its messages."""

    def __init__(self, fields: dict[str, list[str]], message: str = "The request is not valid.") -> None:
        super().__init__(message, fields=fields)

    @classmethod
    def single(cls, field_name: str, message: str) -> ValidationError:
        return cls({field_name: [message]})


class Unauthenticated(ShopError):
    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    default_code = "UNAUTHENTICATED"


class PermissionDenied(ShopError):
    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    default_code = "FORBIDDEN"


class NotFound(ShopError):
    grpc_code = grpc.StatusCode.NOT_FOUND
    default_code = "NOT_FOUND"


class AlreadyExists(ShopError):
    grpc_code = grpc.StatusCode.ALREADY_EXISTS
    default_code = "ALREADY_EXISTS"


class Conflict(ShopError):
    """The resource is not in a state that allows the operation (FAILED_PRECONDITION, HTTP 409)."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    default_code = "CONFLICT"


class Aborted(ShopError):
    """Concurrency conflict; the caller may retry (ABORTED, HTTP 409)."""

    grpc_code = grpc.StatusCode.ABORTED
    default_code = "ABORTED"


class ResourceExhausted(ShopError):
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_code = "RATE_LIMITED"


class Unavailable(ShopError):
    grpc_code = grpc.StatusCode.UNAVAILABLE
    default_code = "UNAVAILABLE"


class PaymentDeclined(ShopError):
    """The only error with its own HTTP status (402); carried as FAILED_PRECONDITION in gRPC."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    default_code = "PAYMENT_DECLINED"


# The gateway's one mapping (API.md). A reason listed in HTTP_STATUS_BY_REASON wins.
HTTP_STATUS_BY_GRPC_CODE: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
HTTP_STATUS_BY_REASON: dict[str, int] = {
    "PAYMENT_DECLINED": 402,
    "PRECONDITION_FAILED": 412,
    "IDEMPOTENCY_KEY_REUSED": 422,
}
DEFAULT_CODE_BY_GRPC_CODE: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.INVALID_ARGUMENT: "VALIDATION_ERROR",
    grpc.StatusCode.UNAUTHENTICATED: "UNAUTHENTICATED",
    grpc.StatusCode.PERMISSION_DENIED: "FORBIDDEN",
    grpc.StatusCode.NOT_FOUND: "NOT_FOUND",
    grpc.StatusCode.ALREADY_EXISTS: "ALREADY_EXISTS",
    grpc.StatusCode.ABORTED: "ABORTED",
    grpc.StatusCode.FAILED_PRECONDITION: "FAILED_PRECONDITION",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "RATE_LIMITED",
    grpc.StatusCode.UNIMPLEMENTED: "NOT_IMPLEMENTED",
    grpc.StatusCode.UNAVAILABLE: "SERVICE_UNAVAILABLE",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DEADLINE_EXCEEDED",
}
_ERROR_CLASS_BY_GRPC_CODE: dict[grpc.StatusCode, type[ShopError]] = {
    cls.grpc_code: cls
    for cls in (
        InvalidArgument,
        Unauthenticated,
        PermissionDenied,
        NotFound,
        AlreadyExists,
        Conflict,
        Aborted,
        ResourceExhausted,
        Unavailable,
    )
}


def to_status_proto(error: ShopError) -> status_pb2.Status:
    """The rich status for a ShopError: ErrorInfo (+ BadRequest, + RetryInfo)."""
    status = status_pb2.Status(code=error.grpc_code.value[0], message=error.message)
    info = error_details_pb2.ErrorInfo(
        reason=error.code,
        domain=ERROR_DOMAIN,
        metadata={key: json.dumps(value) for key, value in error.details.items()},
    )
    status.details.add().Pack(info)
    if error.fields:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=name, description=message)
                for name, messages in error.fields.items()
                for message in messages
            ]
        )
        status.details.add().Pack(bad_request)
    if error.retry_after is not None:
        retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=error.retry_after))
        status.details.add().Pack(retry)
    return status


def to_grpc_status(error: ShopError) -> grpc.Status:
    return rpc_status.to_status(to_status_proto(error))


@dataclass
class RemoteError:
    """A gRPC error as received by a client, decoded from its rich status."""

    grpc_code: grpc.StatusCode
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, list[str]] = field(default_factory=dict)
    retry_after: int | None = None

    @property
    def http_status(self) -> int:
        return HTTP_STATUS_BY_REASON.get(self.code) or HTTP_STATUS_BY_GRPC_CODE.get(self.grpc_code, 500)

    def to_shop_error(self) -> ShopError:
        """Re-raise a downstream error unchanged to our own caller."""
        cls = _ERROR_CLASS_BY_GRPC_CODE.get(self.grpc_code, ShopError)
        if self.code == "PAYMENT_DECLINED":
            cls = PaymentDeclined
        return cls(
            self.message,
            code=self.code,
            details=self.details,
            fields=self.fields,
            retry_after=self.retry_after,
        )


def decode_rpc_error(error: grpc.RpcError) -> RemoteError:
    code = error.code()
    message = error.details() or ""
    remote = RemoteError(grpc_code=code, code=DEFAULT_CODE_BY_GRPC_CODE.get(code, "INTERNAL"), message=message)
    # grpc-stubs types these trailers as `_Metadatum` objects; both the sync and the aio errors
    # give (key, value) pairs (aio: a `grpc.aio.Metadata`), which is what this loop unpacks.
    trailers: Iterable[tuple[str, str | bytes]] = error.trailing_metadata() or ()  # type: ignore[assignment]
    for key, value in trailers:
        if key != _STATUS_DETAILS_KEY:
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                remote.code = info.reason or remote.code
                remote.details = {k: _json_or_text(v) for k, v in info.metadata.items()}
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                for violation in bad.field_violations:
                    remote.fields.setdefault(violation.field, []).append(violation.description)
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                remote.retry_after = int(retry.retry_delay.seconds)
    if remote.grpc_code == grpc.StatusCode.UNKNOWN or (
        remote.code == "INTERNAL" and remote.grpc_code not in HTTP_STATUS_BY_GRPC_CODE
    ):
        remote.code, remote.message = "INTERNAL", "Internal error."
    return remote


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


__all__ = [
    "Aborted",
    "AlreadyExists",
    "Conflict",
    "InvalidArgument",
    "NotFound",
    "PaymentDeclined",
    "PermissionDenied",
    "RemoteError",
    "ResourceExhausted",
    "ShopError",
    "Unauthenticated",
    "Unavailable",
    "ValidationError",
    "decode_rpc_error",
    "to_grpc_status",
    "to_status_proto",
    "code_pb2",
]
