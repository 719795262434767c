"""``X-User-ID``: the username a desktop app says it acts for, checked against the caller.

WSGI (PEP 3333) and ASGI hand header values to Django as latin-1 text, so a username sent
as UTF-8 arrives garbled (``Łukasz`` as ``Å\\x81ukasz``) and never matched its owner. Here
the header's bytes are read again as UTF-8, and the name normalised (NFKC) as Django
normalises usernames, so that a client on any platform names the same user the same way.

A header that names nobody is treated as not sent: empty or only spaces, or ``undefined`` or
``null``, which is what a JavaScript client writes when it sets the header from a variable
it never filled (the integration notes' own client did, and every request was a 403).
"""

import unicodedata

from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest

from usage.problems import Forbidden

HEADER = "X-User-ID"
# What JavaScript makes of a missing value: String(undefined) and String(null).
UNSET_VALUES = frozenset({"", "undefined", "null"})


def header_text(value: str) -> str:
    """A header value as the client wrote it: its bytes as UTF-8, or else as latin-1."""
    if value.isascii():  # nearly every request: nothing to undo
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        # Not UTF-8, so latin-1 (HTTP's historical charset) after all; or text beyond
        # latin-1, which no WSGI server gives.
        return value


def check_claimed_user(request: HttpRequest, user: AbstractBaseUser) -> None:
    """Refuse a request whose ``X-User-ID``, if sent, names someone other than ``user``."""
    claimed = request.headers.get(HEADER)
    if claimed is None or claimed.strip() in UNSET_VALUES:
        return
    if unicodedata.normalize("NFKC", header_text(claimed)) != user.get_username():
        raise Forbidden(f"{HEADER} does not name the owner of the token.")
