"""usage_site.routers: rollup reads to the replica, all else to the primary, and read-your-writes.

The ``replica`` alias is a test mirror of the default database (``TEST: {"MIRROR": ...}``),
so the router's choices are seen by which connection ran a query, on the real database.
"""

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.db import connections, router, transaction
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext, override_settings

from tests.conftest import post_usage
from tests.live_server import free_port
from usage.folding import fold_all
from usage.models import ApiToken, UsageRecord, UsageRollup
from usage_site import replica_health
from usage_site.routers import PrimaryPinMiddleware, is_pinned, pin_key

User = get_user_model()
ROUTER = "usage_site.routers.ReplicaRouter"
MIDDLEWARE = "usage_site.routers.PrimaryPinMiddleware"


@pytest.fixture(autouse=True)
def replica_router(settings):
    """The settings that DATABASE_REPLICA_URL turns on, with an empty cache around each test.

    The cache is this process's memory, whose entries expire on the clock that the tests
    move (production's Redis, which the replica needs, is shared: tests/test_two_servers.py).
    """
    settings.DATABASE_ROUTERS = [ROUTER]
    middleware = list(settings.MIDDLEWARE)
    middleware.insert(
        middleware.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1,
        MIDDLEWARE,
    )
    settings.MIDDLEWARE = middleware
    settings.DATABASE_REPLICA_PIN_SECONDS = 30
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()
    replica_health.assume(usable=True)  # the mirror lags by nothing
    yield
    replica_health.forget()
    cache.clear()


def in_request(
    method: str, user, read: Callable[[], object], path: str = "/dashboard/data/"
) -> object:
    """What ``read`` returns when called by a view, behind the pin middleware."""
    request = RequestFactory().generic(method, path)
    if user is not None:
        request.user = user
    seen = []

    def view(request: HttpRequest) -> HttpResponse:
        seen.append(read())
        return HttpResponse()

    PrimaryPinMiddleware(view)(request)
    return seen[0]


def post_request(user) -> HttpRequest:
    request = RequestFactory().post("/api/model-usage")
    request.user = user
    return request


def alice() -> User:
    # Not saved: the router decides from the request alone, without a query of its own.
    return User(pk=7001, username="alice")


def read_alias(model) -> Callable[[], str]:
    return lambda: router.db_for_read(model)


def test_a_signed_in_users_rollup_reads_go_to_the_replica():
    assert in_request("GET", alice(), read_alias(UsageRollup)) == "replica"


@pytest.mark.parametrize("model", [UsageRecord, User, Session, ApiToken])
def test_raw_records_users_sessions_and_tokens_are_read_from_the_primary(model):
    assert in_request("GET", alice(), read_alias(model)) == "default"


@pytest.mark.parametrize("model", [UsageRollup, UsageRecord, User, Session])
def test_every_write_goes_to_the_primary(model):
    assert in_request("GET", alice(), lambda: router.db_for_write(model)) == "default"


def test_migrations_run_on_the_primary_only():
    assert router.allow_migrate("default", "usage", model_name="usagerollup") is True
    assert router.allow_migrate("replica", "usage", model_name="usagerollup") is False
    assert router.allow_migrate("replica", "auth", model_name="user") is False


def test_rollup_reads_outside_a_request_stay_on_the_primary():
    # Management commands (rebuild_rollups) read what they then write.
    assert router.db_for_read(UsageRollup) == "default"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_rollup_reads_in_a_writing_request_stay_on_the_primary(method):
    assert in_request(method, alice(), read_alias(UsageRollup)) == "default"


def test_rollup_reads_of_an_anonymous_request_stay_on_the_primary():
    assert in_request("GET", None, read_alias(UsageRollup)) == "default"


def test_a_write_pins_its_user_so_the_next_reads_come_from_the_primary():
    in_request("POST", alice(), lambda: None, path="/api/model-usage")

    assert is_pinned(alice().pk)
    assert in_request("GET", alice(), read_alias(UsageRollup)) == "default"


def test_a_read_pins_no_one():
    in_request("GET", alice(), lambda: None)

    assert not is_pinned(alice().pk)
    assert in_request("GET", alice(), read_alias(UsageRollup)) == "replica"


def test_another_users_write_leaves_this_users_reads_on_the_replica():
    in_request("POST", User(pk=7002, username="bob"), lambda: None, path="/api/model-usage")

    assert in_request("GET", alice(), read_alias(UsageRollup)) == "replica"


def test_an_anonymous_write_pins_no_one():
    in_request("POST", None, lambda: None, path="/accounts/login/")

    assert cache.get(pin_key(None)) is None
    assert in_request("GET", alice(), read_alias(UsageRollup)) == "replica"


def test_the_pin_ends_after_the_configured_seconds(settings, time_machine):
    time_machine.move_to(datetime.now(UTC))  # the cache's clock, moved on below
    in_request("POST", alice(), lambda: None, path="/api/model-usage")
    assert is_pinned(alice().pk)

    time_machine.shift(settings.DATABASE_REPLICA_PIN_SECONDS + 1)

    assert not is_pinned(alice().pk)
    assert in_request("GET", alice(), read_alias(UsageRollup)) == "replica"


@pytest.mark.django_db
def test_rollup_reads_inside_a_transaction_stay_on_the_primary():
    def read_in_transaction() -> str:
        with transaction.atomic():
            return router.db_for_read(UsageRollup)

    assert in_request("GET", alice(), read_in_transaction) == "default"


# The whole stack, on the real database: the desktop app posts with its token, the browser
# presses Refresh Data (/dashboard/data/) with its session.

POSTED = [
    {"modelName": "Flux", "imageCount": 4},
    {"modelName": "Flux", "imageCount": 2},
    {"modelName": "SD", "imageCount": 1},
]


def refresh(client) -> tuple[dict, list[str], list[str]]:
    """Refresh Data's summary, and the SQL that the primary and the replica each ran."""
    with (
        CaptureQueriesContext(connections["default"]) as primary,
        CaptureQueriesContext(connections["replica"]) as replica,
    ):
        response = client.get("/dashboard/data/", {"days": 7, "tz": "UTC"})
    assert response.status_code == 200, response.content
    return (
        response.json()["summary"],
        [query["sql"] for query in primary.captured_queries],
        [query["sql"] for query in replica.captured_queries],
    )


def reads_table(queries: list[str], table: str) -> bool:
    return any(table in sql for sql in queries)


@pytest.fixture
def browser(client, owner):
    client.force_login(owner)
    return client


@pytest.mark.django_db(transaction=True, databases=["default", "replica"])
def test_refresh_right_after_a_post_counts_it_and_reads_only_the_primary(owner_api, browser):
    response = post_usage(owner_api, POSTED)
    assert response.status_code == 201, response.content

    summary, _, replica = refresh(browser)

    assert (summary["totals"]["images"], summary["totals"]["events"]) == (7, 3)
    assert [(m["model"], m["images"]) for m in summary["models"]] == [("Flux", 6), ("SD", 1)]
    assert replica == []


@pytest.mark.django_db(transaction=True, databases=["default", "replica"])
def test_once_the_pin_ends_the_aggregates_come_from_the_replica(owner, owner_api, browser):
    assert post_usage(owner_api, POSTED).status_code == 201
    cache.delete(pin_key(owner.pk))  # as DATABASE_REPLICA_PIN_SECONDS later

    summary, primary, replica = refresh(browser)

    assert (summary["totals"]["images"], summary["totals"]["events"]) == (7, 3)
    assert [(m["model"], m["images"]) for m in summary["models"]] == [("Flux", 6), ("SD", 1)]
    assert reads_table(replica, "usage_dailyusagerollup")
    assert not reads_table(primary, "usage_dailyusagerollup")
    # The recent-records table and "last activity" read raw records: primary only. (The
    # summary's one statement on the replica reads the records not yet counted into the
    # rollups, in the same snapshot as the rollups.)
    assert reads_table(primary, "usage_usagerecord")
    assert not reads_table(
        [sql for sql in replica if "usage_uncountedrecord" not in sql], "usage_usagerecord"
    )


@pytest.mark.django_db(transaction=True, databases=["default", "replica"])
def test_the_summary_api_answers_the_same_from_either_database(owner, owner_api):
    assert post_usage(owner_api, POSTED).status_code == 201
    today = datetime.now(UTC).date().isoformat()
    params = {"start": today, "end": today, "tz": "UTC"}

    pinned = owner_api.get("/api/model-usage/summary", params).json()
    cache.delete(pin_key(owner.pk))
    with CaptureQueriesContext(connections["replica"]) as replica:
        unpinned = owner_api.get("/api/model-usage/summary", params).json()

    assert pinned == unpinned
    assert (pinned["totals"]["images"], pinned["totals"]["events"]) == (7, 3)
    replica_sql = [query["sql"] for query in replica.captured_queries]
    assert reads_table(replica_sql, "usage_dailyusagerollup")


@pytest.mark.django_db(transaction=True, databases=["default", "replica"])
def test_a_rollup_read_from_the_replica_finds_its_owner_on_the_primary(owner, owner_api):
    assert post_usage(owner_api, POSTED).status_code == 201
    fold_all()  # single records wait for the fold to be in the rollup tables
    cache.delete(pin_key(owner.pk))

    def read() -> tuple[str, str, int]:
        rollup = UsageRollup.objects.filter(owner=owner).first()
        with CaptureQueriesContext(connections["default"]) as primary:
            username = rollup.owner.username
        return rollup._state.db, username, len(primary.captured_queries)

    assert in_request("GET", owner, read) == ("replica", "alice", 1)


@pytest.fixture
def cache_down(replica_router) -> Iterator[None]:
    """A Redis cache at a loopback port where nothing listens: every call is refused."""
    location = f"redis://127.0.0.1:{free_port()}/0"
    with override_settings(
        CACHES={
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": location,
            }
        }
    ):
        yield


def test_while_the_cache_is_down_a_write_still_gets_its_answer(cache_down):
    response = PrimaryPinMiddleware(lambda request: HttpResponse(status=201))(post_request(alice()))

    assert response.status_code == 201


def test_while_the_cache_is_down_rollups_are_read_from_the_primary(cache_down):
    assert in_request("GET", alice(), read_alias(UsageRollup)) == "default"


def test_while_the_replica_is_unusable_rollups_are_read_from_the_primary():
    replica_health.assume(usable=False)  # down, or lagging past the bound

    assert in_request("GET", alice(), read_alias(UsageRollup)) == "default"
