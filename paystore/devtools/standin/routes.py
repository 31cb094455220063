"""The stand-in's HTTP surface as a WSGI app (Werkzeug routing): the parts of Stripe's API that
paystore calls, the hosted checkout and Dashboard pages with their buttons, and the pretend
shop mounted under /shop."""

from __future__ import annotations

import copy
import html
import json
import re
import secrets
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from paystore.devtools.standin import objects, pages
from paystore.devtools.standin.actions import ActionRefused
from paystore.devtools.standin.state import StandInState

if TYPE_CHECKING:
    from paystore.devtools.standin.server import StripeStandIn

URLS = Map([
    Rule("/v1/checkout/sessions", methods=["POST"], endpoint="create_session"),
    Rule("/v1/checkout/sessions/<session_id>", methods=["GET"], endpoint="retrieve_session"),
    Rule("/v1/checkout/sessions/<session_id>/expire", methods=["POST"], endpoint="expire_session"),
    Rule("/v1/payment_intents/<intent_id>", methods=["GET"], endpoint="retrieve_payment_intent"),
    Rule("/v1/customers", methods=["POST"], endpoint="create_customer"),
    Rule("/v1/refunds", methods=["POST"], endpoint="create_refund"),
    Rule("/v1/refunds", methods=["GET"], endpoint="list_refunds"),
    Rule("/v1/events", methods=["GET"], endpoint="list_events"),
    Rule("/pay/<session_id>", methods=["GET", "POST"], endpoint="checkout_page"),
    Rule("/dashboard", methods=["GET"], endpoint="dashboard_index", strict_slashes=False),
    Rule("/dashboard/sessions/<session_id>", methods=["GET", "POST"], endpoint="dashboard_page"),
], merge_slashes=False)


API_ENDPOINTS = {"create_session", "retrieve_session", "expire_session", "retrieve_payment_intent", "create_customer",
                 "create_refund", "list_events", "list_refunds"}


def decode_form(body: str) -> dict[str, Any]:
    """Undo stripe-python's form encoding: a[b][0][c]=v -> {"a": {"b": [{"c": v}]}}."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+", key)
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def listify(node: Any) -> Any:
        if isinstance(node, dict):
            fixed = {k: listify(v) for k, v in node.items()}
            if fixed and all(k.isdigit() for k in fixed):
                return [fixed[k] for k in sorted(fixed, key=int)]
            return fixed
        return node

    return listify(root)


def _json(status: int, body: dict[str, Any]) -> Response:
    response = Response(json.dumps(body), status=status, mimetype="application/json")
    response.headers["Request-Id"] = f"req_{secrets.token_hex(8)}"
    return response


def _html(status: int, body: str) -> Response:
    return Response(body, status=status, content_type="text/html; charset=utf-8")


def _see_other(location: str) -> Response:
    return Response("", status=303, headers={"Location": location})


class StandInApp:
    def __init__(self, standin: StripeStandIn) -> None:
        self.standin = standin

    @property
    def state(self) -> StandInState:
        return self.standin.state  # replaced by every reset

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        if request.path == "/shop" or request.path.startswith("/shop/"):
            return self.standin.shop(environ, start_response)
        try:
            endpoint, args = URLS.bind_to_environ(environ).match()
            if endpoint in API_ENDPOINTS:
                response = self._api(request, endpoint, args)
            else:
                response = getattr(self, endpoint)(request, **args)
        except NotFound:
            response = _json(404, objects.error("invalid_request_error", "Unrecognized request URL."))
        except HTTPException as exc:
            response = exc.get_response()
        return response(environ, start_response)

    # ---------------------------------------------------------------- the API
    def _api(self, request: Request, endpoint: str, args: dict[str, str]) -> Response:
        auth = request.headers.get("Authorization", "")
        with self.state.lock:
            self.state.api_calls.append({"method": request.method, "path": request.path,
                                         "stripe_version": request.headers.get("Stripe-Version"),
                                         "idempotency_key": request.headers.get("Idempotency-Key")})
        if not auth.startswith("Bearer sk_"):
            return _json(401, objects.error("invalid_request_error", "Invalid API Key provided."))
        if (version := request.headers.get("Stripe-Version")) != objects.API_VERSION:
            # Stripe refuses a version it does not know, and answers a missing one in the account's
            # default version; the stand-in refuses both, so a request sent without the pin fails
            # whichever test makes it.
            return _json(400, objects.error("invalid_request_error", f"Invalid Stripe API version: {version}"))
        return getattr(self, endpoint)(request, api_key=auth[7:], **args)

    def create_session(self, request: Request, api_key: str) -> Response:
        params = decode_form(request.get_data(as_text=True))
        status, answer = self.standin.create_session(params, request.headers.get("Idempotency-Key"), api_key)
        if status == "drop":
            socket_ = request.environ.get("werkzeug.socket")
            if socket_ is not None:
                socket_.shutdown(socket.SHUT_RDWR)
            raise ConnectionResetError("the stand-in cut the connection (a fault the test asked for)")
        return _json(status, answer)

    def create_customer(self, request: Request, api_key: str) -> Response:
        params = decode_form(request.get_data(as_text=True))
        status, answer = self.standin.create_customer(params, request.headers.get("Idempotency-Key"), api_key)
        return _json(status, answer)

    def create_refund(self, request: Request, api_key: str) -> Response:
        params = decode_form(request.get_data(as_text=True))
        return _json(*self.standin.create_refund(params, request.headers.get("Idempotency-Key")))

    def list_refunds(self, request: Request, api_key: str) -> Response:
        """`GET /v1/refunds?charge=`: the charge's refunds, newest first, a page at a time."""
        if status := self.state.refund_list_fault:
            return _json(status, objects.error("api_error", "Stand-in failure injected by the test."))
        query = decode_form(request.query_string.decode())
        found = self.state.refunds_of(query.get("charge") or "")
        if after := query.get("starting_after"):
            ids = [r["id"] for r in found]
            found = found[ids.index(after) + 1:] if after in ids else []
        limit = int(query.get("limit", 10))
        return _json(200, {"object": "list", "url": "/v1/refunds", "data": found[:limit], "has_more": len(found) > limit})

    def list_events(self, request: Request, api_key: str) -> Response:
        query = decode_form(request.query_string.decode())
        types = query.get("types") or []
        found = self.state.listed_events(types if isinstance(types, list) else [types],
                                         int((query.get("created") or {}).get("gte", 0)),
                                         undelivered_only=query.get("delivery_success") == "false")
        if after := query.get("starting_after"):
            ids = [e["id"] for e in found]
            found = found[ids.index(after) + 1:] if after in ids else []
        limit = int(query.get("limit", 10))
        return _json(200, {"object": "list", "url": "/v1/events", "data": found[:limit], "has_more": len(found) > limit})

    def retrieve_session(self, request: Request, api_key: str, session_id: str) -> Response:
        if delay := self.standin.faults.retrieve_delay_s:
            self.standin.faults.release_hung.wait(delay)
        if status := self.standin.faults.retrieve.get(session_id):
            return _json(status, objects.error("api_error", "Stand-in failure injected by the test."))
        session = self.state.sessions.get(session_id)
        if session is None:
            return _json(404, objects.error("invalid_request_error", f"No such checkout.session: '{session_id}'"))
        return _json(200, copy.deepcopy(session))

    def expire_session(self, request: Request, api_key: str, session_id: str) -> Response:
        return _json(200, self.state.settle(session_id, status="expired", payment_status="unpaid"))

    def retrieve_payment_intent(self, request: Request, api_key: str, intent_id: str) -> Response:
        intent = self.state.payment_intent(intent_id)
        if intent is None:
            return _json(404, objects.error("invalid_request_error", f"No such payment_intent: '{intent_id}'"))
        return _json(200, intent)

    # ---------------------------------------------------------------- the pages
    def dashboard_index(self, request: Request) -> Response:
        return _html(200, pages.dashboard_index(self.state))

    def checkout_page(self, request: Request, session_id: str) -> Response:
        return self._page(request, session_id, pages.checkout_page)

    def dashboard_page(self, request: Request, session_id: str) -> Response:
        return self._page(request, session_id, pages.dashboard_page)

    def _page(self, request: Request, session_id: str, render: Callable[..., str]) -> Response:
        if session_id not in self.state.sessions:
            return _html(404, pages.page("Not found", f"<p>No such checkout session: {html.escape(session_id)}</p>"))
        if request.method == "GET":
            return _html(200, render(self.state, session_id))
        # A bare POST to the checkout URL pays by card, as the first version of this page did.
        return self._button(session_id, request.form.get("action", "card"), request.form)

    def _button(self, session_id: str, action: str, form: Any) -> Response:
        """Carry out one button's action; answer with where the browser goes next."""
        dashboard = f"/dashboard/sessions/{session_id}"
        session = self.state.snapshot(session_id).session
        if action == "cancel":  # Stripe sends no event: the buyer just goes back to the shop.
            return _see_other(session["cancel_url"] or f"/pay/{session_id}")
        act, amount = self.standin.actions, form.get("amount", "")

        def choose() -> list[dict[str, Any]]:
            currency = form.get("currency")
            act.choose(session_id, code=form.get("code"), country=form.get("country"),
                       currency=None if currency == session["currency"] else currency)
            return []

        steps: dict[str, Callable[[], list[dict[str, Any]]]] = {
            "choose": choose,
            "card": lambda: act.pay_by_card(session_id),
            "bank_debit": lambda: act.pay_by_bank_debit(session_id),
            "expire": lambda: act.expire(session_id),
            "debit_succeed": lambda: act.settle_bank_debit(session_id, succeeded=True),
            "debit_fail": lambda: act.settle_bank_debit(session_id, succeeded=False),
            "refund": lambda: act.refund(session_id, int(amount) if amount.strip().isdigit() else -1),
            "refund_full": lambda: act.refund(session_id),
            "fail_refund": lambda: act.fail_refund(session_id, form.get("refund") or None),
            "dispute": lambda: act.open_dispute(session_id),
            "dispute_win": lambda: act.close_dispute(session_id, won=True),
            "dispute_lose": lambda: act.close_dispute(session_id, won=False),
        }
        if action not in steps:
            return _html(400, pages.page("Unknown action", f"<p>Unknown action {html.escape(action)!r}.</p>"))
        try:
            events = steps[action]()
        except ActionRefused as exc:
            return _html(409, pages.page("Not possible now", f'<p role="alert">{html.escape(str(exc))}</p>'
                                         f'<p><a href="{dashboard}">Back</a></p>'))
        self.standin.deliver_and_record(session_id, events)
        if action in ("card", "bank_debit") and session["success_url"]:
            # Exactly Stripe's substitution: the literal template variable, nothing else.
            return _see_other(session["success_url"].replace("{CHECKOUT_SESSION_ID}", session_id))
        return _see_other(f"/pay/{session_id}" if action in ("expire", "choose") else dashboard)

