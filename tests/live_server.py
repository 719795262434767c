"""A real gunicorn process for tests that need the whole HTTP stack, talked to over loopback.

No mocks: the server is a separate process with its own settings from the environment.
"""

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

PROJECT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"  # beside the running Python
HOST = "127.0.0.1"
START_SECONDS = 20


@dataclass(frozen=True)
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    def json(self):
        assert self.content_type.startswith("application/json"), (self.status, self.body[:300])
        return json.loads(self.body)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def poll(check: Callable[[], bool], seconds: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            pytest.fail(f"{what} within {seconds} s\n{tail}")
        time.sleep(0.05)


@dataclass
class Server:
    port: int
    process: subprocess.Popen
    log: Path

    def request(self, method: str, path: str, body=None, headers=None, timeout=15.0) -> Reply:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            conn.close()

    def get(self, path: str, token: str | None = None, **headers) -> Reply:
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.request("GET", path, headers=headers)

    def post_usage(self, token: str, body) -> Reply:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        return self.request("POST", "/api/model-usage", json.dumps(body).encode(), headers)

    def answers(self, path: str, status: int) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"gunicorn exited with {self.process.returncode}\n{self.log.read_text()}")
        try:
            return self.get(path).status == status
        except OSError:  # not listening yet
            return False


def site_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a production server (DEBUG off) on ``database_url``, over plain HTTP."""
    return {
        **os.environ,
        "SECRET_KEY": "t",
        "DEBUG": "0",
        "HTTPS_ONLY": "0",
        "ALLOWED_HOSTS": HOST,
        "DATABASE_URL": database_url,
        **extra,
    }


def manage(database_url: str, *args: str) -> str:
    """Run a management command against the server's database; its standard output."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT,
        env=site_env(database_url),
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.fail(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


@contextmanager
def gunicorn(
    database_url: str, log: Path, *, env: dict[str, str] | None = None, workers: int | None = 1
) -> Iterator[Server]:
    """gunicorn with gunicorn.conf.py (read from the project folder, as ./dev.py serve does).

    ``workers=None`` keeps the configuration's own count (WEB_CONCURRENCY, default 2).
    """
    port = free_port()
    env = site_env(database_url, **(env or {}))
    argv = [str(GUNICORN), "usage_site.wsgi", "-b", f"{HOST}:{port}"]
    argv += ["--workers", str(workers)] if workers else []
    argv += ["--graceful-timeout", "5"]
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            argv, cwd=PROJECT, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    server = Server(port, process, log)
    try:
        poll(lambda: server.answers("/api/health/simple", 200), START_SECONDS, "no answer", log)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def url_of(settings_dict: dict) -> str:
    user = quote(settings_dict["USER"], safe="")
    password = f":{quote(settings_dict['PASSWORD'], safe='')}" if settings_dict["PASSWORD"] else ""
    host = settings_dict["HOST"] or HOST
    port = settings_dict["PORT"] or "5432"
    return f"postgres://{user}{password}@{host}:{port}/{quote(settings_dict['NAME'])}"


def log_in(server: Server, username: str, password: str) -> str:
    """Sign in through the login form; the Cookie header of the signed-in browser."""
    form = server.get("/accounts/login/")
    cookies = SimpleCookie(form.headers["Set-Cookie"])
    csrf = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', form.body).group(1)
    body = urlencode(
        {"username": username, "password": password, "csrfmiddlewaretoken": csrf.decode()}
    )
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": f"csrftoken={cookies['csrftoken'].value}",
    }
    reply = server.request("POST", "/accounts/login/", body.encode(), headers)
    assert reply.status == 302, reply.body[:300]
    for header in reply.headers.get_all("Set-Cookie"):
        cookies.load(header)
    return "; ".join(f"{name}={morsel.value}" for name, morsel in cookies.items())
