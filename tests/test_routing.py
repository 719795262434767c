"""One URL, a view per method (usage.routing): each method gets its own view's rules."""

import pytest
from django.test import Client

from tests.conftest import post_usage
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db

RECORD = {"modelName": "SD", "imageCount": 1}


def test_reading_back_takes_a_session_but_ingestion_takes_only_a_token(owner, owner_api):
    browser = Client()
    browser.force_login(owner)

    assert post_usage(owner_api, RECORD).status_code == 201
    read = browser.get("/api/model-usage")
    posted = post_usage(browser, RECORD)

    assert read.status_code == 200
    assert [r["model"] for r in read.json()["results"]] == ["SD"]
    assert posted.status_code == 401
    assert posted["WWW-Authenticate"] == "Bearer"
    assert UsageRecord.objects.count() == 1


@pytest.mark.parametrize("method", ["delete", "put", "patch"])
def test_a_method_nobody_serves_is_a_405_that_allows_every_method_the_url_takes(owner_api, method):
    response = getattr(owner_api, method)("/api/model-usage")

    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
    assert response["Allow"] == "GET, POST, HEAD, OPTIONS"


def test_head_is_answered_by_the_reading_view(owner_api):
    response = owner_api.head("/api/model-usage")

    assert response.status_code == 200
    assert response.content == b""


def test_the_schema_documents_each_method_from_its_own_view(client):
    operations = client.get("/api/schema/?format=json").json()["paths"]["/api/model-usage"]

    assert set(operations) == {"get", "post"}
    assert operations["post"]["operationId"] == "model_usage_create"
    assert operations["post"]["security"] == [{"bearerToken": []}]
    assert {"bearerToken": []} in operations["get"]["security"]
    assert len(operations["get"]["security"]) > 1  # a signed-in browser session too
