"""Purchases refunded before refunds were kept one by one: what their charge reported refunded is
carried into `reported_refunded_amount`, so that a later refund event of such a purchase makes
paystore list the charge's refunds (money_back.list_refunds_if_unexplained) instead of counting
that refund alone, which would bring a refunded purchase back or keep one that is refunded in
full granting access.

Data only: the running release keeps working against this schema.

Revision ID: 0005_refunds_before_facts
Revises: 0004_refunds
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005_refunds_before_facts"
down_revision: str | Sequence[str] | None = "0004_refunds"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "UPDATE purchases SET reported_refunded_amount = refunded_amount"
        " WHERE refunded_amount > reported_refunded_amount"
        " AND NOT EXISTS (SELECT 1 FROM refunds WHERE refunds.purchase_id = purchases.id)"
    )


def downgrade() -> None:
    # The carried-over figure is a lower bound of what the charge reported: it may stay.
    pass
