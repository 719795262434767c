"""Personas and clients shared by the test suites, the external API's stand-in and a Redis."""

import json
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest
import redis
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.cache import cache, caches
from django.core.cache.backends.db import BaseDatabaseCache
from django.db import connections, transaction
from django.test import override_settings
from rest_framework.test import APIClient

from scripts.standin_upstream import StandIn
from tests.example_counts import QUICK_SHARE, use_quick_counts
from tests.live_server import HOST, free_port, poll
from tests.mail_server import mail_server  # noqa: F401 - the fixture, for every test module
from usage import rollups
from usage.models import UsageRecord
from usage.tokens import NewToken, create_token
from usage.upstream_health import forget_last_known
from usage_site.cache import forget_failures

UPSTREAM_KEY = "upstream-key-for-tests"


def pytest_configure(config: pytest.Config) -> None:
    use_quick_counts(config.getoption("markexpr") or "")


def pytest_report_header(config: pytest.Config) -> str:
    if use_quick_counts(config.getoption("markexpr") or ""):
        return f"property and fuzz examples: 1/{QUICK_SHARE} of each count (quick check)"
    return "property and fuzz examples: full counts"


@pytest.fixture(autouse=True, scope="session")
def _test_settings() -> Iterator[None]:
    """Settings for every test, set once: a test's own changes (the settings fixture) are
    undone after it, back to these."""
    with override_settings(
        # PBKDF2's deliberate slowness is for attackers, not for creating test users.
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        # Production serves hashed names from the collectstatic manifest, which tests do not
        # build.
        STORAGES={
            **django_settings.STORAGES,
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        },
        # WhiteNoise would index every collected static file for each new test client
        # (~150 ms each when staticfiles/ exists); the tests serve none of them through it.
        WHITENOISE_AUTOREFRESH=True,
        # No external API unless a test starts one (the upstream fixture), whatever the
        # developer's environment says.
        EXTERNAL_API_URL="",
        EXTERNAL_API_KEY="",
        # No folding thread in the test process: it would hold a connection to the test
        # database past the run. Tests fold when they mean to (usage.folding.fold_all); the
        # servers the tests start fold by themselves, as in production.
        ROLLUP_FOLD_SECONDS=0,
    ):
        yield


@pytest.fixture(autouse=True)
def _fresh_cache(request) -> None:
    # Throttle counts and cached answers live in the cache: each test starts with none, and
    # with a cache that is asked again at once, whatever failed in the test before (and no
    # external API health remembered by this process). On PostgreSQL the cache is a table of
    # the test database, emptied for the tests that use it (the others cannot reach it, and
    # must not touch the database the settings name before the test database exists).
    if not isinstance(caches["default"], BaseDatabaseCache):
        cache.clear()
    elif uses_database(request):
        request.getfixturevalue("django_db_setup")  # the test database, created first
        with request.getfixturevalue("django_db_blocker").unblock():
            empty_cache()
    forget_failures()
    forget_last_known()


def uses_database(request: pytest.FixtureRequest) -> bool:
    marked = request.node.get_closest_marker("django_db") is not None
    return marked or "django_db_setup" in request.fixturenames


def empty_cache() -> None:
    """Empty the cache. A database cache (PostgreSQL) is emptied on a connection of its own,
    committed at once, so that the test's transaction holds no lock on its rows: a thread of
    the test writing the same key would wait for that lock until the test ended."""
    if not isinstance(caches["default"], BaseDatabaseCache):
        cache.clear()
        return

    def clear_and_close() -> None:
        try:
            cache.clear()
        finally:
            connections.close_all()

    thread = threading.Thread(target=clear_and_close)
    thread.start()
    thread.join()


@pytest.fixture
def throttle_rates(settings):
    """Set throttle rates by scope for one test: ``throttle_rates(ingest="2/min")``."""

    def set_rates(**rates: str) -> None:
        current = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {**current, **rates},
        }

    return set_rates


@pytest.fixture
def upstream(settings) -> Iterator[StandIn]:
    """The development stand-in upstream on a free loopback port, with the site using it.

    It requires UPSTREAM_KEY, which the site sends. The cache starts empty (_fresh_cache,
    before every test), so that no token usage or health state from another test is served.
    """
    with quick_to_stop(StandIn(key=UPSTREAM_KEY)) as standin:
        settings.EXTERNAL_API_URL = standin.url
        settings.EXTERNAL_API_KEY = UPSTREAM_KEY
        yield standin


def quick_to_stop(standin: StandIn) -> StandIn:
    """``standin``, its server checking for stop() every 5 ms rather than every 50 ms.

    stop() waits for the serving thread to notice, up to a poll interval: 50 ms for each of
    the 200-odd tests that start the stand-in, most of it spent waiting.
    """
    serve_forever = standin.server.serve_forever
    standin.server.serve_forever = lambda poll_interval: serve_forever(poll_interval=0.005)
    return standin


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """A real redis-server on a free loopback port, for the module that asks for it."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is missing: ./dev.py test installs Debian's redis-server")
    folder = tmp_path_factory.mktemp("redis")
    port = free_port()
    log = folder / "redis.log"
    argv = [server, "--bind", HOST, "--port", str(port), "--dir", str(folder)]
    argv += ["--save", "", "--appendonly", "no"]
    with open(log, "wb") as log_file:
        process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT)
    client = redis.Redis(host=HOST, port=port, socket_connect_timeout=1)
    try:
        poll(lambda: answers_ping(client), 20, "redis-server did not answer", log)
        yield f"redis://{HOST}:{port}/0"
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)


def answers_ping(client: redis.Redis) -> bool:
    try:
        return client.ping()
    except redis.ConnectionError:
        return False


def create_owner():
    return get_user_model().objects.create_user("alice", "Alice@Example.com", "alice-password-1")


def create_other():
    return get_user_model().objects.create_user("bob", "bob@example.com", "bob-password-1")


def create_staff():
    return get_user_model().objects.create_user(
        "carol", "carol@example.com", "carol-password-1", is_staff=True, is_superuser=True
    )


@pytest.fixture
def owner(db):
    return create_owner()


@pytest.fixture
def other(db):
    return create_other()


@pytest.fixture
def staff(db):
    return create_staff()


@pytest.fixture(scope="module")
def module_rows(
    django_db_setup, django_db_blocker
) -> Iterator[Callable[[], AbstractContextManager]]:
    """A transaction open around a module's tests, for rows its fixtures make once.

    Yields ``allowed()``, a context in which a module-scoped fixture may write them. Each
    test's own transaction (the ``db`` fixture) is a savepoint inside this one, so what a
    test changes is undone after it as usual, and the module's rows after the module. For
    modules whose tests use plain ``db`` only: not ``transaction=True``, not a live server.
    """
    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
    try:
        yield django_db_blocker.unblock
    finally:
        with django_db_blocker.unblock():
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


@pytest.fixture
def owner_token(owner) -> NewToken:
    return create_token(owner, "Work laptop")


@pytest.fixture
def other_token(other) -> NewToken:
    return create_token(other, "Bob's desktop")


def bearer(token: NewToken) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.raw}")
    return client


@pytest.fixture
def owner_api(owner_token) -> APIClient:
    return bearer(owner_token)


@pytest.fixture
def other_api(other_token) -> APIClient:
    return bearer(other_token)


def post_usage(client: APIClient, body, *, content_type="application/json", **headers):
    """POST raw JSON (or raw bytes/str) to the ingestion endpoint."""
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post("/api/model-usage", data=data, content_type=content_type, **headers)


def make_record(owner, when, model="SD", images=1, received_at=None, token=None) -> UsageRecord:
    """A stored record at an exact time, including times the ingestion window would refuse.

    Counted into the rollups as ingestion does, in the same transaction.
    """
    with transaction.atomic():
        record = UsageRecord.objects.create(
            owner=owner,
            model=model,
            image_count=images,
            occurred_at=when,
            received_at=received_at or when,
            token=token,
        )
        rollups.count_records([record.pk])
    return record
