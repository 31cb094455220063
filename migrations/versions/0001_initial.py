"""Programs, purchases and the Stripe event record.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001_initial"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = (
    "pending",
    "awaiting_payment",
    "completed",
    "failed",
    "expired",
    "refunded",
    "disputed",
    "dispute_lost",
    "needs_review",
)
ACTIVE_STATUSES = ("pending", "awaiting_payment", "completed", "disputed")


def _in(values: Sequence[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def upgrade() -> None:
    op.create_table(
        "programs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint("currency ~ '^[a-z]{3}$'", name="currency_iso_lower"),
    )
    op.create_table(
        "purchases",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("program_id", sa.String(64), sa.ForeignKey("programs.id"), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("stripe_session_id", sa.String(255), nullable=True, unique=True),
        sa.Column("checkout_url", sa.Text(), nullable=True),
        sa.Column("session_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("payment", sa.String(16), nullable=False, server_default="none"),
        sa.Column("stripe_payment_intent_id", sa.String(255), nullable=True, unique=True),
        sa.Column("refunded_amount", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("dispute_id", sa.String(255), nullable=True),
        sa.Column("dispute", sa.String(16), nullable=True),
        sa.Column("review_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(f"status IN ({_in(STATUSES)})", name="status_known"),
        sa.CheckConstraint(
            "payment IN ('none', 'awaiting', 'paid', 'failed', 'expired')", name="payment_known"
        ),
        sa.CheckConstraint("dispute IN ('open', 'won', 'lost')", name="dispute_known"),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint("refunded_amount >= 0", name="refunded_amount_not_negative"),
    )
    # Invariant 4: one active purchase per user and program, enforced by the database.
    op.create_index(
        "uq_purchases_one_active_per_user_program",
        "purchases",
        ["user_id", "program_id"],
        unique=True,
        postgresql_where=sa.text(f"status IN ({_in(ACTIVE_STATUSES)})"),
    )
    op.create_index("ix_purchases_user_id_created_at", "purchases", ["user_id", "created_at"])
    op.create_index(
        "ix_purchases_open_by_age",
        "purchases",
        ["created_at"],
        postgresql_where=sa.text("status IN ('pending', 'awaiting_payment')"),
    )
    op.create_table(
        "stripe_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("stripe_event_id", sa.String(255), nullable=False, unique=True),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=True),
        sa.Column("purchase_id", sa.Uuid(), nullable=True),
        sa.Column("lock_key", sa.String(255), nullable=True),
        sa.Column("lock_wait_ms", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_stripe_events_purchase_id", "stripe_events", ["purchase_id"])
    op.create_index("ix_stripe_events_received_at", "stripe_events", ["received_at"])


def downgrade() -> None:
    op.drop_table("stripe_events")
    op.drop_table("purchases")
    op.drop_table("programs")
