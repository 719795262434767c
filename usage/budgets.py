"""Monthly budgets, in images or in money: setting one, and where a month stands.

A budget's months are local months in its zone (the owner's, saved with the budget): the
first instant of the 1st to the first instant of the next 1st, in UTC, through ``zoneinfo``
(``usage.summary.local_midnight``). What a month has used is read from the rollups by the
date of each record (``occurred_at``), so records that arrive late (an app that was offline
last week) count toward the month they happened in; money is what ``usage.costs`` says
those images cost, each at the price in force when it was made. The dashboard's card and
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

from usage import costs
from usage.costs import Spend
from usage.models import Budget, BudgetAlert
from usage.problems import InvalidQuery
from usage.summary import local_midnight, parse_zone

DEFAULT_THRESHOLDS = (50, 80, 100)
MAX_THRESHOLDS = 10
MAX_THRESHOLD = 1000  # percent: "tell me at ten times the budget" is the most we keep
MAX_IMAGE_LIMIT = 2_000_000_000  # within the PositiveIntegerField of both databases
MAX_MONEY_LIMIT = Decimal("999999999999")  # within Budget.money_limit's 16 digits

Amount = int | Decimal  # images, or money in the site's currency


@dataclass(frozen=True)
class BudgetStatus:
    """One month of a budget: used, left and the forecast at the month's pace so far, in
    the budget's unit (whole images, or a ``Decimal`` amount of money)."""

    budget: Budget
    month: date  # its first day
    next_month: date
    spend: Spend  # the month's images, their cost and the images without a price
    forecast: Amount

    @property
    def limit(self) -> Amount:
        return self.budget.limit

    @property
    def in_money(self) -> bool:
        return self.budget.unit == Budget.Unit.MONEY

    @property
    def used(self) -> Amount:
        return self.spend.cost if self.in_money else self.spend.images

    @property
    def left(self) -> Amount:
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

    def shown(self, amount: Amount) -> int | str:
        """As the API and the card show it: whole images, or money as a decimal string
        with the currency's decimals."""
        return costs.display(Decimal(amount)) if self.in_money else amount


def percent_of(part: Amount, whole: Amount) -> Decimal:
    """``part`` as a percentage of ``whole``, to one decimal place, rounded half up."""
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"), ROUND_HALF_UP)


def month_start(moment: datetime, tz: ZoneInfo) -> date:
    return moment.astimezone(tz).date().replace(day=1)


def next_month_of(first: date) -> date:
    return (first + timedelta(days=32)).replace(day=1)


def previous_month_of(first: date) -> date:
    return (first - timedelta(days=1)).replace(day=1)


def month_bounds(first: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The month starting on ``first``, in UTC: [its first instant, the next month's).
    Local midnights fall on quarter hours in every zone since 1972 (``ceil_quarter``
    keeps older ones whole), which is what the rollups and prices resolve."""
    start = local_midnight(first, tz)
    end = local_midnight(next_month_of(first), tz)
    return costs.ceil_quarter(start), costs.ceil_quarter(end)


def spend_in_month(
    owner_id: int, first: date, tz: ZoneInfo, book: costs.PriceBook | None = None
) -> Spend:
    """The owner's images in the local month and what they cost, exact (the rollups and
    what is not in them yet, each image at the price in force when it was made)."""
    return costs.spend_between(owner_id, *month_bounds(first, tz), book)


def forecast(used: Amount, first: date, tz: ZoneInfo, now: datetime) -> Amount:
    """What the month will have used at its end if the pace so far holds: used, scaled by
    the whole month's length over the part gone (whole images round half up; money is
    rounded only when shown). A month that has not started, or is over, forecasts what it has."""
    start, end = month_bounds(first, tz)
    if not start < now < end:
        return used
    gone = Decimal((now - start).total_seconds())
    whole = Decimal((end - start).total_seconds())
    scaled = used * whole / gone
    return scaled if isinstance(used, Decimal) else int(scaled.to_integral_value(ROUND_HALF_UP))


def status_of(
    budget: Budget,
    now: datetime | None = None,
    first: date | None = None,
    book: costs.PriceBook | None = None,
) -> BudgetStatus:
    """Where the month holding ``now`` (or the month starting on ``first``) stands; at the
    prices of ``book`` when given (read once for a page that prices more)."""
    now = now or timezone.now()
    tz = ZoneInfo(budget.time_zone)
    first = first or month_start(now, tz)
    spend = spend_in_month(budget.owner_id, first, tz, book)
    used = spend.cost if budget.unit == Budget.Unit.MONEY else spend.images
    return BudgetStatus(budget, first, next_month_of(first), spend, forecast(used, first, tz, now))


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
    unit: str,
    limit: Amount,
    thresholds: list[int],
    time_zone: str,
    webhook_url: str = "",
) -> Budget:
    """Set (or change) the owner's budget. The webhook URL must already be checked
    (``usage.webhooks.check_url``); a new URL gets a new signing secret."""
    limit = check_limit(unit, limit)
    zone = parse_zone(time_zone).key
    with transaction.atomic():
        budget = Budget.objects.select_for_update().filter(owner=owner).first()
        budget = budget or Budget(owner=owner)
        if webhook_url and (webhook_url != budget.webhook_url or not budget.webhook_secret):
            budget.webhook_secret = new_webhook_secret()
        budget.unit = unit
        budget.image_limit = limit if unit == Budget.Unit.IMAGES else None
        budget.money_limit = limit if unit == Budget.Unit.MONEY else None
        budget.thresholds = ",".join(str(t) for t in thresholds)
        budget.time_zone = zone
        budget.webhook_url = webhook_url
        budget.updated_at = timezone.now()
        budget.save()
    return budget


def check_limit(unit: str, limit: Amount) -> Amount:
    """The limit, if it is one for the unit: whole images from 1, or money above 0 with
    at most the currency's decimals."""
    if unit == Budget.Unit.IMAGES:
        if limit != int(limit) or not 1 <= limit <= MAX_IMAGE_LIMIT:
            raise InvalidQuery("limit", f"A limit in images is 1 to {MAX_IMAGE_LIMIT:,}.")
        return int(limit)
    if unit != Budget.Unit.MONEY:
        raise InvalidQuery("unit", "A budget is in images or in money.")
    amount = Decimal(limit)
    if not amount.is_finite() or not 0 < amount <= MAX_MONEY_LIMIT:
        message = f"A limit in money is above 0 and at most {MAX_MONEY_LIMIT:,}."
        raise InvalidQuery("limit", message)
    if -amount.as_tuple().exponent > costs.decimals():
        message = f"A limit in {costs.currency()} has at most {costs.decimals()} decimals."
        raise InvalidQuery("limit", message)
    return amount


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
    """The JSON of ``GET /api/budget`` and the numbers of the dashboard's card. Images are
    whole numbers; money is a decimal string in ``currency``, as the summary shows costs."""
    budget = status.budget
    shown = status.shown
    return {
        "budget": {
            "unit": budget.unit,
            "limit": shown(status.limit),
            "currency": costs.currency() if status.in_money else None,
            "thresholds": budget.threshold_list,
            "timeZone": budget.time_zone,
        },
        "month": {"start": status.month.isoformat(), "end": status.last_day.isoformat()},
        "used": shown(status.used),
        "left": shown(status.left),
        "percent": float(status.percent),
        "forecast": shown(status.forecast),
        "forecastPercent": float(status.forecast_percent),
        "images": status.spend.images,
        "unpricedImages": status.spend.unpriced_images,
        "crossed": status.crossed(),
        "alerts": [
            {"threshold": alert.threshold, "at": alert.created_at.isoformat()} for alert in alerts
        ],
    }


def budget_status(
    user: AbstractBaseUser, now: datetime | None = None, book: costs.PriceBook | None = None
) -> dict:
    """``GET /api/budget``: the user's budget this month, or ``{"budget": None}``."""
    budget = budget_of(user)
    if budget is None:
        return {"budget": None}
    status = status_of(budget, now, book=book)
    return status_as_dict(status, alerts_in(budget, status.month))
