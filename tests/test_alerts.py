"""usage.alerts and usage.deliveries: one alert per threshold per month, its email and
webhook sent (to a real SMTP server and a real HTTP receiver), retried, logged, leased."""

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from tests.conftest import make_record
from tests.mail_server import body_of
from tests.webhook_receiver import webhook_receiver  # noqa: F401 - the fixture
from usage import alerts, budgets, deliveries
from usage.models import BudgetAlert, Delivery, DeliveryAttempt


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


NOW = at("2026-12-11T00:00:00")


def budget_for(
    user, limit=100, thresholds=(50, 80, 100), webhook_url="", created=None, unit="images"
):
    budget = budgets.save_budget(
        user,
        unit=unit,
        limit=limit,
        thresholds=list(thresholds),
        time_zone="UTC",
        webhook_url=webhook_url,
    )
    if created:
        budget.created_at = created
        budget.save(update_fields=["created_at"])
    return budget


@pytest.fixture
def hooks(settings, webhook_receiver):  # noqa: F811
    """Webhooks to the loopback receiver, retried after a tenth of a second."""
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    settings.DELIVERY_RETRY_BASE_SECONDS = 0.1
    return webhook_receiver


def test_each_crossed_threshold_is_alerted_once(owner):
    budget_for(owner, created=at("2026-10-01T00:00:00"))
    make_record(owner, at("2026-12-02T10:00:00"), images=85)
    first = alerts.check_budgets(NOW)
    assert sorted(a.threshold for a in first) == [50, 80]
    assert alerts.check_budgets(NOW) == []
    make_record(owner, at("2026-12-03T10:00:00"), images=15)
    assert [a.threshold for a in alerts.check_budgets(NOW)] == [100]
    assert BudgetAlert.objects.filter(owner=owner).count() == 3


def test_an_alert_records_the_month_and_the_amounts(owner):
    budget_for(owner, limit=200)
    make_record(owner, at("2026-12-02T10:00:00"), images=120)
    [alert] = alerts.check_budgets(NOW)
    assert (alert.month, alert.threshold, alert.unit, alert.used, alert.limit) == (
        date(2026, 12, 1),
        50,
        "images",
        120,
        200,
    )


def test_no_alert_below_the_lowest_threshold_or_for_other_users(owner, other):
    budget_for(owner)
    make_record(owner, at("2026-12-02T10:00:00"), images=49)
    make_record(other, at("2026-12-02T10:00:00"), images=1000)
    assert alerts.check_budgets(NOW) == []


def test_a_late_record_alerts_the_month_it_happened_in(owner):
    budget_for(owner, created=at("2026-11-01T00:00:00"))
    make_record(owner, at("2026-11-29T10:00:00"), images=60, received_at=NOW)
    [alert] = alerts.check_budgets(NOW)
    assert (alert.month, alert.threshold) == (date(2026, 11, 1), 50)


def test_a_budget_set_this_month_does_not_alert_last_month(owner):
    budget_for(owner, created=at("2026-12-05T00:00:00"))
    make_record(owner, at("2026-11-29T10:00:00"), images=100)
    assert alerts.check_budgets(NOW) == []


def test_an_alert_creates_an_email_and_a_webhook_delivery(owner, hooks):
    budget_for(owner, webhook_url=hooks.url)
    make_record(owner, at("2026-12-02T10:00:00"), images=50)
    [alert] = alerts.check_budgets(NOW)
    by_channel = {d.channel: d for d in alert.deliveries.all()}
    assert set(by_channel) == {"email", "webhook"}
    assert by_channel["email"].target == owner.email
    assert by_channel["email"].event_id != by_channel["webhook"].event_id
    assert by_channel["webhook"].payload["data"] | {"percent": "50.0"} == {
        "user": "alice",
        "month": "2026-12",
        "timeZone": "UTC",
        "threshold": 50,
        "unit": "images",
        "currency": None,
        "limit": 100,
        "used": 50,
        "left": 50,
        "percent": "50.0",
        "forecast": by_channel["webhook"].payload["data"]["forecast"],
        "images": 50,
        "unpricedImages": 50,
    }


def test_a_money_budget_alerts_on_what_the_images_cost(owner, mail_server):
    from decimal import Decimal

    from usage.models import ModelPrice

    budget_for(owner, limit=Decimal("10"), unit="money")
    ModelPrice.objects.create(
        model="SD", price_per_image=Decimal("0.10"), valid_from=at("2026-11-01T00:00:00")
    )
    ModelPrice.objects.create(
        model="SD", price_per_image=Decimal("0.50"), valid_from=at("2026-12-05T00:00:00")
    )
    make_record(owner, at("2026-12-02T10:00:00"), images=45)  # 4.50: under 50%
    assert alerts.check_budgets(NOW) == []
    make_record(owner, at("2026-12-06T10:00:00"), images=1)  # 5.00 with the new price
    [alert] = alerts.check_budgets(NOW)
    assert (alert.threshold, alert.unit, alert.used, alert.limit) == (50, "money", 5, 10)
    deliveries.send(Delivery.objects.get(channel="email").pk)
    [message] = mail_server.wait_for(1)
    assert "You have spent USD 5.00 of your USD 10.00 budget for 2026-12 (50.0%)" in body_of(
        message
    )


def test_a_user_without_an_email_address_gets_only_the_webhook(owner, hooks):
    owner.email = ""
    owner.save()
    budget_for(owner, webhook_url=hooks.url)
    make_record(owner, at("2026-12-02T10:00:00"), images=50)
    [alert] = alerts.check_budgets(NOW)
    assert [d.channel for d in alert.deliveries.all()] == ["webhook"]


def test_a_worker_that_loses_the_race_inserts_no_alert_and_no_delivery(owner, hooks):
    budget = budget_for(owner, webhook_url=hooks.url)
    make_record(owner, at("2026-12-02T10:00:00"), images=50)
    status = budgets.status_of(budget, NOW)  # read before the other worker's insert
    alerts.check_budgets(NOW)  # the other worker
    assert alerts.alert_crossed(status, NOW) == []
    assert alerts.insert_alert(status, 50, NOW) is None
    assert BudgetAlert.objects.count() == 1
    assert Delivery.objects.count() == 2


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="the test database of SQLite is in memory, where threads lock whole tables; "
    "two worker processes race on a SQLite file in tests/test_budget_worker.py",
)
@pytest.mark.django_db(transaction=True)
def test_workers_checking_at_once_insert_each_alert_and_delivery_once(owner, hooks):
    budget_for(owner, webhook_url=hooks.url)
    make_record(owner, at("2026-12-02T10:00:00"), images=100)
    workers = 6
    start = threading.Barrier(workers)
    created: list[list[BudgetAlert]] = []
    errors: list[BaseException] = []

    def check() -> None:
        start.wait()
        try:
            created.append(alerts.check_budgets(NOW))
        except BaseException as error:
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=check) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(a.threshold for batch in created for a in batch) == [50, 80, 100]
    assert BudgetAlert.objects.count() == 3
    assert Delivery.objects.filter(channel="email").count() == 3
    assert Delivery.objects.filter(channel="webhook").count() == 3


def test_a_sent_delivery_reaches_the_smtp_server_and_the_receiver(owner, hooks, mail_server):
    budget = budget_for(owner, webhook_url=hooks.url)
    hooks.secret = budget.webhook_secret
    make_record(owner, at("2026-12-02T10:00:00"), images=50)
    alerts.check_budgets(NOW)
    for delivery_id in deliveries.due(timezone.now()):
        assert deliveries.send(delivery_id) == "ok"
    [message] = mail_server.wait_for(1)
    assert message["Subject"] == "50% of your 2026-12 budget used"
    assert "You have used 50 of your 100 images" in body_of(message)
    [received] = hooks.received
    webhook = Delivery.objects.get(channel="webhook")
    assert received.signature_ok
    assert received.event_id == str(webhook.event_id) == received.body["id"]
    assert received.body["data"]["used"] == 50
    assert set(Delivery.objects.values_list("status", flat=True)) == {"delivered"}
    assert message["X-Usage-Event-Id"] == str(Delivery.objects.get(channel="email").event_id)


def test_a_failed_attempt_is_logged_and_retried_with_the_same_event(owner, hooks):
    budget = budget_for(owner, webhook_url=hooks.url)
    hooks.secret, hooks.fail_first = budget.webhook_secret, 2
    delivery = deliveries.test_event(budget)
    assert deliveries.send(delivery.pk) == "failed"
    delivery.refresh_from_db()
    assert delivery.status == "pending"
    assert deliveries.send(delivery.pk) is None  # not due yet: the backoff
    for _ in range(2):
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        deliveries.send(delivery.pk)
    delivery.refresh_from_db()
    log = list(delivery.attempt_log.values_list("number", "outcome", "response_code"))
    assert log == [(1, "failed", 500), (2, "failed", 500), (3, "ok", 200)]
    assert delivery.status == "delivered"
    assert {r.event_id for r in hooks.received} == {str(delivery.event_id)}
    assert {r.body["id"] for r in hooks.received} == {str(delivery.event_id)}


def test_the_backoff_doubles_up_to_its_cap(settings):
    settings.DELIVERY_RETRY_BASE_SECONDS = 30
    settings.DELIVERY_RETRY_MAX_DELAY_SECONDS = 3600
    delays = [deliveries.retry_delay(n).total_seconds() for n in (1, 2, 3, 7, 8, 50)]
    assert delays == [30, 60, 120, 1920, 3600, 3600]


def test_a_delivery_is_given_up_after_its_window(owner, hooks, settings):
    budget = budget_for(owner, webhook_url=hooks.url)
    hooks.secret, hooks.fail_first = budget.webhook_secret, 100
    delivery = deliveries.test_event(budget)
    Delivery.objects.filter(pk=delivery.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.DELIVERY_RETRY_WINDOW_SECONDS)
    )
    deliveries.send(delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert deliveries.due(timezone.now() + timedelta(days=2)) == []


def test_a_leased_delivery_is_not_sent_by_a_second_worker(owner, hooks):
    budget = budget_for(owner, webhook_url=hooks.url)
    delivery = deliveries.test_event(budget)
    assert deliveries.lease(delivery.pk, timezone.now()) is not None
    assert deliveries.lease(delivery.pk, timezone.now()) is None
    assert deliveries.due(timezone.now()) == []


def test_an_expired_lease_is_sent_again_and_the_cut_attempt_marked(owner, hooks, settings):
    budget = budget_for(owner, webhook_url=hooks.url)
    hooks.secret = budget.webhook_secret
    delivery = deliveries.test_event(budget)
    deliveries.lease(delivery.pk, timezone.now())  # a worker that dies mid-send
    later = timezone.now() + timedelta(seconds=settings.DELIVERY_LEASE_SECONDS + 1)
    assert deliveries.due(later) == [delivery.pk]
    Delivery.objects.filter(pk=delivery.pk).update(leased_until=timezone.now())
    assert deliveries.send(delivery.pk) == "ok"
    log = list(delivery.attempt_log.values_list("number", "outcome"))
    assert log == [(1, DeliveryAttempt.Outcome.INTERRUPTED), (2, DeliveryAttempt.Outcome.OK)]
    assert [r.event_id for r in hooks.received] == [str(delivery.event_id)]


def test_a_webhook_now_resolving_to_a_private_address_is_refused_at_delivery(
    owner, hooks, settings
):
    budget = budget_for(owner, webhook_url=hooks.url)
    delivery = deliveries.test_event(budget)
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False  # as if DNS changed since it was saved
    assert deliveries.send(delivery.pk) == "failed"
    [attempt] = delivery.attempt_log.all()
    assert "not a public address" in attempt.error
    assert hooks.received == []


def test_a_removed_webhook_fails_its_pending_delivery_without_sending(owner, hooks):
    budget = budget_for(owner, webhook_url=hooks.url)
    delivery = deliveries.test_event(budget)
    budgets.delete_budget(owner)
    assert deliveries.send(delivery.pk) == "failed"
    assert hooks.received == []


def test_a_budget_that_cannot_be_checked_does_not_hold_up_the_others(owner, other):
    from usage.models import Budget

    Budget.objects.create(owner=other, image_limit=10, time_zone="Gone/Nowhere")
    budget_for(owner)
    make_record(owner, at("2026-12-02T10:00:00"), images=50)
    assert [a.owner_id for a in alerts.check_budgets(NOW)] == [owner.pk]


def test_an_unreachable_mail_server_is_a_failed_attempt_and_the_retry_arrives(
    owner, mail_server, settings
):
    from tests.live_server import free_port

    budget_for(owner)
    make_record(owner, at("2026-12-02T10:00:00"), images=50)
    alerts.check_budgets(NOW)
    [email] = Delivery.objects.filter(channel="email")
    settings.EMAIL_PORT = free_port()  # nothing listens there
    assert deliveries.send(email.pk) == "failed"
    settings.EMAIL_PORT = mail_server.port
    Delivery.objects.filter(pk=email.pk).update(next_attempt_at=timezone.now())
    assert deliveries.send(email.pk) == "ok"
    [message] = mail_server.wait_for(1)
    assert message["X-Usage-Event-Id"] == str(email.event_id)
    outcomes = list(email.attempt_log.values_list("outcome", flat=True))
    assert outcomes == ["failed", "ok"]
    assert "Connection refused" in email.attempt_log.first().error
