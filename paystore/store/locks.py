"""The advisory lock that checkout and the Stripe webhook both take, and its key strings.

Why one lock, in PostgreSQL, per transaction:
Stripe may deliver `checkout.session.completed` before the checkout request that created the
session has committed its purchase. If the two sides use different locks (or a lock in one
process, or a Redis lock with a TTL), the webhook can read "no purchase" and the sale is lost.
Both sides therefore take `pg_advisory_xact_lock` on the same key, derived from the purchase id:
checkout takes it before it inserts the purchase and keeps it until the Stripe session id is
committed; the webhook takes it before it reads the purchase, so it waits for that commit.
Transaction-level locks are released by COMMIT, ROLLBACK or a dropped connection, so a crashed
worker cannot strand one, and they work behind PgBouncer in transaction pooling mode. Every wait
is bounded by `lock_timeout`; a timeout raises `LockTimeout` (HTTP 503, Stripe retries).

Callers reach `take_xact_lock` through this module (`locks.take_xact_lock(...)`), never a copy
of the name: the negative-control tests replace it here to show what breaks without it.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from enum import StrEnum

import psycopg.errors
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from paystore import logs, metrics
from paystore.errors import Refusal
from paystore.store import sql


class LockKind(StrEnum):
    """What a key guards; the label of the lock metrics and of `paystore report locks`."""

    UNIFIED = "unified"  # one purchase: checkout, its webhooks, the return page, reconcile
    LEGACY = "legacy"  # a session created before paystore put purchase_id into metadata
    CREATE = "create"  # the creation of a purchase for a user and program
    CUSTOMER = "customer"  # the creation of a user's Stripe Customer
    REFUND = "refund"  # the refunds paystore asks Stripe for, of one purchase
    OTHER = "other"


PREFIXES = {
    LockKind.UNIFIED: "purchase:complete:",
    LockKind.LEGACY: "webhook:session:",
    LockKind.CREATE: "purchase:create:",
    LockKind.CUSTOMER: "customer:create:",
    LockKind.REFUND: "purchase:refund:",
}
MIGRATION_KEY = "paystore:migrate"

# One round trip: PostgreSQL evaluates the select list left to right, so the transaction-local
# settings are in force before the lock is requested.
#
# Why the idle bound: a transaction holding a purchase lock waits on Stripe (checkout) with the
# server seeing it "idle in transaction". If its host is cut off from PostgreSQL, the server would
# keep the transaction, and the lock, until TCP notices (about two hours with Linux defaults), and
# every webhook and return of that purchase would time out meanwhile. With this bound the server
# ends such a transaction once it has been idle longer than any healthy one can be (the Stripe
# timeout plus a margin: IDLE_MARGIN_S), which frees the lock. It is set here, for the transaction
# only, because a pooler or a managed database may not let operators set it server-wide.
_LOCK = (
    "SELECT set_config('lock_timeout', %(t)s, true), set_config('idle_in_transaction_session_timeout', %(i)s, true),"
    " pg_advisory_xact_lock(%(k)s)"
)
IDLE_MARGIN_S = 5.0
IDLE_BOUND_INFO = "paystore.idle_bound_ms"
DEFAULT_IDLE_BOUND_MS = 15_000


class LockTimeout(Refusal):
    """The lock was not granted within lock_timeout; nothing was changed."""

    def __init__(self, key: str, timeout_ms: int) -> None:
        super().__init__(f"lock {key} not granted within {timeout_ms} ms")
        self.key = key
        self.timeout_ms = timeout_ms


def purchase_lock_key(purchase_id: uuid.UUID | str) -> str:
    return f"{PREFIXES[LockKind.UNIFIED]}{str(purchase_id).lower()}"


def legacy_session_lock_key(checkout_session_id: str) -> str:
    return f"{PREFIXES[LockKind.LEGACY]}{checkout_session_id}"


def purchase_create_lock_key(user_id: str, program_id: str) -> str:
    return f"{PREFIXES[LockKind.CREATE]}{user_id}:{program_id}"


def customer_create_lock_key(user_id: str) -> str:
    return f"{PREFIXES[LockKind.CUSTOMER]}{user_id}"


def refund_lock_key(purchase_id: uuid.UUID | str) -> str:
    """Held by a refund paystore asks Stripe for (the shop's, or on an early fraud warning), from
    the check of what is left to refund, across Stripe's answer, to the commit of the refund. Two
    requests with different Idempotency-Keys would otherwise both see the same amount left and
    together ask Stripe for more, and a warning delivered twice at once would ask twice. A lock of
    its own, not the purchase's: webhooks of the purchase must not wait while Stripe answers."""
    return f"{PREFIXES[LockKind.REFUND]}{str(purchase_id).lower()}"


def lock_kind(key: str) -> LockKind:
    return next((kind for kind, prefix in PREFIXES.items() if key.startswith(prefix)), LockKind.OTHER)


def advisory_key_number(key: str) -> int:
    """First 8 bytes of SHA-256(key), big-endian, signed. Pinned by tests: never change it."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def idle_bound_ms(stripe_timeout_s: float) -> int:
    """How long a lock-holding transaction may sit idle before the server ends it."""
    return int((stripe_timeout_s + IDLE_MARGIN_S) * 1000)


def take_xact_lock(db: Session, key: str, timeout_ms: int) -> float:
    """Take the transaction-scoped advisory lock for `key`; return how long it waited, in ms.

    Must run inside the transaction whose commit publishes the protected change. The transaction
    is also bounded while idle (see _LOCK), by the bound its connection carries (paystore.db).
    """
    connection = db.connection()  # a pool checkout is not part of the lock wait
    kind = lock_kind(key)
    started = time.perf_counter()
    try:
        idle_ms = connection.info.get(IDLE_BOUND_INFO, DEFAULT_IDLE_BOUND_MS)
        sql.execute(db, _LOCK, {"t": f"{timeout_ms}ms", "i": f"{idle_ms}ms", "k": advisory_key_number(key)})
    except OperationalError as exc:
        if isinstance(exc.orig, psycopg.errors.LockNotAvailable):
            metrics.lock_timeouts.labels(kind).inc()
            raise LockTimeout(key, timeout_ms) from exc
        raise
    waited_ms = (time.perf_counter() - started) * 1000.0
    metrics.lock_wait.labels(kind).observe(waited_ms / 1000.0)
    logs.note_lock_wait(key, waited_ms)
    return waited_ms
