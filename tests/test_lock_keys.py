"""The lock key derivation is part of the contract: it must never change between releases."""

import uuid

import pytest

from paystore.store import locks

pytestmark = pytest.mark.no_db


@pytest.mark.parametrize(
    ("key", "number"),
    [
        ("purchase:complete:00000000-0000-4000-8000-000000000001", -1014907248029199343),
        ("webhook:session:cs_test_a1", -3972096780171209054),
        ("purchase:create:user_1:prog_py101", 2452292529298925970),
    ],
)
def test_key_numbers_match_design_vectors(key: str, number: int) -> None:
    assert locks.advisory_key_number(key) == number


def test_key_strings_match_design() -> None:
    purchase_id = uuid.UUID("00000000-0000-4000-8000-000000000001")
    assert locks.purchase_lock_key(purchase_id) == "purchase:complete:00000000-0000-4000-8000-000000000001"
    assert locks.purchase_lock_key(str(purchase_id).upper()) == locks.purchase_lock_key(purchase_id)
    assert locks.legacy_session_lock_key("cs_test_a1") == "webhook:session:cs_test_a1"
    assert locks.purchase_create_lock_key("user_1", "prog_py101") == "purchase:create:user_1:prog_py101"


def test_key_numbers_fill_the_signed_64_bit_range() -> None:
    numbers = [locks.advisory_key_number(f"purchase:complete:{uuid.uuid4()}") for _ in range(2000)]
    assert all(-(2**63) <= n < 2**63 for n in numbers)
    assert any(n < 0 for n in numbers) and any(n > 2**32 for n in numbers)
    assert len(set(numbers)) == len(numbers)
