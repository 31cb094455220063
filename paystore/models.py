"""Typed SQLAlchemy models. The schema itself is made only by the Alembic migrations."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
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
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class PurchaseStatus(StrEnum):
    PENDING = "pending"
    AWAITING_PAYMENT = "awaiting_payment"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    REFUNDED = "refunded"
    DISPUTED = "disputed"
    DISPUTE_LOST = "dispute_lost"
    NEEDS_REVIEW = "needs_review"


# A user may hold at most one purchase in these states per program (partial unique index).
ACTIVE_STATUSES = (
    PurchaseStatus.PENDING,
    PurchaseStatus.AWAITING_PAYMENT,
    PurchaseStatus.COMPLETED,
    PurchaseStatus.DISPUTED,
)


class PaymentFact(StrEnum):
    """What Stripe has told us about the money, independent of refunds and disputes."""

    NONE = "none"
    AWAITING = "awaiting"
    PAID = "paid"
    FAILED = "failed"
    EXPIRED = "expired"


class DisputeFact(StrEnum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"


def _utc_timestamp(**kwargs: Any) -> Any:
    return mapped_column(DateTime(timezone=True), **kwargs)


class Program(Base):
    __tablename__ = "programs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    amount: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = _utc_timestamp(server_default=func.now())

    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("currency ~ '^[a-z]{3}$'", name="currency_iso_lower"),
    )


class Purchase(Base):
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
    # Facts from Stripe; `status` is derived from them (paystore.services.lifecycle).
    payment: Mapped[PaymentFact] = mapped_column(String(16), default=PaymentFact.NONE)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    refunded_amount: Mapped[int] = mapped_column(Integer, default=0)
    dispute_id: Mapped[str | None] = mapped_column(String(255))
    dispute: Mapped[DisputeFact | None] = mapped_column(String(16))
    review_reason: Mapped[str | None] = mapped_column(Text)

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
            postgresql_where=text("status IN ('pending', 'awaiting_payment')"),
        ),
    )

    @classmethod
    def new_pending(
        cls,
        *,
        id: uuid.UUID,
        user_id: str,
        program_id: str,
        amount: int,
        currency: str,
        livemode: bool,
        stripe_session_id: str | None = None,
    ) -> Purchase:
        """A purchase before Stripe has said anything about it (facts set, not left to INSERT)."""
        return cls(
            id=id,
            user_id=user_id,
            program_id=program_id,
            status=PurchaseStatus.PENDING,
            amount=amount,
            currency=currency,
            livemode=livemode,
            stripe_session_id=stripe_session_id,
            payment=PaymentFact.NONE,
            refunded_amount=0,
        )


class StripeEvent(Base):
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


class Notification(Base):
    """One message to the shop about a purchase status change (the transactional outbox).

    Written in the transaction that changes the status (paystore.services.outbox), so it exists
    if and only if the change was committed; the deliverer sends it at least once afterwards.
    """

    __tablename__ = "notifications"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    purchase_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("purchases.id"))
    type: Mapped[str] = mapped_column(String(64))
    # The exact bytes that are signed and sent, fixed when the change commits.
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    give_up_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dead_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    # Declared so that a flush writes the purchase before its notification: the other order
    # takes the foreign key's row lock on the purchase first, and two writers of one purchase
    # (were its lock ever bypassed) would deadlock instead of queueing.
    purchase: Mapped[Purchase] = relationship(lazy="raise")

    __table_args__ = (
        Index("ix_notifications_purchase_id_created_at", "purchase_id", "created_at"),
        # The deliverer's claim query and the backlog metrics read only undelivered rows.
        Index(
            "ix_notifications_due",
            "next_attempt_at",
            postgresql_where=text("delivered_at IS NULL AND dead_at IS NULL"),
        ),
    )
