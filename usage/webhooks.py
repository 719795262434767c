"""Webhooks: where they may point, how they are signed, and one attempt at sending one.

Signing follows Stripe and GitHub. Each attempt carries

    Usage-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
    Usage-Event-Id: <the event's UUID, the same on every attempt>

so a receiver recomputes the HMAC over the timestamp and the raw body with its secret,
compares in constant time, refuses old timestamps (replays), and drops event ids it has
seen (a delivery is sent at least once: docs/costs-and-budgets.md).

Not an SSRF tool: a URL whose host resolves to a loopback, private, link-local or other
non-public address is refused, when it is saved and again at each attempt (DNS answers
change), and the attempt connects to the very address that was checked, not to whatever
a second lookup returns. ``WEBHOOK_ALLOW_PRIVATE_ADDRESSES`` lifts this for tests and demos.
"""

import hashlib
import hmac
import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings

from usage.problems import InvalidQuery

SIGNATURE_HEADER = "Usage-Signature"
EVENT_ID_HEADER = "Usage-Event-Id"
EVENT_TYPE_HEADER = "Usage-Event-Type"
USER_AGENT = "usage-site-webhooks/1"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookRefused(InvalidQuery):
    """A webhook URL that may not be used: malformed, or pointing at a non-public address."""

    def __init__(self, message: str):
        super().__init__("webhook_url", message)


class WebhookFailed(Exception):
    """An attempt that did not end in a 2xx: ``status`` is the receiver's, when it answered."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Usage-Signature`` header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, *, now: int, tolerance: int = 300) -> bool:
    """What a receiver does (docs/costs-and-budgets.md has the same in a few lines)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


@dataclass(frozen=True)
class Target:
    """A checked URL: its parts, and the address that its host resolved to."""

    scheme: str
    host: str
    port: int
    path: str  # with the query
    address: Address


def check_url(url: str) -> Target:
    """The URL, resolved and checked; ``WebhookRefused`` says why when it may not be used."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRefused("A webhook URL starts with https:// (or http://) and names a host.")
    if parts.username or parts.password:
        raise WebhookRefused("A webhook URL may not carry a user name or password.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise WebhookRefused("The webhook URL's port is not a number from 1 to 65535.") from None
    path = urlunsplit(("", "", parts.path or "/", parts.query, ""))
    address = _allowed_address(parts.hostname, port)
    return Target(parts.scheme, parts.hostname, port, path, address)


def _allowed_address(host: str, port: int) -> Address:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise WebhookRefused(f"The webhook's host {host[:100]!r} does not resolve.") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    if not settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES:
        # Every address must be public: a name that also resolves to 10.0.0.1 is refused.
        for address in addresses:
            if not is_public(address):
                raise WebhookRefused(
                    f"The webhook's host resolves to {address}, which is not a public "
                    "address (loopback, private and link-local addresses are refused)."
                )
    return addresses[0]


def is_public(address: Address) -> bool:
    # An IPv4 address written as IPv6 (::ffff:127.0.0.1) is judged as the IPv4 one.
    mapped = getattr(address, "ipv4_mapped", None)
    address = mapped or address
    return address.is_global and not address.is_multicast


def post(target: Target, secret: str, event_id: str, event_type: str, body: bytes) -> int:
    """One attempt: POST ``body`` to the checked address; its 2xx status, or ``WebhookFailed``."""
    timestamp = int(time.time())
    host = str(target.address)
    netloc = f"[{host}]" if target.address.version == 6 else host
    default_port = 443 if target.scheme == "https" else 80
    host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
    url = f"{target.scheme}://{netloc}:{target.port}{target.path}"
    headers = {
        "Host": host_header,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
        EVENT_ID_HEADER: event_id,
        EVENT_TYPE_HEADER: event_type,
    }
    timeout = httpx.Timeout(settings.WEBHOOK_TIMEOUT_SECONDS)
    try:
        # TLS is verified against the host's name (SNI), while the connection goes to the
        # address checked above. Redirects are not followed: they could lead anywhere.
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            request = client.build_request(
                "POST", url, content=body, headers=headers, extensions={"sni_hostname": target.host}
            )
            response = client.send(request)
            response.close()
    except httpx.HTTPError as error:
        raise WebhookFailed(f"{type(error).__name__}: {error}"[:300]) from None
    if not 200 <= response.status_code < 300:
        raise WebhookFailed(f"answered {response.status_code}", response.status_code)
    return response.status_code
