"""The purchase as the outside world sees it: the API's answers and the shop's notifications.

One function for both, so that a notification's `data.purchase` is exactly what
`GET /purchases/<id>` answers for the same state.
"""

from __future__ import annotations

from typing import Any

from paystore.models import Purchase


def purchase_json(p: Purchase) -> dict[str, Any]:
    return {
        "purchase_id": str(p.id),
        "user_id": p.user_id,
        "program_id": p.program_id,
        "status": str(p.status),
        "amount": p.amount,
        "currency": p.currency,
        "refunded_amount": p.refunded_amount,
        "stripe_session_id": p.stripe_session_id,
        # Only a pending purchase has a session the buyer can still pay.
        "checkout_url": p.checkout_url if p.status == "pending" else None,
        "created_at": p.created_at.isoformat() if p.created_at else None,
        "completed_at": p.completed_at.isoformat() if p.completed_at else None,
    }
