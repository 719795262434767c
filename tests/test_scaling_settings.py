"""REDIS_URL and DATABASE_REPLICA_URL: how the settings read them, and a real shared Redis.

The settings are loaded in a fresh interpreter for each case, as a server process loads
them. The Redis tests start a real ``redis-server`` on a loopback port and run separate
Django processes against it: the point of a shared cache is what one process sees of
another's writes.
"""

import json
import os
import subprocess
import sys

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured

from tests.live_server import PROJECT, gunicorn
from usage_site.env import env_redis_url

PRIMARY_URL = "postgres://site:primary-pw@db-primary:5432/usage"
REPLICA_URL = "postgres://reader:replica-pw@db-replica:6432/usage?sslmode=require"
REDIS = "redis://127.0.0.1:6379/1"
ROUTER = "usage_site.routers.ReplicaRouter"
PIN_MIDDLEWARE = "usage_site.routers.PrimaryPinMiddleware"
AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"
SCALING_VARIABLES = (
    "REDIS_URL",
    "DATABASE_REPLICA_URL",
    "DATABASE_REPLICA_PIN_SECONDS",
    "DATABASE_REPLICA_MAX_LAG_SECONDS",
)
SHOW_SETTINGS = """
import json
from usage_site import settings as s
print(json.dumps({
    "CACHES": s.CACHES,
    "DATABASES": s.DATABASES,
    "DATABASE_ROUTERS": s.DATABASE_ROUTERS,
    "MIDDLEWARE": s.MIDDLEWARE,
    "DATABASE_REPLICA_PIN_SECONDS": s.DATABASE_REPLICA_PIN_SECONDS,
    "DATABASE_REPLICA_MAX_LAG_SECONDS": s.DATABASE_REPLICA_MAX_LAG_SECONDS,
}))
"""


def env_without_scaling(**env: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in SCALING_VARIABLES}
    return {**base, "SECRET_KEY": "t", "DEBUG": "0", "HTTPS_ONLY": "0", **env}


def load_settings(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", SHOW_SETTINGS],
        cwd=PROJECT,
        env=env_without_scaling(**{"DATABASE_URL": PRIMARY_URL, **env}),
        capture_output=True,
        text=True,
        timeout=60,
    )


def settings_with(**env: str) -> dict:
    result = load_settings(**env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def refused(**env: str) -> str:
    """The error that stops the settings from loading."""
    result = load_settings(**env)
    assert result.returncode != 0, result.stdout
    assert "ImproperlyConfigured" in result.stderr
    return result.stderr.strip().splitlines()[-1]


# REDIS_URL


def test_without_redis_url_every_process_shares_a_table_in_postgresql():
    caches = settings_with()["CACHES"]  # DATABASE_URL is PostgreSQL

    assert caches == {
        "default": {
            "BACKEND": "usage_site.database_cache.DatabaseCache",
            "LOCATION": "usage_cache",
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    }


def test_without_redis_url_on_sqlite_the_one_process_keeps_a_memory_cache():
    caches = settings_with(DATABASE_URL="sqlite:///dev.sqlite3")["CACHES"]

    assert caches == {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def test_redis_url_makes_the_default_cache_that_redis_with_short_timeouts():
    caches = settings_with(REDIS_URL=REDIS)["CACHES"]

    assert caches["default"] == {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS,
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }


def test_a_bad_redis_url_stops_the_start_and_does_not_print_its_password():
    error = refused(REDIS_URL="http://:hunter2@cache:6379/0")

    assert "REDIS_URL must start with redis://, rediss:// or unix://" in error
    assert "hunter2" not in error


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:6379/0",
        "redis://cache.internal",
        "rediss://:s3cret@cache.internal:6380/2",
        "redis://user:pw@10.0.0.5:6379",
        "unix:///run/redis/redis.sock",
    ],
)
def test_env_redis_url_accepts_what_redis_py_reads(monkeypatch, url):
    monkeypatch.setenv("SOME_REDIS", f" {url} ")

    assert env_redis_url("SOME_REDIS") == url


@pytest.mark.parametrize("raw", [None, "", "  "])
def test_env_redis_url_is_empty_when_unset_or_blank(monkeypatch, raw):
    if raw is None:
        monkeypatch.delenv("SOME_REDIS", raising=False)
    else:
        monkeypatch.setenv("SOME_REDIS", raw)

    assert env_redis_url("SOME_REDIS") == ""


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("localhost:6379", "must start with redis://"),
        ("http://cache:6379", "must start with redis://"),
        ("redis://", "no host name"),
        ("redis://:pw@/0", "no host name"),
        ("redis://cache:six/0", "port that is not a number"),
        ("redis://cache:6379/sessions", "database number"),
        ("unix://", "no socket path"),
    ],
)
def test_env_redis_url_refuses_what_redis_py_would_misread(monkeypatch, raw, message):
    monkeypatch.setenv("SOME_REDIS", raw)

    with pytest.raises(ImproperlyConfigured, match=f"^SOME_REDIS .*{message}"):
        env_redis_url("SOME_REDIS")


# DATABASE_REPLICA_URL


def test_without_a_replica_nothing_is_routed_and_the_replica_alias_is_the_primary():
    loaded = settings_with()
    databases = loaded["DATABASES"]

    assert loaded["DATABASE_ROUTERS"] == []
    assert PIN_MIDDLEWARE not in loaded["MIDDLEWARE"]
    assert databases["replica"]["TEST"] == {"MIRROR": "default"}
    assert {k: v for k, v in databases["replica"].items() if k != "TEST"} == databases["default"]


def test_a_replica_gets_its_own_connection_and_switches_the_router_on():
    loaded = settings_with(REDIS_URL=REDIS, DATABASE_REPLICA_URL=REPLICA_URL)
    replica = loaded["DATABASES"]["replica"]
    middleware = loaded["MIDDLEWARE"]

    assert loaded["DATABASE_ROUTERS"] == [ROUTER]
    # After authentication, so that it sees who the request's user is.
    assert middleware.index(PIN_MIDDLEWARE) == middleware.index(AUTH_MIDDLEWARE) + 1
    assert (replica["HOST"], replica["PORT"], replica["USER"]) == ("db-replica", "6432", "reader")
    assert (replica["NAME"], replica["PASSWORD"]) == ("usage", "replica-pw")
    # Summaries it answers are prepared once they repeat, as on the primary.
    assert replica["OPTIONS"] == {
        "sslmode": "require",
        "connect_timeout": 3,
        "prepare_threshold": 5,
    }
    assert (replica["CONN_MAX_AGE"], replica["CONN_HEALTH_CHECKS"]) == (60, False)
    assert replica["TEST"] == {"MIRROR": "default"}
    assert loaded["DATABASES"]["default"]["HOST"] == "db-primary"
    assert loaded["DATABASE_REPLICA_PIN_SECONDS"] == 30
    assert loaded["DATABASE_REPLICA_MAX_LAG_SECONDS"] == 10


def test_the_pin_after_a_write_and_the_lag_bound_can_be_set_in_seconds():
    loaded = settings_with(
        REDIS_URL=REDIS,
        DATABASE_REPLICA_URL=REPLICA_URL,
        DATABASE_REPLICA_PIN_SECONDS="5",
        DATABASE_REPLICA_MAX_LAG_SECONDS="2.5",
    )

    assert loaded["DATABASE_REPLICA_PIN_SECONDS"] == 5
    assert loaded["DATABASE_REPLICA_MAX_LAG_SECONDS"] == 2.5


def test_a_lag_bound_that_the_pin_does_not_cover_is_refused():
    # A user whose pin ended could read a replica that has not replayed their write yet.
    error = refused(
        REDIS_URL=REDIS,
        DATABASE_REPLICA_URL=REPLICA_URL,
        DATABASE_REPLICA_PIN_SECONDS="5",
        DATABASE_REPLICA_MAX_LAG_SECONDS="4",
    )

    assert "DATABASE_REPLICA_MAX_LAG_SECONDS must be more than a second below" in error


def test_a_replica_without_redis_is_refused():
    # The pin after a write must be seen by every server process, not just the one that wrote.
    error = refused(DATABASE_REPLICA_URL=REPLICA_URL)

    assert "DATABASE_REPLICA_URL needs REDIS_URL" in error


def test_a_replica_of_another_engine_is_refused():
    error = refused(REDIS_URL=REDIS, DATABASE_REPLICA_URL="sqlite:///replica.sqlite3")

    assert "DATABASE_REPLICA_URL must use the same engine as DATABASE_URL" in error


def test_a_bad_replica_url_names_the_replica_variable():
    error = refused(REDIS_URL=REDIS, DATABASE_REPLICA_URL="mysql://reader@db-replica/usage")

    assert "DATABASE_REPLICA_URL must start with sqlite:// or postgres://" in error


# A real Redis (tests/conftest.py's redis_url), shared by separate server processes.


@pytest.fixture
def empty_redis(redis_url) -> str:
    redis.Redis.from_url(redis_url).flushdb()
    return redis_url


def django_shell(code: str, **env: str) -> str:
    """What ``manage.py shell -c code`` prints, in a process of its own."""
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
        cwd=PROJECT,
        env=env_without_scaling(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.slow
def test_a_cache_entry_written_by_one_process_is_read_by_another(empty_redis):
    write = "from django.core.cache import cache; cache.set('handoff', {'from': 'a'}, 60)"
    read = "from django.core.cache import cache; print(cache.get('handoff'))"

    django_shell(write, REDIS_URL=empty_redis)

    assert django_shell(read, REDIS_URL=empty_redis) == "{'from': 'a'}"


@pytest.fixture(scope="module")
def site_database(tmp_path_factory) -> tuple[str, str]:
    """A migrated SQLite file with a user and an API token, for servers to share."""
    folder = tmp_path_factory.mktemp("site")
    database_url = f"sqlite:///{folder / 'site.sqlite3'}"
    migrate = (
        "from django.core.management import call_command; call_command('migrate', verbosity=0)"
    )
    django_shell(migrate, DATABASE_URL=database_url)
    token = django_shell(
        "from django.contrib.auth.models import User; from usage.tokens import create_token; "
        "print(create_token(User.objects.create_user('dana'), 'laptop').raw)",
        DATABASE_URL=database_url,
    )
    return database_url, token


@pytest.mark.slow
@pytest.mark.parametrize(
    ("shared", "statuses"), [(True, [201, 201, 201, 429]), (False, [201, 201, 201, 201])]
)
def test_the_ingest_throttle_counts_across_servers_only_with_redis(
    site_database, empty_redis, monkeypatch, tmp_path, shared, statuses
):
    database_url, token = site_database
    # Per day, so that the four posts never straddle the end of a window.
    monkeypatch.setenv("THROTTLE_INGEST_RATE", "3/day")
    if shared:
        monkeypatch.setenv("REDIS_URL", empty_redis)
    else:
        monkeypatch.delenv("REDIS_URL", raising=False)
    record = {"modelName": "Flux", "imageCount": 1}

    with (
        gunicorn(database_url, tmp_path / "a.log") as first,
        gunicorn(database_url, tmp_path / "b.log") as second,
    ):
        answers = [server.post_usage(token, record).status for server in (first, first)]
        answers += [server.post_usage(token, record).status for server in (second, second)]

    assert answers == statuses
