"""A threaded HTTP/1.1 server on 127.0.0.1 that hands every request to one function: the base of the fakes."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True  # a killed fake can start again on its port at once
    daemon_threads = True


def start_server(handle: Callable[[BaseHTTPRequestHandler, str], None], port: int = 0) -> ThreadingHTTPServer:
    """Serves GET, POST and PATCH on 127.0.0.1:port (0: a free port) in a daemon thread; handle(handler, method)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            handle(self, "GET")

        def do_POST(self) -> None:
            handle(self, "POST")

        def do_PATCH(self) -> None:
            handle(self, "PATCH")

    server = _Server(("127.0.0.1", port), Handler)
    # A short poll interval: shutdown() waits for it, and the default 0.5 s adds up over the suite.
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return server


def send_json(handler: BaseHTTPRequestHandler, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
    data = json.dumps(obj).encode()
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)
    except OSError:  # the client gave up (a timeout)
        pass
