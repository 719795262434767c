"""The ingestion API through a real gunicorn, as a desktop app reaches it over HTTP."""

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.live_server import Reply, Server, gunicorn, manage

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Site:
    server: Server
    token: str

    def post(self, body, **headers) -> Reply:
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": "application/json",
            **headers,
        }
        return self.server.request("POST", "/api/model-usage", body, headers)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    # The server's own SQLite file: these tests are about HTTP, not the database engine.
    folder = tmp_path_factory.mktemp("live")
    database_url = f"sqlite:///{folder / 'site.sqlite3'}"
    manage(database_url, "migrate", "--no-input", "--verbosity", "0")
    create_user = "from django.contrib.auth.models import User; User.objects.create_user('dana')"
    manage(database_url, "shell", "-c", create_user)
    token = manage(database_url, "create_api_token", "dana").strip().splitlines()[-1]
    with gunicorn(database_url, folder / "gunicorn.log") as server:
        yield Site(server, token)


def chunked(payload: bytes, size: int = 65536):
    """A generator body: http.client sends it chunk-encoded, with no Content-Length."""
    return (payload[i : i + size] for i in range(0, len(payload), size))


def test_the_integration_notes_request_is_stored_and_summarised(site):
    body = json.dumps({"modelName": "Stable Diffusion", "imageCount": 5, "userId": "dana"}).encode()
    reply = site.post(body, **{"X-User-ID": "dana"})
    assert reply.status == 201
    assert reply.json()["accepted"] == 1
    summary = site.server.get("/api/model-usage/summary", token=site.token).json()
    assert {"model": "Stable Diffusion", "images": 5, "events": 1} in summary["models"]


def test_a_chunked_body_without_content_length_is_read_whole(site):
    records = [{"model": "Chunked", "count": 1, "id": f"chunk-{n}"} for n in range(300)]
    reply = site.post(chunked(json.dumps(records).encode(), size=1000))
    assert reply.status == 201
    assert reply.json()["accepted"] == 300


def test_a_chunked_body_over_1_mib_gets_413(site):
    records = [{"model": "Big", "count": 1, "pad": "x" * 4000}] * 300  # about 1.2 MB
    reply = site.post(chunked(json.dumps(records).encode()))
    assert reply.status == 413
    assert reply.json()["error"]


def test_a_declared_length_over_1_mib_gets_413_before_the_body_is_read(site):
    reply = site.post(json.dumps([{"model": "Big", "count": 1, "pad": "x" * 4000}] * 300).encode())
    assert reply.status == 413
    assert "1048576" in reply.json()["error"]


def test_an_unknown_api_path_gets_json_not_html(site):
    reply = site.server.get("/api/nothing-here")
    assert reply.status == 404
    assert reply.json()["error"]


def test_a_badly_framed_chunked_body_gets_a_json_400(site):
    headers = {"Transfer-Encoding": "chunked"}  # given by hand, so the body is sent unframed
    reply = site.post(b"[" + b" " * 9000 + b"]", **headers)
    assert reply.status == 400
    assert "could not be read" in reply.json()["error"]
