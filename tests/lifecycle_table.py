"""docs/DESIGN.md's state table as data: run against `lifecycle.apply` directly (tests/unit) and,
for a few rows, end to end through HTTP, the stand-in and PostgreSQL (tests/test_lifecycle.py)."""

# (events before, the event, expected outcome, expected status) — one row per table line.
STATE_TABLE = [
    ([], "completed_paid", "completed", "completed"),
    ([], "completed_unpaid", "awaiting_payment", "awaiting_payment"),
    ([], "async_succeeded", "completed", "completed"),
    (["completed_unpaid"], "async_succeeded", "completed", "completed"),
    ([], "async_failed", "payment_failed", "failed"),
    (["completed_unpaid"], "async_failed", "payment_failed", "failed"),
    ([], "expired", "expired", "expired"),
    (["completed_paid"], "refund_full", "refunded", "refunded"),
    (["completed_paid", "dispute_created"], "refund_full", "refunded", "refunded"),
    (["completed_paid"], "refund_partial", "partially_refunded", "completed"),
    (["completed_paid"], "dispute_created", "disputed", "disputed"),
    (["completed_paid", "dispute_created"], "dispute_lost", "dispute_lost", "dispute_lost"),
    (["completed_paid"], "dispute_lost", "dispute_lost", "dispute_lost"),
    (["completed_paid", "dispute_created"], "dispute_won", "completed", "completed"),
    # An appeal of a lost dispute that wins: the money comes back, and so does access.
    (["completed_paid", "dispute_lost"], "dispute_won", "completed", "completed"),
    # A dispute of a charge refunded in full: kept as a fact (the refund may still fail).
    (["completed_paid", "refund_full"], "dispute_created", "recorded", "refunded"),
]


# (events that happened, a late or replayed event, the status that must stay)
BACKWARDS = [
    (["completed_paid"], "expired", "completed"),
    (["completed_paid"], "async_failed", "completed"),
    (["completed_paid"], "completed_unpaid", "completed"),
    (["async_failed"], "completed_unpaid", "failed"),
    (["async_failed"], "expired", "failed"),
    (["completed_paid", "refund_full"], "async_succeeded", "refunded"),
    (["completed_paid", "refund_full"], "completed_paid", "refunded"),
    (["completed_paid", "refund_full"], "refund_partial", "refunded"),
    (["completed_paid", "dispute_lost"], "dispute_created", "dispute_lost"),
    (["completed_paid", "dispute_created", "dispute_won"], "dispute_created", "completed"),
    (["completed_paid", "dispute_won"], "dispute_created", "completed"),
    (["expired"], "expired", "expired"),
]

# (a change to the completed session, why it needs review)
MISMATCHES = [
    ({"amount_subtotal": 100, "amount_total": 100}, "subtotal 100 != price 4900"),
    ({"amount_total": 100}, "total 100 != subtotal 4900 - discount 0 + exclusive tax 0"),
    ({"total_details": {"amount_discount": 490, "amount_shipping": 0, "amount_tax": 0}},
     "total 4900 != subtotal 4900 - discount 490 + exclusive tax 0"),
    ({"currency": "eur"}, "currency eur != usd"),
    ({"livemode": True}, "livemode True != False"),
    ({"metadata": {"program_id": "prog_rust"}}, "program prog_rust != prog_py101"),
]
