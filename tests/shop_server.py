"""A stand-in for the shop that sells through paystore: it receives paystore's signed notifications
and serves the page Stripe sends a buyer to on cancel. Real HTTP, in this process."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class RecordingShop:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []  # {"headers", "body"} of every notification
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> RecordingShop:
        threading.Thread(target=self._server.serve_forever, name="test-shop", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def notifications(self, secret: str) -> list[dict[str, Any]]:
        """The bodies received whose Paystore-Signature verifies with `secret` (t=..,v1=HMAC of "t.body")."""
        verified = []
        for item in list(self.received):
            parts = [p.split("=", 1) for p in item["headers"].get("Paystore-Signature", "").split(",") if "=" in p]
            t = next((v for k, v in parts if k == "t"), "")
            expected = hmac.new(secret.encode(), f"{t}.".encode() + item["body"], hashlib.sha256).hexdigest()
            if any(k == "v1" and hmac.compare_digest(expected, v) for k, v in parts):  # one v1 per secret
                verified.append(json.loads(item["body"]))
        return verified

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                shop.received.append({"headers": dict(self.headers), "body": body, "path": self.path})
                self._answer(200, b'{"received": true}', "application/json")

            def do_GET(self) -> None:
                page = b'<!doctype html><title>Shop</title><h1 id="shop-page">Checkout cancelled: nothing was charged.</h1>'
                self._answer(200, page, "text/html; charset=utf-8")

        return Handler
