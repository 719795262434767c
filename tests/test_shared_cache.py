"""The default production server, without Redis, shares one cache between its processes.

``./dev.py serve`` runs gunicorn with two processes. With a cache in each process's memory,
each counted its own sign-in failures (twice the limit got through) and a generation
forgot the cached token usage only in the process that served it, so the other one kept
answering the old totals. The cache is now a table in PostgreSQL (usage_site.database_cache):
these tests run the real server (tests/production_site.py, as ``./dev.py serve`` runs
gunicorn) without REDIS_URL, and send their requests on new connections, which the two
processes share between them.
"""

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from urllib.parse import urlencode

import pytest

from scripts.standin_upstream import StandIn
from tests.live_server import HOST, Reply
from tests.production_site import (
    UNTHROTTLED,
    Gunicorn,
    own_database,
    prepare_site,
    require_cluster,
    serving,
)

pytestmark = pytest.mark.slow

UPSTREAM_KEY = "shared-cache-upstream-key"


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[str, dict[str, list[str]]]]:
    require_cluster()
    with own_database("shared_cache") as url:
        yield url, prepare_site(url, {"lou": 0, "gen": 1}, sign_in=("lou",), pages=True)


def at_once(calls: list[Callable[[], Reply]]) -> list[Reply]:
    """Every call in a thread of its own, released together; their answers, in order."""
    start = threading.Barrier(len(calls))
    answers: list = [None] * len(calls)

    def run(n: int) -> None:
        start.wait()
        answers[n] = calls[n]()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


# --- Sign-in failures -------------------------------------------------------------------------

LOGIN_LIMIT = 5  # per account and day, so that no window ends during the burst
ATTEMPTS = 40


def wrong_password_posts(server: Gunicorn, username: str, count: int) -> list[Reply]:
    form = server.get("/accounts/login/")
    csrf_cookie = re.search(r"csrftoken=([^;]+)", form.headers["Set-Cookie"]).group(1)
    csrf = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', form.body).group(1)
    body = urlencode(
        {"username": username, "password": "not-the-password", "csrfmiddlewaretoken": csrf}
    ).encode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": f"csrftoken={csrf_cookie}",
    }
    return at_once([lambda: server.request("POST", "/accounts/login/", body, headers)] * count)


def test_concurrent_sign_in_failures_on_both_processes_stop_at_the_limit(site, tmp_path):
    seconds_left_today = 86400 - time.time() % 86400
    if seconds_left_today < 60:  # the day's window must not end during the burst
        time.sleep(seconds_left_today + 1)
    database_url, _ = site
    env = {**UNTHROTTLED, "THROTTLE_LOGIN_RATE": f"{LOGIN_LIMIT}/day"}

    with serving(database_url, tmp_path, env) as (server,):
        answers = wrong_password_posts(server, "lou", ATTEMPTS)

    statuses = Counter(answer.status for answer in answers)
    print(f"\n{ATTEMPTS} wrong passwords at once, limit {LOGIN_LIMIT}: {dict(statuses)}")
    assert statuses == {200: LOGIN_LIMIT, 429: ATTEMPTS - LOGIN_LIMIT}


# --- Token usage after a generation -------------------------------------------------------

ROUNDS = 5
READERS = 8  # token-usage requests at once, on new connections: both processes serve some


@pytest.fixture
def upstream() -> Iterator[StandIn]:
    with StandIn(HOST, key=UPSTREAM_KEY) as standin:
        yield standin


def test_after_a_generation_every_process_answers_the_new_token_usage(site, upstream, tmp_path):
    database_url, tokens = site
    token = tokens["gen"][0]
    env = {**UNTHROTTLED, "EXTERNAL_API_URL": upstream.url, "EXTERNAL_API_KEY": UPSTREAM_KEY}
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def usage(server: Gunicorn) -> list[int]:
        answers = at_once([lambda: server.get("/api/user/token-usage", token)] * READERS)
        assert [answer.status for answer in answers] == [200] * READERS, answers[0].body[:300]
        return [answer.json()["totalTokens"] for answer in answers]

    def generate(n: int) -> None:
        body = f'{{"prompt": "plugin {n}"}}'.encode()
        answer = server.request("POST", "/api/plugin/generate", body, headers)
        assert answer.status == 200, answer.body[:300]

    seen = []
    with serving(database_url, tmp_path, env) as (server,):
        generate(0)  # the user has token usage from the start
        for n in range(1, ROUNDS + 1):
            before = usage(server)  # cached for 15 s wherever it was served
            generate(n)
            after = usage(server)
            seen.append((before, after))

            assert len(set(before)) == 1
            assert len(set(after)) == 1  # every process forgot its copy...
            assert after[0] > before[0]  # ...and asked the external API again
    print(f"\ntoken usage before and after each generation: {seen}")
