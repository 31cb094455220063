"""A pretend shop beside the stand-in, so that `make serve` shows the whole loop without a shop:
the page Stripe sends a buyer to on Cancel (/shop/cancel), and an endpoint that receives
paystore's signed notifications (POST /shop/notifications) and lists them (GET /shop)."""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import threading
import time
from typing import Any

from paystore.devtools.hosted_pages import Page, page


class DemoShop:
    def __init__(self, notify_secret: str | None = None) -> None:
        self.notify_secret = notify_secret
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def signature_ok(self, body: bytes, header: str) -> bool | None:
        """None when no secret is known; else whether one v1 is HMAC-SHA256("<t>.<body>")."""
        if not self.notify_secret:
            return None
        parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
        t = next((v for k, v in parts if k == "t"), "")
        expected = hmac.new(self.notify_secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        return any(k == "v1" and hmac.compare_digest(v, expected) for k, v in parts)

    def handle(self, method: str, path: str, body: bytes, headers: Any) -> Page | None:
        if path == "/shop/cancel":
            return page(200, "Shop", '<h1 id="shop-page">Back at the shop: checkout cancelled, nothing was charged.</h1>'
                        '<p><a href="/shop">Notifications received</a> · <a href="/dashboard">Dashboard</a></p>')
        if path == "/shop/notifications" and method == "POST":
            verified = self.signature_ok(body, headers.get("Paystore-Signature", ""))
            try:
                notification = json.loads(body)
            except ValueError:
                return Page(400, "not JSON")
            with self._lock:
                self.received.append({"at": time.strftime("%H:%M:%S"), "body": notification, "verified": verified})
            return Page(401 if verified is False else 200, "bad signature" if verified is False else "ok")
        if path in ("/shop", "/shop/") and method == "GET":
            return self._list()
        return None

    def _list(self) -> Page:
        with self._lock:
            items = list(reversed(self.received))
        checked = {None: "not checked (no --notify-secret)", True: "valid", False: "INVALID"}
        rows = "".join(
            f"<tr><td>{r['at']}</td><td>{html.escape(str(r['body'].get('type')))}</td>"
            f"<td><code>{html.escape(str(r['body'].get('data', {}).get('purchase', {}).get('purchase_id')))}</code></td>"
            f"<td>{checked[r['verified']]}</td></tr>" for r in items)
        return page(200, "Shop", "<h1>Notifications the shop received</h1><table><tr><th>at</th><th>type</th>"
                    f"<th>purchase</th><th>signature</th></tr>{rows}</table>"
                    "<p><code>make serve</code> runs <code>paystore notifications deliver --forever</code>: "
                    "they arrive within seconds. Reload to see new ones.</p>")
