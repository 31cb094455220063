"""Untrusted input that must never reach PostgreSQL in a form it refuses.

PostgreSQL stores no NUL character in text or jsonb, and no lone UTF-16 surrogate (which
Python's JSON parser happily produces from `"\\ud800"`); json.dumps writes NaN and Infinity,
which jsonb refuses; and Python's JSON parser and encoder give up with a RecursionError on deep
nesting. A request carrying any of these must be answered 400 or stored in a storable form,
never turned into a 500 by the database or the interpreter.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# Real Stripe events nest about 8 deep, paystore's own bodies 1; this leaves ample room while
# staying far from the parser's recursion limit and PostgreSQL's stack limit.
MAX_JSON_DEPTH = 64

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# JSON text that may hold something jsonb refuses. A NUL appears in it as the escape `\\u0000`
# (json.loads refuses a raw control character, json.dumps escapes one), a surrogate as an escape
# (`\\ud83d`, in text as received) or as itself (in json.dumps(..., ensure_ascii=False) output).
# Text with none of these is storable as it stands. A surrogate *pair* (an escaped emoji) or an
# escaped backslash before `u0000` also matches: a false positive only takes the slow path.
_MAYBE_UNSTORABLE_JSON = re.compile(r"\\u(?:0000|[dD][89a-fA-F])|[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


class UnacceptableJson(ValueError):
    """The body is not JSON that paystore accepts; the message says why."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise UnacceptableJson(f"number {text[:20]} is out of range")
    return value


def _refuse_constant(name: str) -> float:
    raise UnacceptableJson(f"{name} is not a JSON number")


def loads_bounded(data: bytes | str) -> Any:
    """json.loads, refusing NaN/Infinity, numbers that overflow and nesting beyond MAX_JSON_DEPTH."""
    try:
        value = json.loads(data, parse_float=_finite, parse_constant=_refuse_constant)
    except RecursionError:
        raise UnacceptableJson(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    except UnacceptableJson:
        raise
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, too many digits
        raise UnacceptableJson(f"not valid JSON ({str(exc)[:80]})") from None
    # Every level opens with `{` or `[`: text with no more of them than the limit needs no walk.
    if _openings(data) > MAX_JSON_DEPTH and _depth(value) > MAX_JSON_DEPTH:
        raise UnacceptableJson(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _openings(data: bytes | str) -> int:
    if isinstance(data, str):
        return data.count("{") + data.count("[")
    return data.count(b"{") + data.count(b"[")


def _depth(value: Any) -> int:
    """Nesting depth, without recursion (the value may be nested close to the parser's limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


def storable_text(text: str) -> str:
    """`text` with every character PostgreSQL refuses replaced by U+FFFD."""
    return UNSTORABLE.sub(REPLACEMENT, text)


def storable_json(value: Any) -> tuple[Any, int]:
    """A copy of a parsed JSON document that jsonb accepts, and how many strings were altered.

    Only strings (keys and values) with NUL or lone surrogates change; everything else is kept.
    The document has passed `loads_bounded`, so the recursion is bounded by MAX_JSON_DEPTH.
    """
    if isinstance(value, str):
        fixed = storable_text(value)
        return fixed, int(fixed != value)
    if isinstance(value, list):
        items = [storable_json(item) for item in value]
        return [item for item, _ in items], sum(n for _, n in items)
    if isinstance(value, dict):
        altered, copy = 0, {}
        for key, item in value.items():
            fixed_key, n_key = storable_json(key)
            copy[fixed_key], n_item = storable_json(item)
            altered += n_key + n_item
        return copy, altered
    return value, 0


def storable_document(value: Any, received: str | None = None) -> tuple[Any, int, str]:
    """`storable_json(value)` and the result's JSON text (for a jsonb parameter).

    `received`, the JSON text `value` was parsed from by `loads_bounded`, is that text when it
    holds nothing jsonb refuses: one regex search, no encoding (a Stripe event's is 3.6 kB).
    Otherwise the common case, nothing to replace, costs one C-speed encoding and one regex
    search instead of a Python walk and copy of the whole document.
    """
    if received is not None and _MAYBE_UNSTORABLE_JSON.search(received) is None:
        return value, 0, received
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if _MAYBE_UNSTORABLE_JSON.search(text) is None:
        return value, 0, text
    stored, altered = storable_json(value)
    return stored, altered, json.dumps(stored, ensure_ascii=False, separators=(",", ":"))
