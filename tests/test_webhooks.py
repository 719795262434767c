"""usage.webhooks: signatures, the URLs that are refused (SSRF), and one real POST."""

import hashlib
import hmac
import ipaddress
import json
import time
from pathlib import Path

import pytest

from tests.webhook_receiver import webhook_receiver  # noqa: F401 - the fixture
from usage import webhooks
from usage.webhooks import Target, WebhookFailed, WebhookRefused

SECRET = "whsec_test-secret"


def test_the_signature_is_hmac_sha256_over_the_timestamp_a_dot_and_the_body():
    body = b'{"id":"e1"}'
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert webhooks.sign(SECRET, 1700000000, body) == f"t=1700000000,v1={expected}"


def test_a_receiver_accepts_the_signature_of_the_same_body_and_secret():
    header = webhooks.sign(SECRET, 1700000000, b"{}")
    assert webhooks.verify(SECRET, header, b"{}", now=1700000010)


@pytest.mark.parametrize(
    ("secret", "body", "now"),
    [
        ("whsec_other", b"{}", 1700000010),  # another secret
        (SECRET, b'{"x":1}', 1700000010),  # another body
        (SECRET, b"{}", 1700000000 + 301),  # too old: a replay
    ],
)
def test_a_receiver_refuses_another_secret_body_or_an_old_timestamp(secret, body, now):
    header = webhooks.sign(SECRET, 1700000000, b"{}")
    assert not webhooks.verify(secret, header, body, now=now)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8080/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://172.16.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata: link-local
        "http://[::1]/hook",
        "http://[fe80::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "http://100.64.0.1/hook",  # carrier-grade NAT
    ],
)
def test_a_url_resolving_to_a_non_public_address_is_refused(settings, url):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    with pytest.raises(WebhookRefused) as refused:
        webhooks.check_url(url)
    assert refused.value.field == "webhook_url"
    assert "not a public address" in refused.value.message


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://example.com/hook", "starts with https://"),
        ("https:///hook", "starts with https://"),
        ("https://user:pw@example.com/hook", "user name or password"),
        ("https://example.com:99999/hook", "port"),
        ("https://no-such-host.invalid/hook", "does not resolve"),
    ],
)
def test_a_malformed_url_is_refused_with_its_reason(url, says):
    with pytest.raises(WebhookRefused) as refused:
        webhooks.check_url(url)
    assert says in refused.value.message


def test_the_setting_allows_loopback_for_tests_and_demos(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    target = webhooks.check_url("http://127.0.0.1:9000/hooks?x=1")
    assert target.address == ipaddress.ip_address("127.0.0.1")
    assert (target.host, target.port, target.path) == ("127.0.0.1", 9000, "/hooks?x=1")


def test_a_public_address_is_public_and_mapped_loopback_is_not():
    assert webhooks.is_public(ipaddress.ip_address("93.184.215.14"))
    assert not webhooks.is_public(ipaddress.ip_address("::ffff:10.0.0.1"))


def test_a_post_is_signed_and_received(webhook_receiver):  # noqa: F811
    webhook_receiver.secret = SECRET
    target = Target("http", "127.0.0.1", webhook_receiver.port, "/hooks/usage", _loopback())
    body = json.dumps({"id": "e-1", "type": "webhook.test"}).encode()
    assert webhooks.post(target, SECRET, "e-1", "webhook.test", body) == 200
    [received] = webhook_receiver.received
    assert received.signature_ok
    assert (received.event_id, received.event_type) == ("e-1", "webhook.test")
    assert received.body == {"id": "e-1", "type": "webhook.test"}


def test_the_post_goes_to_the_checked_address_with_the_name_as_host(webhook_receiver):  # noqa: F811
    # A name that would resolve elsewhere by now: the connection still goes to the address
    # that was checked, and the receiver sees the name in Host.
    webhook_receiver.secret = SECRET
    target = Target("http", "hooks.example.com", webhook_receiver.port, "/h", _loopback())
    webhooks.post(target, SECRET, "e-2", "webhook.test", b"{}")
    [received] = webhook_receiver.received
    assert received.host == f"hooks.example.com:{webhook_receiver.port}"
    assert received.path == "/h"


def test_a_500_is_a_failure_with_its_status(webhook_receiver):  # noqa: F811
    webhook_receiver.secret = SECRET
    webhook_receiver.fail_first = 1
    target = Target("http", "127.0.0.1", webhook_receiver.port, "/", _loopback())
    with pytest.raises(WebhookFailed) as failed:
        webhooks.post(target, SECRET, "e-3", "webhook.test", b"{}")
    assert failed.value.status == 500


def test_a_closed_port_is_a_failure_without_a_status(settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 2
    from tests.live_server import free_port

    target = Target("http", "127.0.0.1", free_port(), "/", _loopback())
    with pytest.raises(WebhookFailed) as failed:
        webhooks.post(target, SECRET, "e-4", "webhook.test", b"{}")
    assert failed.value.status is None


def _loopback():
    return ipaddress.ip_address("127.0.0.1")


def test_the_documented_worked_example_is_what_the_site_sends():
    doc = (Path(__file__).resolve().parent.parent / "docs" / "costs-and-budgets.md").read_text()
    header = webhooks.sign("whsec_example", 1700000000, b'{"id":"e1"}')
    assert f"Usage-Signature: {header}" in doc


def test_the_documented_python_snippet_verifies_a_real_signature():
    doc = (Path(__file__).resolve().parent.parent / "docs" / "costs-and-budgets.md").read_text()
    snippet = doc.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(snippet, namespace)  # our own documentation
    body = b'{"id":"e1"}'
    header = webhooks.sign("whsec_example", int(time.time()), body)
    assert namespace["verify"]("whsec_example", header, body)
    assert not namespace["verify"]("whsec_other", header, body)
