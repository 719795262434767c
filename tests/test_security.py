"""Production settings: the deploy check, HTTPS, cookies, security headers, CSP and CORS."""

import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
from django.test import Client

from tests.live_server import PROJECT
from usage_site.security import content_security_policy

# The environment docs/security.md gives for a server that terminates TLS itself, and the
# one for a server behind a TLS-terminating proxy that redirects and sends HSTS itself.
DIRECT_TLS = {"ALLOWED_HOSTS": "usage.example.com"}
BEHIND_PROXY = {
    "ALLOWED_HOSTS": "usage.example.com",
    "TRUST_X_FORWARDED_PROTO": "1",
    "PROXY_ENFORCES_HTTPS": "1",
    "CSRF_TRUSTED_ORIGINS": "https://usage.example.com",
}


PLAIN_HTTP = {"ALLOWED_HOSTS": "usage.example.com", "HTTPS_ONLY": "0"}
PROXY_NOT_TRUSTED = {"ALLOWED_HOSTS": "usage.example.com", "PROXY_ENFORCES_HTTPS": "1"}


@pytest.fixture(scope="module")
def deploy_check() -> Iterator[Callable[[dict[str, str]], subprocess.CompletedProcess]]:
    """``manage.py check --deploy --fail-level WARNING`` with only ``env`` and DEBUG=0 set.

    Each is a Django start of its own (most of a second), so the module's four start at once
    and run side by side; ``deploy_check(env)`` waits for one.
    """
    argv = [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"]
    running = {}
    for env in (DIRECT_TLS, BEHIND_PROXY, PLAIN_HTTP, PROXY_NOT_TRUSTED):
        clean = {"PATH": os.environ["PATH"], "DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(50)}
        running[frozenset(env.items())] = subprocess.Popen(
            argv,
            cwd=PROJECT,
            env={**clean, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def result(env: dict[str, str]) -> subprocess.CompletedProcess:
        process = running[frozenset(env.items())]
        stdout, stderr = process.communicate(timeout=120)
        return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)

    yield result
    for process in running.values():
        if process.returncode is None:  # never waited for: its test did not run
            process.kill()
            process.communicate()


@pytest.mark.parametrize("env", [DIRECT_TLS, BEHIND_PROXY], ids=["direct-tls", "behind-proxy"])
def test_the_documented_production_settings_pass_the_deploy_check(deploy_check, env):
    result = deploy_check(env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_the_deploy_check_is_real_a_plain_http_server_fails_it(deploy_check):
    result = deploy_check(PLAIN_HTTP)

    assert result.returncode != 0
    for check in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check in result.stderr + result.stdout


def test_a_proxy_cannot_be_said_to_enforce_https_without_saying_which_requests_were(deploy_check):
    result = deploy_check(PROXY_NOT_TRUSTED)

    assert result.returncode != 0
    assert "PROXY_ENFORCES_HTTPS needs TRUST_X_FORWARDED_PROTO" in result.stderr


# --- Headers on every answer ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/accounts/login/", "/api/health/simple", "/api/model-usage"])
def test_every_answer_carries_the_browser_security_headers(client, path):
    response = client.get(path)

    assert response["Content-Security-Policy"] == content_security_policy(
        "https://cdn.jsdelivr.net/npm/chart.js@4.6.1/dist/chart.umd.min.js"
    )
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    if response["Content-Type"].startswith("text/html"):
        assert response["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize(
    "path",
    [
        "/static/dashboard/index.css",
        # drf-spectacular's page made to be opened by another: frame it nowhere all the same.
        "/static/drf_spectacular_sidecar/swagger-ui-dist/oauth2-redirect.html",
    ],
)
def test_static_files_carry_the_policy_and_the_frame_denial_too(client, settings, path):
    settings.WHITENOISE_USE_FINDERS = True  # serve from the sources: nothing collected here

    response = client.get(path)

    assert response.status_code == 200
    assert response["Content-Security-Policy"] == content_security_policy(settings.CHARTJS_URL)
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_the_policy_allows_this_site_and_the_one_pinned_chartjs_file_only():
    url = "https://cdn.jsdelivr.net/npm/chart.js@4.6.1/dist/chart.umd.min.js"
    directives = dict(
        part.strip().split(" ", 1) for part in content_security_policy(url).split(";")
    )

    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == f"'self' {url}"
    assert directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    assert "unsafe" not in content_security_policy(url)


def test_a_chartjs_copy_on_this_site_needs_no_extra_source():
    assert content_security_policy("/static/chart.umd.min.js").startswith(
        "default-src 'self'; script-src 'self'; style-src"
    )


def test_no_page_has_an_inline_script_or_style(client, owner):
    client.force_login(owner)
    for path in ("/accounts/login/", "/dashboard/", "/dashboard/tokens/", "/api/docs/"):
        page = client.get(path).content.decode()
        # Data blocks (json_script) are not run, so the policy does not concern them.
        scripts = page.replace('<script type="application/json"', "").count("<script>")
        assert scripts == 0, path
        assert "<style" not in page, path
        assert " style=" not in page, path


# --- HTTPS ------------------------------------------------------------------------------------


@pytest.fixture
def https_only(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True


def test_plain_http_is_redirected_to_https_except_the_health_probes(https_only, db):
    client = Client()

    page = client.get("/accounts/login/")
    assert page.status_code == 301
    assert page["Location"] == "https://testserver/accounts/login/"
    for probe in ("/api/health/simple", "/api/health"):
        assert client.get(probe).status_code in (200, 503)


def test_https_answers_carry_hsts(https_only):
    response = Client().get("/accounts/login/", secure=True)

    assert response.status_code == 200
    assert response["Strict-Transport-Security"] == ("max-age=31536000; includeSubDomains; preload")


def test_session_and_csrf_cookies_are_secure_and_httponly(https_only, owner):
    client = Client()
    client.get("/accounts/login/", secure=True)
    response = client.post(
        "/accounts/login/",
        {"username": "alice", "password": "alice-password-1"},
        secure=True,
    )

    assert response.status_code == 302
    for name in ("sessionid", "csrftoken"):
        cookie = response.cookies.get(name) or client.cookies[name]
        assert cookie["secure"], name
        assert cookie["httponly"], name
        assert cookie["samesite"] == "Lax", name


def test_behind_a_trusted_proxy_its_x_forwarded_proto_counts(https_only, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

    response = Client().get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https")

    assert response.status_code == 200
    assert "Strict-Transport-Security" in response


def test_without_a_trusted_proxy_a_client_cannot_claim_https(https_only):
    response = Client().get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https")

    assert response.status_code == 301


# --- CORS ------------------------------------------------------------------------------------


def preflight(client, origin: str):
    return client.options(
        "/api/model-usage",
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )


def test_cors_is_off_by_default(client):
    response = preflight(client, "https://elsewhere.example")

    assert "Access-Control-Allow-Origin" not in response


def test_a_listed_origin_may_call_the_api_and_others_may_not(client, settings):
    settings.CORS_ALLOWED_ORIGINS = ["app://usage-desktop"]

    allowed = preflight(client, "app://usage-desktop")
    refused = preflight(client, "https://evil.example")

    assert allowed["Access-Control-Allow-Origin"] == "app://usage-desktop"
    assert "authorization" in allowed["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in allowed
    assert "Access-Control-Allow-Origin" not in refused


def test_origin_null_is_allowed_only_when_listed(client, settings):
    assert "Access-Control-Allow-Origin" not in preflight(client, "null")

    settings.CORS_ALLOWED_ORIGINS = ["null"]

    assert preflight(client, "null")["Access-Control-Allow-Origin"] == "null"
    assert "Access-Control-Allow-Origin" not in preflight(client, "https://evil.example")


def test_cors_never_covers_the_pages(client, settings):
    settings.CORS_ALLOWED_ORIGINS = ["app://usage-desktop"]

    response = client.get("/accounts/login/", HTTP_ORIGIN="app://usage-desktop")

    assert "Access-Control-Allow-Origin" not in response
