"""Rate limits (usage.throttles, usage.auth): exact counts, windows, and every limited path.

Ingestion per token and per user, plugin generation per user, failed sign-ins per account
and per client address (the site's login page and the admin's), token creation per user;
client addresses from trusted proxies only; and a cache that is down lets requests through.
"""

import logging
import math
import threading
from collections import Counter
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import redis
from allauth.account.models import EmailAddress
from django.core.cache import cache
from django.db import connections
from django.test import Client, RequestFactory, override_settings

from tests.conftest import bearer, post_usage
from tests.live_server import HOST, free_port
from usage import auth, throttles
from usage.client_address import client_address
from usage.models import ApiToken, PluginGeneration, UsageRecord
from usage.throttles import Verdict, give_back, hit, hit_in_order
from usage.tokens import create_token
from usage_site import cache as site_cache

pytestmark = pytest.mark.django_db

RECORD = {"model": "SD", "count": 1}
MINUTE = 60
HOUR = 3600
# A moment in the middle of a clock-aligned minute, far from any real "now".
T0 = 1_000_000 * MINUTE + 30


class Clock:
    """What ``time.time()`` says to the throttles: fixed, so no window ends mid-test."""

    def __init__(self, now: float):
        self.now = now

    def time(self) -> float:
        return self.now

    def to_window_end(self, seconds: int) -> int:
        return math.ceil((self.now // seconds + 1) * seconds - self.now)


@pytest.fixture(autouse=True)
def clock(monkeypatch) -> Clock:
    clock = Clock(T0)
    monkeypatch.setattr(throttles, "time", clock)
    monkeypatch.setattr(auth, "time", clock)
    return clock


# --- hit() and give_back() -------------------------------------------------------------------


def redis_cache(url: str) -> dict:
    """CACHES with a Redis default cache, configured as settings.py does with REDIS_URL."""
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }


@pytest.fixture(params=["default", "redis"])
def counting_cache(request) -> Iterator[str]:
    """The default cache (a table on PostgreSQL, whose incr is atomic; this process's memory
    on SQLite), and a real Redis."""
    if request.param == "default":
        yield "default"
        return
    with override_settings(CACHES=redis_cache(request.getfixturevalue("redis_url"))):
        cache.clear()
        yield "redis"
        cache.clear()


def test_requests_up_to_the_limit_are_allowed_and_the_next_is_not(counting_cache, throttle_rates):
    throttle_rates(ingest="3/min")

    verdicts = [hit("ingest", "7", now=T0) for _ in range(4)]

    assert verdicts == [Verdict(True, 0)] * 3 + [Verdict(False, 30)]


def test_a_counter_in_redis_expires_a_little_after_its_window(redis_url, throttle_rates):
    throttle_rates(ingest="3/min")
    with override_settings(CACHES=redis_cache(redis_url)):
        cache.clear()
        hit("ingest", "7")
        hit("ingest", "7")
        client = redis.Redis.from_url(redis_url)
        [name] = client.keys("*throttle:ingest:*")
        assert int(client.get(name)) == 2  # a plain integer, as Django stores one
        assert 60 <= client.ttl(name) <= 65
        cache.clear()


@pytest.mark.parametrize(
    ("offset", "retry_after"),
    [(0, 60), (0.2, 60), (30, 30), (59, 1), (59.5, 1), (59.999, 1)],
)
def test_retry_after_is_the_whole_seconds_to_the_end_of_the_window(
    throttle_rates, offset, retry_after
):
    throttle_rates(plugin="1/min")
    now = 1_000_000 * MINUTE + offset
    hit("plugin", "7", now=now)

    assert hit("plugin", "7", now=now) == Verdict(False, retry_after)


def test_the_window_is_clock_aligned_and_the_next_one_starts_fresh(counting_cache, throttle_rates):
    throttle_rates(ingest="2/min")
    start = 1_000_000 * MINUTE
    # The first and the last second of one window share its count...
    assert hit("ingest", "7", now=start).allowed
    assert hit("ingest", "7", now=start + 59.9).allowed
    assert not hit("ingest", "7", now=start + 30).allowed
    # ...and the next window's first second has a count of its own.
    assert hit("ingest", "7", now=start + 60).allowed
    assert hit("ingest", "7", now=start + 61).allowed
    assert not hit("ingest", "7", now=start + 62).allowed


def test_hourly_windows_last_an_hour(throttle_rates):
    throttle_rates(login="1/hour")
    start = 1_000 * 3600
    assert hit("login", "user:alice", now=start).allowed

    assert hit("login", "user:alice", now=start + 3599) == Verdict(False, 1)
    assert hit("login", "user:alice", now=start + 3600).allowed


def test_keys_and_scopes_are_counted_apart(counting_cache, throttle_rates):
    throttle_rates(ingest="1/min", plugin="1/min")
    assert hit("ingest", "7", now=T0).allowed
    assert not hit("ingest", "7", now=T0).allowed

    assert hit("ingest", "8", now=T0).allowed
    assert hit("plugin", "7", now=T0).allowed
    assert not hit("ingest", "7", now=T0).allowed


def test_an_ident_of_any_length_and_alphabet_is_a_key_of_its_own(throttle_rates):
    throttle_rates(login="1/hour")
    long_name = "ü " * 500
    assert hit("login", long_name, now=T0).allowed
    assert hit("login", long_name + "x", now=T0).allowed
    assert not hit("login", long_name, now=T0).allowed


def test_give_back_returns_one_request_to_its_window(counting_cache, throttle_rates):
    throttle_rates(login="2/hour")
    hit("login", "user:alice", now=T0)
    hit("login", "user:alice", now=T0)

    give_back("login", "user:alice", now=T0)

    assert hit("login", "user:alice", now=T0).allowed
    assert not hit("login", "user:alice", now=T0).allowed


def test_give_back_in_a_window_with_no_count_does_nothing(counting_cache, throttle_rates):
    throttle_rates(login="1/hour")
    hit("login", "user:alice", now=T0)

    give_back("login", "user:alice", now=T0 + 3600)  # that window has no counter yet
    give_back("login", "user:nobody", now=T0)

    assert not hit("login", "user:alice", now=T0).allowed
    assert hit("login", "user:alice", now=T0 + 3600).allowed


def test_threads_hammering_one_key_get_exactly_the_limit(counting_cache, throttle_rates):
    limit, threads, each = 25, 16, 20
    throttle_rates(ingest=f"{limit}/min")
    start = threading.Barrier(threads)
    verdicts: list[bool] = []
    lock = threading.Lock()

    def hammer() -> None:
        start.wait()
        try:
            mine = [hit("ingest", "7", now=T0).allowed for _ in range(each)]
        finally:
            connections.close_all()  # the cache table's connection of this thread
        with lock:
            verdicts.extend(mine)

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert Counter(verdicts) == {True: limit, False: threads * each - limit}
    assert not hit("ingest", "7", now=T0).allowed


def test_limits_counted_in_order_stop_at_the_first_refusal(counting_cache, throttle_rates):
    """Ingestion's two limits, one round trip: a request its token's limit refuses spends
    nothing of its user's allowance, which the user's other tokens still have."""
    throttle_rates(ingest_token="2/min", ingest="3/min")
    runaway = [("ingest_token", "t1"), ("ingest", "u1")]
    verdicts = [hit_in_order(runaway, now=T0) for _ in range(4)]
    assert verdicts == [Verdict(True, 0)] * 2 + [Verdict(False, 30)] * 2

    other_app = [("ingest_token", "t2"), ("ingest", "u1")]
    assert [hit_in_order(other_app, now=T0) for _ in range(2)] == [
        Verdict(True, 0),
        Verdict(False, 30),  # the user's third and last, then their limit
    ]


def test_threads_posting_through_two_limits_get_exactly_the_tighter_one(
    counting_cache, throttle_rates
):
    """Sixteen apps of one user at once, each token allowed 10 and the user 25: exactly 25
    get through, and no token more than its 10."""
    threads, each = 16, 12
    throttle_rates(ingest_token="10/min", ingest="25/min")
    start = threading.Barrier(threads)
    allowed: Counter[int] = Counter()
    lock = threading.Lock()

    def post_as(app: int) -> None:
        start.wait()
        try:
            counted = [("ingest_token", str(app)), ("ingest", "u1")]
            mine = sum(hit_in_order(counted, now=T0).allowed for _ in range(each))
        finally:
            connections.close_all()  # the cache table's connection of this thread
        with lock:
            allowed[app] = mine

    workers = [threading.Thread(target=post_as, args=(app,)) for app in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert sum(allowed.values()) == 25
    assert max(allowed.values()) <= 10


# --- Client addresses ------------------------------------------------------------------------


@pytest.fixture
def proxies(settings):
    """Set REST_FRAMEWORK["NUM_PROXIES"] for one test."""

    def set_proxies(count: int) -> None:
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": count}

    return set_proxies


def address_of(remote: str, forwarded: str | None = None) -> str:
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return client_address(RequestFactory().get("/", **extra))


def test_without_trusted_proxies_the_address_is_remote_addr_whatever_is_forwarded(proxies):
    proxies(0)

    assert address_of("192.0.2.1", "203.0.113.9, 198.51.100.2") == "192.0.2.1"


@pytest.mark.parametrize(
    ("count", "forwarded", "address"),
    [
        (1, "203.0.113.9", "203.0.113.9"),
        (1, "6.6.6.6, 203.0.113.9", "203.0.113.9"),
        (1, " 6.6.6.6 ,203.0.113.9 ", "203.0.113.9"),
        (2, "6.6.6.6, 203.0.113.9, 10.0.0.2", "203.0.113.9"),
        (3, "203.0.113.9, 10.0.0.2", "203.0.113.9"),  # fewer entries than proxies
    ],
)
def test_behind_trusted_proxies_the_address_is_counted_from_the_right(
    proxies, count, forwarded, address
):
    proxies(count)

    assert address_of("10.0.0.1", forwarded) == address


def test_behind_a_proxy_that_forwarded_nothing_the_address_is_remote_addr(proxies):
    proxies(1)

    assert address_of("10.0.0.1") == "10.0.0.1"
    assert address_of("10.0.0.1", " , ") == "10.0.0.1"


@pytest.mark.parametrize("entry", ["x" * 100, "unknown", "203.0.113.9:443", "<script>"])
def test_a_forwarded_entry_that_is_not_an_address_is_not_used(proxies, entry):
    # It would be counted, and stored in the audit log, as if it were a client.
    proxies(1)

    assert address_of("10.0.0.1", f"203.0.113.9, {entry}") == "10.0.0.1"


# --- Ingestion -------------------------------------------------------------------------------


def statuses(client, count: int) -> list[int]:
    return [post_usage(client, RECORD).status_code for _ in range(count)]


def test_one_token_past_its_limit_is_refused_while_the_users_other_token_works(
    owner, owner_api, throttle_rates
):
    throttle_rates(ingest_token="2/min", ingest="100/min")
    second_app = bearer(create_token(owner, "Studio PC"))

    assert statuses(owner_api, 3) == [201, 201, 429]
    assert statuses(second_app, 2) == [201, 201]
    assert UsageRecord.objects.filter(owner=owner).count() == 4


def test_a_runaway_app_past_its_token_limit_does_not_spend_its_users_allowance(
    owner, owner_api, throttle_rates
):
    throttle_rates(ingest_token="2/min", ingest="4/min")
    second_app = bearer(create_token(owner, "Studio PC"))

    assert statuses(owner_api, 5) == [201, 201, 429, 429, 429]
    assert statuses(second_app, 2) == [201, 201]


def test_the_users_limit_holds_across_all_their_tokens(
    owner, owner_api, other, other_api, throttle_rates
):
    throttle_rates(ingest="3/min", ingest_token="100/min")
    second_app = bearer(create_token(owner, "Studio PC"))

    codes = [post_usage(app, RECORD).status_code for app in (owner_api, second_app) * 3]

    assert codes == [201, 201, 201, 429, 429, 429]
    assert UsageRecord.objects.filter(owner=owner).count() == 3
    # Another user has an allowance of their own.
    assert statuses(other_api, 3) == [201, 201, 201]


def test_ingestion_is_allowed_again_in_the_next_minute(owner_api, throttle_rates, clock):
    throttle_rates(ingest="1/min")
    assert statuses(owner_api, 2) == [201, 429]

    clock.now += clock.to_window_end(MINUTE)

    assert statuses(owner_api, 2) == [201, 429]


def test_a_refused_request_gets_429_json_with_retry_after_and_stores_nothing(
    owner_api, throttle_rates, clock
):
    throttle_rates(ingest_token="1/min")
    post_usage(owner_api, RECORD)
    stored = UsageRecord.objects.count()

    response = post_usage(owner_api, [{"model": "Flux", "count": 5, "id": "x-1"}, RECORD])

    assert response.status_code == 429
    assert response["Content-Type"].startswith("application/json")
    assert set(response.json()) >= {"error"} and response.json()["error"]
    assert response["Retry-After"] == str(clock.to_window_end(MINUTE)) == "30"
    assert UsageRecord.objects.count() == stored == 1
    assert not UsageRecord.objects.filter(model="Flux").exists()


def test_requests_refused_before_authentication_count_against_nothing(
    owner_api, client, throttle_rates
):
    throttle_rates(ingest="2/min", ingest_token="2/min")
    assert post_usage(client, RECORD).status_code == 401
    assert post_usage(Client(HTTP_AUTHORIZATION="Bearer usg_nonsense"), RECORD).status_code == 401

    assert statuses(owner_api, 3) == [201, 201, 429]


def test_plugin_generations_are_limited_per_user(
    upstream, owner_api, other_api, throttle_rates, clock
):
    throttle_rates(plugin="1/min")

    def generate(client):
        return client.post("/api/plugin/generate", {"prompt": "A word counter"}, format="json")

    assert generate(owner_api).status_code == 200
    refused = generate(owner_api)
    assert refused.status_code == 429
    assert refused.json()["error"]
    assert refused["Retry-After"] == str(clock.to_window_end(MINUTE))
    assert generate(other_api).status_code == 200
    assert PluginGeneration.objects.count() == 2


# --- A cache that is down --------------------------------------------------------------------


@pytest.fixture
def cache_down():
    """The cache is a Redis on a loopback port where nothing listens."""
    caches = redis_cache(f"redis://{HOST}:{free_port()}/0")
    # Not the settings fixture: the cache must be back before other fixtures' teardown
    # (upstream's) clears it.
    with override_settings(CACHES=caches):
        yield


def warnings_of(caplog, logger: str) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == logger and r.levelno == logging.WARNING
    ]


def test_with_the_cache_down_ingestion_is_allowed_stored_and_warned_about(
    owner, owner_api, cache_down, throttle_rates, caplog
):
    throttle_rates(ingest="1/min", ingest_token="1/min")
    with pytest.raises(redis.ConnectionError):  # the cache really is down
        cache.get("anything")

    with caplog.at_level("WARNING", logger="usage_site.cache"):
        codes = statuses(owner_api, 3)

    # Past both limits, and allowed: nothing could count them.
    assert codes == [201, 201, 201]
    assert UsageRecord.objects.filter(owner=owner).count() == 3
    # One failure, then the cache is left alone for a while instead of failing each time.
    [warning] = warnings_of(caplog, "usage_site.cache")
    assert "throttle ingest_token and ingest not counted, request allowed" in warning


def test_after_a_failure_the_cache_is_not_asked_again_for_a_few_seconds(
    owner_api, throttle_rates, monkeypatch
):
    throttle_rates(ingest="1/min", ingest_token="1/min")
    seconds = [1000.0]
    monkeypatch.setattr(site_cache, "time", SimpleNamespace(monotonic=lambda: seconds[0]))
    with override_settings(CACHES=redis_cache(f"redis://{HOST}:{free_port()}/0")):
        assert statuses(owner_api, 1) == [201]  # fails, and is let through

    # The cache works again, but is not asked until the pause is over: nothing is counted.
    assert statuses(owner_api, 3) == [201, 201, 201]
    seconds[0] += site_cache.SKIP_SECONDS
    assert statuses(owner_api, 2) == [201, 429]


def test_with_the_cache_down_plugin_generation_and_token_usage_still_answer(
    upstream, owner, owner_api, cache_down, throttle_rates, caplog
):
    throttle_rates(plugin="1/min")

    with caplog.at_level("WARNING"):
        generated = [
            owner_api.post("/api/plugin/generate", {"prompt": "A word counter"}, format="json")
            for _ in range(2)
        ]
        usage = owner_api.get("/api/user/token-usage")

    assert [response.status_code for response in generated] == [200, 200]
    assert all(response.json()["result"] for response in generated)
    assert PluginGeneration.objects.filter(user=owner).count() == 2
    assert usage.status_code == 200
    assert usage.json()["userId"] == "alice" and usage.json()["stale"] is False
    assert usage.json()["requestCount"] == 2  # from the upstream itself, no cached copy
    assert any("not counted" in line for line in warnings_of(caplog, "usage_site.cache"))


# --- Sign-in ---------------------------------------------------------------------------------

LOGIN_URL = "/accounts/login/"
ADMIN_LOGIN_URL = "/admin/login/"
PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-1", "carol": "carol-password-1"}


def sign_in(username: str, password: str | None = None, url: str = LOGIN_URL, **extra):
    """One attempt from a fresh browser; ``password`` None is a wrong one. (client, response)"""
    client = Client()
    wrong = f"not-{PASSWORDS.get(username, 'it')}"
    data = {"username": username, "password": password or wrong}
    if url == ADMIN_LOGIN_URL:
        data["next"] = "/admin/"
    return client, client.post(url, data, **extra)


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def attempt_statuses(username: str, count: int, **extra) -> list[int]:
    return [sign_in(username, **extra)[1].status_code for _ in range(count)]


def assert_too_many(response) -> None:
    """429, Retry-After to the end of the (frozen) hour, and the page says how long."""
    assert response.status_code == 429
    retry_after = int(response["Retry-After"])
    assert retry_after == Clock(T0).to_window_end(HOUR) == 1170
    minutes = math.ceil(retry_after / 60)
    plural = "" if minutes == 1 else "s"
    message = f"Too many failed sign-ins. Try again in {minutes} minute{plural}."
    assert message in response.content.decode()


def test_past_the_accounts_limit_even_the_right_password_is_refused(owner, throttle_rates):
    throttle_rates(login="3/hour", login_address="100/hour")

    assert attempt_statuses("alice", 3) == [200, 200, 200]  # the form, saying "incorrect"
    client, response = sign_in("alice", PASSWORDS["alice"])

    assert_too_many(response)
    assert not signed_in(client)
    assert client.get("/dashboard/").status_code == 302


def test_the_account_can_sign_in_again_when_the_hour_is_over(owner, throttle_rates, clock):
    throttle_rates(login="1/hour", login_address="100/hour")
    sign_in("alice")
    assert_too_many(sign_in("alice", PASSWORDS["alice"])[1])

    clock.now += clock.to_window_end(HOUR)
    client, response = sign_in("alice", PASSWORDS["alice"])

    assert response.status_code == 302 and signed_in(client)


def test_a_successful_sign_in_gives_its_attempt_back(owner, throttle_rates):
    throttle_rates(login="3/hour", login_address="100/hour")
    assert attempt_statuses("alice", 2) == [200, 200]

    client, response = sign_in("alice", PASSWORDS["alice"])
    assert response.status_code == 302 and signed_in(client)

    # Only the failures count: a third one is still within the limit, a fourth is not.
    assert attempt_statuses("alice", 1) == [200]
    _, refused = sign_in("alice", PASSWORDS["alice"])
    assert_too_many(refused)


def test_other_accounts_from_the_same_address_get_in_until_the_address_limit(
    owner, other, staff, throttle_rates
):
    throttle_rates(login="2/hour", login_address="4/hour")
    assert attempt_statuses("alice", 2) == [200, 200]
    assert_too_many(sign_in("alice")[1])  # address: 3 attempts

    client, response = sign_in("bob", PASSWORDS["bob"])  # address: 4, given back to 3
    assert response.status_code == 302 and signed_in(client)
    assert attempt_statuses("bob", 1) == [200]  # address: 4

    client, response = sign_in("bob", PASSWORDS["bob"])
    assert_too_many(response)
    assert not signed_in(client)
    # The limit is that address's: from elsewhere, an account with attempts left gets in.
    assert_too_many(sign_in("carol", PASSWORDS["carol"])[1])
    client, response = sign_in("carol", PASSWORDS["carol"], REMOTE_ADDR="198.51.100.20")
    assert response.status_code == 302 and signed_in(client)


def test_names_that_do_not_exist_count_against_the_address_too(owner, throttle_rates):
    throttle_rates(login="100/hour", login_address="3/hour")
    for name in ("admin", "root", "test"):
        sign_in(name)

    client, response = sign_in("alice", PASSWORDS["alice"])

    assert_too_many(response)
    assert not signed_in(client)


def test_a_forged_x_forwarded_for_does_not_move_the_address_without_trusted_proxies(
    owner, throttle_rates, proxies
):
    proxies(0)
    throttle_rates(login="100/hour", login_address="3/hour")
    for n in range(3):
        sign_in(f"guess-{n}", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}")

    client, response = sign_in("alice", PASSWORDS["alice"], HTTP_X_FORWARDED_FOR="203.0.113.99")

    assert_too_many(response)
    assert not signed_in(client)


def test_behind_one_trusted_proxy_the_right_most_forwarded_address_is_counted(
    owner, throttle_rates, proxies
):
    proxies(1)
    throttle_rates(login="100/hour", login_address="3/hour")
    proxy = {"REMOTE_ADDR": "10.0.0.1"}
    # The client forges the left-hand part; the proxy appends the address it saw.
    for n in range(3):
        sign_in(f"guess-{n}", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}, 203.0.113.7", **proxy)

    forged = "192.0.2.99, 203.0.113.7"
    client, response = sign_in("alice", PASSWORDS["alice"], HTTP_X_FORWARDED_FOR=forged, **proxy)
    assert_too_many(response)
    assert not signed_in(client)
    # Another client behind the same proxy is not the attacker.
    client, response = sign_in(
        "alice", PASSWORDS["alice"], HTTP_X_FORWARDED_FOR="203.0.113.8", **proxy
    )
    assert response.status_code == 302 and signed_in(client)


def test_naming_the_account_by_username_or_by_email_address_counts_against_one_limit(
    owner, throttle_rates
):
    throttle_rates(login="3/hour", login_address="100/hour")
    EmailAddress.objects.create(user=owner, email="alice@example.com", verified=True, primary=True)
    client, response = sign_in("Alice@Example.com", PASSWORDS["alice"])  # any case
    assert response.status_code == 302 and signed_in(client)
    sign_in("alice")
    sign_in("Alice@Example.com")
    sign_in("ALICE")

    assert_too_many(sign_in("alice@example.com", PASSWORDS["alice"])[1])
    assert_too_many(sign_in("alice", PASSWORDS["alice"])[1])


def test_the_admin_login_counts_and_refuses_with_the_same_limits(staff, throttle_rates):
    throttle_rates(login="3/hour", login_address="100/hour")
    client, response = sign_in("carol", PASSWORDS["carol"], url=ADMIN_LOGIN_URL)
    assert response.status_code == 302 and signed_in(client)

    # Failures on either form count for both.
    sign_in("carol", url=ADMIN_LOGIN_URL)
    sign_in("carol")
    sign_in("carol", url=ADMIN_LOGIN_URL)
    client, response = sign_in("carol", PASSWORDS["carol"], url=ADMIN_LOGIN_URL)

    assert response.status_code == 200  # the admin's usual form, with its error
    assert "Please enter the correct username and password" in response.content.decode()
    assert not signed_in(client)
    assert client.get("/admin/").status_code == 302
    assert_too_many(sign_in("carol", PASSWORDS["carol"])[1])


def test_the_test_clients_login_passes_no_request_and_is_not_limited(owner, throttle_rates):
    throttle_rates(login="1/hour", login_address="1/hour")
    attempt_statuses("alice", 2)

    assert Client().login(username="alice", password=PASSWORDS["alice"])


# --- Token creation --------------------------------------------------------------------------


def test_creating_tokens_past_the_limit_gets_429_and_creates_none(
    owner, other, throttle_rates, clock
):
    throttle_rates(token_create="2/hour")
    client = Client()
    client.force_login(owner)

    codes = [client.post("/dashboard/tokens/", {"name": f"App {n}"}).status_code for n in range(2)]
    refused = client.post("/dashboard/tokens/", {"name": "App 3"})

    assert codes == [303, 303]
    assert refused.status_code == 429
    retry_after = int(refused["Retry-After"])
    assert retry_after == clock.to_window_end(HOUR)
    minutes = math.ceil(retry_after / 60)
    page = refused.content.decode()
    assert f"Too many tokens created recently. Try again in {minutes} minute(s)." in page
    assert 'data-testid="new-token"' not in page
    assert sorted(ApiToken.objects.filter(owner=owner).values_list("name", flat=True)) == [
        "App 0",
        "App 1",
    ]
    # Another user's allowance is their own.
    bob = Client()
    bob.force_login(other)
    assert bob.post("/dashboard/tokens/", {"name": "Bob's"}).status_code == 303
