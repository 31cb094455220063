"""A local stand-in for the parts of the Stripe API that paystore calls, over real HTTP.

paystore reaches it through stripe-python (`STRIPE_API_BASE`). Objects are copies of Stripe's
published fixtures (paystore/devtools/fixtures) filled in the way real Stripe fills them. Tests can make the
session-create call slow, fail (5xx) or hang past the client timeout, and can run a hook *before*
the create call is answered, e.g. deliver the signed `checkout.session.completed` webhook to the
app first: the worst timing real Stripe can produce. Webhooks are signed with Stripe's scheme.

`python -m paystore.devtools.stripe_standin --webhook-url URL` serves it for local demos: the checkout URL it
hands out opens a hosted-checkout page (Pay, Pay by bank debit, Cancel, Let it expire), and
/dashboard stands in for Stripe's Dashboard (bank debit succeeds or fails, refund, dispute, win or
lose). Each button delivers the signed events (hosted_pages.py, payment_actions.py).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import hmac
import json
import re
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests

from paystore.devtools import hosted_pages
from paystore.devtools.demo_shop import DemoShop
from paystore.devtools.payment_actions import PaymentActions

FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "stripe_objects.json").read_text())
API_VERSION = "2026-08-27.preview"
DROP_CONNECTION = -1  # a create fault: no answer at all, the connection is cut


def stripe_id(prefix: str) -> str:
    return f"{prefix}_test_{secrets.token_hex(12)}"


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """Stripe's v1 scheme: HMAC-SHA256 of "<t>.<body>" keyed with the endpoint secret."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


class _StandInHTTPServer(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: with dozens of buyers connecting at once the
    # kernel drops SYNs and clients stall for a 1 s retransmit, which would make the load side
    # the bottleneck of every benchmark.
    request_queue_size = 1024
    daemon_threads = True


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


class StripeStandIn(PaymentActions):
    def __init__(
        self, webhook_secret: str, webhook_url: str | None = None, port: int = 0, notify_secret: str | None = None
    ) -> None:
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.shop = DemoShop(notify_secret)
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="standin-deliver")
        self._server = _StandInHTTPServer(("127.0.0.1", port), self._handler_class())
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._release_hung = threading.Event()
        self.reset()

    # ---------------------------------------------------------------- control
    def reset(self) -> None:
        self._release_hung.set()
        self._release_hung = threading.Event()
        with self._lock:
            self.sessions: dict[str, dict[str, Any]] = {}
            self.payment_intents: dict[str, str] = {}  # id -> status
            self.payment_intent_params: dict[str, dict[str, Any]] = {}  # id -> payment_intent_data of the session
            self.charges: dict[str, dict[str, Any]] = {}  # payment intent id -> its charge
            self.disputes: dict[str, dict[str, Any]] = {}  # payment intent id -> its dispute
            self.line_items: dict[str, dict[str, Any]] = {}  # session id -> what the checkout page shows
            self.deliveries: list[dict[str, Any]] = []  # webhooks sent by the pages, with paystore's answer
            self.create_calls: list[dict[str, Any]] = []
            self.idempotent: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
            # per call: HTTP status, "hang", or "drop" (create the session, then cut the
            # connection without answering: the network failed mid-request)
            self.create_faults: deque[int | str] = deque()
            self.create_delay_s = 0.0
            self.retrieve_faults: dict[str, int] = {}  # session id -> HTTP status
            self.before_create_response: Callable[[dict[str, Any]], None] | None = None

    def start(self) -> StripeStandIn:
        threading.Thread(target=self._server.serve_forever, name="stripe-standin", daemon=True).start()
        return self

    def stop(self) -> None:
        self._release_hung.set()
        self._server.shutdown()
        self._server.server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ---------------------------------------------------------------- objects and events
    def new_session(self, params: dict[str, Any], livemode: bool = False) -> dict[str, Any]:
        item = (params.get("line_items") or [{}])[0]
        price = item.get("price_data") or {}
        amount = int(price.get("unit_amount", 0)) * int(item.get("quantity", 1))
        now = int(time.time())
        session = copy.deepcopy(FIXTURES["checkout.session"])
        session.update(
            id=stripe_id("cs"),
            created=now,
            expires_at=now + 24 * 3600,
            status="open",
            payment_status="unpaid",
            payment_intent=None,
            livemode=livemode,
            mode=params.get("mode", "payment"),
            amount_subtotal=amount,
            amount_total=amount,
            currency=price.get("currency"),
            client_reference_id=params.get("client_reference_id"),
            metadata=dict(params.get("metadata") or {}),
            success_url=params.get("success_url"),
            cancel_url=params.get("cancel_url"),
        )
        session["url"] = f"{self.base_url}/pay/{session['id']}"
        with self._lock:
            self.sessions[session["id"]] = session
            self.line_items[session["id"]] = {"name": (price.get("product_data") or {}).get("name"), "amount": amount}
            self.payment_intent_params[session["id"]] = dict(params.get("payment_intent_data") or {})
        return session

    def settle(
        self, session_id: str, *, status: str = "complete", payment_status: str = "paid", intent_status: str | None = None
    ) -> dict[str, Any]:
        """Move a stored session on (a buyer paid, a delayed payment began or failed, it expired).

        A session completed with a delayed method stays complete/unpaid; its payment intent is
        `processing`, then `succeeded` or (after a failure) `requires_payment_method`.
        """
        with self._lock:
            session = self.sessions[session_id]
            session.update(status=status, payment_status=payment_status)
            if status == "complete" and not session.get("payment_intent"):
                session["payment_intent"] = stripe_id("pi")
            if session.get("payment_intent"):
                default = "succeeded" if payment_status == "paid" else "processing"
                self.payment_intents[session["payment_intent"]] = intent_status or default
            if status != "open":
                session["url"] = None
            return copy.deepcopy(session)

    def event(self, event_type: str, obj: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
        envelope = copy.deepcopy(FIXTURES["event"])
        envelope.update(
            id=event_id or f"evt_{secrets.token_hex(12)}",
            type=event_type,
            created=int(time.time()),
            livemode=bool(obj.get("livemode", False)),
            api_version=API_VERSION,
            data={"object": copy.deepcopy(obj)},
            pending_webhooks=1,
        )
        return envelope

    def charge(self, payment_intent: str, amount: int, amount_refunded: int = 0, currency: str = "usd") -> dict[str, Any]:
        charge = copy.deepcopy(FIXTURES["charge"])
        charge.update(id=stripe_id("ch"), payment_intent=payment_intent, amount=amount, amount_captured=amount,
                      amount_refunded=amount_refunded, refunded=amount_refunded >= amount, currency=currency)
        return charge

    def dispute(self, payment_intent: str, status: str, dispute_id: str | None = None, amount: int = 0) -> dict[str, Any]:
        dispute = copy.deepcopy(FIXTURES["dispute"])
        dispute.update(id=dispute_id or stripe_id("dp"), payment_intent=payment_intent, status=status,
                       charge=stripe_id("ch"), amount=amount)
        return dispute

    # ---------------------------------------------------------------- webhook delivery
    def signed_headers(self, body: bytes, secret: str | None = None, timestamp: int | None = None) -> dict[str, str]:
        return {"Content-Type": "application/json", "Stripe-Signature": sign(body, secret or self.webhook_secret, timestamp)}

    def deliver(self, event: dict[str, Any], url: str | None = None, **sign_args: Any) -> requests.Response:
        body = json.dumps(event).encode()
        return requests.post(url or self.webhook_url, data=body, headers=self.signed_headers(body, **sign_args), timeout=60)

    def deliver_and_record(self, session_id: str, events: list[dict[str, Any]]) -> None:
        """Deliver the events of a page's button in order, keeping paystore's answers for the Dashboard."""
        for event in events:
            try:
                response = self.deliver(event)
                answer = f"{response.status_code} {response.text.strip()[:300]}"
            except requests.RequestException as exc:
                answer = f"not delivered: {type(exc).__name__}"
            with self._lock:
                self.deliveries.append(
                    {"session_id": session_id, "event_id": event["id"], "type": event["type"], "answer": answer}
                )

    def deliveries_for(self, session_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(d) for d in self.deliveries if d["session_id"] == session_id]

    def payment_intent(self, intent_id: str) -> dict[str, Any] | None:
        """The payment intent as `GET /v1/payment_intents/<id>` answers it, or None."""
        with self._lock:
            if intent_id not in self.payment_intents:
                return None
            session = next((s for s in self.sessions.values() if s.get("payment_intent") == intent_id), None)
            intent = copy.deepcopy(FIXTURES["payment_intent"])
            intent.update(id=intent_id, status=self.payment_intents[intent_id], last_payment_error=None, next_action=None,
                          canceled_at=None, latest_charge=(self.charges.get(intent_id) or {}).get("id"))
            if session is not None:
                params = self.payment_intent_params.get(session["id"], {})
                intent.update(amount=session["amount_total"], currency=session["currency"], livemode=session["livemode"],
                              created=session["created"], metadata=dict(params.get("metadata") or {}),
                              amount_received=session["amount_total"] if intent["status"] == "succeeded" else 0)
            return intent

    def deliver_async(self, event: dict[str, Any], url: str | None = None) -> Future[requests.Response]:
        return self._pool.submit(self.deliver, event, url)

    # ---------------------------------------------------------------- HTTP
    def _create(self, params: dict[str, Any], idempotency_key: str | None, api_key: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.create_calls.append({"params": params, "idempotency_key": idempotency_key})
            fault = self.create_faults.popleft() if self.create_faults else None
            if idempotency_key and idempotency_key in self.idempotent:
                earlier_params, earlier = self.idempotent[idempotency_key]
                if earlier_params != params:
                    return 400, _error(
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                    )
                return 200, copy.deepcopy(earlier)
        if fault == "hang":
            self._release_hung.wait(60)
            return 500, _error("api_error", "hung request released")
        if isinstance(fault, int):
            return fault, _error("api_error", "Stand-in failure injected by the test.")
        # The answer is what Stripe created; the hook may move the stored session on (pay it).
        session = copy.deepcopy(self.new_session(params, livemode=api_key.startswith("sk_live_")))
        if self.before_create_response is not None:
            self.before_create_response(copy.deepcopy(session))
        if self.create_delay_s:
            time.sleep(self.create_delay_s)
        if idempotency_key:
            with self._lock:
                self.idempotent[idempotency_key] = (params, copy.deepcopy(session))
        if fault == "drop":
            return DROP_CONNECTION, session
        return 200, session

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes; without TCP_NODELAY, Nagle and the
            # client's delayed ACK add ~40 ms to some answers (as the benchmark showed).
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any] | str, location: str | None = None) -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8" if isinstance(body, str) else "application/json")
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", f"req_{secrets.token_hex(8)}")
                self.end_headers()
                self.wfile.write(data)

            def _api_key(self) -> str | None:
                auth = self.headers.get("Authorization", "")
                return auth[7:] if auth.startswith("Bearer sk_") else None

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if page := hosted_pages.handle(standin, "GET", path, "") or standin.shop.handle("GET", path, b"", self.headers):
                    return self._send(page.status, page.body, page.location)
                if self._api_key() is None:
                    return self._send(401, _error("invalid_request_error", "Invalid API Key provided."))
                if m := re.fullmatch(r"/v1/checkout/sessions/(cs_\w+)", path):
                    if status := standin.retrieve_faults.get(m[1]):
                        return self._send(status, _error("api_error", "Stand-in failure injected by the test."))
                    session = standin.sessions.get(m[1])
                    if session is None:
                        return self._send(404, _error("invalid_request_error", f"No such checkout.session: '{m[1]}'"))
                    return self._send(200, session)
                if m := re.fullmatch(r"/v1/payment_intents/(pi_\w+)", path):
                    if (intent := standin.payment_intent(m[1])) is None:
                        return self._send(404, _error("invalid_request_error", f"No such payment_intent: '{m[1]}'"))
                    return self._send(200, intent)
                self._send(404, _error("invalid_request_error", "Unrecognized request URL."))

            def do_POST(self) -> None:
                path = urlsplit(self.path).path
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if page := standin.shop.handle("POST", path, raw, self.headers):
                    return self._send(page.status, page.body, page.location)
                body = raw.decode()
                if page := hosted_pages.handle(standin, "POST", path, body):
                    return self._send(page.status, page.body, page.location)
                api_key = self._api_key()
                if api_key is None:
                    return self._send(401, _error("invalid_request_error", "Invalid API Key provided."))
                if path == "/v1/checkout/sessions":
                    status, answer = standin._create(decode_form(body), self.headers.get("Idempotency-Key"), api_key)
                    if status == DROP_CONNECTION:
                        self.close_connection = True
                        return self.connection.shutdown(socket.SHUT_RDWR)
                    return self._send(status, answer)
                if m := re.fullmatch(r"/v1/checkout/sessions/(cs_\w+)/expire", path):
                    return self._send(200, standin.settle(m[1], status="expired", payment_status="unpaid"))
                self._send(404, _error("invalid_request_error", "Unrecognized request URL."))

        return Handler


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--webhook-url", required=True)
    parser.add_argument("--webhook-secret", required=True)
    parser.add_argument("--notify-secret", help="PAYSTORE_NOTIFY_SECRET, to check notifications sent to /shop/notifications")
    args = parser.parse_args()
    standin = StripeStandIn(args.webhook_secret, args.webhook_url, port=args.port, notify_secret=args.notify_secret)
    print(f"Stripe stand-in on {standin.base_url} (Dashboard: {standin.base_url}/dashboard), "
          f"delivering webhooks to {args.webhook_url}", flush=True)
    standin.start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
