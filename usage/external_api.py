"""The one client of the external plugin-generation and token-usage API (the "upstream"),
which people are told of as "the plugin generator": what it does for them.

Everything the site asks the upstream goes through here, as described in
docs/external-api.md: ``fetch_token_usage``, ``generate_plugin`` and ``health``. Each call
has a connect timeout, a read timeout and an overall deadline, follows no redirect, reads
at most ``EXTERNAL_API_MAX_BYTES`` of answer, and sends nothing of the caller's request
but the JSON this module builds (never a cookie or the caller's ``Authorization``), and
that JSON is strict (``check_json_value``). The upstream is treated as hostile: its
answers are validated, range-checked and normalised before anyone else sees them, and a
generation is encoded as the user will get it before it is returned.

Failures are this module's own exceptions, each with a stable ``code``; ``usage.errors``
turns them into JSON answers. No exception from httpx leaves this module.
"""

import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, date, datetime
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any
from urllib.parse import quote

import httpx
from django.conf import settings

from usage import strict_json
from usage.problems import Problem

log = logging.getLogger(__name__)

# A Django username: letters, digits and @.+-_ (Unicode letters included), 1 to 150 of them.
USER_ID_PATTERN = re.compile(r"[\w.@+-]{1,150}")
# JavaScript's largest exact integer: the dashboard shows every digit of a count.
MAX_COUNT = 2**53 - 1
# The days, months and times the upstream may speak of. Anything outside is a broken or
# hostile answer (and past year 9999 in UTC, a time Python cannot even hold).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
# How deep the JSON passed on as it is (a generated plugin, a generation request) may nest.
MAX_DEPTH = 32
COUNTERS = ("totalTokens", "promptTokens", "completionTokens", "requestCount")
PERIOD_COUNTERS = ("promptTokens", "completionTokens", "totalTokens", "requestCount")
GENERATION_COUNTERS = ("promptTokens", "completionTokens", "totalTokens")
HEALTH_TIMEOUT = 1.0
HEALTH_MAX_BYTES = 64 * 1024
REJECTION_MESSAGE_MAX = 300
USER_AGENT = "usage-site"
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f]+")


# --- Errors ----------------------------------------------------------------------------------


class ExternalApiError(Problem):
    """A call that did not give a usable answer.

    ``message`` is for people and never contains the upstream's body; ``detail`` is for the
    log. ``reached`` says whether the request may have reached the upstream (a connection
    was made), so that a generation that may have spent tokens is still recorded.
    """

    status = 502
    code = "upstream_error"
    message = "The plugin generator gave an answer this site cannot use."

    def __init__(
        self, detail: str = "", *, upstream_status: int | None = None, reached: bool = False
    ):
        super().__init__()
        self.detail = detail or self.message
        self.upstream_status = upstream_status
        self.reached = reached

    def __str__(self) -> str:
        return self.detail


class InvalidUserId(ExternalApiError):
    status = 400
    code = "invalid_user_id"
    message = "userId must be a username: 1 to 150 letters, digits and @ . + - _ characters."


class NotConfigured(ExternalApiError):
    status = 503
    code = "not_configured"
    message = "No plugin generator is configured on this site (EXTERNAL_API_URL is empty)."


class Busy(ExternalApiError):
    status = 503
    code = "busy"
    message = "Too many requests are already waiting on the plugin generator; try again shortly."
    retry_after = 5


class Unreachable(ExternalApiError):
    code = "upstream_unreachable"
    message = "The plugin generator is unreachable."


class Timeout(ExternalApiError):
    status = 504
    code = "upstream_timeout"
    message = "The plugin generator did not answer in time."


class UpstreamError(ExternalApiError):
    """A 5xx, a redirect, a refused key, an answer too large or not the expected JSON."""


class InvalidRequest(ExternalApiError):
    """A generation request this site will not forward: not strict JSON, or out of range.

    Refused before any call, so it never reaches the upstream (and is not in the ledger).
    """

    status = 400
    code = "invalid_body"
    message = "The body cannot be passed on as JSON."

    def __init__(self, message: str):
        super().__init__(f"refused before sending: {message}")
        self.message = message


class UnknownUser(ExternalApiError):
    status = 404
    code = "unknown_user"
    message = "The plugin generator has no token usage for this user."


class Rejected(ExternalApiError):
    """The upstream refused the request itself (a 4xx): passed on with its status, and
    ``message`` is its own, trimmed."""

    code = "rejected_by_upstream"

    def __init__(self, status: int, message: str):
        super().__init__(f"refused with {status}: {message}", upstream_status=status, reached=True)
        self.status = status
        self.message = message
        if status == 429:  # the upstream's own "too many": say when to try again, too
            self.retry_after = Busy.retry_after


# --- The user id -----------------------------------------------------------------------------


def validate_user_id(user_id: str) -> str:
    """``user_id`` if it can be one path segment of the upstream's URL, else InvalidUserId.

    ``.`` and ``..`` are valid usernames, but as path segments they would mean "here" and
    "the parent", and URL libraries resolve them away: ids of only dots are refused.
    """
    if not USER_ID_PATTERN.fullmatch(user_id) or set(user_id) == {"."}:
        raise InvalidUserId(f"invalid user id {user_id[:200]!r}")
    return user_id


def user_path(user_id: str) -> str:
    return f"/user/{quote(validate_user_id(user_id), safe='')}/token-usage"


# --- The three calls -------------------------------------------------------------------------


@dataclass(frozen=True)
class Generation:
    status: int
    result: dict
    token_usage: dict | None  # None when the upstream did not say


def fetch_token_usage(user_id: str) -> dict:
    """The user's analytics, normalised (docs/external-api.md)."""
    answer = _exchange(
        "GET",
        user_path(user_id),
        read_timeout=settings.EXTERNAL_API_READ_TIMEOUT,
        overall=settings.EXTERNAL_API_TIMEOUT,
    )
    if answer.status == 404:
        raise UnknownUser(f"{answer.what}: 404", upstream_status=404, reached=True)
    if not 200 <= answer.status < 300:
        raise _unexpected_status(answer)
    return _normalised(answer, lambda payload: normalise_token_usage(payload, user_id))


def generate_plugin(user_id: str, request: dict) -> Generation:
    """Forward the user's request, with ``userId`` set to theirs whatever the request says.

    The request must be strict JSON within range (``InvalidRequest`` otherwise): no
    infinite number, no integer past 2^53 - 1, no string that is not Unicode, no nesting
    deeper than MAX_DEPTH. Python's own JSON reader and writer allow all of these.
    """
    request = {**request, "userId": validate_user_id(user_id)}
    try:
        check_json_value(request, "the body")
    except _BadAnswer as exc:
        raise InvalidRequest(str(exc)) from None
    body = json.dumps(request, allow_nan=False).encode()
    # A generation may think for a long time before the first byte of its answer, so its
    # read timeout is its whole budget.
    overall = settings.EXTERNAL_API_GENERATE_TIMEOUT
    answer = _exchange(
        "POST", "/plugin/generate", body, read_timeout=overall, overall=overall, reserve=1
    )
    if 400 <= answer.status < 500 and answer.status not in _NOT_THE_USERS_FAULT:
        raise Rejected(answer.status, rejection_message(answer.body))
    if not 200 <= answer.status < 300 or answer.status in _NO_ANSWER_STATUSES:
        raise _unexpected_status(answer)
    return _normalised(answer, lambda payload: normalise_generation(payload, answer.status))


def health() -> str:
    """``"ok"``, ``"unreachable"`` or ``"not configured"``, within about HEALTH_TIMEOUT.

    Outside the bulkhead: it is short, and callers cache it for a few seconds.
    """
    try:
        answer = _exchange(
            "GET",
            "/health",
            read_timeout=HEALTH_TIMEOUT,
            overall=HEALTH_TIMEOUT,
            connect_timeout=HEALTH_TIMEOUT,
            max_bytes=HEALTH_MAX_BYTES,
            limited=False,
        )
    except NotConfigured:
        return "not configured"
    except ExternalApiError as exc:
        log.info("external api health: %s", exc.detail)
        return "unreachable"
    return "ok" if answer.status == 200 else "unreachable"


# --- Normalising answers ---------------------------------------------------------------------


class _BadAnswer(ValueError):
    """The answer is not the JSON docs/external-api.md describes."""


def normalise_token_usage(payload: Any, user_id: str) -> dict:
    usage = _object(payload, "the answer")
    echoed = usage.get("userId")
    if echoed is not None and echoed != user_id:
        # Another user's numbers must never be shown as this one's.
        raise _BadAnswer(f"answered for userId {_shown(echoed)}")
    return {
        "userId": user_id,
        **{name: _count(usage, name) for name in COUNTERS},
        "dailyUsage": _periods(usage, "dailyUsage", "date", _DATE),
        "monthlyUsage": _periods(usage, "monthlyUsage", "month", _MONTH),
        "lastRequestAt": _timestamp(usage.get("lastRequestAt")),
    }


def normalise_generation(payload: Any, status: int) -> Generation:
    """The generation, checked so that it can be passed on: the ledger says "ok" only for
    an answer the user can be sent (strict JSON, Unicode, within range and depth)."""
    answer = _object(payload, "the answer")
    result = answer.get("result")
    if not isinstance(result, dict):
        raise _BadAnswer("result is not an object")
    check_json_value(result, "result")
    token_usage = answer.get("tokenUsage")
    if token_usage is not None:
        counts = _object(token_usage, "tokenUsage")
        token_usage = {name: _count(counts, name) for name in GENERATION_COUNTERS}
    # What the view will send, encoded once here: whatever the checks above missed fails
    # now, as the upstream's error, and not after the ledger has said "ok".
    json.dumps({"result": result, "tokenUsage": token_usage}, allow_nan=False).encode()
    return Generation(status=status, result=result, token_usage=token_usage)


def check_json_value(value: Any, what: str) -> None:
    """``_BadAnswer`` unless ``value`` can be written as strict JSON that any reader holds
    exactly: finite numbers, integers within +-MAX_COUNT, strings (keys included) that are
    Unicode (no lone surrogate, which ``json.loads`` lets through), at most MAX_DEPTH deep.

    Iterative, so that a deep value cannot exhaust the stack here either.
    """
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise _BadAnswer(f"{what} is nested more than {MAX_DEPTH} deep")
            if isinstance(item, dict):
                for key in item:
                    _check_text(key, what)
                pending.extend((child, depth + 1) for child in item.values())
            else:
                pending.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            _check_text(item, what)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not -MAX_COUNT <= item <= MAX_COUNT:
                raise _BadAnswer(f"{what} has an integer out of range")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise _BadAnswer(f"{what} has a number out of range")
        else:  # not from JSON at all
            raise _BadAnswer(f"{what} has a {type(item).__name__}")


def _check_text(text: Any, what: str) -> None:
    if not isinstance(text, str):
        raise _BadAnswer(f"{what} has a key that is not a string")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise _BadAnswer(f"{what} has a string that is not Unicode text") from None


def rejection_message(raw: bytes) -> str:
    """The upstream's own error sentence from a 4xx answer, as plain text of bounded length."""
    try:
        payload = strict_json.loads(raw)
    except ValueError:
        payload = None
    message = None
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):
            error = error.get("message")
        message = error if isinstance(error, str) else payload.get("message")
    if not isinstance(message, str) or not message.strip():
        return "The plugin generator refused the request."
    # Lone surrogates (which json.loads lets through) cannot be sent: each becomes "?".
    message = message.encode("utf-8", "replace").decode()
    return _CONTROL_CHARS.sub(" ", message).strip()[:REJECTION_MESSAGE_MAX]


def _object(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise _BadAnswer(f"{what} is not a JSON object")
    return value


def _count(container: dict, name: str) -> int:
    value = container.get(name)
    if value is None:  # missing counters read as 0
        return 0
    if type(value) is not int or not 0 <= value <= MAX_COUNT:  # bool is not a count
        raise _BadAnswer(f"{name} is not a count: {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    """A short, printable description of a bad value, for the log: never its whole self
    (a huge string, or a list nested too deep to print)."""
    if isinstance(value, str):
        return repr(value[:50])
    if isinstance(value, bool | float) or value is None:
        return repr(value)
    if isinstance(value, int):
        return repr(value) if -(10**20) < value < 10**20 else "a huge integer"
    return f"a JSON {'object' if isinstance(value, dict) else 'array'}"


def _periods(usage: dict, name: str, key: str, pattern: re.Pattern) -> list[dict]:
    entries = usage.get(name)
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise _BadAnswer(f"{name} is not an array")
    periods = []
    for entry in entries:
        entry = _object(entry, f"an entry of {name}")
        period = entry.get(key)
        if not (isinstance(period, str) and pattern.fullmatch(period) and _is_date(period)):
            raise _BadAnswer(f"{name} has a bad {key}: {_shown(period)}")
        periods.append({key: period, **{name: _count(entry, name) for name in PERIOD_COUNTERS}})
    return sorted(periods, key=lambda period: period[key])


def _is_date(period: str) -> bool:
    """A real calendar day (or month) from EARLIEST to LATEST."""
    try:
        day = date.fromisoformat(period if len(period) == 10 else f"{period}-01")
    except ValueError:
        return False
    return EARLIEST.date() <= day <= LATEST.date()


def _timestamp(value: Any) -> str | None:
    if value is None:
        return None
    try:
        if not isinstance(value, str) or len(value) > 64:
            raise ValueError
        moment = datetime.fromisoformat(value)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        # In UTC it may not exist (9999-12-31T23:59:59-14:00): OverflowError, not ValueError.
        in_range = EARLIEST <= moment.astimezone(UTC) <= LATEST
    except (ValueError, OverflowError):
        raise _BadAnswer(f"lastRequestAt is not ISO 8601: {_shown(value)}") from None
    if not in_range:
        raise _BadAnswer(f"lastRequestAt is out of range: {_shown(value)}")
    return iso_utc(moment)


def iso_utc(moment: datetime) -> str:
    """``2026-11-21T16:18:20.605Z``: the one shape of the times this site passes on."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _normalised(answer: "_Answer", normalise):
    try:
        return normalise(strict_json.loads(answer.body))
    except ValueError as exc:  # _BadAnswer is one
        raise UpstreamError(
            f"{answer.what}: {exc}", upstream_status=answer.status, reached=True
        ) from None


# --- HTTP ------------------------------------------------------------------------------------

# A 4xx that says something about this site (its key refused, a wrong URL), not about
# the user's request: a 502, not passed on.
_NOT_THE_USERS_FAULT = {401, 403, 404, 407}
# 2xx statuses that cannot carry a generation (no body, or part of one).
_NO_ANSWER_STATUSES = {204, 205, 206}


@dataclass(frozen=True)
class _Answer:
    what: str  # "POST /plugin/generate", for the log
    status: int
    body: bytes


def _unexpected_status(answer: _Answer) -> UpstreamError:
    return UpstreamError(
        f"{answer.what}: status {answer.status}", upstream_status=answer.status, reached=True
    )


def _exchange(
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    read_timeout: float,
    overall: float,
    connect_timeout: float | None = None,
    max_bytes: int | None = None,
    limited: bool = True,
    reserve: int = 0,
) -> _Answer:
    """One request and its whole answer, within ``overall`` seconds (see _read_capped).

    ``limited`` calls count against the bulkhead, leaving ``reserve`` slots for others.
    """
    base = settings.EXTERNAL_API_URL
    if not base:
        raise NotConfigured()
    what = f"{method} {path}"
    connect = min(connect_timeout or settings.EXTERNAL_API_CONNECT_TIMEOUT, overall)
    read = min(read_timeout, overall)
    timeout = httpx.Timeout(connect=connect, read=read, write=read, pool=connect)
    cap = max_bytes or settings.EXTERNAL_API_MAX_BYTES
    with _bulkhead.slot(reserve=reserve) if limited else nullcontext(), _as_own_errors(what):
        deadline = time.monotonic() + overall
        request = _client().build_request(
            method, base + path, content=body, headers=_headers(body), timeout=timeout
        )
        response = _client().send(request, stream=True)
        try:
            return _Answer(what, response.status_code, _read_capped(response, deadline, cap))
        finally:
            response.close()


@contextmanager
def _as_own_errors(what: str) -> Iterator[None]:
    """httpx's exceptions as this module's, with what was asked added for the log."""
    try:
        yield
    except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise Timeout(f"{what}: {exc!r}") from None
    except httpx.TimeoutException as exc:
        raise Timeout(f"{what}: {exc!r}", reached=True) from None
    except httpx.ConnectError as exc:
        raise Unreachable(f"{what}: {exc!r}") from None
    except (httpx.ReadError, httpx.WriteError) as exc:
        raise Unreachable(f"{what}: {exc!r}", reached=True) from None
    except (httpx.RequestError, httpx.InvalidURL) as exc:
        raise UpstreamError(f"{what}: {exc!r}", reached=True) from None
    except ExternalApiError as exc:
        exc.detail = f"{what}: {exc.detail}"
        raise


def _headers(body: bytes | None) -> dict:
    # Built from nothing: no header of the caller's request ever reaches the upstream.
    headers = {
        "Accept": "application/json",
        # Uncompressed, so that the size cap counts what is parsed (no zip bombs).
        "Accept-Encoding": "identity",
        "User-Agent": USER_AGENT,
    }
    if settings.EXTERNAL_API_KEY:
        headers["Authorization"] = f"Bearer {settings.EXTERNAL_API_KEY}"
    if body is not None:
        headers["Content-Type"] = "application/json"
    return headers


def _read_capped(response: httpx.Response, deadline: float, max_bytes: int) -> bytes:
    """The body, unless it is over ``max_bytes`` or still arriving at ``deadline``.

    httpx's read timeout bounds each wait for bytes, not the whole answer: a body that
    trickles in a byte a second never trips it. So the deadline is checked as each piece
    arrives, and a call ends at most one read timeout past it.
    """
    status = response.status_code
    if 300 <= status < 400:  # never followed: the upstream's address is configured, not found
        raise UpstreamError(f"redirect {status} not followed", upstream_status=status, reached=True)
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise UpstreamError(
            f"declared {declared} bytes, over {max_bytes}", upstream_status=status, reached=True
        )
    if time.monotonic() > deadline:  # the status line came too late already
        raise Timeout("the answer began after the deadline", reached=True)
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise UpstreamError(f"over {max_bytes} bytes", upstream_status=status, reached=True)
        if time.monotonic() > deadline:
            raise Timeout("the answer was still arriving at the deadline", reached=True)
        chunks.append(chunk)
    return b"".join(chunks)


class _RefuseAllCookies(DefaultCookiePolicy):
    # The client is shared by every user's requests: a cookie the upstream sets for one
    # must never be sent back on another's.
    def set_ok(self, cookie, request) -> bool:
        return False


_client_lock = threading.Lock()
_client_for_pid: tuple[int, httpx.Client] | None = None


def _client() -> httpx.Client:
    """The process's one pooled client, made on first use (after gunicorn forks)."""
    global _client_for_pid
    with _client_lock:
        if _client_for_pid is None or _client_for_pid[0] != os.getpid():
            client = httpx.Client(
                follow_redirects=False,
                # No proxies, .netrc credentials or CA bundles from the environment.
                trust_env=False,
                cookies=CookieJar(policy=_RefuseAllCookies()),
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            )
            _client_for_pid = (os.getpid(), client)
        return _client_for_pid[1]


# --- The bulkhead ----------------------------------------------------------------------------


class _Bulkhead:
    """At most EXTERNAL_API_MAX_CONCURRENT calls at once in this process; past that, Busy.

    Failing fast instead of queueing keeps a hanging upstream from taking every worker
    thread: the others go on serving ingestion and the dashboard. Generations may take all
    slots but one, so that hanging generations never make the token panel busy too.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_use = 0

    @contextmanager
    def slot(self, *, reserve: int = 0) -> Iterator[None]:
        """A slot, if more than ``reserve`` slots are free."""
        limit = max(1, settings.EXTERNAL_API_MAX_CONCURRENT - reserve)
        with self._lock:
            if self._in_use >= limit:
                raise Busy(f"{self._in_use} calls in flight")
            self._in_use += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_use -= 1


_bulkhead = _Bulkhead()
