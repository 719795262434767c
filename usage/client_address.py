"""Who is asking: the client's IP address, for the audit log, sign-in limits and throttles.

REMOTE_ADDR, or, behind ``NUM_PROXIES`` trusted reverse proxies, the address the outermost
of them saw, from the right-hand end of ``X-Forwarded-For``, when it is an IP address. The
left-hand entries are whatever the client wrote, so they are never trusted.
"""

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str:
    """The client's address as the nearest trusted proxy saw it."""
    proxies = settings.REST_FRAMEWORK["NUM_PROXIES"]
    remote = request.META.get("REMOTE_ADDR", "")
    if proxies:
        forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        forwarded = [address for address in forwarded if address]
        if forwarded and _is_address(chosen := forwarded[-min(proxies, len(forwarded))]):
            return chosen
    return remote


def _is_address(text: str) -> bool:
    # Whatever a misconfigured proxy passed on is not an address to count or store.
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
