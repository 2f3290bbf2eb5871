"""A real HTTP receiver on loopback for the notification tests (unit and lab): records every
request it is sent, whatever its method, and can answer slowly, with an error status, or with a
redirect."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Seen:
    """One request as it arrived."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    seen: list[Seen] = field(default_factory=list)  # every request, answered how it may be
    got: list[dict[str, Any]] = field(default_factory=list)  # JSON bodies answered with 200
    headers: list[dict[str, str]] = field(default_factory=list)  # their headers
    statuses: list[int] = field(default_factory=list)  # answers to give, in order; then 200
    delay: float = 0.0  # seconds before answering
    # answer with this status and Location instead (a redirect)
    redirect: tuple[int, str] | None = None
    answered: threading.Event = field(default_factory=threading.Event)

    def events(self) -> list[str]:
        return [body["event"] for body in self.got]


@contextmanager
def receiver() -> Iterator[Receiver]:
    """A receiver listening on 127.0.0.1 (a free port) until the block ends."""
    box: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            me = box[0]
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length) if length else b""
            me.seen.append(Seen(self.command, self.path, dict(self.headers), body))
            time.sleep(me.delay)
            if me.redirect is not None:
                self.send_response(me.redirect[0])
                self.send_header("Location", me.redirect[1])
            else:
                status = me.statuses.pop(0) if me.statuses else 200
                if status == 200 and body:
                    me.got.append(json.loads(body))
                    me.headers.append(dict(self.headers))
                self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            me.answered.set()

        do_GET = do_POST = do_PUT = do_HEAD = answer  # noqa: N815 (http.server's names)

        def log_message(self, *_args: Any) -> None:  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    box.append(Receiver(f"http://127.0.0.1:{server.server_address[1]}/hook"))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield box[0]
    finally:
        server.shutdown()
        server.server_close()


def closed_port_url() -> str:
    """A loopback URL nothing listens on (the port was just free)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"
