"""The stand-in as a server: start and stop it, set its faults, and deliver its signed webhooks."""

from __future__ import annotations

import copy
import json
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import requests

from paystore.devtools.http import LocalServer
from paystore.devtools.shop import PretendShop
from paystore.devtools.standin import objects
from paystore.devtools.standin.actions import ActionRefused, PaymentActions
from paystore.devtools.standin.routes import StandInApp
from paystore.devtools.standin.state import Faults, StandInState


class StripeStandIn:
    """A local Stripe, reached by paystore through stripe-python (STRIPE_API_BASE)."""

    def __init__(
        self, webhook_secret: str, webhook_url: str | None = None, port: int = 0, notify_secret: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.shop = PretendShop(notify_secret)
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="standin-deliver")
        self.state = StandInState()
        self.faults = Faults()
        self.actions = PaymentActions(self.state)
        self._server = LocalServer(StandInApp(self), port, host)
        self.base_url = self._server.url

    def reset(self) -> None:
        """Forget every object and fault (a hung create call is released)."""
        self.faults.release_hung.set()
        self.state, self.faults = StandInState(), Faults()
        self.actions = PaymentActions(self.state)

    def start(self) -> StripeStandIn:
        self._server.start("stripe-standin")
        return self

    def stop(self) -> None:
        self.faults.release_hung.set()
        self._server.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ---------------------------------------------------------------- what tests use most
    @property
    def sessions(self) -> dict[str, dict[str, Any]]:
        return self.state.sessions

    def settle(self, session_id: str, **how: Any) -> dict[str, Any]:
        return self.state.settle(session_id, **how)

    def new_session(self, params: dict[str, Any], livemode: bool = False) -> dict[str, Any]:
        """Create and store an open session, as the create call does."""
        session = objects.checkout_session(params, self.base_url, livemode)
        self.state.add_session(session, params)
        return session

    event = staticmethod(objects.event)
    charge = staticmethod(objects.charge)
    dispute = staticmethod(objects.dispute)

    # ---------------------------------------------------------------- the create call
    def create_session(self, params: dict[str, Any], idempotency_key: str | None, api_key: str) -> tuple[Any, dict[str, Any]]:
        """(HTTP status or "drop", body) for `POST /v1/checkout/sessions`."""
        faults = self.faults
        with self.state.lock:
            self.state.create_calls.append({"params": params, "idempotency_key": idempotency_key})
            fault = faults.create.popleft() if faults.create else None
            if (earlier := self._replayed(idempotency_key, params)) is not None:
                return earlier
        if fault == "hang":
            faults.release_hung.wait(60)
            return 500, objects.error("api_error", "hung request released")
        if isinstance(fault, int):
            return fault, objects.error("api_error", "Stand-in failure injected by the test.")
        # The answer is what Stripe created; the hook may move the stored session on (pay it).
        session = self.new_session(params, livemode=api_key.startswith("sk_live_"))
        if faults.before_create_response is not None:
            faults.before_create_response(copy.deepcopy(session))
        if faults.create_delay_s:
            faults.release_hung.wait(faults.create_delay_s)
        if idempotency_key:
            with self.state.lock:
                self.state.idempotent[idempotency_key] = (params, copy.deepcopy(session))
        return ("drop" if fault == "drop" else 200), session

    def _replayed(self, key: str | None, params: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """Stripe's idempotency (the caller holds the state's lock): the first answer to this key
        again, a 400 if the parameters differ, or None for a key not seen yet."""
        if not key or key not in self.state.idempotent:
            return None
        earlier_params, earlier = self.state.idempotent[key]
        if earlier_params != params:
            return 400, objects.error("idempotency_error", "Keys for idempotent requests can only be used with "
                                      "the same parameters they were first used with.")
        return 200, copy.deepcopy(earlier)

    def create_customer(self, params: dict[str, Any], idempotency_key: str | None, api_key: str) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) for `POST /v1/customers`, idempotent as Stripe is."""
        if self.faults.before_create_customer is not None:
            self.faults.before_create_customer(params)
        key = f"customer:{idempotency_key}" if idempotency_key else None
        with self.state.lock:
            if (earlier := self._replayed(key, params)) is not None:
                return earlier
            customer = objects.customer(params, livemode=api_key.startswith("sk_live_"))
            self.state.customers[customer["id"]] = customer
            if key:
                self.state.idempotent[key] = (params, copy.deepcopy(customer))
        return 200, customer

    def create_refund(self, params: dict[str, Any], idempotency_key: str | None) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) for `POST /v1/refunds`: the refund; its events go out after the answer."""
        key = f"refund:{idempotency_key}" if idempotency_key else None
        with self.state.lock:
            fault = self.faults.refund.popleft() if self.faults.refund else None
            if (earlier := self._replayed(key, params)) is not None:
                return earlier
        if fault is not None:
            return fault, objects.error("api_error", "Stand-in failure injected by the test.")
        amount = int(params["amount"]) if "amount" in params else None
        try:
            refund, events = self.actions.refund_payment(params.get("payment_intent", ""), amount, params.get("reason"),
                                                         params.get("metadata"))
        except ActionRefused as exc:
            return 400, objects.error("invalid_request_error", str(exc))
        if key:
            with self.state.lock:
                self.state.idempotent[key] = (params, copy.deepcopy(refund))
        for event in events:
            if self.faults.deliver_api_events:
                self.deliver_async(event)
            else:
                self.state.record_event(event, taken=False)
        return 200, refund

    # ---------------------------------------------------------------- webhook delivery
    def signed_headers(self, body: bytes, secret: str | None = None, timestamp: int | None = None) -> dict[str, str]:
        signature = objects.sign(body, secret or self.webhook_secret, timestamp)
        return {"Content-Type": "application/json", "Stripe-Signature": signature}

    def deliver(self, event: dict[str, Any], url: str | None = None, **sign_args: Any) -> requests.Response:
        """POST the signed event to paystore's webhook; the stand-in's event log notes whether it was taken."""
        body = json.dumps(event).encode()
        try:
            answer = requests.post(url or self.webhook_url, data=body, headers=self.signed_headers(body, **sign_args),
                                   timeout=60)
        except requests.RequestException:
            self.state.record_event(event, taken=False)
            raise
        self.state.record_event(event, taken=200 <= answer.status_code < 300)
        return answer

    def deliver_async(self, event: dict[str, Any], url: str | None = None) -> Future[requests.Response]:
        return self._pool.submit(self.deliver, event, url)

    def deliver_and_record(self, session_id: str, events: list[dict[str, Any]]) -> None:
        """Deliver the events of a page's button in order, keeping paystore's answers for the Dashboard."""
        for event in events:
            try:
                response = self.deliver(event)
                answer = f"{response.status_code} {response.text.strip()[:300]}"
            except requests.RequestException as exc:
                answer = f"not delivered: {type(exc).__name__}"
            self.state.record_delivery(session_id, event, answer)
