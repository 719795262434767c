"""Budget alerts: which thresholds each budget's month has crossed, each alerted once.

The background worker calls ``check_budgets`` every few seconds (``usage.tasks``), never a
request: ingestion stays as fast with budgets as without. For each budget it reads the
current month and, for records that arrive late, the month before (when the budget
already existed then). A crossed threshold with no alert yet is inserted as a
``BudgetAlert``; its unique (owner, month, threshold) constraint decides between two
workers, or a retry, that get there at once. Only the worker whose insert succeeds creates
the alert's deliveries, in the same transaction, so there is exactly one of each.
"""

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

from django.db import IntegrityError, transaction

from usage import budgets, costs, deliveries
from usage.budgets import BudgetStatus
from usage.models import Budget, BudgetAlert

log = logging.getLogger("usage.alerts")


def check_budgets(now: datetime) -> list[BudgetAlert]:
    """Insert the alerts of every threshold crossed and not yet alerted; the new ones."""
    created = []
    for budget in Budget.objects.select_related("owner").order_by("pk"):
        try:
            for status in months_to_check(budget, now):
                created += alert_crossed(status, now)
        except Exception:
            # One budget that cannot be checked (a zone gone from tzdata, say) must not
            # hold up everyone else's alerts; the next sweep tries it again.
            log.exception("budget %s of user %s could not be checked", budget.pk, budget.owner_id)
    return created


def months_to_check(budget: Budget, now: datetime) -> list[BudgetStatus]:
    tz = ZoneInfo(budget.time_zone)
    this_month = budgets.month_start(now, tz)
    previous = budgets.previous_month_of(this_month)
    months = [this_month]
    # Last month, for late records; not when the budget was set after it ended.
    if budget.created_at < budgets.month_bounds(previous, tz)[1]:
        months.insert(0, previous)
    return [budgets.status_of(budget, now, first) for first in months]


def alert_crossed(status: BudgetStatus, now: datetime) -> list[BudgetAlert]:
    crossed = status.crossed()
    if not crossed:
        return []
    budget = status.budget
    done = set(
        BudgetAlert.objects.filter(owner_id=budget.owner_id, month=status.month).values_list(
            "threshold", flat=True
        )
    )
    return [
        alert
        for threshold in crossed
        if threshold not in done and (alert := insert_alert(status, threshold, now))
    ]


def insert_alert(status: BudgetStatus, threshold: int, now: datetime) -> BudgetAlert | None:
    """The alert and its deliveries, or None when another worker inserted it first."""
    budget = status.budget
    try:
        with transaction.atomic():
            alert = BudgetAlert.objects.create(
                owner_id=budget.owner_id,
                month=status.month,
                threshold=threshold,
                created_at=now,
                unit=budget.unit,
                used=status.used,
                limit=status.limit,
            )
            deliveries.for_alert(alert, budget, alert_data(status, threshold))
    except IntegrityError:
        return None
    return alert


def alert_data(status: BudgetStatus, threshold: int) -> dict:
    """What the email says and the webhook's ``data`` holds."""
    return {
        "user": status.budget.owner.get_username(),
        "month": status.month.strftime("%Y-%m"),
        "timeZone": status.budget.time_zone,
        "threshold": threshold,
        "unit": status.budget.unit,
        "currency": costs.currency() if status.in_money else None,
        "limit": status.shown(status.limit),
        "used": status.shown(status.used),
        "left": status.shown(status.left),
        "percent": str(status.percent),
        "forecast": status.shown(status.forecast),
        "images": status.spend.images,
        "unpricedImages": status.spend.unpriced_images,
    }
