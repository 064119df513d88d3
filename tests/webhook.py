"""A real HTTP receiver for alert webhooks: a local http.server on a free port, in a thread.

It records each POST (its JSON and when it came), answers `status`, and, while `hang` is set,
holds each request until `release` is set (or 60 s pass): a receiver that hangs.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.received: list[tuple[float, Any]] = []
        self.status = 200
        self.hang = False
        self.release = threading.Event()
        self.holding = 0  # requests being held now
        self.arrived = threading.Event()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802  # http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((time.time(), json.loads(body)))
                receiver.arrived.set()
                if receiver.hang:
                    receiver.holding += 1
                    receiver.release.wait(60)
                    receiver.holding -= 1
                try:
                    self.send_response(receiver.status)
                    self.end_headers()
                    self.wfile.write(b"ok" if receiver.status < 300 else b"receiver says no")
                except OSError:  # the sender gave up waiting (its timeout)
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def states(self) -> list[str]:
        return [body.get("state", body.get("text", "")) for _, body in self.received]

    def wait_for(self, count: int, seconds: float = 30.0) -> None:
        deadline = time.monotonic() + seconds
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"got {self.states()}, waited for {count}"
            time.sleep(0.05)
