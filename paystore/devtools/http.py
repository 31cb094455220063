"""Serving the dev tools' WSGI apps (the Stripe stand-in, the pretend shop) on 127.0.0.1 with
Werkzeug's threaded server, and finding a free port."""

from __future__ import annotations

import socket
import threading
from typing import Any

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler


class _QuietHandler(WSGIRequestHandler):
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle and the client's
    # delayed ACK add ~40 ms to some answers (as the benchmark showed).
    disable_nagle_algorithm = True

    def log_request(self, *args: Any) -> None:
        pass


class LocalServer(ThreadedWSGIServer):
    # The default listen backlog (128) drops SYNs when hundreds of buyers connect at once, and
    # clients then stall for a 1 s retransmit: the load side would be the bottleneck of a bench.
    request_queue_size = 1024

    def __init__(self, app: Any, port: int = 0, host: str = "127.0.0.1") -> None:
        super().__init__(host, port, app, handler=_QuietHandler)
        self.url = f"http://{host}:{self.server_address[1]}"

    def start(self, name: str) -> LocalServer:
        threading.Thread(target=self.serve_forever, name=name, daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away (a test's timeout, a killed deliverer): nothing to report


def free_port() -> int:
    """A port nothing listens on now (another process may take it before the caller does)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
