"""The store: every read and write of purchases, refunds and the shop's refund requests, Stripe
events, notifications, customers and programs; the operator's reports; the server's connection
limits; and the advisory lock. Nothing else in paystore holds SQL; ruff's banned-api rule (TID251) keeps
SQLAlchemy's statement builders and the plain-SQL executor (`store.sql`) inside this package.

Services own the transactions (`with db.begin():`) and call these functions inside them. Each
table has one writer here: `purchases.write` is the only function that changes a purchase, and it
writes the shop's notification in the same statement when the status changes (the outbox).
"""

from __future__ import annotations

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

# What a lost or unusable database raises (a dropped connection, a server down, a deadlock, an
# exhausted pool): nothing was committed, and a retry is worth it.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (OperationalError, InterfaceError, PoolTimeout)
