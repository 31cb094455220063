"""A shop that receives paystore's notifications: a real HTTP server on 127.0.0.1.

It records every POST (headers and raw body), answers with `status`, and, while `hold` is
cleared, keeps each request waiting until the test sets it (to kill a deliverer mid-send).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    notification_id: str
    signature: str
    content_type: str
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


def verify(body: bytes, header: str, secret: str, tolerance_s: int = 300) -> bool:
    """The check docs/notifications.md tells shops to make (written here from the docs)."""
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    timestamps = [v for k, v in parts if k == "t"]
    if len(timestamps) != 1 or not timestamps[0].isdigit():
        return False
    if abs(time.time() - int(timestamps[0])) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), timestamps[0].encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, v) for k, v in parts if k == "v1")


class Shop:
    def __init__(self, port: int = 0) -> None:
        self.received: list[Received] = []
        self.status = 200
        self.delay_s = 0.0
        self.hold = threading.Event()
        self.hold.set()
        self.arrived = threading.Event()
        self._lock = threading.Lock()
        shop = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with shop._lock:
                    shop.received.append(Received(
                        self.headers.get("Paystore-Notification-Id", ""), self.headers.get("Paystore-Signature", ""),
                        self.headers.get("Content-Type", ""), body,
                    ))
                shop.arrived.set()
                shop.hold.wait(60)
                if shop.delay_s:
                    time.sleep(shop.delay_s)
                self.send_response(shop.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # answering a deliverer the test killed: a broken pipe is expected

        self._server = Server(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/paystore/notifications"

    def start(self) -> Shop:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.hold.set()
        self._server.shutdown()
        self._server.server_close()

    def ids(self) -> list[str]:
        with self._lock:
            return [r.notification_id for r in self.received]
