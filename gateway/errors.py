"""The REST error envelope and the one gRPC → HTTP mapping (API.md), applied to every route."""

from __future__ import annotations

import json
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from gateway.responses import JSONResponse
from shop.lib.context import current_request_id
from shop.lib.errors import RemoteError, ShopError, decode_rpc_error
from shop.lib.validation import FieldErrors

_CODE_BY_HTTP_STATUS = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
    500: "INTERNAL",
    503: "SERVICE_UNAVAILABLE",
}


GENERIC_MESSAGES = {
    501: "Not implemented.",
    503: "The service is unavailable right now; try again shortly.",
    504: "The service did not answer in time; try again shortly.",
}


class ApiError(Exception):
    """An error answered in the envelope. Routes raise it; gRPC errors become it via `from_remote`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}

    @classmethod
    def from_remote(cls, remote: RemoteError) -> ApiError:
        details = dict(remote.details)
        if remote.fields:
            details["fields"] = remote.fields
        headers = {}
        if remote.retry_after is not None:
            headers["Retry-After"] = str(remote.retry_after)
        status = remote.http_status
        # A 5xx never carries the service's or gRPC's own text (it can name hosts and ports).
        message = remote.message if status < 500 else GENERIC_MESSAGES.get(status, "Internal error.")
        code = remote.code if status != 500 else "INTERNAL"
        return cls(status, code, message, details=details, headers=headers)

    @classmethod
    def from_shop_error(cls, error: ShopError) -> ApiError:
        """A shop.lib error raised in the gateway itself (a shared kit's ValidationError, say),
        answered exactly as the same error coming back from a service."""
        remote = RemoteError(
            error.grpc_code,
            error.code,
            error.message,
            details=dict(error.details),
            fields=dict(error.fields),
            retry_after=error.retry_after,
        )
        return cls.from_remote(remote)

    @classmethod
    def validation(cls, fields: dict[str, list[str]], message: str = "The request is not valid.") -> ApiError:
        return cls(400, "VALIDATION_ERROR", message, details={"fields": fields})


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "requestId": current_request_id()}
    if details:
        error["details"] = details
    return {"error": error}


async def send_error(send, status: int, code: str, message: str, headers: list | None = None) -> None:
    """The envelope answered straight from ASGI middleware (429, 413), before any route runs."""
    body = json.dumps(error_body(code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(
        error_body(error.code, error.message, error.details), status_code=error.status, headers=error.headers
    )


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(part) for part in loc if part not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or "body"


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> str:
    """Every method some route answers on the request's path (Starlette's own `Allow` names only
    the first route that matched the path, not the others on it)."""
    allowed = []
    for method in _METHODS:
        probe = {**request.scope, "method": method}
        if any(route.matches(probe)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return ", ".join(allowed)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(ShopError)
    async def _shop_error(_request: Request, exc: ShopError) -> JSONResponse:
        return error_response(ApiError.from_shop_error(exc))

    @app.exception_handler(grpc.aio.AioRpcError)
    async def _rpc_error(_request: Request, exc: grpc.aio.AioRpcError) -> JSONResponse:
        return error_response(ApiError.from_remote(decode_rpc_error(exc)))

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = FieldErrors()
        for err in exc.errors():
            name = "body" if err.get("type") == "json_invalid" else _field_name(tuple(err.get("loc", ())))
            errors.add(name, str(err.get("msg", "is not valid")))
        return error_response(ApiError.validation(errors.fields))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODE_BY_HTTP_STATUS.get(exc.status_code, "ERROR")
        message = {404: "No such route.", 405: "Method not allowed."}.get(exc.status_code, str(exc.detail))
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request) or headers.get("Allow", "")
        return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=headers or None)

    @app.exception_handler(UnicodeEncodeError)
    async def _not_utf8(_request: Request, _exc: UnicodeEncodeError) -> JSONResponse:
        # JSON may escape lone UTF-16 surrogates ("\ud800") that no UTF-8 text (or protobuf string) holds.
        return error_response(ApiError.validation({"body": ["text must be valid Unicode (no lone surrogates)"]}))

    @app.exception_handler(Exception)
    async def _unhandled(_request: Request, exc: Exception) -> JSONResponse:
        import structlog

        structlog.get_logger("gateway").exception("unhandled_error", exc_info=exc)
        return error_response(ApiError(500, "INTERNAL", "Internal error."))
