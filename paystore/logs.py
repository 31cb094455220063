"""JSON log lines, and the per-request fields (request id, purchase, lock) they carry.

Every record becomes one JSON object per line. Fields passed with `extra=` appear as keys, and
so do the fields bound to the current request (a context variable, so that the lock code and
the services can add to the request's line without knowing about Flask). Message texts stay
readable, e.g. "Using unified lock: purchase:complete:<id> (waited 3.1 ms)".
Nothing that could hold a secret (headers, bodies, settings) is ever put into a record.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

_request_fields: ContextVar[dict[str, Any] | None] = ContextVar("paystore_request_fields", default=None)
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def start_request(**fields: Any) -> None:
    _request_fields.set(dict(fields))


def end_request() -> dict[str, Any]:
    fields = _request_fields.get() or {}
    _request_fields.set(None)
    return fields


def bind(**fields: Any) -> None:
    """Add fields to the current request's log context (no-op outside a request)."""
    current = _request_fields.get()
    if current is not None:
        current.update(fields)


def note_lock_wait(key: str, wait_ms: float) -> None:
    current = _request_fields.get()
    if current is not None:
        current["lock_key"] = key
        current["lock_wait_ms"] = round(current.get("lock_wait_ms", 0.0) + wait_ms, 3)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        context = _request_fields.get()
        if context and "request_id" in context:
            line["request_id"] = context["request_id"]
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def logging_config(level: str | None = None) -> dict[str, Any]:
    """dictConfig for paystore's processes; gunicorn.conf.py passes it as logconfig_dict."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"level": (level or os.environ.get("PAYSTORE_LOG_LEVEL") or "INFO").upper(), "handlers": ["stderr"]},
        "loggers": {
            # stripe-python logs each request at INFO; paystore's own lines say what matters.
            "stripe": {"level": "WARNING"},
            "alembic.runtime.plugins": {"level": "WARNING"},
            "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        },
    }


def configure_logging() -> None:
    """JSON lines on stderr, once per process, unless the host application configured logging."""
    if not logging.getLogger().handlers:
        logging.config.dictConfig(logging_config())
