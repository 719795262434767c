"""Health checks, and the API's answers for URLs and methods it does not serve."""

import threading

import pytest
from django.db import connection
from django.test import Client

from tests.conftest import empty_cache
from usage import external_api

pytestmark = pytest.mark.django_db


# --- Health --------------------------------------------------------------------------------


def test_simple_health_is_ok_without_touching_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/api/health/simple")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_simple_health_ignores_credentials_so_still_runs_no_queries(
    client, owner, django_assert_num_queries
):
    # A load balancer that forwards cookies or an Authorization header must not make the
    # check depend on the database.
    client.force_login(owner)
    with django_assert_num_queries(0):
        response = client.get(
            "/api/health/simple/", headers={"Authorization": "Bearer usg_" + "A" * 51}
        )
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_health_reports_that_the_database_answers(client):
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "externalApi": "not configured"}


def test_health_needs_no_credentials_and_takes_a_trailing_slash(client):
    response = client.get("/api/health/")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"


# --- The external API's health --------------------------------------------------------------


def check_health_at_once(checks: int) -> list[tuple[int, str]]:
    """``checks`` GET /api/health at the same moment, each in its own thread."""
    start = threading.Barrier(checks, timeout=10)
    answers = []

    def check() -> None:
        client = Client()
        start.wait()
        try:
            response = client.get("/api/health")
            answers.append((response.status_code, response.json()["externalApi"]))
        finally:
            connection.close()

    threads = [threading.Thread(target=check) for _ in range(checks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return answers


@pytest.mark.django_db(transaction=True)  # the checks' threads share the cache's rows
def test_thirty_checks_at_once_ask_a_hung_upstream_once(upstream, monkeypatch):
    monkeypatch.setattr(external_api, "HEALTH_TIMEOUT", 0.3)
    upstream.hang("health")

    answers = check_health_at_once(30)

    assert len(upstream.received_for("health")) == 1
    assert len(answers) == 30
    assert {status for status, _ in answers} == {200}
    # The one that asked waited out the timeout; the others had its answer or, having
    # waited as long, "unknown": never a second call.
    assert {state for _, state in answers} <= {"unreachable", "unknown"}
    assert ("unreachable" in {state for _, state in answers}) is True


@pytest.mark.django_db(transaction=True)
def test_while_one_check_asks_the_others_get_the_last_known_state_at_once(upstream, monkeypatch):
    assert Client().get("/api/health").json()["externalApi"] == "ok"
    empty_cache()  # the 5 seconds are over
    monkeypatch.setattr(external_api, "HEALTH_TIMEOUT", 0.3)
    upstream.hang("health")

    answers = check_health_at_once(10)

    assert len(upstream.received_for("health")) == 2
    assert sorted(answers) == [(200, "ok")] * 9 + [(200, "unreachable")]
    assert Client().get("/api/health").json()["externalApi"] == "unreachable"  # now cached
    assert len(upstream.received_for("health")) == 2


# --- Unknown URLs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/api/nothing-here", "/api/model-usage/extra/", "/api/health/simple/more", "/api/"],
)
def test_an_unknown_api_url_gets_a_json_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": "Not found.", "code": "not_found"}


@pytest.mark.parametrize("path", ["/api/nothing-here", "/api/model-usage/extra/"])
def test_an_unknown_api_url_gets_a_json_404_even_with_debug_on(client, settings, path):
    # With DEBUG on, Django answers 404s with its HTML technical page instead of handler404.
    settings.DEBUG = True
    response = client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]


def test_a_post_to_an_unknown_api_url_gets_a_json_404(owner_api):
    response = owner_api.post("/api/model-usage/extra/", data={}, format="json")
    assert response.status_code == 404
    assert response.json()["error"]


def test_an_unknown_page_outside_the_api_gets_an_html_404(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    assert b"Page not found" in response.content


# --- Methods ---------------------------------------------------------------------------------


def test_options_on_the_records_endpoint_describes_it(owner_api):
    response = owner_api.options("/api/model-usage")
    assert response.status_code == 200
    assert {"GET", "POST", "OPTIONS"} <= set(response["Allow"].replace(" ", "").split(","))
    assert response.json()["name"]


def test_options_without_credentials_is_a_json_401_not_a_crash(client):
    response = client.options("/api/model-usage")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"]


def test_a_cors_preflight_for_the_records_endpoint_is_answered(client, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    response = client.options(
        "/api/model-usage",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "authorization" in response["Access-Control-Allow-Headers"]


def test_a_method_the_api_does_not_serve_gets_a_json_405(owner_api):
    response = owner_api.delete("/api/model-usage")
    assert response.status_code == 405
    assert response.json()["error"]
