"""The audit log: a row in ``AuditEvent`` and a line in the ``usage.audit`` log per event.

Token creation, revocation, renaming and removal from the owner's list, and staff reading
another user's usage (dashboard, its refresh data, CSV exports, token usage). A token's use
is kept on the token itself (``last_used_at`` and ``last_used_address``, at most once a
minute), not as an event per request.
"""

import logging

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest

from usage.client_address import client_address
from usage.models import ApiToken, AuditEvent

log = logging.getLogger(__name__)

COMMAND_LINE = "(command line)"


def _record(
    action: str,
    actor: AbstractBaseUser | None,
    subject: AbstractBaseUser | str,
    detail: str,
    request: HttpRequest | None,
) -> AuditEvent:
    if isinstance(subject, str):  # a username, perhaps of nobody here (token usage)
        name = subject
        users = get_user_model()._default_manager
        subject = users.filter(**{get_user_model().USERNAME_FIELD: name}).first()
    else:
        name = subject.get_username()
    event = AuditEvent.objects.create(
        action=action,
        actor=actor,
        actor_name=actor.get_username() if actor else COMMAND_LINE,
        subject=subject,
        subject_name=name,
        detail=detail[:300],
        address=client_address(request) if request else "",
    )
    log.info(
        "audit %s actor=%s subject=%s address=%s detail=%r",
        action,
        event.actor_name,
        event.subject_name,
        event.address or "-",
        event.detail,
    )
    return event


def _token_detail(token: ApiToken) -> str:
    return f"{token.display_prefix} “{token.name}”"


def token_created(token: ApiToken, actor: AbstractBaseUser | None, request=None) -> None:
    _record(AuditEvent.Action.TOKEN_CREATED, actor, token.owner, _token_detail(token), request)


def token_revoked(token: ApiToken, actor: AbstractBaseUser | None, request=None) -> None:
    _record(AuditEvent.Action.TOKEN_REVOKED, actor, token.owner, _token_detail(token), request)


def token_renamed(
    token: ApiToken, old_name: str, actor: AbstractBaseUser | None, request=None
) -> None:
    detail = f"{token.display_prefix} “{old_name}” → “{token.name}”"
    _record(AuditEvent.Action.TOKEN_RENAMED, actor, token.owner, detail, request)


def token_removed(token: ApiToken, actor: AbstractBaseUser | None, request=None) -> None:
    _record(AuditEvent.Action.TOKEN_REMOVED, actor, token.owner, _token_detail(token), request)


def staff_viewed(request: HttpRequest, subject: AbstractBaseUser | str) -> None:
    """Staff read ``subject``'s usage (a user, or a username); a no-op for the viewer's own."""
    name = subject if isinstance(subject, str) else subject.get_username()
    if name != request.user.get_username():
        _record(
            AuditEvent.Action.STAFF_VIEWED, request.user, subject, request.get_full_path(), request
        )
