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
from sqlalchemy.exc import DBAPIError
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


def scrub_database_errors(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """A PostgreSQL error's text carries values (`DETAIL: Key (email)=(ann@example.com) already
    exists`): log its traceback, SQLSTATE, primary message and SQL (bound values are never in the
    SQL: the engine hides parameters), never its detail."""
    exc_info = event_dict.get("exc_info")
    if not exc_info:
        return event_dict
    if exc_info is True:
        exc_info = sys.exc_info()
    exc = exc_info if isinstance(exc_info, BaseException) else exc_info[1]
    db_error = _database_error(exc)
    if exc is None or db_error is None:
        return event_dict
    del event_dict["exc_info"]
    statement = f"\n[SQL: {exc.statement}]" if isinstance(exc, DBAPIError) and exc.statement else ""
    event_dict["exception"] = (
        "Traceback (most recent call last):\n"
        + "".join(traceback.format_tb(exc.__traceback__))
        + f"{type(exc).__module__}.{type(exc).__name__}: SQLSTATE {db_error.sqlstate}: "
        + f"{db_error.diag.message_primary}{statement}"
    )
    return event_dict


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
