"""The tables, as typed SQLAlchemy models. The schema itself is made only by the migrations.

These classes describe the schema (Alembic compares them with the database) and name the tables
in the store's queries. paystore's own code works with the domain objects of paystore.domain,
which the store (paystore.store) reads from rows and writes back; a Session never flushes one of
these (paystore.db refuses it), so nothing writes a table behind the store's back.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from paystore.domain.purchase import ACTIVE_STATUSES, MAX_EMAIL_LENGTH, OPEN_STATUSES, DisputeFact, PaymentFact, PurchaseStatus
from paystore.domain.refund import RefundStatus

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(TypeDecorator[datetime]):
    """timestamptz that is UTC in Python whatever the session's TimeZone.

    paystore sets no TimeZone (PgBouncer refuses startup options, and a SET does not follow a
    transaction to its next server connection). psycopg returns the right instant in the
    session's zone (or UTC, with a warning, for a zone Python does not know); this type moves
    it to UTC. Naive datetimes are refused: PostgreSQL would read them in the session's zone.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: timestamps must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.astimezone(UTC)


def _utc_timestamp(**kwargs: Any) -> Any:
    return mapped_column(UtcDateTime(), **kwargs)


class ProgramRow(Base):
    __tablename__ = "programs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    amount: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = _utc_timestamp(server_default=func.now())
    # None: the deployment's setting applies (paystore.domain.program).
    allow_promotion_codes: Mapped[bool | None] = mapped_column(Boolean)
    automatic_tax: Mapped[bool | None] = mapped_column(Boolean)
    tax_behavior: Mapped[str | None] = mapped_column(String(16))
    tax_code: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("currency ~ '^[a-z]{3}$'", name="currency_iso_lower"),
        CheckConstraint("tax_behavior IN ('exclusive', 'inclusive')", name="tax_behavior_known"),
    )


class PurchaseRow(Base):
    __tablename__ = "purchases"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128))
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.id"))
    status: Mapped[PurchaseStatus] = mapped_column(String(32))
    amount: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    stripe_session_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    checkout_url: Mapped[str | None] = mapped_column(Text)
    session_expires_at: Mapped[datetime | None] = _utc_timestamp()
    created_at: Mapped[datetime] = _utc_timestamp(server_default=func.now())
    updated_at: Mapped[datetime] = _utc_timestamp(server_default=func.now(), onupdate=func.now())
    completed_at: Mapped[datetime | None] = _utc_timestamp()
    # Facts from Stripe; `status` is derived from them (paystore.domain.lifecycle).
    payment: Mapped[PaymentFact] = mapped_column(String(16), default=PaymentFact.NONE)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    refunded_amount: Mapped[int] = mapped_column(Integer, default=0)
    dispute_id: Mapped[str | None] = mapped_column(String(255))
    dispute: Mapped[DisputeFact | None] = mapped_column(String(16))
    review_reason: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(String(MAX_EMAIL_LENGTH))
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255))
    tax_behavior: Mapped[str | None] = mapped_column(String(16))
    amount_total: Mapped[int | None] = mapped_column(Integer)
    amount_discount: Mapped[int | None] = mapped_column(Integer)
    amount_tax: Mapped[int | None] = mapped_column(Integer)
    discount: Mapped[str | None] = mapped_column(String(255))
    presentment_amount: Mapped[int | None] = mapped_column(Integer)
    presentment_currency: Mapped[str | None] = mapped_column(String(3))
    stripe_charge_id: Mapped[str | None] = mapped_column(String(255))
    reported_refunded_amount: Mapped[int] = mapped_column(Integer, server_default="0")

    __table_args__ = (
        Index(
            "uq_purchases_one_active_per_user_program",
            "user_id",
            "program_id",
            unique=True,
            postgresql_where=text(f"status IN ({', '.join(repr(str(s)) for s in ACTIVE_STATUSES)})"),
        ),
        Index("ix_purchases_user_id_created_at", "user_id", "created_at"),
        Index(
            "ix_purchases_open_by_age",
            "created_at",
            postgresql_where=text(f"status IN ({', '.join(repr(str(s)) for s in OPEN_STATUSES)})"),
        ),
    )


class RefundRow(Base):
    """One Stripe refund of a purchase, as last reported (paystore.domain.refund)."""

    __tablename__ = "refunds"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    purchase_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("purchases.id"), index=True)
    amount: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = _utc_timestamp(server_default=func.now())
    updated_at: Mapped[datetime] = _utc_timestamp(server_default=func.now())

    __table_args__ = (
        CheckConstraint(f"status IN ({', '.join(repr(str(s)) for s in RefundStatus)})", name="status_known"),
        CheckConstraint("amount > 0", name="amount_positive"),
    )


class RefundRequestRow(Base):
    """A refund the shop asked for (POST /purchases/<id>/refunds), by its Idempotency-Key."""

    __tablename__ = "refund_requests"

    purchase_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("purchases.id"), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # of the request's body: another body is a 409
    stripe_refund_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = _utc_timestamp(server_default=func.now())


class CustomerRow(Base):
    """The user's Stripe Customer, one per user and mode, made on their first checkout."""

    __tablename__ = "customers"

    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    livemode: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    stripe_customer_id: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = _utc_timestamp(server_default=func.now())


class StripeEventRow(Base):
    """One row per Stripe event id: the durable record that makes redelivery a no-op."""

    __tablename__ = "stripe_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    stripe_event_id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(128))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    received_at: Mapped[datetime] = _utc_timestamp(server_default=func.now(), index=True)
    processed_at: Mapped[datetime | None] = _utc_timestamp()
    outcome: Mapped[str | None] = mapped_column(String(32))
    purchase_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    lock_key: Mapped[str | None] = mapped_column(String(255))
    lock_wait_ms: Mapped[float | None] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    error: Mapped[str | None] = mapped_column(Text)


class NotificationRow(Base):
    """One message to the shop about a purchase status change (the transactional outbox).

    Written in the statement that changes the status (paystore.store.purchases.write), so it
    exists if and only if the change was committed; the deliverer sends it at least once afterwards.
    """

    __tablename__ = "notifications"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    purchase_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("purchases.id"))
    type: Mapped[str] = mapped_column(String(64))
    # The exact bytes that are signed and sent, fixed when the change commits.
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _utc_timestamp()
    next_attempt_at: Mapped[datetime] = _utc_timestamp()
    give_up_at: Mapped[datetime] = _utc_timestamp()
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    delivered_at: Mapped[datetime | None] = _utc_timestamp()
    dead_at: Mapped[datetime | None] = _utc_timestamp()
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_notifications_purchase_id_created_at", "purchase_id", "created_at"),
        # The deliverer's claim query and the backlog metrics read only undelivered rows.
        Index(
            "ix_notifications_due",
            "next_attempt_at",
            postgresql_where=text("delivered_at IS NULL AND dead_at IS NULL"),
        ),
    )
