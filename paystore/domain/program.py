"""A program (a course) on sale, at the price the server decides, and how its checkout is set up."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Program:
    id: str
    name: str
    amount: int  # minor units: the price of one seat, before any discount
    currency: str  # ISO 4217, lower case
    # None: the setting of the deployment (PAYSTORE_ALLOW_PROMOTION_CODES, PAYSTORE_AUTOMATIC_TAX,
    # PAYSTORE_TAX_BEHAVIOR, PAYSTORE_TAX_CODE) applies.
    allow_promotion_codes: bool | None = None
    automatic_tax: bool | None = None
    tax_behavior: str | None = None  # "exclusive" (tax added to the price) or "inclusive"
    tax_code: str | None = None
