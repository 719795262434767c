"""Date ranges, time zones and the per-user aggregates behind charts.

Ranges are whole local days in the caller's IANA zone. They are turned into UTC instants
once, here, with ``zoneinfo``; the database groups the hourly rollups (``usage.rollups``)
by local day, and weeks and months are built from those days. Grouping by local day (not
by 24-hour steps from the start) is what keeps buckets right across DST changes: a day
with a 23- or 25-hour local length is still one day.
"""

import operator
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache, reduce
from zoneinfo import ZoneInfo, available_timezones

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import F, QuerySet, Sum
from django.db.models.expressions import CombinedExpression
from django.db.models.functions import TruncDate
from django.utils import timezone

from usage import rollups
from usage.models import UsageRollup

GRANULARITIES = ("day", "week", "month")
DEFAULT_RANGE_DAYS = 30
MAX_RANGE_DAYS = 3 * 366
# Days at or below which the default granularity is "day", then "week"; "month" beyond.
AUTO_DAY_LIMIT = 92
AUTO_WEEK_LIMIT = 731
MIN_DATE = date(1971, 1, 1)
MAX_DATE = date(9998, 12, 31)
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class QueryError(ValueError):
    """A bad query parameter; ``field`` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class DateRange:
    """Whole local days ``start``..``end`` (inclusive) in ``tz``."""

    start: date
    end: date
    tz: ZoneInfo

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def utc_bounds(self) -> tuple[datetime, datetime]:
        """[first local midnight, the midnight after the last day), in UTC."""
        return local_midnight(self.start, self.tz), local_midnight(
            self.end + timedelta(days=1), self.tz
        )


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def parse_zone(value: str | None) -> ZoneInfo:
    if value is None or value == "":
        return ZoneInfo("UTC")
    if value not in _zone_names():
        raise QueryError("tz", f"Unknown time zone {value[:64]!r}; use an IANA name.")
    return ZoneInfo(value)


def parse_date(name: str, value: str) -> date:
    if not _DATE_RE.match(value):
        raise QueryError(name, f"{name} must be a date as YYYY-MM-DD.")
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise QueryError(name, f"{name} is not a real date: {value}.") from None
    if not MIN_DATE <= parsed <= MAX_DATE:
        raise QueryError(name, f"{name} must be between {MIN_DATE} and {MAX_DATE}.")
    return parsed


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    # fold=0 picks the earlier instant when midnight repeats, and zoneinfo shifts a
    # midnight that a DST jump skips to the first instant that exists.
    return datetime.combine(day, time.min, tzinfo=tz).astimezone(UTC)


def today_in(tz: ZoneInfo) -> date:
    return timezone.now().astimezone(tz).date()


def parse_range(params: Mapping[str, str], default_days: int = DEFAULT_RANGE_DAYS) -> DateRange:
    """``start``/``end``/``tz`` query parameters; defaults to the last 30 days in ``tz``."""
    tz = parse_zone(params.get("tz"))
    end = parse_date("end", params["end"]) if params.get("end") else today_in(tz)
    if params.get("start"):
        start = parse_date("start", params["start"])
    else:
        start = end - timedelta(days=default_days - 1)
    if start > end:
        raise QueryError("start", "start must be on or before end.")
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise QueryError("start", f"The range is longer than {MAX_RANGE_DAYS} days.")
    return DateRange(start, end, tz)


def parse_granularity(value: str | None, days: int) -> str:
    if value is None or value == "":
        if days <= AUTO_DAY_LIMIT:
            return "day"
        return "week" if days <= AUTO_WEEK_LIMIT else "month"
    if value not in GRANULARITIES:
        raise QueryError("granularity", "granularity must be day, week or month.")
    return value


def bucket_of(day: date, granularity: str) -> date:
    """The first local day of the bucket holding ``day``: itself, its Monday, or the 1st."""
    if granularity == "week":
        return day - timedelta(days=day.weekday())
    if granularity == "month":
        return day.replace(day=1)
    return day


def periods(date_range: DateRange, granularity: str) -> list[date]:
    """Every bucket that the range touches, in order, empty ones included."""
    result: list[date] = []
    day = date_range.start
    while day <= date_range.end:
        bucket = bucket_of(day, granularity)
        if not result or result[-1] != bucket:
            result.append(bucket)
        day += timedelta(days=1)
    return result


def daily_totals(owner_id: int, date_range: DateRange) -> dict[tuple[date, str], list[int]]:
    """``{(local day, model): [images, events]}`` for the range, read from the rollups.

    A UTC hour that holds no local midnight lies in one local day, and the database
    groups those. The few hours that a midnight cuts (every day in zones with a half- or
    quarter-hour offset, none in whole-hour zones) are split by quarter here, in Python.
    """
    lo, hi = date_range.utc_bounds()
    cut_hours = sorted(
        {
            rollups.hour_of(midnight)
            for midnight in midnights(date_range)
            if midnight != rollups.hour_of(midnight)
        }
    )
    totals: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0])
    for row in _whole_hours(owner_id, date_range, cut_hours):
        totals[(row["day"], row["model"])] = [row["images"], row["events"]]
    if cut_hours:
        rows = UsageRollup.objects.filter(owner_id=owner_id, hour__in=cut_hours).values_list(
            "hour", "model", *rollups.IMAGE_COLUMNS, *rollups.EVENT_COLUMNS
        )
        for hour, model, *counts in rows:
            for quarter in range(4):
                start = hour + quarter * rollups.QUARTER
                if counts[4 + quarter] and lo <= start < hi:
                    entry = totals[(start.astimezone(date_range.tz).date(), model)]
                    entry[0] += counts[quarter]
                    entry[1] += counts[4 + quarter]
    return totals


def _whole_hours(owner_id: int, date_range: DateRange, cut_hours: list[datetime]) -> QuerySet:
    lo, hi = date_range.utc_bounds()
    first = rollups.hour_of(lo) + (rollups.HOUR if lo != rollups.hour_of(lo) else timedelta())
    rows = UsageRollup.objects.filter(owner_id=owner_id, hour__gte=first, hour__lt=hi)
    if cut_hours:
        rows = rows.exclude(hour__in=cut_hours)
    return (
        rows.annotate(day=TruncDate("hour", tzinfo=date_range.tz))
        .values("day", "model")
        .annotate(
            images=Sum(_added(rollups.IMAGE_COLUMNS)),
            events=Sum(_added(rollups.EVENT_COLUMNS)),
        )
        .order_by()
    )


def _added(columns: tuple[str, ...]) -> CombinedExpression:
    return reduce(operator.add, (F(column) for column in columns))


def midnights(date_range: DateRange) -> list[datetime]:
    """Every local midnight from the range's start to the end of its last day, in UTC."""
    return [
        local_midnight(date_range.start + timedelta(days=n), date_range.tz)
        for n in range(date_range.days + 1)
    ]


def summarize(owner: AbstractBaseUser, date_range: DateRange, granularity: str) -> dict:
    """The owner's images and events in the range: totals, per model, and per bucket."""
    per_model: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_bucket: dict[tuple[date, str], int] = defaultdict(int)
    for (day, model), (images, events) in daily_totals(owner.pk, date_range).items():
        per_model[model][0] += images
        per_model[model][1] += events
        per_bucket[(bucket_of(day, granularity), model)] += images
    models = sorted(per_model, key=lambda name: (-per_model[name][0], name))
    rank = {name: position for position, name in enumerate(models)}
    series = sorted(per_bucket.items(), key=lambda item: (item[0][0], rank[item[0][1]]))
    return {
        "start": date_range.start.isoformat(),
        "end": date_range.end.isoformat(),
        "tz": date_range.tz.key,
        "granularity": granularity,
        "totals": {
            "images": sum(images for images, _ in per_model.values()),
            "events": sum(events for _, events in per_model.values()),
        },
        "models": [
            {"model": name, "images": per_model[name][0], "events": per_model[name][1]}
            for name in models
        ],
        "periods": [period.isoformat() for period in periods(date_range, granularity)],
        "series": [
            {"period": period.isoformat(), "model": name, "images": images}
            for (period, name), images in series
        ],
    }
