"""structlog JSON logs with the request id, service and RPC bound from contextvars.

Never log metadata, tokens, passwords or request bodies: log what happened, not the secrets.
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any

import psycopg
import structlog
from sqlalchemy.exc import DBAPIError, StatementError
from structlog.typing import EventDict

_configured = False


def configure_logging(service: str, level: str = "INFO") -> None:
    global _configured
    if _configured:
        return
    _configured = True
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=level.upper())
    # grpc and uvicorn access logs are replaced by our own per-RPC / per-request lines.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            scrub_database_errors,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)


def _database_error(exc: BaseException | None) -> psycopg.Error | None:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, psycopg.Error):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def safe_error_text(exc: BaseException) -> str:
    """`Class: message` of an error, fit for a log line or a stored reason. A PostgreSQL error's
    text carries values (`DETAIL: Key (email)=(ann@example.com) already exists`, and SQLAlchemy
    adds the statement's parameters unless the engine hides them): for such an error, or one
    raised from it, only its SQLSTATE and primary message, never its detail or parameters."""
    db_error = _database_error(exc)
    if db_error is not None:
        return f"{type(exc).__name__}: SQLSTATE {db_error.sqlstate}: {db_error.diag.message_primary}"
    if isinstance(exc, StatementError) and exc.orig is not None:  # another driver's (SQLite): no SQL nor parameters
        return f"{type(exc).__name__}: {type(exc.orig).__name__}: {exc.orig}"
    return f"{type(exc).__name__}: {exc}"


def scrub_database_errors(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """A database error's traceback is logged with `safe_error_text` as its last line, plus the
    SQL (bound values are never in the SQL: the engines hide parameters), never the detail."""
    exc_info = event_dict.get("exc_info")
    if not exc_info:
        return event_dict
    if exc_info is True:
        exc_info = sys.exc_info()
    exc = exc_info if isinstance(exc_info, BaseException) else exc_info[1]
    if exc is None or _database_error(exc) is None:
        return event_dict
    del event_dict["exc_info"]
    statement = f"\n[SQL: {exc.statement}]" if isinstance(exc, DBAPIError) and exc.statement else ""
    event_dict["exception"] = (
        "Traceback (most recent call last):\n"
        + "".join(traceback.format_tb(exc.__traceback__))
        + f"{type(exc).__module__}.{safe_error_text(exc)}{statement}"
    )
    return event_dict


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
