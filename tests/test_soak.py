"""One minute of mixed load on the whole production layout, with a standby restart and an app
server killed in the middle.

The layout: the production front (``./dev.py serve`` with APP_SERVERS: nginx from
deploy/nginx.conf) in front of two app servers (gunicorn with gunicorn.conf.py), one Redis,
the suite's PostgreSQL as the primary and a hot standby of it (tests/standby.py, 1 s apply
delay) as DATABASE_REPLICA_URL, and the external API's stand-in for token usage. Clients
send what the desktop app and the browser send: single records and batches (resent with
the same ids after a 503, as the app does), summaries, dashboards, Refresh Data, token
usage. A quarter of the way in the standby stops, and starts again 5 s later; halfway, one
app server is killed (SIGKILL) and started again.

What must hold: no answer is a 5xx other than a 503 with Retry-After, no connection fails;
every record is stored exactly once and the answers account for every stored record;
afterwards every user's summary, read through the front, equals a recount of the raw
records, and the rollups equal a recount row for row. The figures (requests, statuses, p95,
lag, the restarts) are printed (``pytest -s``) and written down in docs/scaling.md.
"""

import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
import redis

from scripts.standin_upstream import StandIn
from tests.live_server import HOST, PROJECT, Reply, Server, free_port, log_in, poll, site_env
from tests.production_site import (
    PASSWORD,
    SERVER_ENV,
    UNTHROTTLED,
    Gunicorn,
    own_database,
    prepare_site,
    require_cluster,
    serving,
)
from tests.standby import Standby, primary, standby_of_the_cluster

pytestmark = pytest.mark.slow

SOAK_SECONDS = 60
CLIENTS = 6
APPLY_DELAY_MS = 1000
STANDBY_STOP_AT, STANDBY_START_AT = 15, 20  # seconds into the soak
APP_KILL_AT = 35
USERS = {"ada": 2, "ben": 1, "cleo": 1, "dana": 1}  # API tokens each
WRITERS = ("ada", "ben", "cleo")  # their apps post all through the soak
READER = "dana"  # posted before the soak; only looks at her dashboards during it
SESSION_USERS = ("ada", "dana")
MODELS = ("Stable Diffusion", "DALL-E", "Flux", "Imagen")
ZONES = ("UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata")
UPSTREAM_KEY = "soak-upstream-key"
MAX_ATTEMPTS = 10  # of one post, resent after each 503


@dataclass
class Layout:
    dbname: str
    tokens: dict[str, list[str]]
    standby: Standby
    apps: list[Gunicorn]
    front: Server
    upstream: StandIn
    database_url: str
    folder: Path
    env: dict[str, str]


@contextmanager
def front(
    database_url: str, log: Path, app_servers: list[Gunicorn], env: dict, ready: str = ""
) -> Iterator[Server]:
    """``./dev.py serve`` as the front of app servers elsewhere: nginx alone."""
    port = free_port()
    addresses = ",".join(f"{HOST}:{app.port}" for app in app_servers)
    full_env = site_env(
        database_url, **SERVER_ENV, **env, BIND=f"{HOST}:{port}", APP_SERVERS=addresses
    )
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "dev.py", "serve"],
            cwd=PROJECT,
            env=full_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(port, process, log)
    try:
        # Through to an app server; or, with none, nginx's own answer (``ready``).
        path, status = (ready, 503) if ready else ("/api/health/simple", 200)
        poll(lambda: server.answers(path, status), 60, "no answer", log)
        yield server
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def layout(redis_url, tmp_path_factory) -> Iterator[Layout]:
    require_cluster()
    folder = tmp_path_factory.mktemp("soak")
    with (
        standby_of_the_cluster(APPLY_DELAY_MS) as standby,
        own_database("soak") as url,
        StandIn(key=UPSTREAM_KEY) as upstream,
    ):
        dbname = url.rsplit("/", 1)[1]
        tokens = prepare_site(url, USERS, sign_in=SESSION_USERS, pages=True)
        env = {
            **UNTHROTTLED,
            "REDIS_URL": redis_url,
            "DATABASE_REPLICA_URL": standby.url(dbname),
            "EXTERNAL_API_URL": upstream.url,
            "EXTERNAL_API_KEY": UPSTREAM_KEY,
        }
        # The app servers count the front's nginx among the proxies, as ./dev.py serve does.
        with (
            serving(url, folder, {**env, "NUM_PROXIES": "1"}, count=2) as apps,
            front(url, folder / "front.log", apps, env) as served,
        ):
            for user in USERS:  # a plugin each, so that the external API knows their usage
                generated = served.request(
                    "POST",
                    "/api/plugin/generate",
                    json.dumps({"prompt": f"A plugin for {user}"}).encode(),
                    {
                        "Authorization": f"Bearer {tokens[user][0]}",
                        "Content-Type": "application/json",
                    },
                )
                assert generated.status == 200, generated.body[:300]
            yield Layout(dbname, tokens, standby, apps, served, upstream, url, folder, env)


@dataclass
class Call:
    endpoint: str
    status: int | None  # None: no answer at all
    seconds: float
    retry_after: str | None = None
    error: str = ""
    wrong: object = None  # an answer whose numbers are not the known ones
    checked: bool = False  # the reader's, compared with her known numbers


@dataclass
class Post:
    """One batch as the desktop app sends it: its answers, resent after each 503."""

    user: str
    records: list[dict]
    answers: list[Call] = field(default_factory=list)
    body: dict | None = None  # the 201's


class Soak:
    def __init__(self, layout: Layout, cookies: dict[str, str], reader: "ReaderCounts"):
        self.layout = layout
        self.cookies = cookies
        self.reader = reader
        self.calls: list[Call] = []
        self.posts: list[Post] = []
        self.actions = {
            self.post_one: 25,
            self.post_batch: 15,
            self.summary: 15,
            self.dashboard: 5,
            self.dashboard_data: 10,
            self.token_usage: 10,
        }

    def run(self, clients: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        threads = [
            threading.Thread(target=self._client, args=(random.Random(n), deadline))
            for n in range(clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _client(self, rng: random.Random, deadline: float) -> None:
        actions, weights = list(self.actions), list(self.actions.values())
        while time.monotonic() < deadline:
            rng.choices(actions, weights)[0](rng)

    def _call(self, endpoint: str, send: Callable[[Server], Reply]) -> Call:
        started = time.perf_counter()
        try:
            reply = send(self.layout.front)
        except OSError as error:
            call = Call(endpoint, None, time.perf_counter() - started, error=repr(error))
        else:
            call = Call(
                endpoint,
                reply.status,
                time.perf_counter() - started,
                reply.headers.get("Retry-After"),
            )
            call.reply = reply
        self.calls.append(call)
        return call

    def _post(self, endpoint: str, rng: random.Random, records: list[dict], body) -> None:
        user = rng.choice(WRITERS)
        token = rng.choice(self.layout.tokens[user])
        post = Post(user, records)
        self.posts.append(post)
        for _ in range(MAX_ATTEMPTS):
            call = self._call(endpoint, lambda front: front.post_usage(token, body))
            post.answers.append(call)
            if call.status != 503:
                break
            time.sleep(min(float(call.retry_after or 1), 2.0))  # as the app waits, shorter
        if post.answers[-1].status == 201:
            post.body = post.answers[-1].reply.json()

    def post_one(self, rng: random.Random) -> None:
        record = new_record(rng)
        self._post("POST one record", rng, [record], record)

    def post_batch(self, rng: random.Random) -> None:
        batch = [new_record(rng) for _ in range(rng.randint(2, 50))]
        self._post("POST batch", rng, batch, batch)

    def summary(self, rng: random.Random) -> None:
        user = rng.choice(list(USERS))
        token = rng.choice(self.layout.tokens[user])
        if user == READER:  # her numbers are known: they must be exactly those
            path = f"/api/model-usage/summary?{self.reader.query}"
            call = self._call("GET summary", lambda front: front.get(path, token=token))
            self._check(call, self.reader.summary, summary_counts)
            return
        query = urlencode({"tz": rng.choice(ZONES), "granularity": rng.choice(["day", "week"])})
        path = f"/api/model-usage/summary?{query}"
        self._call("GET summary", lambda front: front.get(path, token=token))

    def dashboard(self, rng: random.Random) -> None:
        query = urlencode({"days": rng.choice([7, 30, 90]), "tz": rng.choice(ZONES)})
        cookie = self.cookies[rng.choice(SESSION_USERS)]
        path = f"/dashboard/?{query}"
        self._call("GET dashboard", lambda front: front.get(path, Cookie=cookie))

    def dashboard_data(self, rng: random.Random) -> None:
        user = rng.choice(SESSION_USERS)
        zone = "UTC" if user == READER else rng.choice(ZONES)
        path = f"/dashboard/data/?{urlencode({'days': 7, 'tz': zone})}"
        call = self._call(
            "GET dashboard data", lambda front: front.get(path, Cookie=self.cookies[user])
        )
        if user == READER:
            self._check(call, self.reader.totals, lambda body: totals_of(body["summary"]))

    def _check(self, call: Call, expected, counts: Callable[[dict], object]) -> None:
        call.checked = call.status == 200
        if call.status == 200 and counts(call.reply.json()) != expected:
            call.wrong = counts(call.reply.json())

    def token_usage(self, rng: random.Random) -> None:
        token = rng.choice(self.layout.tokens[rng.choice(list(USERS))])
        path = "/api/user/token-usage"
        self._call("GET token usage", lambda front: front.get(path, token=token))


def new_record(rng: random.Random) -> dict:
    """A desktop app's record: its own id, a time in the last three days."""
    when = datetime.now(UTC) - timedelta(minutes=rng.randint(1, 3 * 24 * 60))
    return {
        "id": uuid.uuid4().hex,
        "model": rng.choice(MODELS),
        "count": rng.randint(1, 20),
        "timestamp": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


@dataclass(frozen=True)
class ReaderCounts:
    """The reader's records, posted before the soak: what her every answer must show."""

    query: str
    summary: dict
    totals: tuple[int, int]


def seed_the_reader(layout: Layout, redis_url: str) -> ReaderCounts:
    rng = random.Random(99)
    for _ in range(5):
        batch = [new_record(rng) for _ in range(40)]
        assert layout.front.post_usage(layout.tokens[READER][0], batch).status == 201
    with primary(layout.dbname) as conn:
        count = "SELECT count(*) FROM usage_usagerecord"
        goal = conn.execute(count).fetchone()
    with layout.standby.connect(layout.dbname) as conn:
        poll(lambda: conn.execute(count).fetchone() == goal, 30, "the standby to replay")
    redis.Redis.from_url(redis_url).flushdb()  # her pin, as 30 s later
    today = datetime.now(UTC).date()
    start = today - timedelta(days=4)
    everything = recount(layout.dbname, READER, start, today, "UTC")
    query = urlencode({"start": start, "end": today, "tz": "UTC"})
    return ReaderCounts(query, everything, everything["totals"])


class Events:
    """The standby's restart and an app server's kill, at their times; and the lag, sampled."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self.times: dict[str, float] = {}
        self.lags: list[tuple[float, float]] = []  # (seconds into the soak, lag)
        self.started = 0.0
        self.failures: list[BaseException] = []

    def run(self, started: float) -> None:
        self.started = started
        sampler = threading.Thread(target=self._sample_until_the_end)
        sampler.start()
        try:
            self._at(STANDBY_STOP_AT, "standby stopped", self.layout.standby.stop)
            self._at(STANDBY_START_AT, "standby started", self.layout.standby.start)
            app = self.layout.apps[0]
            self._at(APP_KILL_AT, "app server killed", app.kill)
            self._at(APP_KILL_AT, "app server answering again", app.start)
        except BaseException as error:  # reported by the test, not lost in the thread
            self.failures.append(error)
        sampler.join()

    def _at(self, second: float, what: str, action: Callable[[], None]) -> None:
        time.sleep(max(0.0, self.started + second - time.monotonic()))
        action()
        self.times[what] = time.monotonic() - self.started

    def _sample_until_the_end(self) -> None:
        while time.monotonic() - self.started < SOAK_SECONDS:
            self._sample_lag()
            time.sleep(0.5)

    def _sample_lag(self) -> None:
        with suppress(Exception):  # the standby is down for a while
            lag = self.layout.standby.lag_seconds(self.layout.dbname)
            self.lags.append((time.monotonic() - self.started, lag))


def test_a_minute_of_mixed_load_through_the_front_survives_a_standby_restart_and_a_killed_app(
    layout, redis_url
):
    cookies = {user: log_in(layout.front, user, PASSWORD) for user in SESSION_USERS}
    reader = seed_the_reader(layout, redis_url)
    before = rollup_reads_on_standby(layout)
    soak = Soak(layout, cookies, reader)
    events = Events(layout)
    started = time.monotonic()
    chaos = threading.Thread(target=events.run, args=(started,))
    chaos.start()
    soak.run(CLIENTS, SOAK_SECONDS)
    chaos.join()
    elapsed = time.monotonic() - started
    report(soak, events, elapsed)
    checked = sum(1 for c in soak.calls if c.checked)
    print(
        f"  the reader's answers checked against her known numbers: {checked}; rollup scans "
        f"served by the standby: {rollup_reads_on_standby(layout) - before}"
    )

    assert events.failures == []
    calls = soak.calls
    assert [(c.endpoint, c.error) for c in calls if c.status is None] == []
    assert [
        (c.endpoint, c.status, c.retry_after)
        for c in calls
        if c.status >= 500 and not (c.status == 503 and c.retry_after)
    ] == []
    # nginx passes a read that failed on one app server on to the other: only a write cut
    # off by the killed server may be a 503 (nginx's own, Retry-After: 2).
    assert [(c.endpoint, c.status) for c in calls if c.status == 503 and "GET" in c.endpoint] == []
    success = {"POST": 201, "GET": 200}
    assert [
        (c.endpoint, c.status)
        for c in calls
        if c.status not in (503, success[c.endpoint.split()[0]])
    ] == []
    assert [post.answers[-1].status for post in soak.posts if post.body is None] == []
    assert [(c.endpoint, c.wrong) for c in calls if c.wrong is not None] == []
    assert sum(c.checked for c in calls) > 0
    # The reader is pinned to no database: the standby served reads (its own statistics).
    assert rollup_reads_on_standby(layout) > before
    assert_every_record_stored_once_and_accounted_for(layout, soak.posts)
    assert_summaries_and_rollups_equal_a_recount(layout, redis_url)


def rollup_reads_on_standby(layout: Layout) -> int:
    with layout.standby.connect(layout.dbname) as conn:
        return conn.execute(
            "SELECT coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0) FROM pg_stat_user_tables "
            "WHERE relname IN ('usage_usagerollup', 'usage_dailyusagerollup')"
        ).fetchone()[0]


def assert_every_record_stored_once_and_accounted_for(layout: Layout, posts: list[Post]) -> None:
    with primary(layout.dbname) as conn:
        rows = conn.execute(
            "SELECT u.username, r.event_id, r.model, r.image_count, r.occurred_at "
            "FROM usage_usagerecord r JOIN auth_user u ON u.id = r.owner_id "
            "WHERE u.username = ANY(%s)",
            [list(WRITERS)],
        ).fetchall()
    stored = {event_id: (user, model, count, at) for user, event_id, model, count, at in rows}
    sent = {
        record["id"]: (
            post.user,
            record["model"],
            record["count"],
            datetime.fromisoformat(record["timestamp"]),
        )
        for post in posts
        for record in post.records
    }
    assert len(rows) == len(stored)  # no id twice
    assert stored == sent
    # A batch answered at once is all new. One answered after a 503 may have been stored by
    # the attempt whose answer was lost: then its records come back as duplicates.
    at_once = [post for post in posts if len(post.answers) == 1]
    assert [post.body["duplicates"] for post in at_once] == [0] * len(at_once)
    accounted = sum(post.body["accepted"] for post in posts) + sum(
        post.body["duplicates"] for post in posts if len(post.answers) > 1
    )
    assert accounted == len(rows)


def assert_summaries_and_rollups_equal_a_recount(layout: Layout, redis_url: str) -> None:
    """Once the folds are done and the standby has replayed them, read through the front."""
    with primary(layout.dbname) as conn:
        poll(
            lambda: conn.execute("SELECT count(*) FROM usage_uncountedrecord").fetchone()[0] == 0,
            30,
            "the servers to fold every single record",
        )
        total = conn.execute("SELECT count(*), sum(image_count) FROM usage_usagerecord").fetchone()
        assert_rollups_equal_a_recount(conn)
    with layout.standby.connect(layout.dbname) as conn:
        poll(
            lambda: (
                conn.execute("SELECT count(*) FROM usage_uncountedrecord").fetchone()[0] == 0
                and conn.execute(
                    "SELECT count(*), sum(image_count) FROM usage_usagerecord"
                ).fetchone()
                == total
            ),
            30,
            "the standby to replay the soak",
        )
    redis.Redis.from_url(redis_url).flushdb()  # no pins left: the summaries may use the standby
    today = datetime.now(UTC).date()
    start, end = today - timedelta(days=4), today
    for user in USERS:
        token = layout.tokens[user][0]
        for zone in ("UTC", "Asia/Kolkata", "America/New_York"):
            query = urlencode({"start": start, "end": end, "tz": zone})
            reply = layout.front.get(f"/api/model-usage/summary?{query}", token=token)
            assert reply.status == 200, reply.body[:300]
            assert summary_counts(reply.json()) == recount(layout.dbname, user, start, end, zone)


def totals_of(body: dict) -> tuple[int, int]:
    return body["totals"]["images"], body["totals"]["events"]


def summary_counts(body: dict) -> dict:
    return {
        "totals": totals_of(body),
        "models": {m["model"]: (m["images"], m["events"]) for m in body["models"]},
    }


def recount(dbname: str, user: str, start, end, zone: str) -> dict:
    """The user's records in the zone's local days start..end, counted from the raw rows."""
    with primary(dbname) as conn:
        rows = conn.execute(
            "SELECT r.model, sum(r.image_count), count(*) FROM usage_usagerecord r "
            "JOIN auth_user u ON u.id = r.owner_id WHERE u.username = %s "
            "AND (r.occurred_at AT TIME ZONE %s)::date BETWEEN %s AND %s GROUP BY r.model",
            [user, zone, start, end],
        ).fetchall()
    models = {model: (int(images), events) for model, images, events in rows}
    images = sum(images for images, _ in models.values())
    return {"totals": (images, sum(e for _, e in models.values())), "models": models}


def assert_rollups_equal_a_recount(conn) -> None:
    # Per owner, hour, model and API token (0: none), as the rollups are keyed.
    recount = conn.execute(
        "SELECT owner_id, date_trunc('hour', occurred_at, 'UTC'), model, "
        "COALESCE(token_id, 0), sum(image_count), count(*) FROM usage_usagerecord "
        "GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
    ).fetchall()
    hourly = conn.execute(
        "SELECT owner_id, hour, model, token_id, images_q0 + images_q1 + images_q2 + images_q3, "
        "events_q0 + events_q1 + events_q2 + events_q3 FROM usage_usagerollup "
        "ORDER BY 1, 2, 3, 4"
    ).fetchall()
    assert hourly == recount


def report(soak: Soak, events: Events, elapsed: float) -> None:
    by_endpoint: dict[str, list[Call]] = defaultdict(list)
    for call in soak.calls:
        by_endpoint[call.endpoint].append(call)
    accepted = sum(post.body["accepted"] for post in soak.posts if post.body)
    resent = sum(len(post.answers) > 1 for post in soak.posts)
    print(
        f"\nsoak through the front: {len(soak.calls)} requests in {elapsed:.1f} s "
        f"({len(soak.calls) / elapsed:.0f}/s) from {CLIENTS} clients; records accepted "
        f"{accepted}; posts resent after a 503: {resent}; statuses "
        f"{dict(Counter(c.status for c in soak.calls))}"
    )
    for endpoint, group in sorted(by_endpoint.items()):
        times = sorted(call.seconds * 1000 for call in group)
        p95 = times[max(0, round(len(times) * 0.95) - 1)]
        print(
            f"  {endpoint:20} {len(group):6}  statuses {dict(Counter(c.status for c in group))}  "
            f"median {statistics.median(times):.0f} ms, p95 {p95:.0f} ms, max {times[-1]:.0f} ms"
        )
    lags = sorted(lag for _, lag in events.lags) or [0.0]
    print(
        f"  standby lag sampled every 0.5 s: median {statistics.median(lags):.2f} s, "
        f"max {lags[-1]:.2f} s ({len(lags)} samples, {APPLY_DELAY_MS} ms apply delay)"
    )
    worst: dict[int, float] = defaultdict(float)
    for second, lag in events.lags:
        worst[int(second // 5) * 5] = max(worst[int(second // 5) * 5], lag)
    print("  worst lag by 5 s: " + ", ".join(f"{s}s {lag:.1f}" for s, lag in sorted(worst.items())))
    unavailable = [c for c in soak.calls if c.status == 503]
    print(f"  503s: {[(c.endpoint, c.retry_after) for c in unavailable]}")
    print("  events: " + ", ".join(f"{what} at {t:.1f} s" for what, t in events.times.items()))


# --- The front's own answers ------------------------------------------------------------


def test_with_no_app_server_answering_the_front_answers_503_with_retry_after(layout):
    nowhere = Gunicorn.create(layout.database_url, layout.folder / "none.log", {})  # not started
    log = layout.folder / "front-alone.log"
    with front(layout.database_url, log, [nowhere], layout.env, ready="/nothing") as alone:
        api = alone.get("/api/health")
        page = alone.get("/dashboard/")

    assert (api.status, api.headers["Retry-After"]) == (503, "2")
    assert api.json() == {
        "error": "The site is restarting; try again in a moment.",
        "code": "unavailable",
    }
    assert (page.status, page.headers["Retry-After"]) == (503, "2")
    assert page.body == b"The site is restarting; try again in a moment.\n"
    assert page.headers["X-Frame-Options"] == "DENY"


def test_the_sites_own_502_passes_through_the_front_unchanged(layout):
    layout.upstream.stop()  # the external API, not an app server, is unreachable
    token = layout.tokens["ben"][0]

    reply = layout.front.request(
        "POST",
        "/api/plugin/generate",
        json.dumps({"prompt": "A plugin while the external API is down"}).encode(),
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )

    assert reply.status == 502
    assert reply.json()["code"] == "upstream_unreachable"
    assert "Retry-After" not in reply.headers
