"""Plugin generation through the external API, and the ledger of every generation that
reached it (tokens may have been spent even when the answer was lost)."""

import logging
import time

from django.contrib.auth.models import AbstractBaseUser
from django.db import DatabaseError

from usage import external_api
from usage.external_api import ExternalApiError, Generation
from usage.models import PluginGeneration
from usage.problems import Problem
from usage.token_usage import forget_fresh_usage

log = logging.getLogger(__name__)


class EmptyPrompt(Problem):
    """No prompt, or one of only spaces: refused here, so no call spends tokens on it."""

    code = "empty_prompt"
    message = "prompt is required: describe the plugin to generate."


def check_prompt(request: dict) -> None:
    prompt = request.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise EmptyPrompt()


def generate(user: AbstractBaseUser, request: dict) -> Generation:
    """Generate a plugin for ``user``; record it in the ledger if it reached the upstream.

    The ledger says ``ok`` only once the answer has been checked and encoded as the user
    will get it (``external_api.normalise_generation``); a request without a prompt, or
    that cannot be sent as strict JSON, is refused before any call.
    """
    check_prompt(request)
    user_id = user.get_username()
    started = time.monotonic()
    try:
        generation = external_api.generate_plugin(user_id, request)
    except ExternalApiError as exc:
        if exc.reached:  # tokens may have been spent: keep a trace
            record(user, started, exc.upstream_status, exc.code, None)
        # A refused request is the user's; anything else is the upstream's, worth a warning.
        users = (external_api.Rejected, external_api.InvalidRequest)
        level = logging.INFO if isinstance(exc, users) else logging.WARNING
        log.log(level, "generation user=%s failed (%s): %s", user_id, exc.code, exc.detail)
        raise
    record(user, started, generation.status, PluginGeneration.Outcome.OK, generation.token_usage)
    forget_fresh_usage(user_id)
    return generation


def record(
    user: AbstractBaseUser,
    started: float,
    status: int | None,
    outcome: str,
    token_usage: dict | None,
) -> None:
    """The ledger row, in its own autocommit: the upstream call is already over."""
    usage = token_usage or {}
    fields = {
        "user": user,
        "upstream_status": status,
        "outcome": outcome,
        "duration_ms": round((time.monotonic() - started) * 1000),
        "prompt_tokens": usage.get("promptTokens"),
        "completion_tokens": usage.get("completionTokens"),
        "total_tokens": usage.get("totalTokens"),
    }
    try:
        PluginGeneration.objects.create(**fields)
    except DatabaseError:
        # The user already has (or lost) their generation; losing its answer too because
        # the database hiccuped would be worse. The log keeps what the row would have.
        log.exception("ledger row not written: %s", {**fields, "user": user.get_username()})
