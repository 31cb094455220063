"""Checkout as a shop configures it: promotion codes and Stripe Tax per program, what each
purchase was charged (total, discount, tax, Adaptive Pricing), and one Stripe Customer per user.

Only added columns and a new table: the running release keeps working against this schema.

Revision ID: 0003_checkout_options
Revises: 0002_notifications
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_checkout_options"
down_revision: str | Sequence[str] | None = "0002_notifications"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("programs", sa.Column("allow_promotion_codes", sa.Boolean(), nullable=True))
    op.add_column("programs", sa.Column("automatic_tax", sa.Boolean(), nullable=True))
    op.add_column("programs", sa.Column("tax_behavior", sa.String(16), nullable=True))
    op.add_column("programs", sa.Column("tax_code", sa.String(64), nullable=True))
    # Named by the naming convention (ck_programs_tax_behavior_known), as the models name it.
    op.create_check_constraint("tax_behavior_known", "programs", "tax_behavior IN ('exclusive', 'inclusive')")
    for name, column_type in (
        ("email", sa.String(254)),
        ("stripe_customer_id", sa.String(255)),
        ("tax_behavior", sa.String(16)),
        ("amount_total", sa.Integer()),
        ("amount_discount", sa.Integer()),
        ("amount_tax", sa.Integer()),
        ("discount", sa.String(255)),
        ("presentment_amount", sa.Integer()),
        ("presentment_currency", sa.String(3)),
    ):
        op.add_column("purchases", sa.Column(name, column_type, nullable=True))
    op.create_table(
        "customers",
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("stripe_customer_id", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "livemode", name="pk_customers"),
        sa.UniqueConstraint("stripe_customer_id", name="uq_customers_stripe_customer_id"),
    )


def downgrade() -> None:
    op.drop_table("customers")
    for name in ("presentment_currency", "presentment_amount", "discount", "amount_tax", "amount_discount",
                 "amount_total", "tax_behavior", "stripe_customer_id", "email"):
        op.drop_column("purchases", name)
    op.drop_constraint(op.f("ck_programs_tax_behavior_known"), "programs", type_="check")
    for name in ("tax_code", "tax_behavior", "automatic_tax", "allow_promotion_codes"):
        op.drop_column("programs", name)
