"""Logging for the processes paystore runs in (gunicorn workers, the CLI)."""

from __future__ import annotations

import logging
import os


def configure_logging() -> None:
    """INFO to stderr, once per process, unless the host application configured logging."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(name)s] %(message)s"))
    root.addHandler(handler)
    root.setLevel(os.environ.get("PAYSTORE_LOG_LEVEL", "INFO").upper())
    # stripe-python logs every request at INFO with its URL; ours are enough.
    logging.getLogger("stripe").setLevel(logging.WARNING)
