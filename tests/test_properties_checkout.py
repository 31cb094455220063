"""Generated checkout bodies, content types and path segments: 400/404 and nothing written,
or 200 for a lookup; never a 500. Fixtures live for the whole test; no example may write."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine

from paystore.devtools.postgres import PROGRAMS
from paystore.devtools.standin import StripeStandIn
from tests.generated import DEEP_MARK, HUGE_TEXT, JUNK, NASTY_TEXT, bounded, serialize
from tests.support.api import Api
from tests.support.database import count

EXISTING_PROGRAMS = {p[0] for p in PROGRAMS}
ID_LIKE = st.one_of(NASTY_TEXT, HUGE_TEXT, st.from_regex(r"[A-Za-z0-9_.@+-]{1,140}", fullmatch=True), JUNK)
BODIES = st.one_of(
    JUNK,
    st.fixed_dictionaries({"user_id": ID_LIKE, "program_id": ID_LIKE}, optional={"amount": JUNK, "\x00": JUNK}),
    st.dictionaries(NASTY_TEXT, JUNK, max_size=4),
)


def _writes_nothing(engine: Engine, standin: StripeStandIn) -> None:
    assert count(engine, "SELECT count(*) FROM purchases") == 0
    assert standin.state.create_calls == []


def _is_error(response: Any, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    error = response.json()["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    return error


def _never_a_program_on_sale(body: Any) -> Any:
    # The property is about bodies that must not buy: a well-formed one names no real program.
    if isinstance(body, dict) and isinstance(body.get("program_id"), str) and body["program_id"] in EXISTING_PROGRAMS:
        body = {**body, "program_id": "prog_not_on_sale"}
    return body


@bounded(80)
@given(body=BODIES.map(_never_a_program_on_sale))
def test_generated_checkout_bodies_are_400_or_404_and_write_nothing(
    api: Api, standin: StripeStandIn, engine: Engine, body: Any
) -> None:
    response = api.http.post(
        api.base_url + "/checkout", data=serialize(body), headers={"Content-Type": "application/json"}, timeout=60
    )

    error = _is_error(response, 400, 404)
    assert error["code"] == ("program_not_found" if response.status_code == 404 else "invalid_body")
    _writes_nothing(engine, standin)


@bounded(20)
@given(depth=st.integers(65, 20_000), inside=st.booleans())
def test_deeply_nested_checkout_body_is_400(api: Api, standin: StripeStandIn, engine: Engine, depth: int, inside: bool) -> None:
    body = {"user_id": DEEP_MARK % depth, "program_id": "prog_py101"} if inside else DEEP_MARK % depth

    response = api.http.post(
        api.base_url + "/checkout", data=serialize(body), headers={"Content-Type": "application/json"}, timeout=60
    )

    assert "nested deeper" in _is_error(response, 400)["message"]
    _writes_nothing(engine, standin)


@bounded(20)
@given(content_type=st.one_of(
    st.none(),
    st.sampled_from(["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "application/jsonx",
                     "application/xml", "", "json"]),
    NASTY_TEXT.filter(lambda t: "json" not in t.lower() and t.isprintable() and t.isascii()),
))
def test_a_valid_body_without_a_json_content_type_is_400_that_says_so(
    api: Api, standin: StripeStandIn, engine: Engine, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    body = json.dumps({"user_id": "user_1", "program_id": "prog_py101"}).encode()

    response = api.http.post(api.base_url + "/checkout", data=body, headers=headers, timeout=60)

    error = _is_error(response, 400)
    assert error["code"] == "invalid_body" and "Content-Type: application/json" in error["message"]
    _writes_nothing(engine, standin)


SEGMENTS = st.one_of(
    NASTY_TEXT.filter(bool),
    st.tuples(NASTY_TEXT, NASTY_TEXT).map("\x00".join),
    HUGE_TEXT.map(lambda t: t[:3000]),
    st.uuids().map(str),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=300),
)


# Slashes, raw and encoded, inside and around a segment: Werkzeug would merge `//` with a redirect.
SLASHES = st.sampled_from(["", "/", "//", "%2F", "%2f", "%2F%00", "%2F%2F", "a//b", "//%2F/"])
ROUTES = ["/purchases/{}", "/users/{}/purchases", "/purchases/{}/refresh", "/users/{}/programs/prog_py101/access",
          "/{}checkout", "/checkout{}"]


@bounded(80)
@given(segment=SEGMENTS, route=st.sampled_from(ROUTES), before=SLASHES, after=SLASHES)
def test_path_segments_are_answered_200_or_4xx_never_500(
    api: Api, standin: StripeStandIn, engine: Engine, segment: str, route: str, before: str, after: str
) -> None:
    # Lone surrogates travel as the bytes Python would write for them: invalid UTF-8.
    path = route.format(before + quote(segment.encode("utf-8", "surrogatepass"), safe="") + after)

    response = api.get(path, allow_redirects=False)

    assert response.status_code in (200, 400, 404, 405), (path, response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/json") and "Location" not in response.headers
    body = response.json()
    if response.status_code == 200:
        assert body in ({"purchases": []}, {"access": False, "purchase_id": None, "status": None}), body
    else:
        assert body["error"]["code"] in ("purchase_not_found", "invalid_user_id", "invalid_request", "program_not_found",
                                         "not_found", "method_not_allowed"), body
