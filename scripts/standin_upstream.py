#!/usr/bin/env python3
"""A DEVELOPMENT STAND-IN for the external plugin-generation and token-usage API.

It is not the real service: it makes up plugins and token counts, keeps them in memory,
and forgets them when it stops. It answers the three calls of docs/external-api.md so that
the whole flow can be tried locally:

    ./dev.py upstream          (or: make upstream; python3 scripts/standin_upstream.py)

listens on http://127.0.0.1:3001, where the site looks by default with DEBUG=1. With
EXTERNAL_API_KEY set, it refuses requests that do not send it as ``Bearer``.

The tests start the same code on a free loopback port (``StandIn``), inject faults into
its answers (``answer``, ``hang``, ``trickle``, ``oversized``) and read what it received
(``received``). Only the standard library: it runs before any virtual environment exists.
"""

import argparse
import contextlib
import json
import os
import re
import socket
import sys
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3001
MAX_REQUEST_BYTES = 2 * 1024 * 1024
ROUTES = ("health", "token-usage", "generate")
_TOKEN_USAGE_PATH = re.compile(r"/user/([^/]+)/token-usage")
BANNER = """\
============================================================================
  DEVELOPMENT STAND-IN for the external plugin / token-usage API.
  NOT the real service: made-up plugins and token counts, kept in memory.
  Never point a production site at it.

  Listening on {url}   (Ctrl-C to stop){key_line}
  The site uses it by default with DEBUG=1 (./dev.py run); otherwise set
  EXTERNAL_API_URL={url}
============================================================================"""


@dataclass(frozen=True)
class Received:
    """One request as it arrived: ``path`` is raw (still percent-encoded, query included)."""

    route: str | None
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Fault:
    kind: str  # "answer", "hang", "trickle" or "oversized"
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    declare_length: bool = True
    content_type: str | None = "application/json"
    seconds_per_byte: float = 0.0
    released: threading.Event = field(default_factory=threading.Event)


@dataclass
class Counters:
    promptTokens: int = 0  # the upstream's own names
    completionTokens: int = 0
    totalTokens: int = 0
    requestCount: int = 0

    def add(self, usage: dict) -> None:
        self.promptTokens += usage["promptTokens"]
        self.completionTokens += usage["completionTokens"]
        self.totalTokens += usage["totalTokens"]
        self.requestCount += 1


@dataclass
class UserUsage:
    total: Counters = field(default_factory=Counters)
    daily: dict[str, Counters] = field(default_factory=lambda: defaultdict(Counters))
    monthly: dict[str, Counters] = field(default_factory=lambda: defaultdict(Counters))
    last_request_at: str | None = None


class StandIn:
    """The stand-in server, its per-user counters, its faults and what it received."""

    def __init__(
        self, host: str = DEFAULT_HOST, port: int = 0, *, key: str = "", quiet: bool = True
    ):
        self.key = key
        self.quiet = quiet
        self.received: list[Received] = []
        self.users: dict[str, UserUsage] = defaultdict(UserUsage)
        self.faults: dict[str, Fault] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.connections: set[socket.socket] = set()
        self.server = ThreadingHTTPServer((host, port), _handler_for(self))
        self.server.daemon_threads = True
        self.server.block_on_close = False  # a hanging handler must not block stop()
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "StandIn":
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop as a real server going down would: open keep-alive connections too."""
        self.stopping.set()
        self.release()
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            for connection in self.connections:
                with contextlib.suppress(OSError):  # already closed
                    connection.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> "StandIn":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # --- Faults, for tests: each stays until reset() ---------------------------------------

    def answer(
        self,
        route: str,
        status: int,
        body=b"",
        headers=None,
        *,
        declare_length=True,
        content_type: str | None = "application/json",
    ):
        """Answer ``route`` with this instead (a dict or list is sent as JSON, bytes as they
        are: any bytes at all, for the tests that fuzz the site with hostile answers).
        ``content_type`` None sends no Content-Type."""
        fault = Fault("answer", status, _bytes(body), headers or {}, declare_length, content_type)
        self._set(route, fault)

    def hang(self, route: str) -> None:
        """Hold ``route``'s answers until release(); then answer as usual."""
        self._set(route, Fault("hang"))

    def trickle(self, route: str, seconds_per_byte: float) -> None:
        """Send ``route``'s usual answer one byte at a time (its length declared up front)."""
        self._set(route, Fault("trickle", seconds_per_byte=seconds_per_byte))

    def oversized(self, route: str, size: int, *, declare_length: bool = True) -> None:
        """A valid JSON answer of ``size`` bytes (at least 15): one unknown key, padded."""
        body = b'{"padding": "' + b"x" * (size - 15) + b'"}'
        self._set(route, Fault("oversized", 200, body, declare_length=declare_length))

    def release(self) -> None:
        with self.lock:
            for fault in self.faults.values():
                fault.released.set()

    def reset(self) -> None:
        self.release()
        with self.lock:
            self.faults.clear()
            self.received.clear()

    def received_for(self, route: str) -> list[Received]:
        with self.lock:
            return [request for request in self.received if request.route == route]

    def _set(self, route: str, fault: Fault) -> None:
        if route not in ROUTES:
            raise ValueError(f"route must be one of {ROUTES}; got {route!r}")
        with self.lock:
            self.faults[route] = fault

    # --- Behaviour -------------------------------------------------------------------------

    def generate(self, body: bytes) -> tuple[int, dict]:
        try:
            request = json.loads(body)
        except ValueError:
            return 400, {"error": "The body is not JSON."}
        if not isinstance(request, dict):
            return 400, {"error": "The body must be a JSON object."}
        user_id, prompt = request.get("userId"), request.get("prompt")
        if not isinstance(user_id, str) or not user_id:
            return 400, {"error": "userId is required."}
        if not isinstance(prompt, str) or not prompt.strip():
            return 400, {"error": "prompt is required: describe the plugin to generate."}
        usage = token_counts(prompt)
        now = datetime.now(UTC)
        with self.lock:
            user = self.users[user_id]
            user.total.add(usage)
            user.daily[f"{now:%Y-%m-%d}"].add(usage)
            user.monthly[f"{now:%Y-%m}"].add(usage)
            user.last_request_at = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return 200, {"result": made_up_plugin(prompt), "tokenUsage": usage}

    def token_usage(self, user_id: str) -> tuple[int, dict]:
        with self.lock:
            user = self.users.get(user_id)
            if user is None:
                return 404, {"error": f"No token usage for user {user_id!r}."}
            return 200, {
                "userId": user_id,
                **vars(user.total),
                "dailyUsage": [{"date": d, **vars(c)} for d, c in sorted(user.daily.items())],
                "monthlyUsage": [{"month": m, **vars(c)} for m, c in sorted(user.monthly.items())],
                "lastRequestAt": user.last_request_at,
            }


def token_counts(prompt: str) -> dict:
    """Made-up but deterministic: the same prompt always costs the same."""
    prompt_tokens = 12 + len(prompt) // 4
    completion_tokens = 40 + 3 * prompt_tokens
    return {
        "promptTokens": prompt_tokens,
        "completionTokens": completion_tokens,
        "totalTokens": prompt_tokens + completion_tokens,
    }


def made_up_plugin(prompt: str) -> dict:
    name = "-".join(re.findall(r"[a-z0-9]+", prompt.lower())[:4]) or "plugin"
    code = (
        f"// {name}: made up by the development stand-in, not a real generation.\n"
        f"export default function plugin() {{\n  return {json.dumps(prompt)};\n}}\n"
    )
    return {"name": name, "description": prompt, "language": "javascript", "code": code}


def _bytes(body) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


def _handler_for(standin: StandIn) -> type[BaseHTTPRequestHandler]:
    return type("Handler", (_Handler,), {"standin": standin})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real server and httpx's pool expect
    server_version = "StandInUpstream/1.0"
    standin: StandIn

    def setup(self) -> None:
        super().setup()
        with self.standin.lock:
            self.standin.connections.add(self.connection)

    def finish(self) -> None:
        with self.standin.lock:
            self.standin.connections.discard(self.connection)
        super().finish()

    def do_GET(self) -> None:  # http.server's naming
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        standin = self.standin
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BYTES:
            self._send(413, {"error": "The body is too large."}, length=False)
            return
        body = self.rfile.read(length) if length else b""
        route = _route(method, path)
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            name = name.lower()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        with standin.lock:
            standin.received.append(Received(route, method, self.path, headers, body))
            fault = standin.faults.get(route) if route else None
        if fault and fault.kind == "hang":
            fault.released.wait()
            fault = None
        if fault and fault.kind in ("answer", "oversized"):
            self._send(
                fault.status,
                fault.body,
                fault.headers,
                length=fault.declare_length,
                content_type=fault.content_type,
            )
            return
        status, answer = self._normal(route, path, headers, body)
        if fault and fault.kind == "trickle":
            self._trickle(status, _bytes(answer), fault.seconds_per_byte)
        else:
            self._send(status, answer)

    def _normal(self, route, path: str, headers: dict, body: bytes) -> tuple[int, dict]:
        standin = self.standin
        if route is None:
            return 404, {"error": "Not found."}
        if route == "health":
            return 200, {"status": "ok", "service": "development stand-in"}
        if standin.key and headers.get("authorization") != f"Bearer {standin.key}":
            return 401, {"error": "Missing or wrong API key."}
        if route == "generate":
            return standin.generate(body)
        return standin.token_usage(unquote(_TOKEN_USAGE_PATH.fullmatch(path).group(1)))

    def _send(
        self, status: int, body, headers=None, *, length=True, content_type="application/json"
    ) -> None:
        raw = _bytes(body)
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if length:
            self.send_header("Content-Length", str(len(raw)))
        else:  # the body ends where the connection does
            self.send_header("Connection", "close")
            self.close_connection = True
        try:
            self.end_headers()
        except OSError:  # the client gave up while the answer was held (hang, release)
            self.close_connection = True
            return
        self._write(raw)

    def _trickle(self, status: int, raw: bytes, seconds_per_byte: float) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        for index in range(len(raw)):
            stopped = self.standin.stopping.wait(seconds_per_byte)
            if stopped or not self._write(raw[index : index + 1]):
                self.close_connection = True
                return

    def _write(self, raw: bytes) -> bool:
        try:
            self.wfile.write(raw)
            self.wfile.flush()
        except OSError:  # the client gave up: expected in the fault tests
            self.close_connection = True
            return False
        return True

    def log_message(self, format: str, *args) -> None:
        if not self.standin.quiet:
            super().log_message(format, *args)


def _route(method: str, path: str) -> str | None:
    if method == "GET" and path == "/health":
        return "health"
    if method == "GET" and _TOKEN_USAGE_PATH.fullmatch(path):
        return "token-usage"
    if method == "POST" and path == "/plugin/generate":
        return "generate"
    return None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    key = os.environ.get("EXTERNAL_API_KEY", "")
    try:
        standin = StandIn(args.host, args.port, key=key, quiet=False)
    except OSError as exc:
        print(f"Cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    key_line = "\n  Requires Authorization: Bearer $EXTERNAL_API_KEY (it is set)." if key else ""
    print(BANNER.format(url=standin.url, key_line=key_line), flush=True)
    try:
        standin.server.serve_forever()
    except KeyboardInterrupt:
        print("\nStand-in stopped; its counters are gone.")
    finally:
        standin.server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
