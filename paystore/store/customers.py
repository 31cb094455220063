"""The customers table: each user's Stripe Customer (one per user and mode)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from paystore.store import sql

_GET = "SELECT stripe_customer_id FROM customers WHERE user_id = %(u)s AND livemode = %(l)s"
_ADD = "INSERT INTO customers (user_id, livemode, stripe_customer_id) VALUES (%(u)s, %(l)s, %(c)s)"


def get(db: Session, user_id: str, livemode: bool) -> str | None:
    return sql.scalar(db, _GET, {"u": user_id, "l": livemode})


def add(db: Session, user_id: str, livemode: bool, stripe_customer_id: str) -> None:
    sql.execute(db, _ADD, {"u": user_id, "l": livemode, "c": stripe_customer_id})
