"""API tokens: creating them, and authenticating requests that carry them.

A raw token is ``usg_`` + an 8-character public prefix + a 43-character random secret.
Only the prefix and a SHA-256 hash of the whole token are stored: the prefix finds the row,
``hmac.compare_digest`` checks the hash. The raw token exists only in the return value of
``create_token``, so it can be shown once and never again. SHA-256 (not a slow password
hash) is right here because the secret has 256 bits of entropy: there is nothing to
brute-force.
"""

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from rest_framework import authentication, exceptions

from usage import audit
from usage.models import ApiToken
from usage.throttles import client_address

TOKEN_SCHEME = "usg_"
PREFIX_LENGTH = 8
_PREFIX_ALPHABET = string.ascii_letters + string.digits
# Updating last_used_at on every request would turn every read into a write; once a
# minute is precise enough for "last used" and keeps ingestion to one write per batch.
LAST_USED_PRECISION = timedelta(minutes=1)


@dataclass(frozen=True)
class NewToken:
    token: ApiToken
    raw: str


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create_token(
    owner: AbstractBaseUser,
    name: str,
    *,
    actor: AbstractBaseUser | None = None,
    request: HttpRequest | None = None,
) -> NewToken:
    """Create a token for ``owner``. The returned ``raw`` value is never stored.

    ``actor`` is who asked for it (None: the command line); the audit log names them.
    """
    for _ in range(5):
        prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
        raw = f"{TOKEN_SCHEME}{prefix}{secrets.token_urlsafe(32)}"
        try:
            with transaction.atomic():
                token = ApiToken.objects.create(
                    owner=owner, name=name, prefix=prefix, secret_hash=hash_token(raw)
                )
                audit.token_created(token, actor, request)
        except IntegrityError:  # a prefix collision: 1 in 2e14, but cheap to handle
            continue
        return NewToken(token=token, raw=raw)
    raise RuntimeError("could not find a free token prefix")


def revoke_token(
    token: ApiToken,
    *,
    actor: AbstractBaseUser | None = None,
    request: HttpRequest | None = None,
) -> None:
    if token.revoked_at is None:
        with transaction.atomic():
            token.revoked_at = timezone.now()
            token.save(update_fields=["revoked_at"])
            audit.token_revoked(token, actor, request)


def find_active_token(raw: str) -> ApiToken | None:
    """The live token that ``raw`` is, with its owner loaded, or None."""
    if not raw.startswith(TOKEN_SCHEME) or len(raw) < len(TOKEN_SCHEME) + PREFIX_LENGTH + 32:
        return None
    prefix = raw[len(TOKEN_SCHEME) : len(TOKEN_SCHEME) + PREFIX_LENGTH]
    if not (prefix.isascii() and prefix.isalnum()):  # never ours; a NUL would upset PostgreSQL
        return None
    token = ApiToken.objects.select_related("owner").filter(prefix=prefix).first()
    if token is None or not hmac.compare_digest(token.secret_hash, hash_token(raw)):
        return None
    if token.revoked_at is not None or not token.owner.is_active:
        return None
    return token


def touch_last_used(token: ApiToken, address: str) -> None:
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_PRECISION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now, last_used_address=address)
        token.last_used_at = now
        token.last_used_address = address


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer usg_...``; sets ``request.auth`` to the ApiToken."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != self.keyword.lower():
            return None
        raw = raw.strip()
        if not raw:
            raise exceptions.AuthenticationFailed("The Authorization header has no token.")
        token = find_active_token(raw)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API token.")
        touch_last_used(token, client_address(request))
        return token.owner, token

    def authenticate_header(self, request) -> str:
        return self.keyword
