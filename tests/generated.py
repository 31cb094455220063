"""Hypothesis settings and strategies shared by the property tests and the state machine.

Derandomized (a fixed seed derived from each test), bounded, and without deadlines: the suite
runs on a slow shared machine and in CI, where it must be fast and the same every run. Set
PAYSTORE_HYPOTHESIS_EXAMPLES to explore more when hunting (e.g. 500), never in CI.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

_SCALE = int(os.environ.get("PAYSTORE_HYPOTHESIS_EXAMPLES", "0"))


def bounded(examples: int, **more: Any) -> settings:
    return settings(
        max_examples=_SCALE or examples,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=True,
        # No `explain` phase: on Python < 3.12 it traces every line and takes minutes over HTTP.
        phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink),
        # Fixtures are set up once per test, not per example: the properties are written for
        # that (they compare counts before and after each example instead of an empty DB).
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
        **more,
    )


# Characters PostgreSQL refuses, and others that break naive code: controls, RTL, astral.
NASTY_CHARS = st.sampled_from(["\x00", "\ud800", "\udfff", "\x1b", "\n", "\u202e", "\U0001f4b3", ":", " ", "%", "'"])
NASTY_TEXT = st.text(alphabet=st.one_of(st.characters(), NASTY_CHARS), max_size=40)
HUGE_TEXT = st.integers(min_value=256, max_value=200_000).map(lambda n: "x" * n)
# A placeholder string replaced in the serialized body by brackets nested this deep.
DEEP_MARK = "__paystore_deep_%d__"
DEEP = st.integers(min_value=65, max_value=20_000).map(lambda n: DEEP_MARK % n)

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.integers(min_value=2**31, max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    NASTY_TEXT,
    HUGE_TEXT,
    DEEP,
    st.lists(st.lists(st.one_of(st.integers(), NASTY_TEXT), max_size=3), max_size=3),
    st.dictionaries(NASTY_TEXT, st.one_of(st.integers(), NASTY_TEXT), max_size=3),
)


def serialize(document: Any) -> bytes:
    """JSON as an attacker may send it: lone surrogates as \\u escapes, deep nesting spliced in."""
    text = json.dumps(document)
    while (start := text.find('"__paystore_deep_')) >= 0:
        end = text.index('__"', start) + 3
        depth = int(text[start + len('"__paystore_deep_') : end - 3])
        text = text[:start] + "[" * depth + "]" * depth + text[end:]
    return text.encode()


def paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in a JSON document (dict keys and list indexes), parents first."""
    found = []
    items = document.items() if isinstance(document, dict) else enumerate(document) if isinstance(document, list) else ()
    for key, value in items:
        found.append((*prefix, key))
        found += paths(value, (*prefix, key))
    return found


def _parent(document: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        document = document[key]
    return document


@st.composite
def mutated(
    draw: st.DrawFn, document: dict[str, Any], focus: tuple[tuple[Any, ...], ...] = (), max_mutations: int = 3
) -> tuple[dict[str, Any], list[str]]:
    """`document` with 1..max_mutations fields dropped, retyped or replaced by junk; half of the
    mutations hit a `focus` path (the fields the code reads) when it is still there."""
    doc = copy.deepcopy(document)
    story = []
    for _ in range(draw(st.integers(1, max_mutations))):
        candidates = paths(doc)
        focused = [p for p in focus if p in candidates]
        if focused and draw(st.booleans()):
            candidates = focused
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        parent = _parent(doc, path)
        if draw(st.booleans()):
            del parent[path[-1]]
            story.append(f"drop {path}")
        else:
            parent[path[-1]] = draw(JUNK)
            story.append(f"set {path}")
    return doc, story
