"""Date ranges, time zones and the per-user aggregates behind charts.

Ranges are whole local days in the caller's IANA zone. They are turned into UTC instants
once, here, with ``zoneinfo``; each local day is added up from the rollups
(``usage.rollups``), and weeks and months are built from those days. Grouping by local day (not
by 24-hour steps from the start) is what keeps buckets right across DST changes: a day
with a 23- or 25-hour local length is still one day.
"""

import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import pairwise
from zoneinfo import ZoneInfo, available_timezones

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from usage import rollups
from usage.models import DailyUsageRollup, UsageRollup
from usage.problems import InvalidQuery

GRANULARITIES = ("day", "week", "month")
DEFAULT_RANGE_DAYS = 30
MAX_RANGE_DAYS = 3 * 366
# Days at or below which the default granularity is "day", then "week"; "month" beyond.
AUTO_DAY_LIMIT = 92
AUTO_WEEK_LIMIT = 731
MIN_DATE = date(1971, 1, 1)
MAX_DATE = date(9998, 12, 31)
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


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
        raise InvalidQuery("tz", f"Unknown time zone {value[:64]!r}; use an IANA name.")
    return ZoneInfo(value)


def parse_date(name: str, value: str) -> date:
    if not _DATE_RE.match(value):
        raise InvalidQuery(name, f"{name} must be a date as YYYY-MM-DD.")
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise InvalidQuery(name, f"{name} is not a real date: {value}.") from None
    if not MIN_DATE <= parsed <= MAX_DATE:
        raise InvalidQuery(name, f"{name} must be between {MIN_DATE} and {MAX_DATE}.")
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
        raise InvalidQuery("start", "start must be on or before end.")
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise InvalidQuery("start", f"The range is longer than {MAX_RANGE_DAYS} days.")
    return DateRange(start, end, tz)


def parse_granularity(value: str | None, days: int) -> str:
    if value is None or value == "":
        if days <= AUTO_DAY_LIMIT:
            return "day"
        return "week" if days <= AUTO_WEEK_LIMIT else "month"
    if value not in GRANULARITIES:
        raise InvalidQuery("granularity", "granularity must be day, week or month.")
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

    Each local day is its whole UTC hours, read from the daily rollups in pieces (a part of
    one UTC day is a difference of two running totals), plus, where midnight falls inside
    a UTC hour (zones with a half- or quarter-hour offset), that hour's quarters from the
    hourly rollups. About two rows per model and day, whatever the number of records.
    """
    bounds = midnights(date_range)
    pieces = _pieces(date_range.start, bounds)
    totals: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0])
    if pieces:
        needed = sorted({hour for day in pieces.values() for a, b, _ in day for hour in (a, b)})
        needed = [hour for hour in needed if hour]  # the total through hour 0 is always 0
        column = {hour: position for position, hour in enumerate(needed)}
        rows = DailyUsageRollup.objects.filter(
            owner_id=owner_id, day__gte=min(pieces), day__lte=max(pieces)
        ).values_list(
            "day",
            "model",
            *(rollups.IMAGES_BY[hour - 1] for hour in needed),
            *(rollups.EVENTS_BY[hour - 1] for hour in needed),
        )
        for day, model, *running in rows:
            images, events = running[: len(needed)], running[len(needed) :]
            for a, b, local_day in pieces.get(day, ()):
                piece_events = events[column[b]] - (events[column[a]] if a else 0)
                if piece_events:
                    entry = totals[(local_day, model)]
                    entry[0] += images[column[b]] - (images[column[a]] if a else 0)
                    entry[1] += piece_events
    _add_cut_hours(totals, owner_id, date_range, bounds)
    return totals


def _pieces(first_day: date, bounds: list[datetime]) -> dict[date, list[tuple[int, int, date]]]:
    """For each UTC day, ``(from hour, to hour, local day)``: the whole UTC hours of each
    local day (between two midnights in ``bounds``), cut where UTC days end."""
    pieces: dict[date, list[tuple[int, int, date]]] = defaultdict(list)
    for offset, (start, end) in enumerate(pairwise(bounds)):
        local_day = first_day + timedelta(days=offset)
        moment = _next_whole_hour(start)
        last = rollups.hour_of(end)
        while moment < last:
            utc_day = moment.date()
            day_end = datetime.combine(utc_day + timedelta(days=1), time.min, tzinfo=UTC)
            piece_end = min(last, day_end)
            to_hour = 24 if piece_end == day_end else piece_end.hour
            pieces[utc_day].append((moment.hour, to_hour, local_day))
            moment = piece_end
    return pieces


def _next_whole_hour(moment: datetime) -> datetime:
    hour = rollups.hour_of(moment)
    return hour if hour == moment else hour + rollups.HOUR


def _add_cut_hours(
    totals: dict[tuple[date, str], list[int]],
    owner_id: int,
    date_range: DateRange,
    bounds: list[datetime],
) -> None:
    """Add the quarters of the UTC hours that a local midnight falls inside of."""
    cut_hours = sorted({rollups.hour_of(m) for m in bounds if m != rollups.hour_of(m)})
    if not cut_hours:
        return
    lo, hi = bounds[0], bounds[-1]
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
