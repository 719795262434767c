"""API tokens: creating them (within the limits), revoking, renaming and removing them from
their owner's list, and finding the live one.

A raw token is ``usg_`` + an 8-character public prefix + a 43-character random secret.
Only the prefix and a SHA-256 hash of the whole token are stored: the prefix finds the row,
``hmac.compare_digest`` checks the hash. The raw token exists only in the return value of
``create_token``, so it can be shown once and never again. SHA-256 (not a slow password
hash) is right here because the secret has 256 bits of entropy: there is nothing to
brute-force.

Every way of creating a token (the dashboard, the command line) goes through
``create_token``, so its rules hold everywhere: at most MAX_ACTIVE_TOKENS live tokens per
user, and, for a person creating them, at most ``THROTTLE_TOKEN_CREATE_RATE``.
"""

import hashlib
import hmac
import math
import secrets
import string
import time
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from usage import audit
from usage.models import TOKEN_SCHEME, ApiToken
from usage.problems import Problem, TooManyRequests
from usage.throttles import hit

PREFIX_LENGTH = 8
_PREFIX_ALPHABET = string.ascii_letters + string.digits
MAX_ACTIVE_TOKENS = 20
# Updating last_used_at on every request would turn every read into a write; once a
# minute is precise enough for "last used" and keeps ingestion to one write per batch.
LAST_USED_PRECISION = timedelta(minutes=1)
# How long a process trusts a token it has checked: revoking a token (or deactivating its
# owner) holds on every server within this time, and a desktop app posting many records
# costs one lookup per process per second instead of one per request.
CHECKED_SECONDS = 1.0
_MAX_CHECKED = 10_000  # tokens remembered per process; past that, the memory starts over
# By the hash of the raw token: (when it was checked, the live token).
_checked: dict[str, tuple[float, ApiToken]] = {}


class TooManyTokens(Problem):
    code = "too_many_tokens"


class TokenStillActive(Problem):
    status = 409
    code = "token_active"
    message = "Only a revoked token can be removed from the list: revoke it first."


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

    ``actor`` is who asked for it (None: the command line, which no rate limits); the audit
    log names them. Raises TooManyRequests past the actor's creation limit, and
    TooManyTokens when the owner already has MAX_ACTIVE_TOKENS live ones.
    """
    if actor is not None:
        _count_creation(actor)
    for _ in range(5):
        prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
        raw = f"{TOKEN_SCHEME}{prefix}{secrets.token_urlsafe(32)}"
        try:
            with transaction.atomic():
                _check_active_limit(owner)
                token = ApiToken.objects.create(
                    owner=owner, name=name, prefix=prefix, secret_hash=hash_token(raw)
                )
                audit.token_created(token, actor, request)
        except IntegrityError:  # a prefix collision: 1 in 2e14, but cheap to handle
            continue
        return NewToken(token=token, raw=raw)
    raise RuntimeError("could not find a free token prefix")


def _count_creation(actor: AbstractBaseUser) -> None:
    verdict = hit("token_create", str(actor.pk))
    if not verdict.allowed:
        minutes = math.ceil(verdict.retry_after / 60)
        raise TooManyRequests(
            f"Too many tokens created recently. Try again in {minutes} minute(s).",
            retry_after=verdict.retry_after,
        )


def _check_active_limit(owner: AbstractBaseUser) -> None:
    # The owner's row is locked first, so that concurrent creations for one owner count
    # one after another (on PostgreSQL; SQLite writes one transaction at a time anyway).
    get_user_model()._default_manager.select_for_update().filter(pk=owner.pk).first()
    active = ApiToken.objects.filter(owner=owner, revoked_at__isnull=True).count()
    if active >= MAX_ACTIVE_TOKENS:
        raise TooManyTokens(
            f"You have {active} active tokens, the most allowed. Revoke one you no longer "
            "use, then create the new one."
        )


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
    forget_checked()  # at once in this process; the others forget within CHECKED_SECONDS


def rename_token(
    token: ApiToken,
    name: str,
    *,
    actor: AbstractBaseUser | None = None,
    request: HttpRequest | None = None,
) -> None:
    """Give ``token`` a new name (checked by the caller, as at creation); audited."""
    with transaction.atomic():
        # Locked, so that two renames at once each record the name they replaced.
        old_name = (
            ApiToken.objects.select_for_update().values_list("name", flat=True).get(pk=token.pk)
        )
        if old_name == name:
            return
        token.name = name
        token.save(update_fields=["name"])
        audit.token_renamed(token, old_name, actor, request)


def remove_token(
    token: ApiToken,
    *,
    actor: AbstractBaseUser | None = None,
    request: HttpRequest | None = None,
) -> None:
    """Take a revoked token off its owner's list; TokenStillActive for a live one.

    The row stays, hidden: records and the audit log still name it. Removing it twice
    records one event.
    """
    now = timezone.now()
    with transaction.atomic():
        removed = ApiToken.objects.filter(
            pk=token.pk, revoked_at__isnull=False, removed_at__isnull=True
        ).update(removed_at=now)
        if removed:
            token.removed_at = now
            audit.token_removed(token, actor, request)
        elif ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).exists():
            raise TokenStillActive()


def checked_token(raw: str) -> ApiToken | None:
    """``find_active_token``, remembered by this process for CHECKED_SECONDS."""
    key = hash_token(raw)
    now = time.monotonic()
    checked = _checked.get(key)
    if checked is not None and now - checked[0] < CHECKED_SECONDS:
        return checked[1]
    token = find_active_token(raw)
    if token is not None:  # unknown tokens are never remembered: anyone can send those
        if len(_checked) >= _MAX_CHECKED:
            _checked.clear()
        _checked[key] = (now, token)
    return token


def forget_checked() -> None:
    _checked.clear()


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
