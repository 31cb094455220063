"""A pretend shop, for `make serve` and the tests alike: the page Stripe sends a buyer to on
Cancel (/shop/cancel), an endpoint that receives paystore's signed notifications
(POST /shop/notifications) and a page that lists them (GET /shop).

A WSGI app: the stand-in mounts it under its own port for `make serve`; a test may serve it
alone (`serve()`), make it answer with another status or slowly, or hold every request until
it lets go (to kill a deliverer mid-send).
"""

from __future__ import annotations

import html
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Request, Response

from paystore.devtools.http import LocalServer
from paystore.devtools.standin.pages import page
from paystore.services.notifications.signing import verify_signature

CANCEL_PAGE = page("Shop", '<h1 id="shop-page">Back at the shop: checkout cancelled, nothing was charged.</h1>'
                           '<p><a href="/shop">Notifications received</a> · <a href="/dashboard">Dashboard</a></p>')


@dataclass(frozen=True)
class Received:
    notification_id: str
    signature: str
    content_type: str
    body: bytes
    verified: bool | None  # None: the shop knows no secret
    at: str

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


class PretendShop:
    def __init__(self, notify_secret: str | None = None) -> None:
        self.notify_secret = notify_secret
        self.received: list[Received] = []
        self.status = 200
        self.delay_s = 0.0
        self.hold = threading.Event()  # cleared: every notification waits (up to 60 s) until set
        self.hold.set()
        self.arrived = threading.Event()
        self._lock = threading.Lock()
        self._server: LocalServer | None = None
        self.url = ""

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        path = request.path.rstrip("/") or "/"
        if path.endswith("/notifications") and request.method == "POST":
            response = self._receive(request)
        elif request.method == "GET" and path in ("/shop", ""):
            response = Response(self._listing(), content_type="text/html; charset=utf-8")
        else:  # any other page of the shop: where a cancelled checkout lands
            response = Response(CANCEL_PAGE, content_type="text/html; charset=utf-8")
        return response(environ, start_response)

    def _receive(self, request: Request) -> Response:
        body = request.get_data()
        signature = request.headers.get("Paystore-Signature", "")
        verified = verify_signature(body, signature, self.notify_secret) if self.notify_secret else None
        with self._lock:
            self.received.append(Received(request.headers.get("Paystore-Notification-Id", ""), signature,
                                          request.headers.get("Content-Type", ""), body, verified, time.strftime("%H:%M:%S")))
        self.arrived.set()
        self.hold.wait(60)
        if self.delay_s:
            time.sleep(self.delay_s)
        if verified is False:
            return Response("bad signature", status=401)
        return Response("", status=self.status)

    def ids(self) -> list[str]:
        with self._lock:
            return [r.notification_id for r in self.received]

    def verified_with(self, secret: str) -> list[dict[str, Any]]:
        """The bodies received whose signature verifies with `secret`."""
        with self._lock:
            return [r.json for r in self.received if verify_signature(r.body, r.signature, secret)]

    def _listing(self) -> str:
        with self._lock:
            items = list(reversed(self.received))
        checked = {None: "not checked (no --notify-secret)", True: "valid", False: "INVALID"}
        rows = "".join(
            f"<tr><td>{r.at}</td><td>{html.escape(str(r.json.get('type')))}</td>"
            f"<td><code>{html.escape(str(r.json.get('data', {}).get('purchase', {}).get('purchase_id')))}</code></td>"
            f"<td>{checked[r.verified]}</td></tr>" for r in items)
        return page("Shop", "<h1>Notifications the shop received</h1><table><tr><th>at</th><th>type</th>"
                    f"<th>purchase</th><th>signature</th></tr>{rows}</table>"
                    "<p><code>make serve</code> runs <code>paystore notifications deliver --forever</code>: "
                    "they arrive within seconds. Reload to see new ones.</p>")

    # ---------------------------------------------------------------- served alone (tests)
    def serve(self, port: int = 0) -> PretendShop:
        """Serve on 127.0.0.1 in a thread of this process; `url` is then its base URL."""
        self._server = LocalServer(self, port).start("pretend-shop")
        self.url = f"{self._server.url}/shop"
        return self

    @property
    def notifications_url(self) -> str:
        return f"{self.url}/notifications"

    def stop(self) -> None:
        self.hold.set()
        if self._server is not None:
            self._server.stop()
