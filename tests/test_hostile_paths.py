"""Paths with encoded slashes, NULs and doubled slashes, sent byte for byte as a fuzzer or an
attacker sends them (http.client: no client-side normalisation), each answered with a JSON error,
never Werkzeug's slash-merging 308 with an HTML body, and never a write. Served by gunicorn, as in
production, and by the in-process server the other tests use.

The property test (test_properties_checkout.py) explores such paths at random; these are the
ones that once answered 308, kept as fixed cases so that a regression cannot hide behind the draw.
"""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from sqlalchemy import Engine
from werkzeug.routing import Map, RequestRedirect, Rule

from paystore.devtools.credentials import TOKEN
from paystore.devtools.standin import StripeStandIn
from tests.support.database import count

GETS = [
    "/purchases/%2F%00",
    "//purchases/x",
    "/purchases/a%2Fb",
    "/purchases//x",
    "/purchases/x//",
    "/users/u1//purchases",
    "/users/%2F/purchases",
    "/users/%2F%00/purchases",
    "/purchases/%2F%00/refresh",
]
POSTS = ["/purchases/%2F%00/refresh", "//purchases/x/refresh", "/purchases/a%2Fb/refresh", "/checkout%2F%00",
         "/checkout//x"]
# A trailing slash (raw or encoded) is the same route (strict_slashes is off), and Werkzeug's router
# ignores leading slashes: answered as POST /checkout is, in JSON, never redirected.
SAME_ROUTE = ["//checkout", "/%2Fcheckout", "/checkout/", "/checkout%2F"]


def _raw(base_url: str, method: str, path: str, body: dict[str, Any] | None = None) -> http.client.HTTPResponse:
    where = urlsplit(base_url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=payload, headers=headers)  # the path goes out exactly as written
    response = conn.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    conn.close()
    return response


def _json_error(response: http.client.HTTPResponse, path: str) -> dict[str, Any]:
    status, body = response.status, response.body  # type: ignore[attr-defined]
    assert status in (400, 404, 405), (path, status, body[:300])
    assert response.getheader("Location") is None, (path, response.getheader("Location"))
    assert (response.getheader("Content-Type") or "").startswith("application/json"), (path, body[:300])
    error = json.loads(body)["error"]
    assert error["code"] in ("not_found", "purchase_not_found", "invalid_request", "invalid_user_id",
                             "method_not_allowed"), (path, error)
    return error


SERVERS = ["gunicorn", "in-process"]


def _server(request: pytest.FixtureRequest, server: str) -> str:
    if server == "in-process":
        request.getfixturevalue("standin")  # its webhooks go to the in-process server
        return request.getfixturevalue("live_server")
    return request.getfixturevalue("gunicorn_url")


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("path", GETS)
def test_a_hostile_get_path_is_a_json_error_never_a_redirect(request: pytest.FixtureRequest, stripe: StripeStandIn,
                                                            server: str, path: str) -> None:
    _json_error(_raw(_server(request, server), "GET", path), path)


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("path", POSTS)
def test_a_hostile_post_path_is_a_json_error_and_writes_nothing(request: pytest.FixtureRequest, stripe: StripeStandIn,
                                                               engine: Engine, server: str, path: str) -> None:
    response = _raw(_server(request, server), "POST", path, {"user_id": "user_1", "program_id": "prog_py101"})

    _json_error(response, path)
    assert count(engine, "SELECT count(*) FROM purchases") == 0
    assert stripe.sessions == {}


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("path", SAME_ROUTE)
def test_a_slash_around_checkout_is_checkout_in_json_never_a_redirect(request: pytest.FixtureRequest,
                                                                     stripe: StripeStandIn, server: str,
                                                                     path: str) -> None:
    response = _raw(_server(request, server), "POST", path, {"user_id": "user_1", "program_id": "prog_py101"})

    assert response.getheader("Location") is None and response.status in (201, 404), (path, response.status)
    assert (response.getheader("Content-Type") or "").startswith("application/json"), path


@pytest.mark.parametrize("server", SERVERS)
def test_the_reported_path_exactly(request: pytest.FixtureRequest, stripe: StripeStandIn, server: str) -> None:
    """`GET /purchases/%2F%00` answered 308 with an HTML body (Werkzeug's slash merging)."""
    response = _raw(_server(request, server), "GET", "/purchases/%2F%00")

    assert response.status == 404, response.body  # type: ignore[attr-defined]
    assert _json_error(response, "/purchases/%2F%00")["code"] in ("not_found", "purchase_not_found")


def test_negative_control_with_werkzeugs_slash_merging_the_reported_path_redirects_in_html(live_app: Flask) -> None:
    merging = Map([Rule(rule.rule, endpoint=rule.endpoint, methods=rule.methods) for rule in live_app.url_map.iter_rules()],
                  merge_slashes=True)

    with pytest.raises(RequestRedirect) as redirect:
        merging.bind("localhost").match("/purchases//\x00", method="GET")  # what %2F%00 decodes to

    assert redirect.value.code == 308 and redirect.value.get_response().mimetype == "text/html"
