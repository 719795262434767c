"""Errors that escape a view: JSON under /api/, HTML pages elsewhere, never a traceback."""

import pytest
from django.db import OperationalError
from django.urls import include, path


def explode(request):
    raise RuntimeError("secret detail from deep inside")


def database_gone(request):
    raise OperationalError("connection refused")


urlpatterns = [
    path("api/explode", explode),
    path("api/db-gone", database_gone),
    path("page/explode", explode),
    path("page/db-gone", database_gone),
    path("", include("usage_site.urls")),
]


@pytest.fixture
def failing_client(client, settings):
    settings.ROOT_URLCONF = __name__
    client.raise_request_exception = False
    return client


def test_a_bug_under_api_is_a_json_500_without_details(failing_client):
    response = failing_client.get("/api/explode")
    assert response.status_code == 500
    assert response.json() == {"error": "Internal server error.", "code": "server_error"}
    assert b"secret detail" not in response.content


def test_a_bug_in_a_page_is_the_html_500_page(failing_client):
    response = failing_client.get("/page/explode")
    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")
    assert b"Something went wrong" in response.content
    assert b"secret detail" not in response.content


def test_a_lost_database_under_api_is_a_json_503_with_retry_after(failing_client):
    response = failing_client.get("/api/db-gone")
    assert response.status_code == 503
    assert response.json()["error"]
    assert response["Retry-After"] == "5"


def test_a_lost_database_in_a_page_is_the_friendly_503_page(failing_client):
    response = failing_client.get("/page/db-gone")
    assert response.status_code == 503
    assert b"Temporarily unavailable" in response.content
    assert response["Retry-After"] == "5"
