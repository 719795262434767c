"""The ingestion API through a real gunicorn, as a desktop app reaches it over HTTP."""

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from scripts.standin_upstream import StandIn
from tests.live_server import Reply, Server, gunicorn, manage

pytestmark = pytest.mark.slow

UPSTREAM_KEY = "live-upstream-key"


@dataclass(frozen=True)
class Site:
    server: Server
    token: str
    lukasz_token: str

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
    users = "from django.contrib.auth.models import User\nfor name in ('dana', 'Łukasz'):\n"
    manage(database_url, "shell", "-c", users + "    User.objects.create_user(name)")
    token = manage(database_url, "create_api_token", "dana").strip().splitlines()[-1]
    lukasz_token = manage(database_url, "create_api_token", "Łukasz").strip().splitlines()[-1]
    with StandIn(key=UPSTREAM_KEY) as standin:
        upstream = {"EXTERNAL_API_URL": standin.url, "EXTERNAL_API_KEY": UPSTREAM_KEY}
        with gunicorn(database_url, folder / "gunicorn.log", env=upstream) as server:
            yield Site(server, token, lukasz_token)


def chunked(payload: bytes, size: int = 65536):
    """A generator body: http.client sends it chunk-encoded, with no Content-Length."""
    return (payload[i : i + size] for i in range(0, len(payload), size))


def test_the_integration_notes_request_is_stored_and_summarised(site):
    body = json.dumps({"modelName": "Stable Diffusion", "imageCount": 5, "userId": "dana"}).encode()
    reply = site.post(body, **{"X-User-ID": "dana"})
    assert reply.status == 201
    assert reply.json()["accepted"] == 1
    summary = site.server.get("/api/model-usage/summary", token=site.token).json()
    counts = [(m["model"], m["images"], m["events"]) for m in summary["models"]]
    assert ("Stable Diffusion", 5, 1) in counts


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


def test_a_utf_8_x_user_id_naming_the_owner_is_accepted(site):
    body = json.dumps({"modelName": "Flux", "imageCount": 1}).encode()
    # The header's raw UTF-8 bytes on the wire, as a desktop app sends them.
    headers = {"Authorization": f"Bearer {site.lukasz_token}", "X-User-ID": "Łukasz".encode()}
    reply = site.server.request(
        "POST", "/api/model-usage", body, {**headers, "Content-Type": "application/json"}
    )
    assert reply.status == 201, reply.body
    assert reply.json()["accepted"] == 1
    prompt = json.dumps({"prompt": "A plugin"}).encode()
    generated = site.server.request(
        "POST", "/api/plugin/generate", prompt, {**headers, "Content-Type": "application/json"}
    )
    assert generated.status == 200, generated.body
    usage = site.server.request("GET", "/api/user/token-usage", headers=headers)
    assert usage.status == 200, usage.body
    assert usage.json()["userId"] == "Łukasz"


def test_a_utf_8_x_user_id_naming_someone_else_is_refused(site):
    body = json.dumps({"modelName": "Flux", "imageCount": 1}).encode()
    reply = site.post(body, **{"X-User-ID": "Łukasz".encode()})  # dana's token
    assert reply.status == 403
    assert reply.json()["code"] == "forbidden"
