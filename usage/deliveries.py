"""Sending events (budget alerts, test events) by email and webhook, at least once.

Each delivery's state is a row (``Delivery``), and each try a row beside it
(``DeliveryAttempt``): the delivery log that its owner and the admin read. A worker takes a
delivery by leasing it in one conditional UPDATE, so two workers never send it at the same
time; the attempt is written before the send and finished after it. A worker killed
mid-send leaves its attempt ``sending`` and the lease running: when the lease ends, a sweep
hands the delivery to another worker, which marks that attempt interrupted and sends the
same event (same id, same body) again. Receivers deduplicate on the event id.

Failures are retried with exponential backoff (``DELIVERY_RETRY_BASE_SECONDS``, doubling,
at most ``DELIVERY_RETRY_MAX_DELAY_SECONDS`` apart) until ``DELIVERY_RETRY_WINDOW_SECONDS``
(24 hours) after the event; then the delivery is given up.
"""

import json
import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from usage import webhooks
from usage.models import Budget, BudgetAlert, Delivery, DeliveryAttempt

log = logging.getLogger("usage.deliveries")

THRESHOLD_EVENT = "budget.threshold_crossed"
TEST_EVENT = "webhook.test"


def event(event_id: uuid.UUID, event_type: str, at: datetime, data: dict) -> dict:
    return {"id": str(event_id), "type": event_type, "created": at.isoformat(), "data": data}


def body_of(delivery: Delivery) -> bytes:
    """The bytes sent (and signed): the same on every attempt."""
    return json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()


def for_alert(alert: BudgetAlert, budget: Budget, data: dict) -> list[Delivery]:
    """The alert's deliveries: email to the owner (if they gave an address), and the
    webhook (if they gave one). Called in the transaction that inserted the alert."""
    owner = budget.owner
    targets = []
    if owner.email:
        targets.append((Delivery.Channel.EMAIL, owner.email))
    if budget.webhook_url:
        targets.append((Delivery.Channel.WEBHOOK, budget.webhook_url))
    return [
        _new(owner, channel, target, THRESHOLD_EVENT, data, alert=alert)
        for channel, target in targets
    ]


def test_event(budget: Budget) -> Delivery:
    """A test event to the budget's webhook, sent like any other (the delivery log shows it)."""
    data = {
        "user": budget.owner.get_username(),
        "message": "A test event: your webhook receives budget alerts.",
    }
    return _new(budget.owner, Delivery.Channel.WEBHOOK, budget.webhook_url, TEST_EVENT, data)


def _new(
    owner: AbstractBaseUser,
    channel: str,
    target: str,
    event_type: str,
    data: dict,
    alert: BudgetAlert | None = None,
) -> Delivery:
    event_id, now = uuid.uuid4(), timezone.now()
    return Delivery.objects.create(
        event_id=event_id,
        event_type=event_type,
        owner=owner,
        alert=alert,
        channel=channel,
        target=target,
        payload=event(event_id, event_type, now, data),
        created_at=now,
        next_attempt_at=now,
    )


def due(now: datetime, limit: int = 100) -> list[int]:
    """Pending deliveries whose next attempt is due and that no worker holds: their ids."""
    free = Q(leased_until__isnull=True) | Q(leased_until__lte=now)
    return list(
        Delivery.objects.filter(free, status=Delivery.Status.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )


def lease(delivery_id: int, now: datetime) -> tuple[Delivery, DeliveryAttempt] | None:
    """Take the delivery for one attempt, or None when another worker has it (or it is done
    or not due). The UPDATE's condition is the lock: of two workers, one matches a row."""
    free = Q(leased_until__isnull=True) | Q(leased_until__lte=now)
    with transaction.atomic():
        taken = Delivery.objects.filter(
            free, pk=delivery_id, status=Delivery.Status.PENDING, next_attempt_at__lte=now
        ).update(
            leased_until=now + timedelta(seconds=settings.DELIVERY_LEASE_SECONDS),
            attempts=F("attempts") + 1,
        )
        if not taken:
            return None
        delivery = Delivery.objects.select_related("owner").get(pk=delivery_id)
        # An attempt still "sending" belonged to a worker that stopped mid-send.
        delivery.attempt_log.filter(outcome=DeliveryAttempt.Outcome.SENDING).update(
            outcome=DeliveryAttempt.Outcome.INTERRUPTED, finished_at=now
        )
        attempt = DeliveryAttempt.objects.create(
            delivery=delivery,
            number=delivery.attempts,
            started_at=now,
            outcome=DeliveryAttempt.Outcome.SENDING,
        )
    return delivery, attempt


def send(delivery_id: int) -> str | None:
    """One attempt at the delivery, if this worker gets it; the attempt's outcome."""
    taken = lease(delivery_id, timezone.now())
    if taken is None:
        return None
    delivery, attempt = taken
    # Outside any transaction: the receiver may take seconds.
    try:
        status = _send_webhook(delivery) if delivery.channel == "webhook" else _send_email(delivery)
    except (webhooks.WebhookFailed, webhooks.WebhookRefused, OSError) as error:
        code = getattr(error, "status", None)
        finish(delivery, attempt, ok=False, response_code=code, error=str(error))
        return DeliveryAttempt.Outcome.FAILED
    finish(delivery, attempt, ok=True, response_code=status)
    return DeliveryAttempt.Outcome.OK


def _send_webhook(delivery: Delivery) -> int:
    budget = Budget.objects.filter(owner_id=delivery.owner_id).first()
    if budget is None or not budget.webhook_secret:
        raise webhooks.WebhookFailed("The budget or its webhook was removed.")
    # Checked again now, and sent to the address checked: DNS may have changed since.
    target = webhooks.check_url(delivery.target)
    event_id = str(delivery.event_id)
    body = body_of(delivery)
    return webhooks.post(target, budget.webhook_secret, event_id, delivery.event_type, body)


def _send_email(delivery: Delivery) -> None:
    subject, text = email_text(delivery.payload)
    message = EmailMessage(
        subject,
        text,
        to=[delivery.target],
        headers={"X-Usage-Event-Id": str(delivery.event_id)},
    )
    message.send()


def email_text(payload: dict) -> tuple[str, str]:
    data = payload["data"]
    if payload["type"] == TEST_EVENT:
        return "Test event", data["message"]
    subject = f"{data['threshold']}% of your {data['month']} budget used"
    if data["unit"] == "money":
        used, limit = f"{data['currency']} {data['used']}", f"{data['currency']} {data['limit']}"
        left, pace = f"{data['currency']} {data['left']}", f"{data['currency']} {data['forecast']}"
        spent = f"spent {used} of your {limit} budget"
    else:
        spent = f"used {data['used']:,} of your {data['limit']:,} images"
        left, pace = f"{data['left']:,} images", f"{data['forecast']:,} images"
    text = (
        f"Hello {data['user']},\n\n"
        f"You have {spent} for {data['month']} ({data['percent']}%), which reaches your "
        f"{data['threshold']}% alert.\n"
        f"Left this month: {left}. At the pace so far the month ends at {pace}.\n\n"
        f"Event id: {payload['id']}\n"
    )
    return subject, text


def finish(
    delivery: Delivery,
    attempt: DeliveryAttempt,
    *,
    ok: bool,
    response_code: int | None = None,
    error: str = "",
) -> None:
    """Record the attempt's end, and what happens next: done, again later, or give up."""
    now = timezone.now()
    changes: dict = {"leased_until": None}
    if ok:
        changes |= {"status": Delivery.Status.DELIVERED, "finished_at": now}
    else:
        retry_at = now + retry_delay(delivery.attempts)
        window_end = delivery.created_at + timedelta(seconds=settings.DELIVERY_RETRY_WINDOW_SECONDS)
        if retry_at > window_end:
            changes |= {"status": Delivery.Status.FAILED, "finished_at": now}
        else:
            changes["next_attempt_at"] = retry_at
    outcome = DeliveryAttempt.Outcome.OK if ok else DeliveryAttempt.Outcome.FAILED
    with transaction.atomic():
        DeliveryAttempt.objects.filter(pk=attempt.pk).update(
            outcome=outcome, finished_at=now, response_code=response_code, error=error[:300]
        )
        # Only while the lease is ours: if it ran out and another worker took the delivery,
        # the outcome of that newer attempt is the one that counts.
        Delivery.objects.filter(pk=delivery.pk, attempts=delivery.attempts).update(**changes)
    if not ok:
        log.info("delivery %s attempt %d failed: %s", delivery.event_id, attempt.number, error)


def retry_delay(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failure: base, twice that, four times... capped."""
    base = settings.DELIVERY_RETRY_BASE_SECONDS
    seconds = min(base * 2 ** min(attempts - 1, 40), settings.DELIVERY_RETRY_MAX_DELAY_SECONDS)
    return timedelta(seconds=seconds)
