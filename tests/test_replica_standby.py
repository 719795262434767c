"""The read replica for real: a hot standby streaming from the suite's cluster (tests/standby.py)
with a 3-second apply delay, and production servers whose DATABASE_REPLICA_URL points at it.

Which database answered is told by the data itself: for a few seconds after a post the
standby lacks it, so an answer without it came from the standby and one with it, while the
standby still lacks it, from the primary. Once a standby has caught up its answers equal the
primary's, and its own statistics (scans of the rollup tables, which nothing else reads
there) show that it served them. The figures measured are printed (``pytest -s``) and
written down in docs/scaling.md.
"""

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis

from tests.live_server import Reply, log_in, poll
from tests.production_site import (
    PASSWORD,
    UNTHROTTLED,
    Gunicorn,
    own_database,
    prepare_site,
    require_cluster,
    serving,
)
from tests.standby import Standby, primary, standby_of_the_cluster
from usage_site.replica_health import CHECK_SECONDS, DOWN_SECONDS

pytestmark = pytest.mark.slow

APPLY_DELAY_MS = 3000
PATIENT_LAG = 20  # seconds: the apply delay is well within it
STRICT_LAG = 1  # seconds: the apply delay is beyond it
USERS = {"dora": 1, "erin": 1, "finn": 1}
ATTEMPTS = 3  # a machine slow enough that the standby replays before the read: try again


@pytest.fixture(scope="module")
def standby() -> Iterator[Standby]:
    require_cluster()
    with standby_of_the_cluster(APPLY_DELAY_MS) as running:
        yield running


class Site:
    def __init__(self, url: str, tokens: dict[str, list[str]], standby: Standby):
        self.url = url
        self.dbname = url.rsplit("/", 1)[1]
        self.tokens = {name: tokens[name][0] for name in tokens}
        self.standby = standby

    def stored(self, user: str, on: str = "primary") -> tuple[int, int]:
        """The user's (images, events), counted from the raw records of one database."""
        connect = primary if on == "primary" else self.standby.connect
        with connect(self.dbname) as conn:
            return conn.execute(
                "SELECT coalesce(sum(r.image_count), 0), count(*) FROM usage_usagerecord r "
                "JOIN auth_user u ON u.id = r.owner_id WHERE u.username = %s",
                [user],
            ).fetchone()

    def wait_until_replayed(self, user: str) -> None:
        goal = self.stored(user)
        poll(lambda: self.stored(user, "standby") == goal, 30, "the standby to replay")

    def rollup_reads_on_standby(self) -> int:
        """Scans of the rollup tables the standby has served (its own statistics)."""
        with self.standby.connect(self.dbname) as conn:
            return conn.execute(
                "SELECT coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0) "
                "FROM pg_stat_user_tables "
                "WHERE relname IN ('usage_usagerollup', 'usage_dailyusagerollup')"
            ).fetchone()[0]


@pytest.fixture(scope="module")
def site(standby) -> Iterator[Site]:
    with own_database("replica") as url:
        tokens = prepare_site(url, USERS, sign_in=("dora", "finn"), pages=True)
        site = Site(url, tokens, standby)
        poll(lambda: has_users(site), 30, "the standby to replay the new database")
        yield site


def has_users(site: Site) -> bool:
    try:
        with site.standby.connect(site.dbname) as conn:
            return conn.execute("SELECT count(*) FROM auth_user").fetchone()[0] == len(USERS)
    except Exception:  # the database not replayed yet
        return False


def replica_env(site: Site, redis_url: str, max_lag: float) -> dict[str, str]:
    return {
        **UNTHROTTLED,
        "REDIS_URL": redis_url,
        "DATABASE_REPLICA_URL": site.standby.url(site.dbname),
        "DATABASE_REPLICA_MAX_LAG_SECONDS": str(max_lag),
    }


@pytest.fixture(scope="module")
def patient(site, redis_url, tmp_path_factory) -> Iterator[Gunicorn]:
    """A server that reads from the standby within 20 s of lag."""
    folder = tmp_path_factory.mktemp("patient")
    with serving(site.url, folder, replica_env(site, redis_url, PATIENT_LAG)) as (server,):
        yield server


@pytest.fixture(scope="module")
def strict(site, redis_url, tmp_path_factory) -> Iterator[Gunicorn]:
    """A server that reads from the standby only within 1 s of lag: less than its delay."""
    folder = tmp_path_factory.mktemp("strict")
    with serving(site.url, folder, replica_env(site, redis_url, STRICT_LAG)) as (server,):
        yield server


def unpin_everyone(redis_url: str) -> None:
    """As DATABASE_REPLICA_PIN_SECONDS later: the pins after writes are gone from Redis."""
    redis.Redis.from_url(redis_url).flushdb()


def batch(size: int = 5) -> list[dict]:
    when = datetime.now(UTC) - timedelta(minutes=1)
    stamp = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return [
        {"id": uuid.uuid4().hex, "model": "Flux", "count": n + 1, "timestamp": stamp}
        for n in range(size)
    ]


def post(server: Gunicorn, token: str) -> None:
    reply = server.post_usage(token, batch())
    assert reply.status == 201, reply.body[:300]


def summary(server: Gunicorn, token: str) -> tuple[int, int]:
    today = datetime.now(UTC).date()
    query = f"start={today - timedelta(days=1)}&end={today}&tz=UTC"
    return totals(server.get(f"/api/model-usage/summary?{query}", token=token))


def dashboard(server: Gunicorn, cookie: str) -> tuple[int, int]:
    return totals(server.get("/dashboard/data/?days=7&tz=UTC", Cookie=cookie), "summary")


def totals(reply: Reply, key: str | None = None) -> tuple[int, int]:
    assert reply.status == 200, (reply.status, reply.body[:300])
    body = reply.json()[key] if key else reply.json()
    return body["totals"]["images"], body["totals"]["events"]


def report(line: str) -> None:
    print(f"\nreplica: {line}")


def test_dashboards_and_summaries_read_from_the_standby(site, patient, redis_url):
    token, cookie = site.tokens["dora"], log_in(patient, "dora", PASSWORD)
    post(patient, token)
    site.wait_until_replayed("dora")
    before = site.stored("dora")
    for _ in range(ATTEMPTS):
        post(patient, token)  # on the primary at once, on the standby 3 s later
        unpin_everyone(redis_url)
        read = summary(patient, token), dashboard(patient, cookie)
        if site.stored("dora", "standby") != site.stored("dora"):
            break  # the standby still lacked the post when it answered
        before = site.stored("dora")
    else:
        pytest.fail(f"the standby replayed every post before the reads, {ATTEMPTS} times")

    assert read == (before, before)  # the standby's numbers, without the post
    assert site.stored("dora") != before
    site.wait_until_replayed("dora")
    assert (summary(patient, token), dashboard(patient, cookie)) == (site.stored("dora"),) * 2


def test_a_user_who_just_posted_sees_the_post_at_once_from_the_primary(site, patient, redis_url):
    token, cookie = site.tokens["dora"], log_in(patient, "dora", PASSWORD)
    for _ in range(ATTEMPTS):
        site.wait_until_replayed("dora")
        unpin_everyone(redis_url)
        post(patient, token)  # pins dora to the primary
        read = summary(patient, token), dashboard(patient, cookie)
        if site.stored("dora", "standby") != site.stored("dora"):
            break
    else:
        pytest.fail(f"the standby replayed every post before the reads, {ATTEMPTS} times")

    assert read == (site.stored("dora"),) * 2


def test_a_standby_lagging_past_the_bound_sends_reads_to_the_primary_then_gets_them_back(
    site, standby, strict, redis_url
):
    token = site.tokens["erin"]
    lags = []
    for _ in range(ATTEMPTS):
        post(strict, token)
        site.wait_until_replayed("erin")
        post(strict, token)
        unpin_everyone(redis_url)
        # The server asks the standby its lag once a second; a read now may still use the
        # answer from before the post. The test cannot see that answer, so it waits it out.
        time.sleep(CHECK_SECONDS + 0.3)
        lags.append(standby.lag_seconds(site.dbname))
        read = summary(strict, token)
        if site.stored("erin", "standby") != site.stored("erin"):
            break
    else:
        pytest.fail(f"the standby replayed every post before the read, {ATTEMPTS} times")

    assert lags[-1] > STRICT_LAG
    assert read == site.stored("erin")  # the primary's numbers, with the post

    site.wait_until_replayed("erin")
    caught_up = time.monotonic()
    baseline = site.rollup_reads_on_standby()
    served_by_standby = []

    def reads_on_standby() -> bool:
        served_by_standby.append(summary(strict, token) == site.stored("erin"))
        return site.rollup_reads_on_standby() > baseline

    poll(reads_on_standby, 20, "reads back on the standby once it caught up")
    assert all(served_by_standby)
    report(
        f"lag seen {max(lags):.2f} s with a {APPLY_DELAY_MS} ms apply delay (bound "
        f"{STRICT_LAG} s): reads on the primary; back on the standby "
        f"{time.monotonic() - caught_up:.2f} s after it caught up"
    )


def test_a_stopped_standby_sends_reads_to_the_primary_with_no_error_and_gets_them_back(
    site, standby, patient, redis_url
):
    token, cookie = site.tokens["finn"], log_in(patient, "finn", PASSWORD)
    post(patient, token)
    site.wait_until_replayed("finn")
    unpin_everyone(redis_url)
    baseline = site.rollup_reads_on_standby()
    poll(
        lambda: (
            summary(patient, token) == site.stored("finn")
            and site.rollup_reads_on_standby() > baseline
        ),
        20,
        "reads on the standby",
    )

    standby.stop()
    stopped = time.monotonic()
    reads = [summary(patient, token)]
    first = time.monotonic() - stopped
    while time.monotonic() - stopped < DOWN_SECONDS + 2:  # past the first retry of the standby
        reads.append(summary(patient, token))
        reads.append(dashboard(patient, cookie))
    stored_while_down = site.stored("finn")
    post(patient, token)  # writes go on; and a new post is counted at once
    unpin_everyone(redis_url)
    reads.append(summary(patient, token))

    assert reads[-1] == site.stored("finn")
    assert set(reads[:-1]) == {stored_while_down}

    standby.start()
    started = time.monotonic()
    site.wait_until_replayed("finn")
    baseline = site.rollup_reads_on_standby()
    poll(
        lambda: (
            summary(patient, token) == site.stored("finn")
            and site.rollup_reads_on_standby() > baseline
        ),
        30,
        "reads back on the standby once it started",
    )
    report(
        f"standby stopped: first read answered from the primary in {first * 1000:.0f} ms, "
        f"{len(reads)} reads while down, all 200 with the primary's numbers; reads back on the "
        f"standby {time.monotonic() - started:.2f} s after it started"
    )
