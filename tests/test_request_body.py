"""Request bodies: none over 1 MiB is read on any URL, and REST framework reads JSON strictly.

The 40 MB bodies here are real ones, sent through the test client; tests/test_live_server.py
sends them to a real gunicorn, where the answer comes before the body is even sent.
"""

import re
import socket
from collections.abc import Iterator
from http.cookies import SimpleCookie

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from tests.live_server import HOST, Server, gunicorn, manage
from usage.ingest import MAX_BODY_BYTES
from usage.models import ApiToken

FORTY_MB = 40 * 1024 * 1024
CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def browser_with_csrf(client: Client, page: str = "/accounts/login/") -> str:
    """``client`` as a browser that has opened ``page``: its CSRF cookie, and the form's token."""
    form = client.get(page)
    assert form.status_code == 200
    return CSRF_FIELD.search(form.content.decode()).group(1)


def big_file(size: int = FORTY_MB) -> SimpleUploadedFile:
    return SimpleUploadedFile("big.bin", b"\0" * size, "application/octet-stream")


def test_a_40_mb_form_post_to_the_login_page_is_refused_with_a_plain_413_page(client, owner):
    token = browser_with_csrf(client)

    response = client.post(
        "/accounts/login/",
        {"csrfmiddlewaretoken": token, "username": "alice", "password": "x", "f": big_file()},
    )

    assert response.status_code == 413
    assert response["Content-Type"].startswith("text/html")
    assert b"Too large" in response.content
    # It goes out through the other middleware: the security headers are there.
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert "_auth_user_id" not in client.session


def test_a_body_over_the_limit_is_a_json_413_under_the_api_even_for_a_session(client, owner):
    client.force_login(owner)
    token = browser_with_csrf(client, "/dashboard/tokens/")

    response = client.post(
        "/api/plugin/generate", {"f": big_file(2 * MAX_BODY_BYTES)}, HTTP_X_CSRFTOKEN=token
    )

    assert response.status_code == 413
    assert response.json() == {
        "error": f"The body is larger than {MAX_BODY_BYTES} bytes.",
        "code": "invalid_body",
    }


@pytest.mark.parametrize(
    "url",
    [
        "/accounts/login/",
        "/accounts/password/",
        "/admin/login/",
        "/dashboard/tokens/",
        "/dashboard/timezone/",
        "/api/health",
        "/nowhere/",
    ],
)
def test_every_url_refuses_a_body_over_the_limit(client, owner, url):
    client.force_login(owner)
    token = browser_with_csrf(client, "/dashboard/tokens/")
    body = b"name=x&csrfmiddlewaretoken=" + token.encode() + b"&pad=" + b"x" * MAX_BODY_BYTES

    response = client.post(url, body, content_type="application/x-www-form-urlencoded")

    assert response.status_code == 413
    assert ApiToken.objects.count() == 0


def test_a_form_within_the_limit_is_read_as_usual(client, owner):
    client.force_login(owner)
    token = browser_with_csrf(client, "/dashboard/tokens/")
    form = f"csrfmiddlewaretoken={token}&name=Laptop&pad=".encode()
    body = form + b"x" * (MAX_BODY_BYTES - len(form))  # exactly the limit

    response = client.post("/dashboard/tokens/", body, "application/x-www-form-urlencoded")

    assert response.status_code == 303
    assert list(ApiToken.objects.values_list("name", flat=True)) == ["Laptop"]


# --- Through a real gunicorn: the answer comes before the body is sent ----------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("body-limit")
    database_url = f"sqlite:///{folder / 'site.sqlite3'}"
    manage(database_url, "migrate", "--no-input", "--verbosity", "0")
    with gunicorn(database_url, folder / "gunicorn.log") as server:
        yield server


def login_cookie(server: Server) -> str:
    form = server.get("/accounts/login/")
    return f"csrftoken={SimpleCookie(form.headers['Set-Cookie'])['csrftoken'].value}"


def exchange(server: Server, head: str, body_start: bytes) -> tuple[int, bytes]:
    """Send a request's head and the start of its body only; the status and the answer."""
    with socket.create_connection((HOST, server.port), timeout=10) as sock:
        sock.sendall(head.encode() + body_start)
        received = b""
        while b"\r\n\r\n" not in received:  # no answer within 10 s raises TimeoutError
            received += sock.recv(65536) or b"\r\n\r\n"
        return int(received.split(b" ", 2)[1]), received


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@pytest.mark.slow
def test_a_40_mb_multipart_login_post_gets_413_before_its_body_is_sent(server):
    head = (
        "POST /accounts/login/ HTTP/1.1\r\n"
        f"Host: {HOST}\r\nCookie: {login_cookie(server)}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {FORTY_MB}\r\n\r\n"
    )

    part = (
        b'--b\r\nContent-Disposition: form-data; name="f"; filename="big.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
    )

    status, answer = exchange(server, head, part + b"x" * 65536)

    assert status == 413
    assert b"text/html" in answer


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/accounts/login/", b"text/html"), ("/api/plugin/generate", b"application/json")],
)
def test_a_chunked_body_is_read_no_further_than_the_limit(server, path, content_type):
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nCookie: {login_cookie(server)}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    # A little over the limit of a 40 MB body whose rest never comes.
    start = b"".join(chunk(b" " * 65536) for _ in range(MAX_BODY_BYTES // 65536 + 1))

    status, answer = exchange(server, head, start)

    assert status == 413
    assert content_type in answer
