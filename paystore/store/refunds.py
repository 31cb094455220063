"""The refunds table (one row per Stripe refund, as last reported) and the refund requests the
shop made. Written under the purchase's lock, like the purchase itself."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from paystore.domain.purchase import Purchase
from paystore.domain.refund import Refund, RefundStatus
from paystore.store import notifications, sql
from paystore.store.purchases import with_notification

_FOR_PURCHASE = "SELECT id, purchase_id, amount, status, failure_reason, reason FROM refunds WHERE purchase_id = %(p)s"
_UPSERT = (
    "INSERT INTO refunds (id, purchase_id, amount, status, failure_reason, reason)"
    " VALUES (%(r_id)s, %(id)s, %(r_amount)s, %(r_status)s, %(r_failure)s, %(r_reason)s)"
    " ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, failure_reason = EXCLUDED.failure_reason,"
    " reason = EXCLUDED.reason, updated_at = now() RETURNING id"
)
_REQUEST = "SELECT fingerprint, stripe_refund_id FROM refund_requests WHERE purchase_id = %(p)s AND idempotency_key = %(k)s"
_ADD_REQUEST = (
    "INSERT INTO refund_requests (purchase_id, idempotency_key, fingerprint, stripe_refund_id)"
    " VALUES (%(p)s, %(k)s, %(f)s, %(r)s) ON CONFLICT DO NOTHING"
)


def for_purchase(db: Session, purchase_id: uuid.UUID) -> dict[str, Refund]:
    """The purchase's refunds by id (the caller holds the purchase's lock to change them)."""
    rows = sql.rows(db, _FOR_PURCHASE, {"p": purchase_id})
    return {row[0]: Refund(row[0], row[1], row[2], RefundStatus(row[3]), row[4], row[5]) for row in rows}


def write(db: Session, purchase: Purchase, changed: list[Refund], before: dict[str, Refund]) -> None:
    """Write the refunds whose facts changed; a refund that stopped counting (it failed or was
    canceled) writes the shop's `purchase.refund_failed` in the same statement."""
    for refund in changed:
        params = {"id": purchase.id, "r_id": refund.id, "r_amount": refund.amount, "r_status": str(refund.status),
                  "r_failure": refund.failure_reason, "r_reason": refund.reason}
        earlier = before.get(refund.id)
        statement = _UPSERT
        if not refund.counts and (earlier is None or earlier.counts):
            statement = with_notification(_UPSERT, "id")
            params.update(notifications.refund_failed_parameters(purchase, refund))
        sql.execute(db, statement, params)


def request(db: Session, purchase_id: uuid.UUID, idempotency_key: str) -> tuple[str, str] | None:
    """(fingerprint of its body, Stripe refund id) of an earlier request with this key, or None."""
    return sql.first(db, _REQUEST, {"p": purchase_id, "k": idempotency_key})


def add_request(db: Session, purchase_id: uuid.UUID, idempotency_key: str, fingerprint: str, refund_id: str) -> None:
    sql.execute(db, _ADD_REQUEST, {"p": purchase_id, "k": idempotency_key, "f": fingerprint, "r": refund_id})
