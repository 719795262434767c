"""Budget alerts end to end, on real processes: records posted to a gunicorn server cross
a budget's thresholds; two background workers (``manage.py run_huey``, as ``./dev.py run``
starts one) send one email per threshold to a real SMTP server and one signed webhook to a
real HTTP receiver that fails the first attempts on purpose; a worker killed mid-delivery
is replaced, and the delivery arrives again with the same event id.

The site has a database of its own: a SQLite file, or a database on the suite's PostgreSQL
cluster when the suite runs on PostgreSQL.
"""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings

from tests.live_server import (
    HOST,
    PROJECT,
    Server,
    free_port,
    gunicorn,
    manage,
    poll,
    site_env,
)
from tests.mail_server import MailServer, body_of
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.slow

# Sweeps every second; a webhook waits 8 s for its answer, and a delivery whose worker
# died is sent again 10 s after that worker took it; retries after half a second.
WORKER_ENV = {
    "BUDGET_SWEEP_SECONDS": "1",
    "WEBHOOK_TIMEOUT_SECONDS": "8",
    "DELIVERY_LEASE_SECONDS": "10",
    "DELIVERY_RETRY_BASE_SECONDS": "0.5",
    "WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "1",  # the receiver is on loopback
    "WORKER_THREADS": "4",
    "ROLLUP_FOLD_SECONDS": "1",
}
MINUTE = 60.0


def price_change_in_this_month() -> tuple[datetime, str]:
    """A quarter hour an hour ago, when SDXL's price goes from 0.10 to 0.20, and a zone
    whose current month began well before it (UTC, unless its month began just now)."""
    now = datetime.now(UTC)
    change = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    change -= timedelta(hours=1)
    month_began = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return change, "UTC" if change - timedelta(hours=1) > month_began else "Etc/GMT+12"


PREPARE = """
import json
from datetime import datetime
from decimal import Decimal
from django.contrib.auth import get_user_model
from django.core.management import call_command
from usage import budgets
from usage.models import ModelPrice
from usage.tokens import create_token
call_command("migrate", verbosity=0)
setup = json.loads(%r)
for model, price, valid_from in setup["prices"]:
    ModelPrice.objects.create(model=model, price_per_image=Decimal(price),
                              valid_from=datetime.fromisoformat(valid_from))
out = {}
for name, (unit, limit, zone) in setup["budgets"].items():
    user = get_user_model().objects.create_user(name, f"{name}@example.com")
    budget = budgets.save_budget(user, unit=unit, limit=Decimal(limit), thresholds=[50, 100],
                                 time_zone=zone, webhook_url=setup["webhook"])
    out[name] = {"token": create_token(user, "app").raw, "secret": budget.webhook_secret}
print(json.dumps(out))
"""

LOG = """
import json
from usage.models import Delivery
rows = Delivery.objects.filter(owner__username=%r).order_by("pk")
print(json.dumps([
    {"event_id": str(d.event_id), "channel": d.channel, "status": d.status,
     "threshold": d.alert.threshold if d.alert else None,
     "attempts": list(d.attempt_log.order_by("number").values_list("number", "outcome"))}
    for d in rows
]))
"""


@dataclass
class Site:
    database_url: str
    folder: Path
    server: Server
    mail: MailServer
    hooks: WebhookReceiver
    users: dict[str, dict]
    price_change: datetime
    workers: list[subprocess.Popen] = field(default_factory=list)

    def worker_env(self) -> dict[str, str]:
        env = site_env(self.database_url, **WORKER_ENV, **self.mail.environment())
        env["HUEY_FILE"] = str(self.folder / "queue.sqlite3")
        return env

    def start_worker(self) -> subprocess.Popen:
        log = open(self.folder / f"worker-{len(self.workers)}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "manage.py", "run_huey"],
            cwd=PROJECT,
            env=self.worker_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.workers.append(process)
        return process

    def stop_workers(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                process.terminate()
        for process in self.workers:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.workers.clear()

    def post(self, user: str, images: int, when: datetime | None = None) -> None:
        body = [{"model": "SDXL", "imageCount": images}]
        if when:
            body[0]["timestamp"] = when.isoformat()
        reply = self.server.post_usage(self.users[user]["token"], body)
        assert reply.status == 201, reply.body[:300]

    def deliveries(self, user: str) -> list[dict]:
        output = manage(self.database_url, "shell", "--no-imports", "-c", LOG % user)
        return json.loads(output.strip().splitlines()[-1])

    def worker_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in self.folder.glob("w*.log"))


@contextmanager
def site_database(folder: Path) -> Iterator[str]:
    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        from tests.production_site import own_database, require_cluster

        require_cluster()
        with own_database("budget_worker") as url:
            yield url
    else:
        yield f"sqlite:///{folder / 'site.sqlite3'}"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("budget-worker")
    mail, hooks = MailServer().start(), WebhookReceiver().start()
    try:
        with site_database(folder) as database_url:
            change, zone = price_change_in_this_month()
            setup = {
                "prices": [
                    ("SDXL", "0.10", "2000-01-01T00:00:00+00:00"),
                    ("SDXL", "0.20", change.isoformat()),
                ],
                # alice: 100.00 of money a month; the others: 100 images.
                "budgets": {
                    "alice": ("money", "100", zone),
                    "kim": ("images", "100", "UTC"),
                    "lou": ("images", "100", "UTC"),
                },
                "webhook": hooks.url,
            }
            output = manage_with(database_url, PREPARE % json.dumps(setup))
            users = json.loads(output.strip().splitlines()[-1])
            with gunicorn(database_url, folder / "gunicorn.log", env=WORKER_ENV) as server:
                site = Site(database_url, folder, server, mail, hooks, users, change)
                try:
                    yield site
                finally:
                    site.stop_workers()
    finally:
        hooks.stop()
        mail.stop()


def manage_with(database_url: str, code: str) -> str:
    # Budgets with loopback webhooks are saved with the setting that allows them.
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
        cwd=PROJECT,
        env=site_env(database_url, **WORKER_ENV),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def for_user(received, user: str) -> list:
    return [r for r in received if r.body and r.body["data"].get("user") == user]


def test_two_workers_send_one_email_and_one_verified_webhook_per_threshold(site):
    site.hooks.secret = site.users["alice"]["secret"]
    site.hooks.reset(fail_first=2)  # the first two attempts answered 500
    site.start_worker()
    site.start_worker()
    before = site.price_change - timedelta(minutes=30)  # at 0.10 an image

    site.post("alice", 250, before)  # 25.00 of 100.00: below every threshold
    site.post("alice", 260, before)  # 51.00: crosses 50%
    crossed_at = time.monotonic()
    site.hooks.wait_for(lambda r: len([x for x in r if x.answered == 200]) >= 1, MINUTE)
    [fifty] = site.mail.wait_for(1, timeout=MINUTE - (time.monotonic() - crossed_at))
    print(f"50%: email and webhook {time.monotonic() - crossed_at:.1f} s after the post")
    assert fifty["To"] == "alice@example.com"
    assert fifty["Subject"].startswith("50% of your")
    assert "You have spent USD 51.00 of your USD 100.00 budget" in body_of(fifty)

    # 250 more at the new price of 0.20: 101.00, over 100%. At the old price the month
    # would stand at 76.00; at the new price for all, the 50% alert would have said 102.00.
    site.post("alice", 250)
    crossed_at = time.monotonic()
    site.hooks.wait_for(lambda r: len([x for x in r if x.answered == 200]) >= 2, MINUTE)
    [_, hundred] = site.mail.wait_for(2, timeout=MINUTE - (time.monotonic() - crossed_at))
    print(f"100%: email and webhook {time.monotonic() - crossed_at:.1f} s after the post")
    assert "You have spent USD 101.00 of your USD 100.00 budget" in body_of(hundred)

    # Another user's alert afterwards: by the time it arrives both workers have swept
    # again and again since alice's, and sent nothing more for her.
    site.hooks.secret = site.users["lou"]["secret"]
    site.post("lou", 60)
    site.hooks.wait_for(lambda r: for_user([x for x in r if x.answered == 200], "lou"), MINUTE)
    site.mail.wait_for(3, timeout=MINUTE)

    alice = for_user(site.hooks.received, "alice")
    accepted = [r for r in alice if r.answered == 200]
    assert [r.body["data"]["threshold"] for r in accepted] == [50, 100]
    assert [r.body["data"]["used"] for r in accepted] == ["51.00", "101.00"]
    assert {(r.body["data"]["unit"], r.body["data"]["currency"]) for r in accepted} == {
        ("money", "USD")
    }
    assert all(r.signature_ok for r in alice)
    assert all(r.event_id == r.body["id"] for r in alice)
    # The failed attempts were the same event as the one that then arrived.
    assert [r.answered for r in alice[:3]] == [500, 500, 200]
    assert {r.event_id for r in alice[:3]} == {accepted[0].event_id}
    subjects = [m["Subject"] for m in site.mail.to("alice@example.com")]
    assert [s.split("%")[0] for s in subjects] == ["50", "100"]
    log = site.deliveries("alice")
    assert sorted((d["channel"], d["threshold"], d["status"]) for d in log) == [
        ("email", 50, "delivered"),
        ("email", 100, "delivered"),
        ("webhook", 50, "delivered"),
        ("webhook", 100, "delivered"),
    ]
    webhook_50 = next(d for d in log if d["channel"] == "webhook" and d["threshold"] == 50)
    assert [outcome for _, outcome in webhook_50["attempts"]] == ["failed", "failed", "ok"]


def test_a_worker_killed_mid_delivery_is_replaced_and_the_event_resent(site):
    site.stop_workers()
    site.hooks.secret = site.users["kim"]["secret"]
    # Hold the next request open: the worker is killed while it waits for the answer.
    site.hooks.reset(hold_first=True)
    first = site.start_worker()

    site.post("kim", 50)
    poll(site.hooks.held.is_set, MINUTE, "no webhook held")
    first.send_signal(signal.SIGKILL)
    first.wait()
    site.start_worker()

    received = site.hooks.wait_for(lambda r: any(x.answered == 200 for x in r), MINUTE)
    held, resent = received[0], next(r for r in received if r.answered == 200)
    assert held.answered is None
    assert resent.event_id == held.event_id
    assert resent.body == held.body
    assert resent.signature_ok
    poll(
        lambda: any(
            d["status"] == "delivered" for d in site.deliveries("kim") if d["channel"] == "webhook"
        ),
        MINUTE,
        "the delivery log does not show the delivery",
    )
    [webhook] = [d for d in site.deliveries("kim") if d["channel"] == "webhook"]
    assert webhook["event_id"] == held.event_id
    assert [outcome for _, outcome in webhook["attempts"]] == ["interrupted", "ok"]
    assert len(site.deliveries("kim")) == 2  # one email, one webhook


def test_the_production_server_starts_a_worker_that_sends_alerts(tmp_path):
    """``./dev.py serve`` as documented: the front, gunicorn and a worker, with no extra step."""
    hooks, mail = WebhookReceiver().start(), MailServer().start()
    try:
        with site_database(tmp_path) as database_url:
            setup = {
                "prices": [],
                "budgets": {"sam": ("images", "10", "UTC")},
                "webhook": hooks.url,
            }
            users = json.loads(
                manage_with(database_url, PREPARE % json.dumps(setup)).strip().splitlines()[-1]
            )
            hooks.secret = users["sam"]["secret"]
            env = {**WORKER_ENV, **mail.environment(), "HUEY_FILE": str(tmp_path / "q.sqlite3")}
            with dev_serve(database_url, tmp_path / "serve.log", env) as server:
                body = json.dumps([{"model": "SDXL", "imageCount": 5}]).encode()
                headers = {
                    "Authorization": f"Bearer {users['sam']['token']}",
                    "Content-Type": "application/json",
                }
                assert server.request("POST", "/api/model-usage", body, headers).status == 201
                [received] = hooks.wait_for(lambda r: len(r) >= 1, MINUTE)
                assert received.signature_ok and received.body["data"]["threshold"] == 50
                [message] = mail.wait_for(1, timeout=MINUTE)
                assert message["To"] == "sam@example.com"
    finally:
        hooks.stop()
        mail.stop()


@contextmanager
def dev_serve(database_url: str, log: Path, env: dict[str, str]) -> Iterator[Server]:
    port = free_port()
    full_env = site_env(database_url, WEB_CONCURRENCY="1", BIND=f"{HOST}:{port}", **env)
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
        poll(lambda: server.answers("/api/health/simple", 200), 120, "no answer", log)
        yield server
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
