"""Two production servers on different ports, one PostgreSQL database and one Redis.

As behind a load balancer: the same batch reaching both at once is stored once; the
per-user ingestion limit holds for both together, even for a burst that hits them at the
same moment; and a minute of mixed load on both (records, resent batches, summaries, record
lists, dashboard pages, health) gets no 5xx, with exactly the records the servers said
they accepted stored. The limit counted across servers one request after another is pinned
by tests/test_scaling_settings.py (test_the_ingest_throttle_counts_across_servers_only_with_
redis); here the requests race.

Each server runs as ``./dev.py serve`` runs it (tests/production_site.py). The measured
figures are printed (``pytest -s`` shows them).
"""

import random
import statistics
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from urllib.parse import urlencode

import pytest
import redis

from tests.live_server import log_in
from tests.production_site import (
    PASSWORD,
    UNTHROTTLED,
    Gunicorn,
    connect,
    own_database,
    prepare_site,
    require_cluster,
    serving,
    stored_records,
)

pytestmark = pytest.mark.slow

MODELS = ("Stable Diffusion", "DALL-E", "Flux", "Imagen")
USERS = {"racer": 1, "burst": 2, "mia": 2, "noah": 1, "olga": 1}  # API tokens each
LOAD_USERS = ("mia", "noah", "olga")
SESSION_USER = "mia"  # signed in once; the session works on both servers


@dataclass(frozen=True)
class Site:
    database_url: str
    tokens: dict[str, list[str]]


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    require_cluster()
    with own_database("two_servers") as url:
        yield Site(url, prepare_site(url, USERS, sign_in=(SESSION_USER,), pages=True))


@pytest.fixture(scope="module")
def servers(site, redis_url, tmp_path_factory) -> Iterator[list[Gunicorn]]:
    redis.Redis.from_url(redis_url).flushdb()
    env = {**UNTHROTTLED, "REDIS_URL": redis_url}
    with serving(site.database_url, tmp_path_factory.mktemp("servers"), env, count=2) as pair:
        yield pair


def at_once(calls: list[Callable]) -> list:
    """Run every call in a thread of its own, released together; their results, in order."""
    start = threading.Barrier(len(calls))
    results: list = [None] * len(calls)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        start.wait()
        try:
            results[n] = calls[n]()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def new_record(rng: random.Random, *, with_id: bool = True) -> dict:
    record = {"model": rng.choice(MODELS), "count": rng.randint(1, 20)}
    if with_id:
        when = datetime.now(UTC) - timedelta(minutes=rng.randint(1, 3 * 24 * 60))
        record["id"] = uuid.uuid4().hex
        record["timestamp"] = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return record


def as_stored(record: dict) -> tuple:
    return record["model"], record["count"], datetime.fromisoformat(record["timestamp"])


# --- The same batch to both at once --------------------------------------------------------

ROUNDS = 20
BATCH = 250


def test_the_same_batch_sent_to_both_servers_at_once_is_stored_once(site, servers):
    token = site.tokens["racer"][0]
    rng = random.Random(7)
    sent: list[dict] = []
    split = 0
    for _ in range(ROUNDS):
        batch = [new_record(rng) for _ in range(BATCH)]
        replies = at_once([partial(server.post_usage, token, batch) for server in servers])
        answers = [reply.json() for reply in replies]

        assert [reply.status for reply in replies] == [201, 201]
        assert sum(answer["accepted"] for answer in answers) == BATCH
        assert sum(answer["duplicates"] for answer in answers) == BATCH
        split += all(answer["accepted"] for answer in answers)
        sent += batch

    stored = stored_records(site.database_url, "racer")
    assert len(stored) == ROUNDS * BATCH
    assert {row.event_id: (row.model, row.image_count, row.occurred_at) for row in stored} == {
        record["id"]: as_stored(record) for record in sent
    }
    print(
        f"\nsame batch to both servers at once: {ROUNDS} rounds of {BATCH} records, "
        f"stored {len(stored)}; one server took the whole batch in {ROUNDS - split} rounds, "
        f"they shared it in {split}"
    )


# --- The ingestion limit across both ------------------------------------------------------

LIMIT = 20  # per user and day, so that no window boundary falls inside the burst
BURST = 60


def test_a_burst_on_both_servers_at_once_gets_the_users_limit_in_all(site, redis_url, tmp_path):
    seconds_left_today = 86400 - time.time() % 86400
    if seconds_left_today < 60:  # the day's window must not end during the burst
        time.sleep(seconds_left_today + 1)
    redis.Redis.from_url(redis_url).flushdb()
    env = {**UNTHROTTLED, "REDIS_URL": redis_url, "THROTTLE_INGEST_RATE": f"{LIMIT}/day"}
    tokens = site.tokens["burst"]  # the user's two apps share the user's limit

    with serving(site.database_url, tmp_path, env, count=2) as pair:

        def post(n: int):
            record = {"id": f"burst-{n}", "model": "Flux", "count": 1}
            return pair[n % 2].post_usage(tokens[n // 2 % 2], record)

        replies = at_once([partial(post, n) for n in range(BURST)])

    statuses = Counter(reply.status for reply in replies)
    assert statuses == {201: LIMIT, 429: BURST - LIMIT}
    assert all(int(r.headers["Retry-After"]) > 0 for r in replies if r.status == 429)
    allowed = {f"burst-{n}" for n, reply in enumerate(replies) if reply.status == 201}
    assert {row.event_id for row in stored_records(site.database_url, "burst")} == allowed
    by_server = Counter(n % 2 for n, reply in enumerate(replies) if reply.status == 201)
    print(
        f"\nburst of {BURST} posts at once on two servers, limit {LIMIT}: {dict(statuses)}; "
        f"allowed by the first server {by_server[0]}, by the second {by_server[1]}"
    )


# --- A minute of mixed load -----------------------------------------------------------------

LOAD_SECONDS = 60
CLIENTS = 8  # threads sending at once, as fast as they are answered
ZONES = ("UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata")
SUCCESS = {"POST": {201}, "GET": {200}}


@dataclass
class Call:
    endpoint: str
    server: int
    status: int | None  # None: no answer at all
    seconds: float
    user: str = ""
    records: list[dict] = field(default_factory=list)
    answer: dict | None = None
    error: str = ""


class MixedLoad:
    """Clients sending a mix of requests to both servers; every call and its answer."""

    def __init__(self, servers: list[Gunicorn], tokens: dict[str, list[str]], cookie: str):
        self.servers = servers
        self.tokens = tokens
        self.cookie = cookie
        self.calls: list[Call] = []
        self.delivered: list[tuple[str, str, list[dict]]] = []  # batches answered 201
        self.actions = {
            self.post_one: 20,
            self.post_one_without_id: 5,
            self.post_batch: 15,
            self.resend_batch: 8,
            self.summary: 10,
            self.records: 8,
            self.records_by_session: 4,
            self.dashboard: 6,
            self.dashboard_data: 4,
            self.health: 4,
            self.health_simple: 2,
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
            action = rng.choices(actions, weights)[0]
            self.calls.append(action(rng, rng.randrange(len(self.servers))))

    def _call(self, endpoint: str, server: int, send: Callable, **details) -> Call:
        started = time.perf_counter()
        try:
            reply = send(self.servers[server])
        except OSError as error:
            seconds = time.perf_counter() - started
            return Call(endpoint, server, None, seconds, error=repr(error), **details)
        seconds = time.perf_counter() - started
        answer = reply.json() if reply.content_type.startswith("application/json") else None
        return Call(endpoint, server, reply.status, seconds, answer=answer, **details)

    def _post(self, endpoint: str, rng, server: int, body, records: list[dict]) -> Call:
        user = rng.choice(LOAD_USERS)
        token = rng.choice(self.tokens[user])
        call = self._call(
            endpoint, server, lambda s: s.post_usage(token, body), user=user, records=records
        )
        if call.status == 201 and isinstance(body, list):
            self.delivered.append((user, token, records))
        return call

    def post_one(self, rng, server: int) -> Call:
        record = new_record(rng)
        return self._post("POST one record", rng, server, record, [record])

    def post_one_without_id(self, rng, server: int) -> Call:
        record = new_record(rng, with_id=False)
        return self._post("POST one record without id", rng, server, record, [record])

    def post_batch(self, rng, server: int) -> Call:
        batch = [new_record(rng) for _ in range(rng.randint(2, 100))]
        return self._post("POST batch", rng, server, batch, batch)

    def resend_batch(self, rng, server: int) -> Call:
        """A batch already stored, again (its answer lost, say), to either server."""
        if not self.delivered:
            return self.post_batch(rng, server)
        user, token, batch = rng.choice(self.delivered)
        return self._call(
            "POST resent batch",
            server,
            lambda s: s.post_usage(token, batch),
            user=user,
            records=batch,
        )

    def summary(self, rng, server: int) -> Call:
        token = rng.choice(self.tokens[rng.choice(LOAD_USERS)])
        query = urlencode({"tz": rng.choice(ZONES), "granularity": rng.choice(["day", "week"])})
        path = f"/api/model-usage/summary?{query}"
        return self._call("GET summary", server, lambda s: s.get(path, token=token))

    def records(self, rng, server: int) -> Call:
        token = rng.choice(self.tokens[rng.choice(LOAD_USERS)])
        path = "/api/model-usage?limit=100"
        return self._call("GET records", server, lambda s: s.get(path, token=token))

    def records_by_session(self, rng, server: int) -> Call:
        return self._page("GET records (session)", server, "/api/model-usage?limit=50")

    def dashboard(self, rng, server: int) -> Call:
        query = urlencode({"days": rng.choice([7, 30, 90]), "tz": rng.choice(ZONES)})
        return self._page("GET dashboard", server, f"/dashboard/?{query}")

    def dashboard_data(self, rng, server: int) -> Call:
        query = urlencode({"days": rng.choice([7, 30]), "tz": rng.choice(ZONES)})
        return self._page("GET dashboard data", server, f"/dashboard/data/?{query}")

    def _page(self, endpoint: str, server: int, path: str) -> Call:
        """A signed-in browser's request."""
        return self._call(endpoint, server, lambda s: s.get(path, Cookie=self.cookie))

    def health(self, rng, server: int) -> Call:
        return self._call("GET health", server, lambda s: s.get("/api/health"))

    def health_simple(self, rng, server: int) -> Call:
        return self._call("GET health/simple", server, lambda s: s.get("/api/health/simple"))


def test_a_minute_of_mixed_load_on_both_servers_gets_no_5xx_and_loses_nothing(site, servers):
    cookie = log_in(servers[0], SESSION_USER, PASSWORD)
    load = MixedLoad(servers, site.tokens, cookie)

    started = time.monotonic()
    load.run(CLIENTS, LOAD_SECONDS)
    elapsed = time.monotonic() - started

    report(load.calls, elapsed)
    calls = load.calls
    assert [(c.endpoint, c.error) for c in calls if c.status is None] == []
    assert [(c.endpoint, c.status) for c in calls if c.status >= 500] == []
    assert [
        (c.endpoint, c.status) for c in calls if c.status not in SUCCESS[c.endpoint.split()[0]]
    ] == []
    resends = [c for c in calls if c.endpoint == "POST resent batch"]
    assert [(c.answer["accepted"], c.answer["duplicates"]) for c in resends] == [
        (0, len(c.records)) for c in resends
    ]
    for user in LOAD_USERS:
        assert_stored_as_accepted(site.database_url, user, [c for c in calls if c.user == user])


def assert_stored_as_accepted(database_url: str, user: str, calls: list[Call]) -> None:
    """What is stored for ``user`` is exactly what the servers said they accepted."""
    firsts = [c for c in calls if c.endpoint != "POST resent batch"]
    sent = [record for call in firsts for record in call.records]
    stored = stored_records(database_url, user)
    with_ids = {row.event_id: (row.model, row.image_count, row.occurred_at) for row in stored}

    assert len(stored) == sum(call.answer["accepted"] for call in calls)
    assert {key: value for key, value in with_ids.items() if key} == {
        record["id"]: as_stored(record) for record in sent if "id" in record
    }
    assert Counter((row.model, row.image_count) for row in stored if not row.event_id) == Counter(
        (record["model"], record["count"]) for record in sent if "id" not in record
    )


def report(calls: list[Call], elapsed: float) -> None:
    by_endpoint: dict[str, list[Call]] = defaultdict(list)
    for call in calls:
        by_endpoint[call.endpoint].append(call)
    stored = sum(c.answer["accepted"] for c in calls if c.answer and "accepted" in c.answer)
    print(
        f"\nmixed load on two servers: {len(calls)} requests in {elapsed:.1f} s "
        f"({len(calls) / elapsed:.0f}/s) from {CLIENTS} clients; records accepted {stored}"
    )
    for endpoint, group in sorted(by_endpoint.items()):
        times = sorted(call.seconds * 1000 for call in group)
        p95 = times[max(0, round(len(times) * 0.95) - 1)]
        statuses = dict(Counter(call.status for call in group))
        per_server = Counter(call.server for call in group)
        print(
            f"  {endpoint:28} {len(group):6}  statuses {statuses}  "
            f"median {statistics.median(times):.0f} ms, p95 {p95:.0f} ms  "
            f"(servers {per_server[0]}/{per_server[1]})"
        )


# --- Folding: single records counted into the rollups by the servers themselves -----------


def test_the_servers_fold_every_single_record_into_the_rollups_within_seconds(site, servers):
    """Single records are stored uncounted; each server's folding thread counts them (about
    once a second), sharing the work. After the mixed load above, none is left, and the
    rollups equal a recount from the raw records, row for row."""
    rng = random.Random(7)
    for n in range(40):  # a few more, to both servers
        server = servers[n % 2]
        token = site.tokens["noah"][0]
        assert server.post_usage(token, new_record(rng)).status == 201
    dbname = site.database_url.rsplit("/", 1)[1]
    deadline = time.monotonic() + 15
    with connect(dbname) as conn:
        while conn.execute("SELECT count(*) FROM usage_uncountedrecord").fetchone()[0]:
            assert time.monotonic() < deadline, "records still uncounted after 15 s"
            time.sleep(0.2)
        recount = conn.execute(
            "SELECT owner_id, date_trunc('hour', occurred_at, 'UTC'), model, "
            "COALESCE(token_id, 0), sum(image_count), count(*) FROM usage_usagerecord "
            "GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
        ).fetchall()
        hourly = conn.execute(
            "SELECT owner_id, hour, model, token_id, "
            "images_q0 + images_q1 + images_q2 + images_q3, "
            "events_q0 + events_q1 + events_q2 + events_q3 FROM usage_usagerollup "
            "ORDER BY 1, 2, 3, 4"
        ).fetchall()
        daily = conn.execute(
            "SELECT owner_id, day, model, token_id, images_by_24, events_by_24 "
            "FROM usage_dailyusagerollup ORDER BY 1, 2, 3, 4"
        ).fetchall()
        by_day = conn.execute(
            "SELECT owner_id, (occurred_at AT TIME ZONE 'UTC')::date, model, "
            "COALESCE(token_id, 0), sum(image_count), count(*) FROM usage_usagerecord "
            "GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
        ).fetchall()
    assert len(recount) > 40
    assert hourly == recount
    assert daily == by_day
