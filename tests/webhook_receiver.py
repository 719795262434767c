"""A real HTTP server on a loopback port that receives the site's webhooks, for tests.

It checks each request's signature as a receiver should (docs/costs-and-budgets.md), answers
500 to the first ``fail_first`` requests on purpose, can hold the first request open until
released (so that a test can kill the worker mid-delivery), and records every request.
"""

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.live_server import HOST, free_port
from usage.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, verify


@dataclass(frozen=True)
class Received:
    path: str
    host: str
    event_id: str
    event_type: str
    signature_ok: bool
    body: dict
    answered: int | None  # None: held open, never answered


class WebhookReceiver:
    def __init__(self, secret: str = "") -> None:
        self.secret = secret
        self.fail_first = 0
        self.hold_first = False
        self.held = threading.Event()  # set when a request is being held
        self.release = threading.Event()
        self._received: list[Received] = []
        self._arrived = threading.Condition()
        self._server = ThreadingHTTPServer((HOST, free_port()), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://{HOST}:{self.port}/hooks/usage"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.handle(self, raw)

            def log_message(self, *args) -> None:
                pass

        return Handler

    def handle(self, request: BaseHTTPRequestHandler, raw: bytes) -> None:
        with self._arrived:
            number = len(self._received) + 1
            hold = self.hold_first and number == 1
            status = 500 if number <= self.fail_first else 200
        signature_ok = verify(
            self.secret, request.headers.get(SIGNATURE_HEADER, ""), raw, now=int(time.time())
        )
        if not signature_ok:
            status = 400
        received = Received(
            path=request.path,
            host=request.headers.get("Host", ""),
            event_id=request.headers.get(EVENT_ID_HEADER, ""),
            event_type=request.headers.get("Usage-Event-Type", ""),
            signature_ok=signature_ok,
            body=json.loads(raw or b"null"),
            answered=None if hold else status,
        )
        with self._arrived:
            self._received.append(received)
            self._arrived.notify_all()
        if hold:
            self.held.set()
            self.release.wait(120)
            return  # no answer: the sender is gone by now
        request.send_response(status)
        request.send_header("Content-Length", "0")
        request.end_headers()

    def reset(self, *, fail_first: int = 0, hold_first: bool = False) -> None:
        """Forget what arrived; fail or hold the requests that come next."""
        self.release.set()  # a request still held goes
        with self._arrived:
            self._received.clear()
            self.fail_first, self.hold_first = fail_first, hold_first
            self.held, self.release = threading.Event(), threading.Event()

    @property
    def received(self) -> list[Received]:
        with self._arrived:
            return list(self._received)

    def accepted(self) -> list[Received]:
        """The requests answered 200: the deliveries that arrived, duplicates included."""
        return [r for r in self.received if r.answered == 200]

    def wait_for(self, check, timeout: float = 60.0, what: str = "webhooks") -> list[Received]:
        """Wait until ``check(received)`` is true; the requests received."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while not check(list(self._received)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {what} within {timeout} s: {self._received}")
                self._arrived.wait(left)
            return list(self._received)

    def start(self) -> "WebhookReceiver":
        threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()
