"""Every URL the site knows, asked anything by anyone: never a 5xx, a traceback or a flood.

The URLs are read from the URL configuration (admin, docs, schema, dashboard, sign-in, API),
plus static files; a route the fuzzer cannot fill in fails ``test_every_route_is_fuzzed``.
Each URL is asked, first, with every method (an odd one too) by every caller: anonymous, a
signed-in user's session, a staff session and an API token; then, by hypothesis, with
hostile query strings, headers and bodies. Every answer must be under 500, carry no
traceback, stay under MAX_ANSWER_BYTES, and under /api/ an error must be the documented
``{"error": ..., "code": ...}`` with a code that docs/api.md lists.

Requests go through the site's own WSGI handler in this process, with the real middleware
and views, the test database and the external API's stand-in on a loopback port. Each
request's writes are rolled back after it, so that one example (a logout, a revoked token)
does not change the next. The run is reproducible (derandomized).
"""

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.core.cache import cache
from django.db import transaction
from django.test import Client
from django.urls import URLResolver, get_resolver
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import make_record
from tests.documented import documented_error_codes
from tests.example_counts import examples
from tests.hostile_names import HOSTILE_NAMES
from usage.models import AuditEvent, Budget, BudgetAlert, Delivery, ModelPrice, PluginGeneration
from usage.tokens import create_token

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "BREW"]
CALLERS = ["anonymous", "session", "staff", "token"]
MAX_ANSWER_BYTES = 1024 * 1024  # the largest answer, the admin's or the schema, is ~100 KB
TRACEBACK = re.compile(rb'Traceback \(most recent call last\)|File "/[^"]+\.py", line \d+')
STATIC = [
    "/static/dashboard/index.js",
    "/static/error.css",
    "/static/drf_spectacular_sidecar/swagger-ui-dist/oauth2-redirect.html",
    "/static/no-such-file.js",
    "/static/../usage_site/settings.py",
    "/static/%2e%2e/manage.py",
]


# --- Every route, filled in -------------------------------------------------------------------


@dataclass(frozen=True)
class Ids:
    """Primary keys of real rows, so that routes with an id reach their object."""

    owner: int
    token: int
    admin: dict[str, int]  # "app/model" -> a row of it
    user_type: int


def route_patterns() -> list[str]:
    return list(_walk(get_resolver(), ""))


def _walk(resolver: URLResolver, prefix: str) -> Iterator[str]:
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry, prefix + str(entry.pattern))
        else:
            yield prefix + str(entry.pattern)


def concrete_paths(pattern: str, ids: Ids) -> list[str]:
    """The paths that ``pattern`` stands for here, with real ids; [] if it cannot be filled."""
    path = pattern.replace("^", "").replace("$", "").replace("/?", "")
    alternatives = re.search(r"\(\?P<app_label>([\w|]+)\)", path)
    if alternatives:
        return [
            "/" + path.replace(alternatives.group(0), app)
            for app in alternatives.group(1).split("|")
        ]
    path = path.replace("(?P<url>.*)", "no-such-page/")
    # allauth's links from mails: a key that is not one (tests/test_accounts.py follows real ones)
    path = path.replace("(?P<key>[-:\\w]+)", "not-a-key")
    path = path.replace("(?P<uidb36>[0-9A-Za-z]+)-(?P<key>.+)", "1-not-a-key")
    path = path.replace("<int:token_id>", str(ids.token)).replace("<id>", str(ids.owner))
    path = path.replace("r/<path:content_type_id>/<path:object_id>", f"r/{ids.user_type}/1")
    model = re.match(r"admin/(\w+/\w+)/<path:object_id>/", path)
    if model and model.group(1) in ids.admin:
        path = path.replace("<path:object_id>", str(ids.admin[model.group(1)]))
    return [] if re.search(r"[<>()\\*+?]", path) else ["/" + path]


@pytest.fixture
def world(owner, other, staff, upstream) -> Ids:
    owner_token = create_token(owner, "Work laptop")
    now = timezone.now()
    for hours, name in enumerate(HOSTILE_NAMES[:3]):
        make_record(owner, now - timedelta(hours=hours + 1), name, hours + 1)
    record = make_record(other, now - timedelta(days=1), "Bob's model", 2)
    generation = PluginGeneration.objects.create(
        user=owner, outcome="ok", upstream_status=200, total_tokens=12, duration_ms=40
    )
    event = AuditEvent.objects.create(
        action=AuditEvent.Action.TOKEN_CREATED,
        actor=owner,
        actor_name=owner.username,
        subject=owner,
        subject_name=owner.username,
        detail=owner_token.token.display_prefix,
    )
    budget, alert, delivery = budget_rows(owner)
    rows = {
        "usage/budget": budget.pk,
        "usage/budgetalert": alert.pk,
        "usage/delivery": delivery.pk,
        "usage/usagerecord": record.pk,
        "usage/apitoken": owner_token.token.pk,
        "usage/plugingeneration": generation.pk,
        "usage/auditevent": event.pk,
        "usage/modelprice": ModelPrice.objects.create(
            model="SDXL",
            price_per_image=Decimal("0.004"),
            valid_from=datetime(2026, 1, 1, tzinfo=UTC),
        ).pk,
        "auth/user": owner.pk,
        "auth/group": Group.objects.create(name="team").pk,
        "account/emailaddress": EmailAddress.objects.create(user=owner, email="a@example.com").pk,
    }
    user_type = ContentType.objects.get_for_model(owner).pk
    return Ids(owner.pk, owner_token.token.pk, rows, user_type), owner_token.raw


def budget_rows(owner) -> tuple[Budget, BudgetAlert, Delivery]:
    """A budget with a webhook, one alert and its delivery (stored as is: the URL is not
    resolved)."""
    budget = Budget.objects.create(
        owner=owner, image_limit=10, webhook_url="https://hooks.example.com/a", webhook_secret="s"
    )
    alert = BudgetAlert.objects.create(
        owner=owner, month=date(2026, 12, 1), threshold=50, unit="images", used=5, limit=10
    )
    delivery = Delivery.objects.create(
        event_id=uuid.uuid4(),
        event_type="budget.threshold_crossed",
        owner=owner,
        alert=alert,
        channel="webhook",
        target=budget.webhook_url,
        payload={},
    )
    return budget, alert, delivery


@pytest.fixture
def ids(world) -> Ids:
    return world[0]


def all_paths(ids: Ids) -> list[str]:
    return sorted({p for pattern in route_patterns() for p in concrete_paths(pattern, ids)})


def test_every_route_is_fuzzed(ids):
    unfilled = [pattern for pattern in route_patterns() if not concrete_paths(pattern, ids)]

    assert unfilled == [], f"teach concrete_paths to fill in {unfilled}"
    assert len(all_paths(ids)) >= 60


# --- The callers, and what every answer must be ----------------------------------------------


CSRF_SECRET = "fuzzCsrfSecret0123456789abcdefgh"  # 32 characters, as Django makes them


@pytest.fixture
def callers(world, owner, staff) -> dict[str, Client]:
    """The four callers. Sessions send their CSRF token, as the site's pages would have them
    do, so that their posts reach the forms and views (REST framework's check too)."""
    clients = {caller: Client(raise_request_exception=False) for caller in CALLERS}
    for caller, user in [("session", owner), ("staff", staff)]:
        clients[caller] = Client(raise_request_exception=False, enforce_csrf_checks=True)
        clients[caller].force_login(user)
        clients[caller].cookies["csrftoken"] = CSRF_SECRET
        clients[caller].defaults["HTTP_X_CSRFTOKEN"] = CSRF_SECRET
    clients["token"].defaults["HTTP_AUTHORIZATION"] = f"Bearer {world[1]}"
    return clients


def ask(client: Client, method: str, path: str, body: bytes, content_type: str, **headers):
    """One request, its writes (and the client's cookie changes) undone afterwards."""
    cookies = SimpleCookie(client.cookies.output(header="", sep="\n"))
    cache.clear()  # throttle counts: each request is judged on its own
    try:
        with transaction.atomic():
            response = client.generic(method, path, body, content_type, **headers)
            transaction.set_rollback(True)
    finally:
        client.cookies = cookies
    return response


def body_of(response) -> bytes:
    if not response.streaming:
        return response.content
    answer = b""
    for part in response.streaming_content:
        answer += part
        if len(answer) > MAX_ANSWER_BYTES:
            break
    return answer


def assert_sound(response, path: str) -> None:
    body = body_of(response)
    what = f"{response.status_code} {response.request['REQUEST_METHOD']} {path}: {body[:300]!r}"
    assert response.status_code < 500, what
    assert not TRACEBACK.search(body), what
    assert len(body) <= MAX_ANSWER_BYTES, what
    if path.startswith("/api/") and response.status_code >= 400 and body:
        assert response["Content-Type"].startswith("application/json"), what
        error = response.json()
        assert isinstance(error.get("error"), str), what
        assert error.get("code") in documented_error_codes(), what


# --- The sweep: every URL, every method, every caller -----------------------------------------


SWEEP_SHARE = len(CALLERS) * len(METHODS) // examples(len(CALLERS) * len(METHODS))


def test_every_url_with_every_method_by_every_caller(ids, callers):
    """Deterministic: every combination (in the quick check, a quarter of them, in turn)."""
    paths = all_paths(ids) + STATIC
    statuses = set()
    for n, path in enumerate(paths):
        combinations = [(c, m) for c in CALLERS for m in METHODS]
        for caller, method in combinations[n % SWEEP_SHARE :: SWEEP_SHARE]:
            # Methods that carry a body carry one nested too deeply for any parser.
            body = b"" if method in ("GET", "HEAD", "OPTIONS") else nested(100_000)
            response = ask(callers[caller], method, path, body, "application/json")
            statuses.add(response.status_code)
            assert_sound(response, path)
    # The sweep reached real answers, not only refusals.
    assert {200, 302, 401, 403, 404, 405} <= statuses


# --- Hostile query strings, headers and bodies ------------------------------------------------

API_PARAMETERS = ["start", "end", "tz", "granularity", "userId", "refresh", "cursor", "limit"]
PAGE_PARAMETERS = ["start", "end", "tz", "days", "user", "next", "format"]
DOCS_PARAMETERS = ["version", "lang", "format", "script"]
ADMIN_PARAMETERS = [
    *["q", "o", "p", "e", "all", "_changelist_filters", "_to_field", "_popup", "_facets"],
    *["model", "occurred_at__year", "occurred_at__gte", "owner__id__exact", "next"],
    *["revoked_at__isnull", "is_staff__exact", "outcome__exact", "action__exact"],
]
PARAMETERS = sorted({*API_PARAMETERS, *PAGE_PARAMETERS, *DOCS_PARAMETERS, *ADMIN_PARAMETERS})


def parameters_for(path: str) -> list[str]:
    """The query parameters that ``path``'s view reads, for the most part."""
    if path.startswith(("/api/schema/", "/api/docs/")):
        return DOCS_PARAMETERS
    for prefix, names in [("/api/", API_PARAMETERS), ("/admin/", ADMIN_PARAMETERS)]:
        if path.startswith(prefix):
            return names
    return PAGE_PARAMETERS


HOSTILE_TEXT = [
    "\x00",
    "%00",
    "\r\nX-Injected: 1",
    "x\";filename*=UTF-8''evil.html;x=\"",
    "../../../../etc/passwd",
    "9" * 40,
    "-1",
    "1e309",
    "NaN",
    "Infinity",
    "0x10",
    "2026-02-30",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+14:00",
    "Europe/../../etc",
    "\uff26\uff4c\uff55\uff58",  # Flux in full-width letters
    "Fl\u200bux",
    "\u202eevil",
    "' OR 1=1 --",
    "x" * 5000,
    "[[[[[[[[[[",
    '{"a": ' * 200,
    "true",
    "alice",
    "carol",
    "https://evil.example/",
    "//evil.example",
    "javascript:alert(1)",
    *HOSTILE_NAMES,
]
RAW_QUERIES = ["%ZZ", "%FF%FE", "a=%00&a=%0d%0a", "=&=&=", "&&&", "a[]=1&a[x]=2", "%" * 50]
texts = st.one_of(
    st.sampled_from(HOSTILE_TEXT),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=60),
)
# Header values as a WSGI server hands them over: latin-1 text, no control characters (a
# server refuses those itself) but tab.
header_texts = st.one_of(
    st.sampled_from(HOSTILE_TEXT).map(lambda t: t.encode().decode("latin-1")),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60),
).map(lambda t: "".join(c for c in t if c == "\t" or not (c < " " or "\x7f" <= c < "\xa0")))
HEADERS = {
    "HTTP_ACCEPT": ["application/json", "text/html", "*/*", "text/csv", "x/y;q=2", "", ","],
    "HTTP_ACCEPT_LANGUAGE": ["fr", "zz-ZZ", "*", "de;q=x"],
    "HTTP_AUTHORIZATION": ["Bearer usg_" + "A" * 51, "Bearer", "Basic Zm9vOmJhcg==", "Token x"],
    "HTTP_X_USER_ID": ["alice", "bob", ""],
    "HTTP_X_FORWARDED_FOR": ["1.2.3.4, 5.6.7.8", "not an address", "::1"],
    "HTTP_X_FORWARDED_PROTO": ["https", "http, https"],
    "HTTP_ORIGIN": ["null", "https://evil.example", "app://usage-desktop"],
    "HTTP_REFERER": ["https://evil.example/", "http://127.0.0.1/"],
    "HTTP_RANGE": ["bytes=0-10", "bytes=-5", "bytes=99999999999-", "bytes=x"],
    "HTTP_IF_MODIFIED_SINCE": ["Thu, 01 Jan 1970 00:00:00 GMT", "yesterday"],
    "HTTP_IF_NONE_MATCH": ['"x"', "*"],
    "HTTP_X_CSRFTOKEN": ["x" * 64, ""],
    "HTTP_COOKIE": ["csrftoken=" + "a" * 32, "sessionid=nothing", "a=b; ;;"],
    "HTTP_TRANSFER_ENCODING": ["chunked"],
    "HTTP_HOST": ["127.0.0.1", "evil.example", "[::1]:80"],
}
headers = st.dictionaries(
    st.sampled_from(sorted(HEADERS)),
    st.one_of(st.sampled_from([v for values in HEADERS.values() for v in values]), header_texts),
    max_size=4,
)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def json_values():
    leaves = st.one_of(st.none(), st.booleans(), st.integers(), texts, st.floats(allow_nan=False))
    return st.recursive(leaves, lambda inner: st.lists(inner) | st.dictionaries(texts, inner))


bodies = st.one_of(
    st.just((b"", "application/json")),
    st.binary(max_size=300).map(lambda b: (b, "application/octet-stream")),
    json_values().map(lambda v: (json.dumps(v).encode(), "application/json")),
    st.lists(st.tuples(st.sampled_from([*PARAMETERS, "name", "password"]), texts)).map(
        lambda pairs: (urlencode(pairs).encode(), "application/x-www-form-urlencoded")
    ),
    st.sampled_from(
        [
            (nested(100_000), "application/json"),
            (b'{"prompt": "x", "n": 1e309}', "application/json"),
            (b'{"prompt": NaN}', "application/json"),
            (b'{"prompt": "a \\ud800"}', "application/json"),
            (b"--b\r\nContent-Disposition: form-data; name=x\r\n\r\n1\r\n", "multipart/form-data"),
            (b"--b\r\n", "multipart/form-data; boundary=b"),
            (b"x", "multipart/form-data; boundary="),
            (b"a=1", "application/x-www-form-urlencoded; charset=nope"),
            (b"x" * (1024 * 1024 + 1), "application/json"),
            (b"\xff\xfe\x00", "text/plain; charset=utf-16"),
        ]
    ),
)


def queries(path: str):
    return st.one_of(
        st.dictionaries(st.sampled_from(parameters_for(path)), texts, max_size=3).map(urlencode),
        st.dictionaries(st.sampled_from(PARAMETERS), texts, max_size=3).map(urlencode),
        st.sampled_from(RAW_QUERIES),
    )


# Each ingredient that has broken a parameter somewhere, in as few values as can carry them.
KILLER_VALUES = [
    "\x00\r\nX-Injected: 1\";filename*=UTF-8''evil.html;x=\"\u202e\ud7ff",
    "9" * 40,
    "-1",
    "1e309",
    "x" * 5000,
    "../../../../etc/passwd%00",
    "2026-02-30",
]
QUERY_SWEEP_SHARE = len(KILLER_VALUES) // examples(len(KILLER_VALUES))


def swept_by_parameter(path: str) -> bool:
    """Pages that read their query: all but the admin's forms, whose query is only ``next``."""
    return not path.startswith("/admin/") or bool(re.fullmatch(r"/admin/\w+/\w+/", path))


def test_every_query_parameter_with_each_killer_value(ids, callers):
    """Deterministic: each parameter a page reads, alone, with each killer value, asked by
    staff, who may see every page (in the quick check, a quarter of the values, in turn)."""
    paths = [path for path in all_paths(ids) if swept_by_parameter(path)]
    for n, path in enumerate(paths):
        for m, name in enumerate(parameters_for(path)):
            for value in KILLER_VALUES[(n + m) % QUERY_SWEEP_SHARE :: QUERY_SWEEP_SHARE]:
                query = urlencode({name: value})
                response = ask(callers["staff"], "GET", f"{path}?{query}", b"", "")
                assert_sound(response, f"{path}?{name}=")


FUZZ = settings(
    max_examples=examples(120),
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@pytest.fixture
def every_path(ids) -> list[str]:
    return all_paths(ids) + STATIC


@pytest.mark.parametrize("index", range(8))
@FUZZ
@given(data=st.data())
def test_hostile_requests_to_every_url_never_get_a_5xx(index, data, every_path, callers):
    # Eight shares of the URLs, so that every URL meets its share of the examples.
    paths = every_path[index::8]
    path = data.draw(st.sampled_from(paths), label="path")
    method = data.draw(st.sampled_from(METHODS), label="method")
    caller = data.draw(st.sampled_from(CALLERS), label="caller")
    query = data.draw(queries(path), label="query")
    extra = data.draw(headers, label="headers")
    body, content_type = data.draw(bodies, label="body")

    response = ask(
        callers[caller], method, f"{path}?{query}" if query else path, body, content_type, **extra
    )

    assert_sound(response, path)
