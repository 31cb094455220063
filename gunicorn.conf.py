"""gunicorn settings for paystore (`gunicorn wsgi:app` reads this file from the repo root).

Every value can be set from the environment. The worker timeout must exceed the longest thing a
request can wait for: the lock (PAYSTORE_LOCK_TIMEOUT_MS) plus the Stripe call
(PAYSTORE_STRIPE_TIMEOUT_S), or gunicorn would kill a worker that is about to answer correctly.
"""

import os

_lock_s = int(os.environ.get("PAYSTORE_LOCK_TIMEOUT_MS") or 10_000) / 1000
_stripe_s = float(os.environ.get("PAYSTORE_STRIPE_TIMEOUT_S") or 10)

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS") or 2 * (os.cpu_count() or 1) + 1)
worker_class = "sync"
# Two lock waits (creation + purchase) and one Stripe call, plus slack.
timeout = int(os.environ.get("GUNICORN_TIMEOUT") or 2 * _lock_s + _stripe_s + 10)
# On SIGTERM, workers finish the request in hand (its transaction commits or rolls back).
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT") or timeout)
keepalive = 5
# Each worker builds its own engine and pool after the fork: never share connections.
preload_app = False
accesslog = os.environ.get("GUNICORN_ACCESSLOG")  # unset: paystore logs one line per request
# gunicorn >= 27 opens a control socket at a fixed per-user path; two servers on one host (or
# the test suite) would fight over it, and paystore does not use it.
control_socket_disable = True
