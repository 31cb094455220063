"""What the stand-in's checkout charges: test promotion codes, Stripe Tax for test countries, and
Adaptive Pricing into a few test currencies, computed as Stripe computes them for one line item.

These tables are the stand-in's own test data (like Stripe's test card numbers): a person
clicking through `make serve`, and the browser tests, type these codes and pick these countries.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromotionCode:
    id: str
    coupon: str
    percent_off: int | None = None
    amount_off: int | None = None  # minor units, in `currency`
    currency: str | None = None


PROMOTION_CODES = {
    "COURSE10": PromotionCode("promo_test_course10", "coupon_test_10pct", percent_off=10),
    "WELCOME5": PromotionCode("promo_test_welcome5", "coupon_test_5usd", amount_off=500, currency="usd"),
    "FREECOURSE": PromotionCode("promo_test_freecourse", "coupon_test_100pct", percent_off=100),
}
# VAT (or sales tax) Stripe Tax would charge a consumer in these countries for an e-learning course.
TAX_RATES = {"DE": 19, "FR": 20, "IE": 23, "GB": 20, "US": 0}
# Adaptive Pricing: the buyer's currency and a fixed test rate per unit of the integration's.
PRESENTMENT_RATES = {"chf": 0.88, "gbp": 0.79, "jpy": 150.0}
ZERO_DECIMAL = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}


@dataclass(frozen=True)
class Charge:
    amount_subtotal: int
    amount_discount: int
    amount_tax: int
    amount_total: int
    discount: PromotionCode | None
    presentment_amount: int | None
    presentment_currency: str | None


class UnknownCode(ValueError):
    """No such test promotion code, or it does not apply to this currency."""


def charge(unit_amount: int, quantity: int, currency: str, *, code: str | None = None, country: str | None = None,
           automatic_tax: bool = False, tax_behavior: str | None = None, presentment_currency: str | None = None) -> Charge:
    subtotal = unit_amount * quantity
    promotion = None
    discount = 0
    if code:
        promotion = PROMOTION_CODES.get(code.strip().upper())
        if promotion is None or (promotion.currency and promotion.currency != currency):
            raise UnknownCode(f"{code!r} is not a test promotion code for {currency.upper()}"
                              f" (try {', '.join(PROMOTION_CODES)})")
        if promotion.percent_off:
            discount = subtotal * promotion.percent_off // 100
        else:
            discount = min(promotion.amount_off or 0, subtotal)
    taxed = subtotal - discount
    rate = TAX_RATES.get((country or "").upper(), 0) if automatic_tax else 0
    if tax_behavior == "inclusive":
        tax = round(taxed * rate / (100 + rate))
        total = taxed
    else:
        tax = round(taxed * rate / 100)
        total = taxed + tax
    presentment_amount = None
    if presentment_currency and presentment_currency != currency:
        factor = PRESENTMENT_RATES[presentment_currency]
        if presentment_currency in ZERO_DECIMAL and currency not in ZERO_DECIMAL:
            factor /= 100
        presentment_amount = round(total * factor)
    else:
        presentment_currency = None
    return Charge(subtotal, discount, tax, total, promotion, presentment_amount, presentment_currency)
