"""Date ranges, time zones and the per-user aggregates behind charts.

Ranges are whole local days in the caller's IANA zone. They are turned into UTC instants
once, here, with ``zoneinfo``; each local day is added up from the rollups
(``usage.rollups``), and weeks and months are built from those days. Grouping by local day (not
by 24-hour steps from the start) is what keeps buckets right across DST changes: a day
with a 23- or 25-hour local length is still one day.
"""

import re
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import pairwise
from zoneinfo import ZoneInfo, available_timezones

from django.contrib.auth.models import AbstractBaseUser
from django.db import connections, models, router
from django.utils import timezone

from usage import devices, dialects, rollups
from usage.devices import TokenTotal
from usage.models import ApiToken, DailyUsageRollup, UncountedRecord, UsageRecord, UsageRollup
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


def daily_totals(
    owner_id: int, date_range: DateRange, token: int | None = None
) -> dict[tuple[date, str], list[int]]:
    """``{(local day, model): [images, events]}`` for the range, read from the rollups; of
    one token's records only with ``token`` (``NO_TOKEN``: those sent without one)."""
    days = periods(date_range, "day")
    return {
        (days[bucket], model): [images, events]
        for bucket, model, images, events in range_totals(
            owner_id, date_range, "day", token
        ).buckets()
    }


@dataclass(frozen=True)
class RangeTotals:
    """A range's sums. ``rows`` are ``(label, model, images, events)``, where the label is
    ``bucket * parts + part``: ``bucket`` a position in ``periods(date_range, granularity)``
    and ``part`` the stretch between the ``cuts`` given to ``range_totals`` that the images
    fall in (0 before the first cut); without cuts, the label is the bucket."""

    rows: list[tuple[int, str, int, int]]
    tokens: list[TokenTotal]
    parts: int = 1

    def buckets(self) -> list[tuple[int, str, int, int]]:
        """``(bucket, model, images, events)``, the parts of each bucket added up."""
        if self.parts == 1:
            return self.rows
        merged: dict[tuple[int, str], list[int]] = {}
        for label, model, images, events in self.rows:
            sums = merged.setdefault((label // self.parts, model), [0, 0])
            sums[0] += images
            sums[1] += events
        return [(bucket, model, *sums) for (bucket, model), sums in merged.items()]


def range_totals(
    owner_id: int,
    date_range: DateRange,
    granularity: str,
    token: int | None = None,
    cuts: tuple[datetime, ...] = (),
) -> RangeTotals:
    """The owner's images and events per bucket and model in the range, and the range's
    totals per API token; only ``token``'s records when it is given. With ``cuts`` (aware
    UTC times on quarter hours, in order, inside the range: where prices change, say), each
    bucket's images come in parts split at them, so that each part can be priced as a whole
    (``RangeTotals``). One statement, which adds up the pieces of ``_Plan`` in the database
    and returns one row per bucket, part and model, then one per token, whatever the number
    of records.
    """
    filtered = token is not None
    plan = _plan(date_range, granularity, filtered, cuts)
    if not plan.sql:
        return RangeTotals([], [], plan.parts)
    # Both rollups go to the same database: the router decides for them together.
    connection = connections[router.db_for_read(DailyUsageRollup)]
    day, moment = connection.ops.adapt_datefield_value, connection.ops.adapt_datetimefield_value
    of_token = [token] if filtered else []
    params: list[object] = [moment(value) for value in plan.hours]
    # The pieces are in time order: the first and last day bound the index range scanned.
    if plan.days:
        params += [owner_id, day(plan.days[0]), day(plan.days[-1]), *of_token]
    if plan.hours:  # each cut hour once, looked up in the index like the days
        params += [owner_id, *(moment(value) for value in dict.fromkeys(plan.hours))]
        params += of_token
    # Then the records not yet counted into the rollups, cut by the same pieces; then the
    # owner again, whose tokens alone name the tokens' rows.
    params += [owner_id, *of_token] * (bool(plan.days) + bool(plan.hours))
    params.append(owner_id)
    # Prepared once it repeats, where the database can: the statement is the same for every
    # owner of a range, and planning it cost about half of what running it does.
    with dialects.current().repeating_cursor(connection) as cursor:
        cursor.execute(plan.sql, params)
        rows = cursor.fetchall()
    # Bucket rows first in each row's columns, so that they are a slice; the token rows are
    # a few, with no bucket. One pass: it runs for every bucket and model.
    buckets: list[tuple[int, str, int, int]] = []
    tokens: list[TokenTotal] = []
    for row in rows:
        if row[0] is not None:
            buckets.append(row[:4])
        else:
            token_id, name, prefix, revoked = row[4:]
            tokens.append(TokenTotal(token_id, row[2], row[3], name, prefix, bool(revoked)))
    return RangeTotals(buckets, tokens, plan.parts)


@dataclass(frozen=True)
class _Plan:
    """How a range's buckets add up from the rollups, the same for every owner.

    Each local day is its whole UTC hours, read from the daily rollups in pieces (a part of
    one UTC day is a difference of two running totals), plus, where midnight falls inside
    a UTC hour (zones with a half- or quarter-hour offset), that hour's quarters from the
    hourly rollups. The pieces go to the database as two lists of ``VALUES``, joined to
    the rollup rows they cut and summed per bucket and model there: one row per bucket and
    model comes back, whatever the number of records. The records not yet counted into the
    rollups (``UncountedRecord``: at most a few seconds' worth) are added piece by piece in
    the same statement, so that the answer is exact whenever the fold runs. A filtered plan
    takes one more parameter after each owner: the token whose rows alone are added up.
    With cuts, a day is also cut where each cut falls (inside an hour, by quarters), and
    what the statement calls a piece's ``bucket`` is its label: bucket * parts + part.
    """

    sql: str
    days: tuple[date, ...]  # the UTC day of each daily piece, in time order
    hours: tuple[datetime, ...]  # the UTC hour of each hourly piece (parameters of ``sql``)
    parts: int  # the cuts plus one: a piece's label is its bucket * parts + its part


# Ranges repeat (the last 30 or 90 days in a few zones), and working out their pieces costs
# more than reading the rollups. A plan holds no data, only the range's arithmetic.
@lru_cache(maxsize=64)
def _plan(
    date_range: DateRange,
    granularity: str,
    filtered: bool = False,
    cuts: tuple[datetime, ...] = (),
) -> _Plan:
    bucket_of_day = _bucket_positions(date_range, granularity)
    days = midnights(date_range)
    # The range is read in stretches between its local midnights and the cuts, each with
    # the label of its bucket and part.
    bounds = sorted({*days, *cuts})
    parts = len(cuts) + 1
    labels = [
        bucket_of_day[bisect_right(days, start) - 1] * parts + bisect_right(cuts, start)
        for start in bounds[:-1]
    ]
    daily = _daily_pieces(bounds, labels)
    hourly = _hourly_pieces(bounds, labels)
    selects_of = []
    if daily:
        selects_of.append(_daily_sql(daily, filtered))
    if hourly:
        selects_of.append(_hourly_sql(hourly, filtered))
    if not selects_of:
        return _Plan("", (), (), parts)
    ctes = ", ".join(cte for cte, _, _ in selects_of)
    # The rollups' pieces, then the uncounted records' (the order of the parameters).
    selects = " UNION ALL ".join(
        [rollup for _, rollup, _ in selects_of] + [uncounted for _, _, uncounted in selects_of]
    )
    # The pieces are added up per bucket and model and per token in one pass where the
    # database can (``usage.dialects``), and each token's name joined to its row: one
    # statement and one round trip, where asking for the names apart would cost a second.
    sql = (
        f"WITH {ctes}, pieces AS ({selects}) "
        "SELECT g.bucket, g.model, g.images, g.events, g.token_id, "
        "t.name, t.prefix, t.revoked_at IS NOT NULL "
        f"FROM ({dialects.current().BY_BUCKET_AND_TOKEN}) AS g "
        f"LEFT JOIN {_quoted_table(ApiToken)} t ON t.id = g.token_id AND t.owner_id = %s"
    )
    return _Plan(
        sql, tuple(piece[0] for piece in daily), tuple(piece[0] for piece in hourly), parts
    )


def _bucket_positions(date_range: DateRange, granularity: str) -> list[int]:
    """For each local day of the range, the position of its bucket in ``periods``."""
    positions: list[int] = []
    previous, position = None, -1
    for offset in range(date_range.days):
        bucket = bucket_of(date_range.start + timedelta(days=offset), granularity)
        if bucket != previous:
            previous, position = bucket, position + 1
        positions.append(position)
    return positions


def _daily_pieces(bounds: list[datetime], labels: list[int]) -> list[tuple[date, int, int, int]]:
    """``(UTC day, from hour, to hour, label)``: the whole UTC hours of each stretch between
    two of ``bounds``, cut where UTC days end. Pieces next to each other in one UTC day and
    with one label (two days of one week, say) are one piece."""
    pieces: list[tuple[date, int, int, int]] = []
    for label, (start, end) in zip(labels, pairwise(bounds), strict=True):
        moment = rollups.ceil_hour(start)
        last = rollups.hour_of(end)
        while moment < last:
            utc_day = moment.date()
            day_end = datetime.combine(utc_day + timedelta(days=1), time.min, tzinfo=UTC)
            piece_end = min(last, day_end)
            to_hour = 24 if piece_end == day_end else piece_end.hour
            if pieces and pieces[-1][0] == utc_day and pieces[-1][2:] == (moment.hour, label):
                pieces[-1] = (utc_day, pieces[-1][1], to_hour, label)
            else:
                pieces.append((utc_day, moment.hour, to_hour, label))
            moment = piece_end
    return pieces


def _hourly_pieces(
    bounds: list[datetime], labels: list[int]
) -> list[tuple[datetime, int, int, int]]:
    """``(UTC hour, from quarter, to quarter, label)``: the quarters of the UTC hours that
    one of ``bounds`` falls inside of (a local midnight in a zone with a half-hour offset, a
    price that starts at 13:15), each with the label of the stretch its start is in."""
    cut_hours = sorted({rollups.hour_of(m) for m in bounds if m != rollups.hour_of(m)})
    lo, hi = bounds[0], bounds[-1]
    pieces: list[tuple[datetime, int, int, int]] = []
    for hour in cut_hours:
        for quarter in range(4):
            start = hour + quarter * rollups.QUARTER
            if not lo <= start < hi:
                continue
            label = labels[bisect_right(bounds, start) - 1]
            if pieces and pieces[-1][0] == hour and pieces[-1][2:] == (quarter, label):
                pieces[-1] = (hour, pieces[-1][1], quarter + 1, label)
            else:
                pieces.append((hour, quarter, quarter + 1, label))
    return pieces


def _daily_sql(pieces: list[tuple[date, int, int, int]], filtered: bool) -> tuple[str, str, str]:
    """The CTE of the daily pieces, the SELECT of each piece's images and events in the
    rollups, and the SELECT of the uncounted records in each piece."""
    table = _quoted_table(DailyUsageRollup)
    # Written into the statement, not passed as parameters: our own dates and numbers, and
    # 180 parameters for 90 days cost the driver more than the query costs the database.
    # date('2026-03-05') is a date in PostgreSQL and the text that SQLite stores for one.
    values = ", ".join(
        f"(date('{day.isoformat()}'), {a}, {b}, {bucket})" for day, a, b, bucket in pieces
    )
    cte = f"daily_piece (utc_day, from_hour, to_hour, bucket) AS (VALUES {values})"
    # The running total through hour 0 is 0: no column holds it.
    from_hours = sorted({a for _, a, _, _ in pieces} - {0})
    to_hours = sorted({b for _, _, b, _ in pieces})

    def piece(names: tuple[str, ...]) -> str:
        through_to = _running(names, "to_hour", to_hours)
        return (
            f"{through_to} - {_running(names, 'from_hour', from_hours)}"
            if from_hours
            else through_to
        )

    select = (
        f"SELECT p.bucket, r.model, r.token_id, {piece(rollups.IMAGES_BY)} AS images, "
        f"{piece(rollups.EVENTS_BY)} AS events "
        f"FROM {table} r JOIN daily_piece p ON r.day = p.utc_day "
        "WHERE r.owner_id = %s AND r.day BETWEEN %s AND %s"
        f"{_of_token('r', filtered)}"
    )
    buckets = dialects.current().BUCKETS
    day, hour = buckets.day, buckets.hour_of_day
    inside = f"{day} = p.utc_day AND {hour} >= p.from_hour AND {hour} < p.to_hour"
    span = (
        min(_day_start(day) + a * rollups.HOUR for day, a, _, _ in pieces),
        max(_day_start(day) + b * rollups.HOUR for day, _, b, _ in pieces),
    )
    return cte, select, _uncounted_sql("daily_piece p", inside, filtered, span)


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _running(names: tuple[str, ...], column: str, hours: list[int]) -> str:
    """The running total through ``p.column``'s hour, one of ``hours`` (or 0)."""
    cases = " ".join(f"WHEN {hour} THEN r.{names[hour - 1]}" for hour in hours)
    return f"(CASE p.{column} {cases} ELSE 0 END)"


def _hourly_sql(
    pieces: list[tuple[datetime, int, int, int]], filtered: bool
) -> tuple[str, str, str]:
    """The CTE of the quarters of cut hours, the SELECT of their images and events in the
    rollups, and the SELECT of the uncounted records in them."""
    table = _quoted_table(UsageRollup)
    values = ", ".join(f"(%s, {a}, {b}, {bucket})" for _, a, b, bucket in pieces)
    cte = f"hourly_piece (utc_hour, from_quarter, to_quarter, bucket) AS (VALUES {values})"
    hours = ", ".join("%s" for _ in dict.fromkeys(hour for hour, _, _, _ in pieces))

    def quarters(names: tuple[str, ...]) -> str:
        return " + ".join(
            f"(CASE WHEN q.from_quarter <= {n} AND {n} < q.to_quarter THEN h.{name} ELSE 0 END)"
            for n, name in enumerate(names)
        )

    select = (
        f"SELECT q.bucket, h.model, h.token_id, {quarters(rollups.IMAGE_COLUMNS)} AS images, "
        f"{quarters(rollups.EVENT_COLUMNS)} AS events "
        f"FROM {table} h JOIN hourly_piece q ON h.hour = q.utc_hour "
        f"WHERE h.owner_id = %s AND h.hour IN ({hours})"
        f"{_of_token('h', filtered)}"
    )
    buckets = dialects.current().BUCKETS
    hour, quarter = buckets.hour, buckets.quarter
    inside = f"{hour} = p.utc_hour AND {quarter} >= p.from_quarter AND {quarter} < p.to_quarter"
    span = (
        min(hour + a * rollups.QUARTER for hour, a, _, _ in pieces),
        max(hour + b * rollups.QUARTER for hour, _, b, _ in pieces),
    )
    return cte, select, _uncounted_sql("hourly_piece p", inside, filtered, span)


def _of_token(alias: str, filtered: bool) -> str:
    """The condition on a rollup row's token, when the plan is filtered. The token is last
    in the primary key, after the owner, day (or hour) and model: the range scanned stays
    the same, and the token is checked on each index entry of it."""
    return f" AND {alias}.token_id = %s" if filtered else ""


def _uncounted_sql(
    pieces: str, inside: str, filtered: bool, span: tuple[datetime, datetime]
) -> str:
    """The owner's uncounted records, each in the one piece (``p``) it falls ``inside``,
    with the token the rollups will count them under. The pieces' ``span`` (first start,
    last end) is written into the join as well: it adds no record (each piece lies within
    it), and it tells PostgreSQL which monthly partitions of the records (``usage.partitions``)
    to look in, when the statement is planned, rather than every one of them each time."""
    token = rollups.TOKEN_KEY.replace("token_id", "r.token_id")
    moment = dialects.current().moment
    return (
        f"SELECT p.bucket, r.model, {token} AS token_id, r.image_count AS images, 1 AS events "
        f"FROM {_quoted_table(UncountedRecord)} u "
        f"JOIN {_quoted_table(UsageRecord)} r ON r.id = u.record_id "
        f"AND r.occurred_at >= {moment(span[0])} AND r.occurred_at < {moment(span[1])} "
        f"JOIN {pieces} ON {inside} WHERE u.owner_id = %s"
        f"{f' AND {token} = %s' if filtered else ''}"
    )


def _quoted_table(model: type[models.Model]) -> str:
    # PostgreSQL and SQLite quote names alike.
    return f'"{model._meta.db_table}"'


def midnights(date_range: DateRange) -> list[datetime]:
    """Every local midnight from the range's start to the end of its last day, in UTC."""
    return [
        local_midnight(date_range.start + timedelta(days=n), date_range.tz)
        for n in range(date_range.days + 1)
    ]


def summarize(
    owner: AbstractBaseUser, date_range: DateRange, granularity: str, token: int | None = None
) -> dict:
    """The owner's images and events in the range: totals, per model, per bucket and per
    API token; of one token's records only with ``token`` (``usage.devices.parse_token``)."""
    return summary_of(
        date_range, granularity, range_totals(owner.pk, date_range, granularity, token)
    )


@dataclass(frozen=True)
class Pricing:
    """What a range's images cost, for ``summary_of``: each model's price per image in each
    part of ``RangeTotals`` (whole units of the prices' last decimal, ``None`` for no price),
    how a sum of units is shown, and in which currency."""

    units: Mapping[str, Sequence[int | None]]
    shown: Callable[[int], str]
    currency: str


def summary_of(
    date_range: DateRange, granularity: str, totals: RangeTotals, pricing: Pricing | None = None
) -> dict:
    """The summary's answer from ``range_totals``: series in bucket order, each bucket's
    models most images first. With ``pricing``, what each point, model, bucket and the
    whole range cost, added up as whole units (exact) and shown once each.

    The rows are added up into a grid of buckets by models (each bucket's parts, when the
    range was cut, fall into the same cell), then read out in order: no sort of the rows.
    """
    per_model: dict[str, list[int]] = {}
    for row in totals.rows:
        model_totals = per_model.get(row[1])
        if model_totals is None:
            per_model[row[1]] = [row[2], row[3]]
        else:
            model_totals[0] += row[2]
            model_totals[1] += row[3]
    models = sorted(per_model, key=lambda name: (-per_model[name][0], name))
    rank = {name: position for position, name in enumerate(models)}
    width = len(models)
    labels = list(_labels(date_range, granularity))
    units = None if pricing is None else [pricing.units[name] for name in models]
    grid = _Grid.of(totals, rank, len(labels), units)
    payload = {
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
        "periods": labels,
        "series": [],
        "byToken": devices.breakdown(totals.tokens),
    }
    series = payload["series"]
    if pricing is None:
        for cell in grid.filled():
            bucket, position = divmod(cell, width)
            series.append(
                {"period": labels[bucket], "model": models[position], "images": grid.images[cell]}
            )
        return payload
    shown = pricing.shown
    model_costs, model_unpriced = [0] * width, [0] * width
    period_costs = []
    for bucket, label in enumerate(labels):
        bucket_images = bucket_costs = bucket_unpriced = 0
        for cell in grid.filled(bucket):
            position = cell - bucket * width
            count, cost, not_priced = grid.images[cell], grid.costs[cell], grid.unpriced[cell]
            series.append(
                {
                    "period": label,
                    "model": models[position],
                    "images": count,
                    "cost": shown(cost) if not_priced < count else None,
                }
            )
            model_costs[position] += cost
            model_unpriced[position] += not_priced
            bucket_images += count
            bucket_costs += cost
            bucket_unpriced += not_priced
        period_costs.append(cost_shown(bucket_images, bucket_costs, bucket_unpriced, shown))
    for entry, cost, not_priced in zip(payload["models"], model_costs, model_unpriced, strict=True):
        entry["cost"] = cost_shown(entry["images"], cost, not_priced, shown)
        entry["unpricedImages"] = not_priced
    whole = payload["totals"]
    whole["cost"] = cost_shown(whole["images"], sum(model_costs), sum(model_unpriced), shown)
    whole["unpricedImages"] = sum(model_unpriced)
    payload["periodCosts"] = period_costs
    payload["currency"] = pricing.currency
    payload["unpricedModels"] = [
        entry["model"] for entry in payload["models"] if entry["unpricedImages"]
    ]
    return payload


@dataclass(frozen=True)
class _Grid:
    """A range's rows added up per cell, ``bucket * width + model's rank``: images, events,
    and with prices each cell's cost in units and its images without a price."""

    width: int
    images: list[int]
    events: list[int]
    costs: list[int]
    unpriced: list[int]

    @classmethod
    def of(
        cls,
        totals: RangeTotals,
        rank: Mapping[str, int],
        buckets: int,
        units: list[Sequence[int | None]] | None,
    ) -> "_Grid":
        """``units``: by rank, each model's price per image in each part (``Pricing``)."""
        width, parts, cells = len(rank), totals.parts, buckets * len(rank)
        images, events, costs, unpriced = [0] * cells, [0] * cells, [0] * cells, [0] * cells
        for label, model, count, times in totals.rows:
            bucket, part = divmod(label, parts)
            position = rank[model]
            cell = bucket * width + position
            images[cell] += count
            events[cell] += times
            if units is not None:
                price = units[position][part]
                if price is None:
                    unpriced[cell] += count
                else:
                    costs[cell] += count * price
        return cls(width, images, events, costs, unpriced)

    def filled(self, bucket: int | None = None) -> list[int]:
        """The cells with rows, in order, of every bucket or of one: a cell with no row
        stays out of the series (the statement's ``HAVING SUM(events) > 0``)."""
        width = self.width
        cells = (
            range(len(self.events))
            if bucket is None
            else range(bucket * width, (bucket + 1) * width)
        )
        return [cell for cell in cells if self.events[cell]]


@lru_cache(maxsize=64)
def _labels(date_range: DateRange, granularity: str) -> tuple[str, ...]:
    return tuple(period.isoformat() for period in periods(date_range, granularity))


def cost_shown(images: int, cost: int, unpriced: int, shown: Callable[[int], str]) -> str | None:
    """A cost in units as shown: ``None`` when none of the images had a price (never a zero
    cost for unpriced images); nothing at all costs zero."""
    return shown(cost) if unpriced < images or not images else None
