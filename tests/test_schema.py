"""The OpenAPI schema at /api/schema/ and the Swagger UI at /api/docs/."""

import json
import re

import pytest
from django.core.management import call_command

from usage.external_api import ExternalApiError

SCHEMA_URL = "/api/schema/?format=json"
INGEST_STATUSES = {"201", "207", "400", "401", "403", "413", "415", "429", "503"}
TOKEN_USAGE_STATUSES = {"200", "400", "401", "403", "404", "502", "503", "504"}
GENERATE_STATUSES = {
    "200",
    "2XX",
    "400",
    "4XX",
    "401",
    "403",
    "413",
    "415",
    "429",
    "502",
    "503",
    "504",
}
RECORD_KEYS = {
    "modelName",
    "model",
    "imageCount",
    "count",
    "userId",
    "user_id",
    "email",
    "timestamp",
    "id",
    "eventId",
}


@pytest.fixture
def schema(client) -> dict:
    response = client.get(SCHEMA_URL)
    assert response.status_code == 200
    return response.json()


def property_names(schema: object) -> set[str]:
    """Every property name declared anywhere inside a JSON schema fragment."""
    if isinstance(schema, list):
        return set().union(*(property_names(item) for item in schema))
    if not isinstance(schema, dict):
        return set()
    names = set(schema.get("properties", {}))
    return names.union(*(property_names(value) for value in schema.values()))


def test_schema_is_served_to_anonymous_visitors_as_openapi_3(client):
    response = client.get(SCHEMA_URL)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    assert response.json()["openapi"].startswith("3.")


def test_ingestion_documents_every_status_it_answers_with(schema):
    post = schema["paths"]["/api/model-usage"]["post"]

    assert set(post["responses"]) == INGEST_STATUSES


def test_ingestion_request_body_names_every_alias(schema):
    body = schema["paths"]["/api/model-usage"]["post"]["requestBody"]

    assert property_names(body["content"]["application/json"]["schema"]) == RECORD_KEYS


def test_ingestion_accepts_one_record_or_a_batch(schema):
    body = schema["paths"]["/api/model-usage"]["post"]["requestBody"]

    variants = body["content"]["application/json"]["schema"]["oneOf"]
    assert sorted(variant["type"] for variant in variants) == ["array", "object"]


def test_ingestion_is_documented_with_the_trailing_slash_dropped(schema):
    assert "/api/model-usage" in schema["paths"]
    assert "/api/model-usage/" not in schema["paths"]


def test_summary_documents_its_query_parameters(schema):
    get = schema["paths"]["/api/model-usage/summary"]["get"]

    names = {p["name"] for p in get["parameters"] if p["in"] == "query"}
    assert names == {"start", "end", "tz", "granularity", "token"}
    (granularity,) = [p for p in get["parameters"] if p["name"] == "granularity"]
    assert set(granularity["schema"]["enum"]) == {"day", "week", "month"}


def test_summary_documents_its_costs_as_nullable_decimal_strings_and_its_currency(schema):
    answer = schema["paths"]["/api/model-usage/summary"]["get"]["responses"]["200"]
    body = answer["content"]["application/json"]["schema"]["properties"]
    costs = [
        body["totals"]["properties"]["cost"],
        body["models"]["items"]["properties"]["cost"],
        body["series"]["items"]["properties"]["cost"],
        body["periodCosts"]["items"],
    ]
    for cost in costs:
        assert (cost["type"], cost["nullable"]) == ("string", True)
        assert re.fullmatch(cost["pattern"], "12.34") and not re.fullmatch(cost["pattern"], "1e3")
    assert body["currency"]["type"] == "string"
    assert body["unpricedModels"]["items"]["type"] == "string"
    assert "unpricedImages" in body["totals"]["properties"]


def test_summary_documents_its_breakdown_by_token(schema):
    answer = schema["paths"]["/api/model-usage/summary"]["get"]["responses"]["200"]
    body = answer["content"]["application/json"]["schema"]

    by_token = body["properties"]["byToken"]["items"]["properties"]
    assert set(by_token) == {"token", "name", "prefix", "revoked", "images", "events", "share"}


def test_bearer_token_is_the_documented_scheme_for_posting(schema):
    schemes = schema["components"]["securitySchemes"]
    post = schema["paths"]["/api/model-usage"]["post"]

    assert schemes["bearerToken"]["type"] == "http"
    assert schemes["bearerToken"]["scheme"] == "bearer"
    assert post["security"] == [{"bearerToken": []}]


def test_docs_page_loads_its_scripts_from_the_site_itself(client):
    response = client.get("/api/docs/")

    page = response.content.decode()
    sources = re.findall(r"<script[^>]*\ssrc=\"([^\"]+)\"", page)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert sources
    # The libraries from static files, and the page's own start-up script from the view
    # itself (no inline script: the Content-Security-Policy allows none).
    assert all(source.startswith(("/static/", "/api/docs/?script")) for source in sources)
    assert "https://" not in " ".join(re.findall(r"(?:src|href)=\"[^\"]*\"", page))


def test_schema_passes_drf_spectacular_validation_without_warnings(tmp_path):
    target = tmp_path / "s.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))

    assert target.read_text().startswith("openapi: 3.")


def test_token_usage_and_generation_document_every_status_they_answer_with(schema):
    usage = schema["paths"]["/api/user/token-usage"]["get"]
    generate = schema["paths"]["/api/plugin/generate"]["post"]

    assert set(usage["responses"]) == TOKEN_USAGE_STATUSES
    assert set(generate["responses"]) == GENERATE_STATUSES
    assert {p["name"] for p in usage["parameters"]} == {"userId", "refresh"}


def subclasses(cls: type) -> set[type]:
    return {cls, *(sub for direct in cls.__subclasses__() for sub in subclasses(direct))}


def test_every_external_api_error_code_is_documented(schema):
    described = json.dumps(
        [
            schema["paths"]["/api/user/token-usage"]["get"]["responses"],
            schema["paths"]["/api/plugin/generate"]["post"]["responses"],
        ]
    )
    codes = {error.code for error in subclasses(ExternalApiError)} | {"forbidden", "invalid_body"}
    assert {code for code in codes if f"`{code}`" not in described} == set()


def test_token_usage_documents_its_answer_keys(schema):
    answer = schema["paths"]["/api/user/token-usage"]["get"]["responses"]["200"]

    assert {"fetchedAt", "stale", "staleReason", "dailyUsage", "lastRequestAt"} <= property_names(
        answer
    )


def test_every_429_and_database_503_documents_retry_after(schema):
    documented = {
        (path, method, status): response.get("headers", {}).get("Retry-After", {})
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        for status, response in operation["responses"].items()
        if status in {"429", "503"}
    }

    assert documented
    # Token usage and generation say 503 for "not configured" too, where waiting will not help.
    optional = {("/api/user/token-usage", "get", "503"), ("/api/plugin/generate", "post", "503")}
    assert {key for key, header in documented.items() if not header} == set()
    assert {key for key, header in documented.items() if not header.get("required")} == optional


def test_every_401_documents_the_bearer_challenge(schema):
    challenges = [
        response.get("headers", {}).get("WWW-Authenticate", {}).get("required")
        for operations in schema["paths"].values()
        for operation in operations.values()
        for status, response in operation["responses"].items()
        if status == "401"
    ]

    assert len(challenges) == 6
    assert set(challenges) == {True}


# --- No request makes the schema or the docs fail or write their headers --------------------

DOCUMENTS = ["/api/schema/", "/api/schema/?format=json", "/api/docs/", "/api/docs/?script="]


@pytest.mark.parametrize(
    "version",
    [
        "\r\nX-Injected: 1",
        "x\";filename*=UTF-8''evil.html;x=\"",
        "1.0.0",
        "é" * 300,
    ],
)
@pytest.mark.parametrize("format_", ["json", "yaml"])
def test_the_schema_file_name_never_holds_the_callers_text(client, version, format_):
    response = client.get("/api/schema/", {"version": version, "format": format_, "lang": version})

    assert response.status_code == 200
    assert response["Content-Disposition"] == f'inline; filename="usage-site-api.{format_}"'
    assert "X-Injected" not in response
    as_json = client.get("/api/schema/", {"version": version, "format": "json"})
    assert json.loads(as_json.content)["info"]["version"] == "1.0.0"


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.parametrize(
    ("query", "content_type", "name"),
    [
        ({}, "text/plain; charset=utf-8", "usage-site-api.yaml"),
        ({"format": "yaml"}, "text/plain; charset=utf-8", "usage-site-api.yaml"),
        ({"format": "json"}, "application/json", "usage-site-api.json"),
    ],
)
def test_a_browser_is_shown_the_schema_as_text_not_handed_a_file(client, query, content_type, name):
    response = client.get("/api/schema/", query, headers={"Accept": BROWSER_ACCEPT})

    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    assert response["Content-Disposition"] == f'inline; filename="{name}"'
    assert "Accept" in response["Vary"]
    text = response.content.decode()
    assert json.loads(text)["openapi"] if name.endswith("json") else text.startswith("openapi: 3.")


@pytest.mark.parametrize(
    ("format_", "content_type"),
    [("yaml", "application/vnd.oai.openapi"), ("json", "application/vnd.oai.openapi+json")],
)
@pytest.mark.parametrize("accept", [BROWSER_ACCEPT, "*/*"])
def test_the_schema_file_is_still_a_download_with_download_1(client, format_, content_type, accept):
    response = client.get(
        "/api/schema/", {"format": format_, "download": "1"}, headers={"Accept": accept}
    )

    assert response.status_code == 200
    assert response["Content-Type"].startswith(content_type)
    assert response["Content-Disposition"] == f'attachment; filename="usage-site-api.{format_}"'


def test_programs_still_get_the_openapi_media_types(client):
    yaml = client.get("/api/schema/", headers={"Accept": "*/*"})
    as_json = client.get("/api/schema/", {"format": "json"}, headers={"Accept": "*/*"})

    assert yaml["Content-Type"] == "application/vnd.oai.openapi; charset=utf-8"
    assert as_json["Content-Type"] == "application/vnd.oai.openapi+json"


@pytest.mark.parametrize("url", DOCUMENTS)
def test_options_on_the_schema_and_the_docs_says_what_they_allow(client, url):
    response = client.options(url)

    assert response.status_code == 200
    assert response["Allow"] == "GET, HEAD, OPTIONS"
    assert response.content == b""


@pytest.mark.parametrize("url", DOCUMENTS)
def test_head_on_the_schema_and_the_docs_is_their_get_without_a_body(client, url):
    response = client.head(url)

    assert response.status_code == 200
    assert response["Content-Type"] == client.get(url)["Content-Type"]
    assert response.content == b""


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "BREW"])
@pytest.mark.parametrize("url", DOCUMENTS)
def test_other_methods_on_the_schema_and_the_docs_are_a_json_405(client, owner, url, method):
    client.force_login(owner)  # a session without its CSRF token changes nothing either

    response = client.generic(method, url, b'{"a": 1}', content_type="application/json")

    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
    assert response["Allow"] == "GET, HEAD, OPTIONS"


@pytest.mark.parametrize("url", DOCUMENTS)
def test_the_schema_and_the_docs_ignore_credentials(client, url):
    stale = client.get(url, HTTP_AUTHORIZATION="Bearer usg_" + "A" * 51)
    other_scheme = client.get(url, HTTP_AUTHORIZATION="Basic Zm9vOmJhcg==")

    assert (stale.status_code, other_scheme.status_code) == (200, 200)
