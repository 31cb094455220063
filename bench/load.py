"""Buyers: each checks out, then delivers its paid `checkout.session.completed` webhook, signed.

Buyers run as threads in a few separate processes (not in the process that runs the Stripe
stand-in), each on its own keep-alive HTTP connections through http.client, which costs a
fraction of what requests costs per call, so that the load side is not the bottleneck.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from paystore.devtools.standin import API_VERSION, FIXTURES, sign, stripe_id

PROGRAM = "prog_py101"


@dataclass
class BuyerResults:
    checkout_ms: list[float] = field(default_factory=list)
    webhook_ms: list[float] = field(default_factory=list)
    pairs: int = 0
    overloaded: int = 0
    checkout_errors: dict[int, int] = field(default_factory=dict)
    webhook_errors: dict[int, int] = field(default_factory=dict)
    purchase_ids: list[str] = field(default_factory=list)
    cpu_s: float = 0.0

    def merge(self, other: BuyerResults) -> None:
        self.checkout_ms += other.checkout_ms
        self.webhook_ms += other.webhook_ms
        self.pairs += other.pairs
        self.overloaded += other.overloaded
        for mine, theirs in ((self.checkout_errors, other.checkout_errors), (self.webhook_errors, other.webhook_errors)):
            for status, n in theirs.items():
                mine[status] = mine.get(status, 0) + n
        self.purchase_ids += other.purchase_ids
        self.cpu_s += other.cpu_s


_SESSION = {**FIXTURES["checkout.session"], "status": "complete", "payment_status": "paid", "url": None, "livemode": False}
_EVENT = {**FIXTURES["event"], "type": "checkout.session.completed", "livemode": False, "api_version": API_VERSION,
          "pending_webhooks": 1}


def paid_event(purchase: dict[str, Any]) -> dict[str, Any]:
    """What Stripe sends once the buyer has paid the session paystore created (templates are
    filled, not deep-copied: the load side must stay cheap)."""
    session = {
        **_SESSION, "id": purchase["stripe_session_id"], "payment_intent": stripe_id("pi"),
        "amount_subtotal": purchase["amount"], "amount_total": purchase["amount"], "currency": purchase["currency"],
        "client_reference_id": purchase["purchase_id"],
        "metadata": {"purchase_id": purchase["purchase_id"], "user_id": purchase["user_id"], "program_id": PROGRAM},
    }
    return {**_EVENT, "id": stripe_id("evt"), "created": int(time.time()), "data": {"object": session}}


class _Client:
    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, float, float | None]:
        """(status, body, milliseconds, Retry-After in seconds if the answer had one)."""
        started = time.perf_counter()
        for attempt in (1, 2):
            try:
                self.conn.request("POST", path, body, headers)
                response = self.conn.getresponse()
                data = response.read()
                retry_after = response.getheader("Retry-After")
                return (response.status, data, (time.perf_counter() - started) * 1000,
                        float(retry_after) if retry_after else None)
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()  # the server closed the keep-alive connection: reconnect once
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def _buyer(
    name: str, urls: tuple[str, str], token: str, secret: str, start_at: float, stop_at: float, out: BuyerResults
) -> None:
    """Checkout on urls[0], its webhook on urls[1]: with two instances, as behind a load balancer,
    the webhook usually reaches the other instance than the checkout."""
    checkout_client, webhook_client = _Client(urls[0]), _Client(urls[1])
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    n = 0
    while True:
        now = time.time()
        if now >= stop_at:
            return
        measured = now >= start_at  # before start_at: warm-up (connections, pools), not counted
        n += 1
        user = f"{name}_{n}"
        status, data, checkout_ms, retry_after = checkout_client.post(
            "/checkout", json.dumps({"user_id": user, "program_id": PROGRAM}).encode(), auth
        )
        if status == 503 and b'"overloaded"' in data:
            out.overloaded += measured
            time.sleep(retry_after or 1.0)  # as a real client does
            continue
        if status != 201:
            out.checkout_errors[status] = out.checkout_errors.get(status, 0) + measured
            continue
        purchase = json.loads(data)
        body = json.dumps(paid_event(purchase)).encode()
        headers = {"Content-Type": "application/json", "Stripe-Signature": sign(body, secret)}
        status, _, webhook_ms, _ = webhook_client.post("/webhooks/stripe", body, headers)
        if not measured:
            continue
        out.checkout_ms.append(checkout_ms)
        out.purchase_ids.append(purchase["purchase_id"])
        if 200 <= status < 300:
            out.webhook_ms.append(webhook_ms)
            out.pairs += 1
        else:
            out.webhook_errors[status] = out.webhook_errors.get(status, 0) + 1


def run_buyers(
    process_no: int, urls: list[str], buyers: int, token: str, secret: str, start_at: float, stop_at: float
) -> BuyerResults:
    """One load process: `buyers` threads, spread over the instances' URLs (checkout on one, its
    webhook on the next)."""
    cpu_before = time.process_time()
    results = [BuyerResults() for _ in range(buyers)]
    threads = [
        threading.Thread(
            target=_buyer,
            args=(f"p{os.getpid()}_{process_no}_{i}",
                  (urls[(process_no + i) % len(urls)], urls[(process_no + i + 1) % len(urls)]),
                  token, secret, start_at, stop_at, results[i]),
            daemon=True,
        )
        for i in range(buyers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = BuyerResults()
    for result in results:
        total.merge(result)
    total.cpu_s = time.process_time() - cpu_before
    return total
