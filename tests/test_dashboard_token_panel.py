"""The token and plugin panels as the dashboard renders them: whose usage the page asks for,
who gets the form, the not-configured state, and that the page itself never calls the
plugin generator (its numbers are fetched by the browser after the page has painted)."""

import re
import socket
from html import unescape
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.staticfiles import finders
from django.test import Client

from tests.live_server import HOST


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def attribute(response, test_id: str, name: str) -> str:
    """An attribute of the element with ``data-testid=test_id`` in the page."""
    tag = re.search(rf'<[^>]*data-testid="{test_id}"[^>]*>', response.content.decode())
    assert tag, f"no {test_id} in the page"
    value = re.search(rf'\s{name}="([^"]*)"', tag.group(0))
    assert value, f"{test_id} has no {name}: {tag.group(0)}"
    return unescape(value.group(1))


def has_attribute(response, test_id: str, name: str) -> bool:
    tag = re.search(rf'<[^>]*data-testid="{test_id}"[^>]*>', response.content.decode())
    assert tag, f"no {test_id} in the page"
    return re.search(rf"\s{name}(=|\s|>)", tag.group(0)) is not None


@pytest.fixture
def silent_upstream(settings):
    """A socket that listens but never answers, as EXTERNAL_API_URL: any call would show."""
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen()
        listener.setblocking(False)
        settings.EXTERNAL_API_URL = f"http://{HOST}:{listener.getsockname()[1]}"
        yield listener


def connections(listener: socket.socket) -> int:
    accepted = 0
    while True:
        try:
            connection, _ = listener.accept()
        except BlockingIOError:
            return accepted
        connection.close()
        accepted += 1


def test_own_dashboard_asks_for_the_viewers_own_usage_and_offers_the_form(owner, silent_upstream):
    response = client_for(owner).get("/dashboard/")
    assert response.status_code == 200
    assert attribute(response, "token-usage", "data-url") == "/api/user/token-usage"
    assert attribute(response, "token-usage", "data-state") == "loading"
    assert b"data-generate-form" in response.content
    assert attribute(response, "generate-plugin", "type") == "submit"
    assert 'data-enabled="true"' in response.content.decode()
    assert b"dashboard/generate-plugin.js" in response.content
    assert b"dashboard/token-usage.js" in response.content


def test_rendering_the_dashboard_never_calls_the_analytics_service(owner, silent_upstream):
    response = client_for(owner).get("/dashboard/")
    assert response.status_code == 200
    assert connections(silent_upstream) == 0


def test_staff_viewing_someone_asks_for_their_usage_and_gets_no_form(staff, db, silent_upstream):
    get_user_model().objects.create_user("d.o+e@x", "doe@example.com", "doe-password-1")
    response = client_for(staff).get("/dashboard/", {"user": "d.o+e@x"})
    assert response.status_code == 200
    assert attribute(response, "token-usage", "data-url") == (
        "/api/user/token-usage?userId=d.o%2Be%40x"
    )
    assert attribute(response, "token-usage", "data-own") == "false"
    assert b"data-generate-form" not in response.content
    assert b"dashboard/generate-plugin.js" not in response.content
    assert "d.o+e@x\u2019s token usage" in response.content.decode()


def test_staff_on_their_own_dashboard_ask_for_their_own_usage(staff, silent_upstream):
    response = client_for(staff).get("/dashboard/", {"user": "carol"})
    assert attribute(response, "token-usage", "data-url") == "/api/user/token-usage"
    assert b"data-generate-form" in response.content


def test_without_an_analytics_service_the_panels_say_so_and_the_form_is_off(owner, settings):
    settings.EXTERNAL_API_URL = ""
    response = client_for(owner).get("/dashboard/")
    assert response.status_code == 200
    assert attribute(response, "token-usage", "data-state") == "not-configured"
    page = response.content.decode()
    message = re.search(r'data-testid="token-message"[^>]*>([^<]*)<', page)
    assert message and "no plugin generator configured" in message.group(1)
    assert not has_attribute(response, "token-message", "hidden")
    assert has_attribute(response, "generate-plugin", "disabled")
    assert 'data-enabled="false"' in page


def test_the_panels_and_their_scripts_name_the_plugin_generator_by_what_it_does(owner, settings):
    # It generates plugins and counts their tokens; "analytics" is what this site does.
    settings.EXTERNAL_API_URL = ""
    client = Client()
    client.force_login(owner)
    page = client.get("/dashboard/").content.decode()
    scripts = [
        Path(finders.find(f"dashboard/{name}")).read_text()
        for name in ("common.js", "token-usage.js", "generate-plugin.js")
    ]

    assert "no plugin generator configured" in page
    for text in (page, *scripts):
        assert "analytics service" not in text
