"""Refunds as facts per refund (paystore.domain.refund): a refund that fails stops counting, and the
same reports in any order, repeated, end in the same facts and status."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from paystore.domain import lifecycle
from paystore.domain import refund as refund_rules
from paystore.domain.outcome import Outcome
from paystore.domain.purchase import PaymentFact, Purchase, PurchaseStatus
from paystore.domain.refund import Refund, RefundStatus, apply_refunds
from tests.generated import bounded

PURCHASE_ID = uuid.UUID(int=7)
S = RefundStatus


def paid(amount_total: int = 4900) -> Purchase:
    purchase = Purchase.pending(id=PURCHASE_ID, user_id="u", program_id="p", amount=4900, currency="usd", livemode=False)
    lifecycle.apply(purchase, lambda p: (setattr(p, "payment", PaymentFact.PAID), setattr(p, "amount_total", amount_total)),
                    cause="unit")
    return purchase


def report(refund_id: str, amount: int, status: RefundStatus, failure: str | None = None) -> Refund:
    return Refund(refund_id, PURCHASE_ID, amount, status, failure)


def test_a_refund_that_fails_after_the_purchase_went_refunded_brings_it_back_to_completed() -> None:
    purchase, known = paid(), {}
    assert apply_refunds(purchase, known, [report("re_1", 4900, S.SUCCEEDED)], None, cause="unit")[0] == Outcome.REFUNDED

    outcome, changed = apply_refunds(purchase, known, [report("re_1", 4900, S.FAILED, "expired_or_canceled_card")], None,
                                     cause="unit")

    assert (outcome, purchase.status, purchase.refunded_amount) == (Outcome.COMPLETED, PurchaseStatus.COMPLETED, 0)
    assert changed == [report("re_1", 4900, S.FAILED, "expired_or_canceled_card")]


def test_a_failed_part_refund_leaves_the_other_part_counted() -> None:
    purchase, known = paid(), {}
    apply_refunds(purchase, known, [report("re_1", 1000, S.SUCCEEDED), report("re_2", 2000, S.PENDING)], None, cause="unit")

    outcome, _ = apply_refunds(purchase, known, [report("re_1", 1000, S.FAILED)], None, cause="unit")

    assert (outcome, purchase.status, purchase.refunded_amount) == (Outcome.REFUND_FAILED, PurchaseStatus.COMPLETED, 2000)


def test_pending_and_requires_action_count_canceled_does_not() -> None:
    purchase, known = paid(), {}
    apply_refunds(purchase, known, [report("re_1", 900, S.REQUIRES_ACTION), report("re_2", 4000, S.PENDING),
                                    report("re_3", 100, S.CANCELED)], None, cause="unit")

    assert (purchase.refunded_amount, purchase.status) == (4900, PurchaseStatus.REFUNDED)


def test_a_discounted_purchase_is_refunded_in_full_at_what_was_charged() -> None:
    purchase = paid(amount_total=4410)

    apply_refunds(purchase, {}, [report("re_1", 4410, S.SUCCEEDED)], None, cause="unit")

    assert purchase.status == PurchaseStatus.REFUNDED


def test_the_charges_own_total_never_counts_only_refunds_do() -> None:
    """`amount_refunded` cannot say which refunds it adds up: only refunds known one by one count."""
    purchase, known = paid(), {}
    assert apply_refunds(purchase, known, [], 4900, cause="unit")[0] == Outcome.STALE  # only kept, for operators
    assert (purchase.status, purchase.refunded_amount, purchase.reported_refunded_amount) == (
        PurchaseStatus.COMPLETED, 0, 4900)


def test_two_part_refunds_in_either_order_end_refunded_and_never_go_back() -> None:
    for order in (["re_1", "re_2"], ["re_2", "re_1"]):
        purchase, known = paid(), {}
        parts = {"re_1": 300, "re_2": 4600}
        statuses = [apply_refunds(purchase, known, [report(rid, parts[rid], S.SUCCEEDED)], None, cause="unit")[0]
                    for rid in order]
        # the complete list arriving again (charge.refunded, listed) adds nothing
        statuses.append(apply_refunds(purchase, known, [report(r, a, S.SUCCEEDED) for r, a in parts.items()], 4900,
                                      cause="unit")[0])
        assert statuses == [Outcome.PARTIALLY_REFUNDED, Outcome.REFUNDED, Outcome.STALE]
        assert (purchase.status, purchase.refunded_amount) == (PurchaseStatus.REFUNDED, 4900)


def test_a_refund_that_fails_beside_a_newer_active_purchase_sends_the_old_one_to_review() -> None:
    purchase, known = paid(), {}
    apply_refunds(purchase, known, [report("re_1", 4900, S.SUCCEEDED)], None, cause="unit")
    asked = []

    def clash(p: Purchase) -> str:
        asked.append(p.status)
        return "would be completed again while purchase X is completed"

    outcome, changed = apply_refunds(purchase, known, [report("re_1", 4900, S.FAILED)], None, cause="unit", clash=clash)

    assert (outcome, purchase.status, purchase.refunded_amount) == (Outcome.NEEDS_REVIEW, PurchaseStatus.NEEDS_REVIEW, 0)
    assert asked == [PurchaseStatus.COMPLETED] and [r.status for r in changed] == [S.FAILED]
    assert "purchase X" in (purchase.review_reason or "")


def test_no_clash_no_review_and_a_partial_refund_never_asks() -> None:
    purchase, known = paid(), {}
    never = []
    apply_refunds(purchase, known, [report("re_1", 1000, S.SUCCEEDED)], None, cause="unit", clash=never.append)
    assert never == []  # completed stays completed: nothing becomes active again
    apply_refunds(purchase, known, [report("re_2", 3900, S.SUCCEEDED)], None, cause="unit")
    outcome, _ = apply_refunds(purchase, known, [report("re_2", 3900, S.FAILED)], None, cause="unit",
                               clash=lambda p: None)
    assert (outcome, purchase.status) == (Outcome.COMPLETED, PurchaseStatus.COMPLETED)


def adaptive(presentment_amount: int = 4312, presentment_currency: str = "chf") -> Purchase:
    purchase = paid()
    purchase.presentment_amount, purchase.presentment_currency = presentment_amount, presentment_currency
    return purchase


def test_adaptive_pricing_refunded_in_full_in_the_buyers_currency_is_refunded() -> None:
    purchase = adaptive()
    apply_refunds(purchase, {}, [report("re_1", 4312, S.SUCCEEDED)], None, cause="unit")
    assert (purchase.status, lifecycle.charged(purchase)) == (PurchaseStatus.REFUNDED, (4312, "chf"))


def test_adaptive_pricing_partial_refund_in_a_weaker_currency_is_not_in_full() -> None:
    purchase = adaptive(735000, "jpy")  # 4900 usd
    apply_refunds(purchase, {}, [report("re_1", 5000, S.SUCCEEDED)], None, cause="unit")
    assert (purchase.status, purchase.refunded_amount) == (PurchaseStatus.COMPLETED, 5000)


def test_a_refund_in_another_currency_than_the_charge_goes_to_review() -> None:
    purchase = adaptive()
    problem = refund_rules.currency_problem(purchase, "re_1", "usd")
    apply_refunds(purchase, {}, [], None, cause="unit", foreign=(problem,))
    assert purchase.status == PurchaseStatus.NEEDS_REVIEW and "re_1 is in usd, the charge in chf" in problem
    assert refund_rules.currency_problem(paid(), "re_1", "usd") is None


HISTORIES = {  # what Stripe reports of one refund over its life, in order
    "re_ok": [S.PENDING, S.SUCCEEDED],
    "re_fails": [S.SUCCEEDED, S.FAILED],
    "re_canceled": [S.REQUIRES_ACTION, S.CANCELED],
    "re_waits": [S.REQUIRES_ACTION, S.PENDING],
}
AMOUNTS = {"re_ok": 1000, "re_fails": 2000, "re_canceled": 500, "re_waits": 700}


@bounded(300)
@given(st.lists(st.sampled_from([(rid, status) for rid, statuses in HISTORIES.items() for status in statuses]),
                max_size=12).flatmap(st.permutations))
def test_any_order_and_any_repetition_of_reports_ends_in_the_same_facts(reports: list[tuple[str, RefundStatus]]) -> None:
    purchase, known = paid(), {}
    for refund_id, status in reports:
        apply_refunds(purchase, known, [report(refund_id, AMOUNTS[refund_id], status)], None, cause="unit")

    latest = {rid: max((s for r, s in reports if r == rid), key=HISTORIES[rid].index) for rid, _ in reports}
    assert {rid: r.status for rid, r in known.items()} == latest
    counting = sum(AMOUNTS[rid] for rid, status in latest.items() if status not in (S.FAILED, S.CANCELED))
    assert purchase.refunded_amount == counting


def test_a_refund_in_the_integration_currency_with_the_buyers_amount_beside_it_counts_that_amount() -> None:
    """Stripe may keep an Adaptive Pricing refund in the integration's currency and give the
    buyer's amount in `presentment_details`: that one is compared with what the buyer paid."""
    purchase = adaptive()
    assert refund_rules.in_charge_currency(purchase, "re_1", 4900, "usd", (4312, "chf")) == (4312, None)
    assert refund_rules.in_charge_currency(purchase, "re_1", 4312, "chf") == (4312, None)
    assert refund_rules.in_charge_currency(purchase, "re_1", 4900, "usd")[1] == "refund re_1 is in usd, the charge in chf"
    assert refund_rules.in_charge_currency(paid(), "re_1", 4900, "usd", (4312, "chf")) == (4900, None)


def test_the_shop_refund_key_stays_within_what_stripe_accepts() -> None:
    import uuid

    from paystore.services.purchasing.refunds import stripe_idempotency_key

    purchase_id = uuid.UUID("00000000-0000-4000-8000-000000000001")
    assert stripe_idempotency_key(purchase_id, "r1") == f"refund:{purchase_id}:r1"
    longest = stripe_idempotency_key(purchase_id, "k" * 255)
    assert len(longest) <= 255 and longest != stripe_idempotency_key(purchase_id, "k" * 254)
