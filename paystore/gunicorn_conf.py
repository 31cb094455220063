"""gunicorn settings for paystore: `gunicorn -c python:paystore.gunicorn_conf paystore.wsgi:app`
(from a checkout, `gunicorn wsgi:app` reads the same settings through gunicorn.conf.py).

Every value can be set from the environment. The worker timeout must exceed the longest thing a
request can wait for: two lock waits (PAYSTORE_LOCK_TIMEOUT_MS, creation and purchase lock)
plus two Stripe calls (PAYSTORE_STRIPE_TIMEOUT_S); otherwise gunicorn would kill a worker that is
about to answer correctly, and its transaction would roll back. (gthread and gevent workers
heartbeat from their main loop, so there it bounds a stuck process rather than one request; the
same bound stays right for GUNICORN_WORKER_CLASS=sync and for the graceful shutdown below.)

Worker model (docs/capacity.md): a checkout holds its transaction, and so a thread and one
connection, across the Stripe create call. gthread workers, one process per core, each with
PAYSTORE_THREADS threads; each process's connection pool is its share of the database's
connections (paystore/factory.py), and checkouts are admitted up to that pool less the webhooks'
headroom, so that a checkout waiting on Stripe never takes the last connections.

Importing this module must not import prometheus_client (see below), so paystore's package
__init__ imports nothing heavy.
"""

import os
import shutil
import tempfile

_lock_s = int(os.environ.get("PAYSTORE_LOCK_TIMEOUT_MS") or 10_000) / 1000
_stripe_s = float(os.environ.get("PAYSTORE_STRIPE_TIMEOUT_S") or 10)

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# Threads, not processes, wait on Stripe: one process per core is enough to use the CPUs.
workers = int(os.environ.get("GUNICORN_WORKERS") or os.cpu_count() or 1)
worker_class = os.environ.get("GUNICORN_WORKER_CLASS") or "gthread"
# The longest request: checkout of a lapsed session (two lock waits, two Stripe calls).
timeout = int(os.environ.get("GUNICORN_TIMEOUT") or 2 * _lock_s + 2 * _stripe_s + 10)
# On SIGTERM a worker finishes the request in hand, so its transaction commits (or rolls back)
# before the process exits; nothing is cut off half-way.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT") or timeout)
keepalive = 5
# Each worker builds its own engine and connection pool after the fork: never share connections.
preload_app = False
# gunicorn >= 27 opens a control socket at a fixed per-user path; two servers on one host (or
# the test suite) would fight over it, and paystore does not use it.
control_socket_disable = True

# Prometheus multi-process mode: every worker writes its samples under this directory and
# /metrics adds them up. It must be set before anything imports prometheus_client (paystore
# does, below), because prometheus_client picks its storage once, at import.
_metrics_dir_is_ours = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="paystore-metrics-"))

# JSON lines for gunicorn's own messages too; paystore logs one line per request itself.
from paystore.config import threads_from_env  # noqa: E402
from paystore.logs import logging_config  # noqa: E402

threads = threads_from_env()  # gthread: threads per process (the pool is the connection budget)
if worker_class == "sync":
    # One request per process, as asked: gunicorn would otherwise quietly run gthread workers
    # whenever threads > 1 (the pool opens connections lazily, so it holds one here).
    threads = 1
if worker_class == "gevent":  # greenlets per process, likewise bounded by the pool
    worker_connections = threads
# (gthread keeps the default worker_connections of 1000: idle keep-alive connections wait in
# its poller, not in a thread, and gunicorn turns keep-alive off unless it exceeds threads.)

logconfig_dict = logging_config()
accesslog = os.environ.get("GUNICORN_ACCESSLOG")
if not accesslog:  # paystore's own request line says more; no second line per request
    logconfig_dict["loggers"]["gunicorn.access"]["level"] = "WARNING"


# The workers share the database's connections (and the Stripe read budget): each takes its
# share of PAYSTORE_DB_PROCESSES (paystore/factory.py). Unless ops set it, it is the worker count
# gunicorn finally runs, known only here: `-w`, `--workers` and GUNICORN_CMD_ARGS are applied after
# this file is read, so the `workers` above may not be it. This hook runs in the master whenever
# that count is set (at start, on HUP, on TTIN/TTOU), before the workers it concerns are forked.
_OURS = "PAYSTORE_DB_PROCESSES_FROM_GUNICORN"  # marks a value this hook set, not ops


def nworkers_changed(server, new_value, old_value):  # noqa: ANN001, ANN201
    if new_value < 1:
        return  # workers being stopped (SIGWINCH): none will be forked with it
    current = os.environ.get("PAYSTORE_DB_PROCESSES")
    if current is not None and current != os.environ.get(_OURS):
        return  # set by ops (e.g. the total of several hosts sharing one server): theirs wins
    os.environ["PAYSTORE_DB_PROCESSES"] = os.environ[_OURS] = str(new_value)


def on_starting(server):  # noqa: ANN001, ANN201
    """Start from empty counters: files of an earlier run would be added in."""
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):  # prometheus_client's sample files, nothing else
            os.remove(os.path.join(path, name))


def child_exit(server, worker):  # noqa: ANN001, ANN201
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):  # noqa: ANN001, ANN201
    if _metrics_dir_is_ours:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def post_worker_init(worker):  # noqa: ANN001, ANN201
    """Keep what start-up made out of the garbage collector's full passes.

    The app's modules, SQLAlchemy's mappers and compiled-statement cache, stripe-python and
    Flask are a large heap of objects that live as long as the worker. Each full collection
    would walk all of them again; frozen, it walks only what requests have made since (several
    per cent of a worker's CPU at 0 ms Stripe latency, docs/capacity.md). What requests make is collected
    as before; a start-up object is never freed, which it would not be anyway: it lives as long
    as the worker.
    """
    import gc

    gc.freeze()
