"""Refunds as facts, one row per Stripe refund (a refund that fails stops counting), the refunds a
shop asked for by idempotency key, and the charge a purchase's refunds and disputes refer to.

Only added columns and new tables: the running release keeps working against this schema.

Revision ID: 0004_refunds
Revises: 0003_checkout_options
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_refunds"
down_revision: str | Sequence[str] | None = "0003_checkout_options"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("purchases", sa.Column("stripe_charge_id", sa.String(255), nullable=True))
    op.add_column("purchases", sa.Column("reported_refunded_amount", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "refunds",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("purchase_id", sa.Uuid(), sa.ForeignKey("purchases.id"), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("status IN ('requires_action', 'pending', 'succeeded', 'failed', 'canceled')",
                           name="status_known"),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
    )
    op.create_index("ix_refunds_purchase_id", "refunds", ["purchase_id"])
    op.create_table(
        "refund_requests",
        sa.Column("purchase_id", sa.Uuid(), sa.ForeignKey("purchases.id"), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("stripe_refund_id", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("purchase_id", "idempotency_key", name="pk_refund_requests"),
    )


def downgrade() -> None:
    op.drop_table("refund_requests")
    op.drop_index("ix_refunds_purchase_id", "refunds")
    op.drop_table("refunds")
    op.drop_column("purchases", "reported_refunded_amount")
    op.drop_column("purchases", "stripe_charge_id")
