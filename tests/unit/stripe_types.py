"""Checking a request's parameters against stripe-python's own typed definitions of them.

stripe-python ships, for the API version it was generated for, a TypedDict per request
(`SessionCreateParams`, `CustomerCreateParams`, ...). This walks one against a parameter dict:
an unknown key at any depth, a missing required key, a value of the wrong type and an enum value
the definition does not list are each reported with their path. The definitions accept any
string beside an enum's values (`Literal['a', 'b']|str`, to survive new values); here an enum is
closed, since paystore must send only values it knows the pinned version has. A field typed
`Literal['']|str` is a free string that may be emptied, not an enum, and stays open.
"""

from __future__ import annotations

import sys
import types
import typing
from decimal import Decimal
from typing import Any, ForwardRef, Literal, NotRequired, Required, Union, get_args, get_origin

from stripe import RequestOptions
from typing_extensions import is_typeddict

_WRAPPERS = {NotRequired, Required}


def problems(params: Any, definition: type) -> list[str]:
    """Everything in `params` that `definition` (a stripe-python ...Params TypedDict) refuses."""
    return _check(params, definition, definition.__module__, "params")


def _resolve(annotation: Any, module: str) -> Any:
    namespace = {**vars(typing), **vars(sys.modules[module])}
    while isinstance(annotation, str | ForwardRef):
        text = annotation.__forward_arg__ if isinstance(annotation, ForwardRef) else annotation
        annotation = eval(text, namespace)  # noqa: S307 - stripe-python's own annotation text
    return annotation


def _members(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) in (Union, types.UnionType):
        return get_args(annotation)
    return (annotation,)


def _check(value: Any, annotation: Any, module: str, path: str) -> list[str]:
    annotation = _resolve(annotation, module)
    if get_origin(annotation) in _WRAPPERS:
        return _check(value, get_args(annotation)[0], module, path)
    members = [_resolve(m, module) for m in _members(annotation)]
    if len(members) > 1:
        values = {v for m in members if get_origin(m) is Literal for v in get_args(m)}
        # An enum: its values, never "any other string". `Literal['']|str` is no enum: it is a
        # free string that may also be sent empty (to clear it).
        if values - {""}:
            members = [m for m in members if m is not str]
        found = [_check(value, member, module, path) for member in members]
        if any(not errors for errors in found):
            return []
        return [f"{path}: {value!r} is none of {', '.join(map(_name, members))}"] if len(members) > 1 else found[0]
    return _check_one(value, members[0], module, path)


def _check_one(value: Any, annotation: Any, module: str, path: str) -> list[str]:
    origin = get_origin(annotation)
    if is_typeddict(annotation):
        return _check_object(value, annotation, path)
    if origin is Literal:
        return [] if value in get_args(annotation) else [f"{path}: {value!r} is not one of {get_args(annotation)}"]
    if origin in (list, typing.List):  # noqa: UP006 - stripe-python writes List
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        return [e for i, item in enumerate(value) for e in _check(item, get_args(annotation)[0], module, f"{path}[{i}]")]
    if origin in (dict, typing.Dict):  # noqa: UP006
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {type(value).__name__}"]
        key_type, item_type = get_args(annotation)
        return [e for k, item in value.items()
                for e in (_check(k, key_type, module, f"{path} key") + _check(item, item_type, module, f"{path}.{k}"))]
    if annotation is Any:
        return []
    if annotation in (int, float, Decimal):
        ok = isinstance(value, int | float | Decimal) and not isinstance(value, bool)
        ok = ok and (annotation is not int or isinstance(value, int))
        return [] if ok else [f"{path}: expected {annotation.__name__}, got {value!r}"]
    if isinstance(annotation, type):
        return [] if isinstance(value, annotation) else [f"{path}: expected {annotation.__name__}, got {value!r}"]
    return [f"{path}: no rule for {annotation!r}"]


def _check_object(value: Any, definition: Any, path: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path}: expected an object, got {type(value).__name__}"]
    # The request options (api_key, idempotency_key, ...) are not parameters of the API call.
    options = set(RequestOptions.__annotations__) if RequestOptions in definition.__orig_bases__ else set()
    known = set(definition.__annotations__) - options
    errors = [f"{path}.{key}: unknown parameter" for key in sorted(set(value) - known)]
    required = set(getattr(definition, "__required_keys__", ())) - options
    errors += [f"{path}.{key}: required" for key in sorted(required - set(value))]
    for key in sorted(set(value) & known):
        errors += _check(value[key], definition.__annotations__[key], definition.__module__, f"{path}.{key}")
    return errors


def _name(annotation: Any) -> str:
    if get_origin(annotation) is Literal:
        return " | ".join(map(repr, get_args(annotation)))
    return getattr(annotation, "__name__", None) or repr(annotation)
