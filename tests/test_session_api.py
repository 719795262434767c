"""The API as a signed-in browser calls it: a session, and its CSRF token in ``X-CSRFToken``.

Every answer is the documented one: an error is ``{"error": ..., "code": ...}`` with a code
that docs/api.md lists, whatever the body (nested too deeply, not JSON, ``NaN``), and never
a 500. REST framework's CSRF check used to parse the body with its own JSON parser first.
"""

import io
import json

import pytest
from django.test import Client, RequestFactory
from rest_framework.views import APIView

from tests.documented import documented_error_codes
from usage.ingest import MAX_BODY_BYTES
from usage.parsers import StrictJSONParser
from usage.problems import BodyTooLarge, InvalidBody

DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"prompt": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_000 + b"}"
BODIES = {
    "deep": DEEP,
    "deep object": DEEP_OBJECT,
    "not JSON": b"not json",
    "NaN": b'{"prompt": NaN}',
    "Infinity": b'{"prompt": "x", "n": 1e309}',
    "empty": b"",
}
URLS = [
    ("POST", "/api/plugin/generate"),
    ("POST", "/api/model-usage/summary"),
    ("GET", "/api/model-usage/summary"),
    ("POST", "/api/user/token-usage"),
    ("GET", "/api/user/token-usage"),
    ("PUT", "/api/model-usage"),
    ("POST", "/api/model-usage"),
    ("GET", "/api/model-usage"),
    ("DELETE", "/api/health"),
]


@pytest.fixture
def browser(owner) -> tuple[Client, str]:
    """A signed-in browser and the CSRF token its pages carry."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    page = client.get("/dashboard/tokens/")
    return client, str(page.context["csrf_token"])


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
@pytest.mark.parametrize(("method", "url"), URLS)
def test_any_body_from_a_session_gets_a_documented_answer(browser, method, url, body):
    client, csrf = browser

    response = client.generic(
        method, url, body, content_type="application/json", HTTP_X_CSRFTOKEN=csrf
    )

    assert response.status_code < 500 or response.json()["code"] == "not_configured"
    if response.status_code >= 400:
        assert set(response.json()) >= {"error", "code"}
        assert response.json()["code"] in documented_error_codes()


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT, b"not json", b'{"prompt": NaN}'])
def test_a_bad_body_to_generate_from_a_session_is_invalid_body(browser, body):
    client, csrf = browser

    response = client.post(
        "/api/plugin/generate", body, content_type="application/json", HTTP_X_CSRFTOKEN=csrf
    )

    assert response.status_code == 400
    assert response.json() == {"error": "The body is not valid JSON.", "code": "invalid_body"}


def test_a_session_post_without_its_csrf_token_is_forbidden_in_the_documented_shape(browser):
    client, _ = browser

    response = client.post("/api/plugin/generate", DEEP, content_type="application/json")

    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert response.json()["error"].startswith("CSRF Failed")


def test_a_session_post_with_its_csrf_token_in_a_form_field_is_still_only_json(browser):
    client, csrf = browser

    response = client.post("/api/plugin/generate", {"csrfmiddlewaretoken": csrf, "prompt": "x"})

    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


# --- REST framework's parser reads as the site does ------------------------------------------


def parse(body: bytes):
    return StrictJSONParser().parse(io.BytesIO(body), "application/json")


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT, b"not json", b"[NaN]", b"[Infinity]", b""])
def test_the_parser_refuses_what_the_site_refuses_as_invalid_body(body):
    with pytest.raises(InvalidBody) as refused:
        parse(body)
    assert refused.value.status == 400


def test_the_parser_refuses_a_body_over_the_limit_with_413():
    with pytest.raises(BodyTooLarge):
        parse(json.dumps({"a": "x" * MAX_BODY_BYTES}).encode())


def test_the_parser_reads_json():
    assert parse(b'{"prompt": "caf\\u00e9", "n": [1, 2.5]}') == {"prompt": "café", "n": [1, 2.5]}


def test_request_data_in_any_api_view_is_read_by_the_strict_parser(rf: RequestFactory):
    request = APIView().initialize_request(rf.post("/", DEEP, content_type="application/json"))

    with pytest.raises(InvalidBody):
        request.data  # noqa: B018 (reading it is the test)
