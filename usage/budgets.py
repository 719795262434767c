"""Monthly budgets: setting one, and where a month stands against it.

A budget's months are local months in its zone (the owner's, saved with the budget): the
first instant of the 1st to the first instant of the next 1st, in UTC, through ``zoneinfo``
(``usage.summary.local_midnight``). What a month has used is read from the rollups by the
date of each record (``occurred_at``), so records that arrive late (an app that was offline
last week) count toward the month they happened in. The dashboard's card and
``GET /api/budget`` both show ``status_of``.
"""

import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from usage.models import Budget, BudgetAlert
from usage.problems import InvalidQuery
from usage.summary import DateRange, bucket_totals, local_midnight, parse_zone

DEFAULT_THRESHOLDS = (50, 80, 100)
MAX_THRESHOLDS = 10
MAX_THRESHOLD = 1000  # percent: "tell me at ten times the budget" is the most we keep
MAX_IMAGE_LIMIT = 2_000_000_000  # within the PositiveIntegerField of both databases


@dataclass(frozen=True)
class BudgetStatus:
    """One month of a budget: used, left and the forecast at the month's pace so far."""

    budget: Budget
    month: date  # its first day
    next_month: date
    used: int
    forecast: int

    @property
    def limit(self) -> int:
        return self.budget.image_limit

    @property
    def left(self) -> int:
        return max(self.limit - self.used, 0)

    @property
    def percent(self) -> Decimal:
        return percent_of(self.used, self.limit)

    @property
    def forecast_percent(self) -> Decimal:
        return percent_of(self.forecast, self.limit)

    @property
    def last_day(self) -> date:
        return self.next_month - timedelta(days=1)

    def crossed(self) -> list[int]:
        """The thresholds this month has reached, ascending."""
        return [t for t in self.budget.threshold_list if self.used * 100 >= t * self.limit]


def percent_of(part: int, whole: int) -> Decimal:
    """``part`` as a percentage of ``whole``, to one decimal place, rounded half up."""
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"), ROUND_HALF_UP)


def month_start(moment: datetime, tz: ZoneInfo) -> date:
    return moment.astimezone(tz).date().replace(day=1)


def next_month_of(first: date) -> date:
    return (first + timedelta(days=32)).replace(day=1)


def previous_month_of(first: date) -> date:
    return (first - timedelta(days=1)).replace(day=1)


def month_bounds(first: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The month starting on ``first``, in UTC: [its first instant, the next month's)."""
    return local_midnight(first, tz), local_midnight(next_month_of(first), tz)


def images_in_month(owner_id: int, first: date, tz: ZoneInfo) -> int:
    """The owner's images in the local month, exact (the rollups and what is not in them yet)."""
    month = DateRange(first, next_month_of(first) - timedelta(days=1), tz)
    return sum(images for _, _, images, _ in bucket_totals(owner_id, month, "month"))


def forecast(used: int, first: date, tz: ZoneInfo, now: datetime) -> int:
    """What the month will have used at its end if the pace so far holds: used, scaled by
    the whole month's length over the part gone. A month that has not started, or is
    over, forecasts what it has."""
    start, end = month_bounds(first, tz)
    if not start < now < end:
        return used
    gone = Decimal((now - start).total_seconds())
    whole = Decimal((end - start).total_seconds())
    return int((used * whole / gone).to_integral_value(ROUND_HALF_UP))


def status_of(budget: Budget, now: datetime | None = None, first: date | None = None):
    """Where the month holding ``now`` (or the month starting on ``first``) stands."""
    now = now or timezone.now()
    tz = ZoneInfo(budget.time_zone)
    first = first or month_start(now, tz)
    used = images_in_month(budget.owner_id, first, tz)
    return BudgetStatus(budget, first, next_month_of(first), used, forecast(used, first, tz, now))


def budget_of(user: AbstractBaseUser) -> Budget | None:
    return Budget.objects.filter(owner=user).first()


def parse_thresholds(value: str) -> list[int]:
    """``"50, 80,100"`` as ``[50, 80, 100]``: whole percentages, 1 to 1000, each once."""
    parts = [part.strip().removesuffix("%").strip() for part in value.split(",")]
    if not any(parts):
        raise InvalidQuery("thresholds", "Give at least one threshold, e.g. 50, 80, 100.")
    thresholds = set()
    for part in parts:
        if not part.isascii() or not part.isdigit() or not 1 <= int(part) <= MAX_THRESHOLD:
            raise InvalidQuery(
                "thresholds", f"Thresholds are whole percentages from 1 to {MAX_THRESHOLD}."
            )
        thresholds.add(int(part))
    if len(thresholds) > MAX_THRESHOLDS:
        raise InvalidQuery("thresholds", f"At most {MAX_THRESHOLDS} thresholds.")
    return sorted(thresholds)


def save_budget(
    owner: AbstractBaseUser,
    *,
    image_limit: int,
    thresholds: list[int],
    time_zone: str,
    webhook_url: str = "",
) -> Budget:
    """Set (or change) the owner's budget. The webhook URL must already be checked
    (``usage.webhooks.check_url``); a new URL gets a new signing secret."""
    check_image_limit(image_limit)
    zone = parse_zone(time_zone).key
    with transaction.atomic():
        budget = Budget.objects.select_for_update().filter(owner=owner).first()
        budget = budget or Budget(owner=owner)
        if webhook_url and (webhook_url != budget.webhook_url or not budget.webhook_secret):
            budget.webhook_secret = new_webhook_secret()
        budget.image_limit = image_limit
        budget.thresholds = ",".join(str(t) for t in thresholds)
        budget.time_zone = zone
        budget.webhook_url = webhook_url
        budget.updated_at = timezone.now()
        budget.save()
    return budget


def check_image_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_IMAGE_LIMIT:
        raise InvalidQuery("image_limit", f"The limit is 1 to {MAX_IMAGE_LIMIT:,} images.")
    return limit


def new_webhook_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def delete_budget(owner: AbstractBaseUser) -> None:
    Budget.objects.filter(owner=owner).delete()


def alerts_in(budget: Budget, first: date) -> list[BudgetAlert]:
    """The month's alerts so far, lowest threshold first."""
    return list(
        BudgetAlert.objects.filter(owner_id=budget.owner_id, month=first).order_by("threshold")
    )


def status_as_dict(status: BudgetStatus, alerts: list[BudgetAlert]) -> dict:
    """The JSON of ``GET /api/budget`` and the numbers of the dashboard's card."""
    budget = status.budget
    return {
        "budget": {
            "unit": "images",
            "limit": status.limit,
            "thresholds": budget.threshold_list,
            "timeZone": budget.time_zone,
        },
        "month": {"start": status.month.isoformat(), "end": status.last_day.isoformat()},
        "used": status.used,
        "left": status.left,
        "percent": float(status.percent),
        "forecast": status.forecast,
        "forecastPercent": float(status.forecast_percent),
        "crossed": status.crossed(),
        "alerts": [
            {"threshold": alert.threshold, "at": alert.created_at.isoformat()} for alert in alerts
        ],
    }


def budget_status(user: AbstractBaseUser, now: datetime | None = None) -> dict:
    """``GET /api/budget``: the user's budget this month, or ``{"budget": None}``."""
    budget = budget_of(user)
    if budget is None:
        return {"budget": None}
    status = status_of(budget, now)
    return status_as_dict(status, alerts_in(budget, status.month))
