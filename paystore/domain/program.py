"""A program (a course) on sale, at the price the server decides."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Program:
    id: str
    name: str
    amount: int  # minor units
    currency: str  # ISO 4217, lower case
