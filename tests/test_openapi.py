"""The OpenAPI 3.1 document at /openapi.json: valid, complete, and true of the running app.

Real answers of the live server (main flows and every error we can provoke) are validated with
openapi-core (status code documented, content type, body and headers against their schemas).
"""

from __future__ import annotations

import copy
import importlib.util
import json
from collections.abc import Callable
from typing import Any

import pytest
import requests
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
from schemathesis.core.failures import FailureGroup
from sqlalchemy import Engine, text

from paystore.api.openapi import document
from paystore.devtools.credentials import TOKEN
from paystore.devtools.standin import StripeStandIn
from paystore.store import locks
from tests.support.api import Api

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}
# Examples per operation: small enough for ~60 s on the shared CI machine, fixed by derandomize.
FUZZ_EXAMPLES = 25


@pytest.fixture(scope="module")
def spec() -> OpenAPI:
    return OpenAPI.from_dict(copy.deepcopy(document()))  # checks the document against the OpenAPI 3.1 schema


class CheckedApi(Api):
    """An API client whose every answer must be one the document describes."""

    def __init__(self, base_url: str, spec: OpenAPI, token: str | None = TOKEN) -> None:
        super().__init__(base_url, token or "")
        if token is None:
            del self.http.headers["Authorization"]
        self.spec = spec

    def call(self, method: str, path: str, expect: int, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("allow_redirects", False)
        answer = self.http.request(method, self.base_url + path, timeout=60, **kwargs)
        assert answer.status_code == expect, f"{method} {path}: {answer.status_code} {answer.text[:300]}"
        self.spec.validate_response(RequestsOpenAPIRequest(answer.request), RequestsOpenAPIResponse(answer))
        return answer


@pytest.fixture
def checked(api: Api, spec: OpenAPI) -> CheckedApi:
    return CheckedApi(api.base_url, spec)


def test_the_document_is_served_without_a_token(live_server: str, spec: OpenAPI) -> None:
    answer = requests.get(live_server + "/openapi.json", timeout=30)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json() == document()
    assert answer.json()["openapi"] == "3.1.0"


def test_every_route_of_the_app_is_documented_and_nothing_else(live_app: Flask) -> None:
    served = {
        (rule.rule.replace("<", "{").replace(">", "}"), method.lower())
        for rule in live_app.url_map.iter_rules() if rule.endpoint != "static"
        for method in rule.methods or () if method.lower() in HTTP_METHODS
    }
    documented = {(path, method) for path, item in document()["paths"].items() for method in item if method in HTTP_METHODS}
    assert served == documented


def test_the_validator_rejects_answers_the_document_does_not_describe(checked: CheckedApi, spec: OpenAPI) -> None:
    """The check has teeth: a real answer passes, the same answer altered does not."""
    answer = checked.call("GET", "/purchases/00000000-0000-4000-8000-000000000000", 404)
    request = RequestsOpenAPIRequest(answer.request)
    for alter in (
        lambda r: setattr(r, "status_code", 418),  # a status the route does not document
        lambda r: setattr(r, "_content", b'{"error": {"code": "no_such_code", "message": "m"}}'),  # an undocumented code
        lambda r: setattr(r, "_content", b'{"error": {"code": "purchase_not_found"}}'),  # no message
    ):
        forged = copy.copy(answer)
        alter(forged)
        with pytest.raises(Exception):  # noqa: B017 - openapi-core raises one of several validation errors
            spec.validate_response(request, RequestsOpenAPIResponse(forged))


def complete(standin: StripeStandIn, session_id: str, payment_status: str = "paid") -> None:
    session = standin.settle(session_id, payment_status=payment_status)
    assert standin.deliver(standin.event("checkout.session.completed", session)).status_code == 200


def test_answers_of_the_main_flows_match_the_document(checked: CheckedApi, standin: StripeStandIn, spec: OpenAPI) -> None:
    body = {"user_id": "alice", "program_id": "prog_py101"}
    created = checked.call("POST", "/checkout", 201, json=body).json()
    pid, session_id = created["purchase_id"], created["stripe_session_id"]
    assert checked.call("POST", "/checkout", 200, json=body).json()["purchase_id"] == pid
    checked.call("GET", f"/purchases/{pid}", 200)
    checked.call("GET", "/users/alice/programs/prog_py101/access", 200)
    checked.call("POST", f"/purchases/{pid}/refresh", 200)
    checked.call("GET", f"/checkout/return?session_id={session_id}", 200)
    complete(standin, session_id)
    assert checked.call("GET", "/users/alice/programs/prog_py101/access", 200).json()["access"] is True
    assert checked.call("GET", "/users/alice/purchases", 200).json()["purchases"][0]["status"] == "completed"
    assert checked.call("POST", "/checkout", 409, json=body).json()["error"]["code"] == "already_purchased"
    checked.call("GET", "/users/nobody/programs/prog_py101/access", 200)
    checked.call("GET", "/users/nobody/purchases", 200)

    event = standin.event("checkout.session.completed", standin.sessions[session_id])
    raw = json.dumps(event).encode()
    checked.call("POST", "/webhooks/stripe", 200, data=raw, headers=standin.signed_headers(raw))
    checked.call("POST", "/webhooks/stripe", 200, data=raw, headers=standin.signed_headers(raw))  # duplicate
    checked.call("GET", "/healthz", 200)
    checked.call("GET", "/readyz", 200)
    checked.call("GET", "/metrics", 200)
    checked.call("GET", "/openapi.json", 200)


def test_a_delayed_payment_in_progress_is_409_payment_in_progress(checked: CheckedApi, standin: StripeStandIn) -> None:
    body = {"user_id": "bob", "program_id": "prog_py101"}
    created = checked.call("POST", "/checkout", 201, json=body).json()
    complete(standin, created["stripe_session_id"], payment_status="unpaid")
    answer = checked.call("POST", "/checkout", 409, json=body)
    assert answer.json()["error"]["code"] == "payment_in_progress"
    assert answer.headers["Location"] == f"/purchases/{created['purchase_id']}"


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "code"), [
    ("POST", "/checkout", {"json": ["a list"]}, 400, "invalid_body"),
    ("POST", "/checkout", {"json": {"user_id": "a b", "program_id": "prog_py101"}}, 400, "invalid_body"),
    ("POST", "/checkout", {"json": {"user_id": "u", "program_id": "prog_py101", "extra": 1}}, 400, "invalid_body"),
    ("POST", "/checkout", {"json": {"user_id": "u", "program_id": "prog_none"}}, 404, "program_not_found"),
    ("GET", "/purchases/not-a-uuid", {}, 404, "purchase_not_found"),
    ("GET", "/purchases/00000000-0000-4000-8000-000000000000", {}, 404, "purchase_not_found"),
    ("POST", "/purchases/00000000-0000-4000-8000-000000000000/refresh", {}, 404, "purchase_not_found"),
    ("GET", "/users/a:b/programs/prog_py101/access", {}, 400, "invalid_request"),
    ("GET", "/checkout/return", {}, 400, "invalid_session_id"),
    ("GET", "/checkout/return?session_id=cs_test_nobody", {}, 404, "session_not_found"),
    ("POST", "/webhooks/stripe", {"data": b"{}"}, 400, "invalid_webhook"),
])
def test_errors_match_the_document(
    checked: CheckedApi, method: str, path: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    assert checked.call(method, path, status, **kwargs).json()["error"]["code"] == code


def test_a_signed_body_that_is_not_an_event_is_invalid_payload_or_webhook(checked: CheckedApi, standin: StripeStandIn) -> None:
    raw = b'{"object": "charge"}'
    answer = checked.call("POST", "/webhooks/stripe", 400, data=raw, headers=standin.signed_headers(raw))
    assert answer.json()["error"]["code"] in ("invalid_payload", "invalid_webhook")


@pytest.mark.parametrize("path", ["/checkout", "/purchases/x", "/users/u/purchases", "/metrics", "/users/u/programs/p/access"])
def test_no_token_is_401_as_documented(api: Api, spec: OpenAPI, path: str) -> None:
    anonymous = CheckedApi(api.base_url, spec, token=None)
    method = "POST" if path == "/checkout" else "GET"
    assert anonymous.call(method, path, 401, json={}).json()["error"]["code"] == "unauthorized"


def test_stripe_down_is_502_as_documented(checked: CheckedApi, standin: StripeStandIn) -> None:
    standin.faults.create.append(500)
    answer = checked.call("POST", "/checkout", 502, json={"user_id": "carol", "program_id": "prog_py101"})
    assert answer.json()["error"]["code"] == "stripe_unavailable"


@pytest.fixture
def impatient_server(make_server_for: Callable[..., str], standin: StripeStandIn) -> str:
    return make_server_for(lock_timeout_ms=200, return_url="https://shop.example/thanks?from=paystore")


def test_lock_timeout_is_503_and_the_shop_redirect_is_303_as_documented(
    impatient_server: str, spec: OpenAPI, standin: StripeStandIn, engine: Engine
) -> None:
    checked = CheckedApi(impatient_server, spec)
    created = checked.call("POST", "/checkout", 201, json={"user_id": "dave", "program_id": "prog_py101"}).json()
    standin.settle(created["stripe_session_id"])  # paid: the refresh has news to apply under the lock
    with engine.begin() as conn:  # someone else holds the purchase's lock
        key = locks.advisory_key_number(locks.purchase_lock_key(created["purchase_id"]))
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
        answer = checked.call("POST", f"/purchases/{created['purchase_id']}/refresh", 503)
    assert (answer.json()["error"]["code"], answer.headers["Retry-After"]) == ("lock_timeout", "1")
    answer = checked.call("GET", f"/checkout/return?session_id={created['stripe_session_id']}", 303)
    assert answer.headers["Location"] == f"https://shop.example/thanks?from=paystore&purchase_id={created['purchase_id']}&status=completed"


# ---------------------------------------------------------------- schemathesis, bounded and deterministic
# The document is a static file of the package: loaded at collection, no server needed.
fuzzed = schemathesis.openapi.from_dict(copy.deepcopy(document()))


FUZZ_SETTINGS = settings(max_examples=FUZZ_EXAMPLES, derandomize=True, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck))
# Bugs schemathesis finds in the webhook's input handling on this branch, fixed on branch `faults`
# (paystore/inputs.py, bounded and validated event fields): see docs/local-checkout.md. Once that
# is merged the marker turns off and the run must pass; before, it must still fail (strict).
INPUT_FIXES_MERGED = importlib.util.find_spec("paystore.inputs") is not None


@fuzzed.exclude(path="/webhooks/stripe").parametrize()
@FUZZ_SETTINGS
def test_schemathesis_finds_no_server_error_and_no_answer_off_the_document(
    case: Any, live_server: str, standin: StripeStandIn
) -> None:
    case.call_and_validate(base_url=live_server, headers={"Authorization": f"Bearer {TOKEN}"})


@fuzzed.include(path="/webhooks/stripe").parametrize()
@FUZZ_SETTINGS
@pytest.mark.xfail(not INPUT_FIXES_MERGED, strict=True, raises=FailureGroup,
                   reason="signed events with a NUL or a 129-character type are 500")
def test_schemathesis_signed_webhooks_find_no_server_error_and_no_answer_off_the_document(
    case: Any, live_server: str, standin: StripeStandIn
) -> None:
    # A random signature stops every body at the door; signing what is sent (when a signature is
    # sent at all) lets the generated events reach the parser and the handler.
    sent = case.as_transport_kwargs(base_url=live_server, headers={"Authorization": f"Bearer {TOKEN}"})
    raw = json.dumps(sent["json"]).encode() if "json" in sent else sent.get("data") or b""
    raw = raw.encode() if isinstance(raw, str) else raw
    if "Stripe-Signature" in sent["headers"]:
        sent["headers"]["Stripe-Signature"] = standin.signed_headers(raw)["Stripe-Signature"]
    answer = requests.request(sent["method"], sent["url"], data=raw, headers=sent["headers"], timeout=60)
    case.validate_response(answer, headers=sent["headers"])
