"""No loss, no duplicates under faults: 20 000 records from the desktop client, twice broken.

The client is the real one from ``examples/`` (tests/electron/bulk-sender.js, in a Node
process: its queue file on disk, batches, backoff, Retry-After, event ids). It tracks
records at a steady pace, as an app generating images would, and sends them to a production
server (gunicorn, DEBUG off) on a PostgreSQL database of its own (tests/production_site.py).
While it sends, a fault hits twice, each time while a batch is in flight: PostgreSQL
stopped with ``pg_ctl stop -m immediate`` and started again, or gunicorn killed (SIGKILL to
the master and its workers) and started again on the same port. Once the client's queue is
empty, the records in the database are exactly the ones it tracked (same event ids, each
once, same models, counts and times), and the summary API's totals add up to them.

The figures each run measures are printed (``pytest -s`` shows them).
"""

import json
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from django.db import connections

from tests.live_server import PROJECT, poll
from tests.production_site import (
    UNTHROTTLED,
    Cluster,
    Gunicorn,
    own_database,
    prepare_site,
    require_cluster,
    serving,
    stored_records,
)

pytestmark = pytest.mark.slow

SENDER = PROJECT / "tests" / "electron" / "bulk-sender.js"
RECORDS = 20_000
PER_SECOND = 1_500  # records the app tracks a second: about 13 s of tracking
FAULTS_AT = (0.3, 0.65)  # the share of records stored when each fault begins
MIN_OUTAGE_SECONDS = 1.5  # each fault lasts at least this long, and until the client saw it
RUN_SECONDS = 180  # a run that has not drained by then has failed


class Sender:
    """The Node process running the tracker; its events, read as they come."""

    def __init__(self, base_url: str, token: str, folder: Path):
        self.sent_file = folder / "sent.jsonl"
        self.log = folder / "sender.log"
        argv = ["node", str(SENDER), base_url, token, str(folder / "app")]
        argv += [str(RECORDS), str(PER_SECOND), str(self.sent_file)]
        self.started = time.monotonic()
        with open(self.log, "wb") as stderr:
            self.process = subprocess.Popen(
                argv, cwd=PROJECT, stdout=subprocess.PIPE, stderr=stderr, text=True
            )
        self.events: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            event = json.loads(line)
            event["at"] = time.monotonic()
            self.events.append(event)

    def answers(self, since: int = 0) -> list[dict]:
        return [event for event in self.events[since:] if event["event"] == "answer"]

    def accepted(self) -> int:
        return sum(answer.get("accepted") or 0 for answer in self.answers())

    def post_in_flight(self) -> int | None:
        """The number of the batch sent and not yet answered, if there is one."""
        posted = [event["n"] for event in self.events if event["event"] == "post"]
        answered = {answer["n"] for answer in self.answers()}
        pending = [n for n in posted if n not in answered]
        return pending[-1] if pending else None

    def failures_since(self, mark: int) -> int:
        return sum(1 for answer in self.answers(mark) if not is_success(answer))

    def retries(self) -> list[dict]:
        return [event for event in self.events if event["event"] == "retry"]

    def event(self, kind: str) -> dict | None:
        return next((event for event in self.events if event["event"] == kind), None)

    def wait_for(self, check: Callable[[], bool], what: str) -> None:
        remaining = RUN_SECONDS - (time.monotonic() - self.started)
        poll(lambda: self._alive() and check(), max(remaining, 1), what, self.log)

    def _alive(self) -> bool:
        if self.process.poll() is not None and not self.event("drained"):
            self._reader.join(timeout=5)
            pytest.fail(f"the sender exited early: {self.events[-5:]}\n{self.log.read_text()}")
        return True

    def wait_drained(self) -> dict:
        self.wait_for(lambda: self.event("drained") is not None, "the client's queue to drain")
        assert self.process.wait(timeout=30) == 0, self.log.read_text()
        self._reader.join(timeout=5)
        return self.event("drained")

    def sent(self) -> list[dict]:
        return [json.loads(line) for line in self.sent_file.read_text().splitlines()]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


def is_success(answer: dict) -> bool:
    return answer["status"] is not None and answer["status"] < 300


@dataclass
class Outage:
    seconds: float
    in_flight: int | None  # the batch in flight when the fault began (None: answered since)
    in_flight_answer: str = "?"


def outage(sender: Sender, batch: int | None, break_it: Callable, mend_it: Callable) -> Outage:
    """Break the site, keep it broken until the client has noticed, and mend it."""
    mark = len(sender.events)
    began = time.monotonic()
    break_it()
    try:
        sender.wait_for(lambda: sender.failures_since(mark) > 0, "the client to see the fault")
        time.sleep(max(0.0, MIN_OUTAGE_SECONDS - (time.monotonic() - began)))
    finally:
        mend_it()
    return Outage(time.monotonic() - began, batch)


def break_twice(sender: Sender, break_it: Callable, mend_it: Callable) -> list[Outage]:
    outages = []
    for share in FAULTS_AT:
        sender.wait_for(
            lambda share=share: (
                sender.accepted() >= share * RECORDS and sender.post_in_flight() is not None
            ),
            f"{share:.0%} of the records stored and a batch in flight",
        )
        outages.append(outage(sender, sender.post_in_flight(), break_it, mend_it))
    return outages


@pytest.fixture(scope="module")
def database() -> Iterator[tuple[str, dict[str, list[str]]]]:
    require_cluster()
    with own_database("faults") as url:
        yield url, prepare_site(url, {"dana": 1, "erin": 1})


@pytest.fixture
def server(database, tmp_path) -> Iterator[Gunicorn]:
    with serving(database[0], tmp_path, UNTHROTTLED) as (server,):
        yield server


@pytest.fixture
def sender_for(tmp_path) -> Iterator[Callable[[Gunicorn, str], Sender]]:
    senders = []

    def start(server: Gunicorn, token: str) -> Sender:
        senders.append(Sender(f"http://127.0.0.1:{server.port}", token, tmp_path))
        return senders[-1]

    yield start
    for sender in senders:
        sender.stop()


def test_records_survive_two_database_crashes_exactly_once(database, server, sender_for):
    database_url, tokens = database
    cluster = Cluster()
    sender = sender_for(server, tokens["dana"][0])
    try:
        outages = break_twice(sender, cluster.crash, cluster.start)
    finally:
        cluster.ensure_running()
        # This process's own connections (pytest-django's) died with the server.
        connections.close_all()
    drained = sender.wait_drained()

    report("PostgreSQL stopped (immediate) and started, twice", sender, outages, drained)
    # While the database was down: 503s with a Retry-After that the client waited out.
    assert {answer["status"] for answer in sender.answers()} == {201, 503}
    assert {retry["kind"] for retry in sender.retries()} == {"wait"}
    assert_stored_exactly(database_url, "dana", sender.sent())
    assert_summary_adds_up(server, tokens["dana"][0], sender.sent())
    assert server.process.poll() is None  # the same gunicorn throughout: it recovered alone


def test_records_survive_two_server_kills_exactly_once(database, server, sender_for):
    database_url, tokens = database
    sender = sender_for(server, tokens["erin"][0])
    outages = break_twice(sender, server.kill, server.start)
    drained = sender.wait_drained()

    report(
        "gunicorn killed (SIGKILL, master and workers) and restarted, twice",
        sender,
        outages,
        drained,
    )
    # While the server was gone: connections refused or cut, never an error answer.
    assert {answer["status"] for answer in sender.answers()} == {201, None}
    assert_stored_exactly(database_url, "erin", sender.sent())
    assert_summary_adds_up(server, tokens["erin"][0], sender.sent())


def assert_stored_exactly(database_url: str, username: str, sent: list[dict]) -> None:
    stored = stored_records(database_url, username)
    expected = {
        record["id"]: (record["model"], record["imageCount"], parse_time(record["timestamp"]))
        for record in sent
    }
    found = {row.event_id: (row.model, row.image_count, row.occurred_at) for row in stored}

    assert len(sent) == len(expected) == RECORDS  # the client made every record, ids unique
    assert len(stored) == len(found)  # no event id stored twice
    assert found.keys() - expected.keys() == set()
    assert expected.keys() - found.keys() == set()
    assert found == expected


def assert_summary_adds_up(server: Gunicorn, token: str, sent: list[dict]) -> None:
    summary = server.get("/api/model-usage/summary", token=token).json()
    per_model = Counter()
    events = Counter()
    for record in sent:
        per_model[record["model"]] += record["imageCount"]
        events[record["model"]] += 1

    totals = summary["totals"]
    assert (totals["images"], totals["events"]) == (sum(per_model.values()), len(sent))
    assert {m["model"]: (m["images"], m["events"]) for m in summary["models"]} == {
        model: (per_model[model], events[model]) for model in per_model
    }


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def report(title: str, sender: Sender, outages: list[Outage], drained: dict) -> None:
    answers = sender.answers()
    by_n = {answer["n"]: answer for answer in answers}
    for fault in outages:
        answer = by_n.get(fault.in_flight, {})
        fault.in_flight_answer = str(answer.get("status") or answer.get("error") or "?")
    statuses = Counter(str(answer["status"] or answer["error"]) for answer in answers)
    retries = sender.retries()
    tracked = sender.event("tracked")
    print(f"\n{title}")
    print(f"  records {RECORDS}, batches sent {len(answers)}, answers {dict(statuses)}")
    print(
        f"  stored per answers: accepted {sender.accepted()}, "
        f"duplicates {sum(a.get('duplicates') or 0 for a in answers)}"
    )
    for n, fault in enumerate(outages, 1):
        print(
            f"  fault {n}: lasted {fault.seconds:.2f} s; batch {fault.in_flight} was in flight "
            f"and got {fault.in_flight_answer}"
        )
    print(f"  retries scheduled {len(retries)} ({dict(Counter(r['kind'] for r in retries))})")
    print(
        f"  tracking {tracked['seconds']:.1f} s, drained {drained['drainSeconds']:.1f} s later, "
        f"run {drained['seconds']:.1f} s"
    )
