"""Prices and costs: what an owner's images cost, exactly, from the rollups.

A record costs its image count times its model's price in force when it occurred
(``ModelPrice``: each price holds from its ``valid_from`` until the model's next one; before
the first, the model has no price). Costs are never stored: they are worked out when read,
from the same rollups as the image counts, so that ingestion does no more work and a price
added for the past applies at once.

How, for a stretch of time (a summary's bucket, a budget's month) and one model: when no
price of the model starts inside the stretch, its cost is its images times the one price
in force; when some do, the images from each such start to the end of the stretch are read
too (``interval_images``), and the differences give the images of each price's part.
Prices start on quarter hours, which the hourly rollups resolve, so this is exact in any
zone, wherever in a day a price changes; only stretches that contain a change cost a read.
Summaries, with many buckets, do it the other way round (``summarize_with_costs``): their
one statement cuts each bucket where a price starts, and every part has one price.

Money is ``Decimal`` throughout, worked out in a context that raises rather than rounds
(``EXACT``). Figures are rounded once, half to even, to the currency's usual decimals
(``display``), each from its exact sum: a total shown can differ by a unit in the last
place from the sum of the rounded parts shown beside it.
"""

from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal, Inexact
from functools import lru_cache

from babel.numbers import get_currency_precision
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connections, router

from usage import dialects, rollups, summary
from usage.model_names import normal_model_name
from usage.models import MODEL_NAME_MAX_LENGTH, DailyUsageRollup, ModelPrice

# 60 digits hold any sum of images (at most about 10**16) times any price (18 digits): no
# operation needs to round, and one that would raises Inexact instead of losing money.
EXACT = Context(prec=60, traps=[Inexact])
ROUNDING = Context(prec=60)  # for ``display``, the one place that rounds
ZERO = Decimal(0)
# Prices are stored with at most this many decimals: a price times an image count is then a
# whole number of such units, which summaries add up as integers (exact, and fast).
UNIT_PLACES = ModelPrice._meta.get_field("price_per_image").decimal_places


@dataclass(frozen=True)
class Spend:
    """Images in a stretch of time, and what the priced ones cost (``unpriced_images`` had
    no price in force when they occurred and count for nothing in ``cost``)."""

    images: int
    cost: Decimal
    unpriced_images: int

    def __add__(self, other: "Spend") -> "Spend":
        return Spend(
            self.images + other.images,
            EXACT.add(self.cost, other.cost),
            self.unpriced_images + other.unpriced_images,
        )

    @property
    def priced_images(self) -> int:
        return self.images - self.unpriced_images


NOTHING = Spend(0, ZERO, 0)


# Prices ---------------------------------------------------------------------------------


def check_price(model: str, price_per_image: Decimal, valid_from: datetime) -> str:
    """The model name as prices store it; raises ``ValidationError`` for a price that cannot
    be one: a blank or too long name, a negative price, or a start off the quarter hour."""
    name = normal_model_name(model)
    errors = {}
    if not name:
        errors["model"] = "Give the model's name."
    elif len(name) > MODEL_NAME_MAX_LENGTH:  # normalising can lengthen a name ("ﬃ" is "ffi")
        errors["model"] = f"A model name has at most {MODEL_NAME_MAX_LENGTH} characters."
    if price_per_image < 0:
        errors["price_per_image"] = "A price cannot be negative."
    if not on_quarter_hour(valid_from):
        errors["valid_from"] = (
            "A price starts on a quarter hour (minute 0, 15, 30 or 45, no seconds): usage is "
            "counted by quarter hour, so that is where a cost can change exactly."
        )
    if errors:
        raise ValidationError(errors)
    return name


def on_quarter_hour(moment: datetime) -> bool:
    moment = moment.astimezone(UTC)
    return moment.minute % 15 == 0 and moment.second == 0 and moment.microsecond == 0


class PriceBook:
    """Every model's prices in time order: which is in force at a moment, which start when."""

    def __init__(self, prices: Iterable[tuple[str, datetime, Decimal]]):
        self._starts: dict[str, list[datetime]] = {}
        self._prices: dict[str, list[Decimal]] = {}
        for model, valid_from, price in sorted(prices):
            self._starts.setdefault(model, []).append(valid_from)
            self._prices.setdefault(model, []).append(price)

    def price_at(self, model: str, moment: datetime) -> Decimal | None:
        """The price in force at ``moment`` (a price applies from its ``valid_from`` on)."""
        position = bisect_right(self._starts.get(model, ()), moment) - 1
        return self._prices[model][position] if position >= 0 else None

    def units_at(self, model: str, moment: datetime) -> int | None:
        """``price_at`` in whole units of ``UNIT_PLACES`` decimals."""
        price = self.price_at(model, moment)
        return None if price is None else to_units(price)

    def starts_inside(self, model: str, start: datetime, end: datetime) -> list[datetime]:
        """The starts of the model's prices strictly after ``start`` and before ``end``."""
        return [moment for moment in self._starts.get(model, ()) if start < moment < end]

    def starts_between(self, start: datetime, end: datetime) -> set[datetime]:
        """The starts of any model's prices strictly after ``start`` and before ``end``."""
        return {
            moment for starts in self._starts.values() for moment in starts if start < moment < end
        }


def price_book() -> PriceBook:
    """All prices, in one query: a few per model, read whole rather than per stretch."""
    database = connections[router.db_for_read(ModelPrice)]
    return PriceBook(dialects.current().prices(database))


# Money on screen ------------------------------------------------------------------------


def currency() -> str:
    return settings.SITE_CURRENCY


@lru_cache(maxsize=8)
def _quantum(code: str) -> Decimal:
    return Decimal(1).scaleb(-get_currency_precision(code))


def decimals() -> int:
    """How many decimals the site currency is usually shown with (2 for USD, 0 for JPY)."""
    return -_quantum(currency()).as_tuple().exponent


def display(amount: Decimal, code: str | None = None) -> str:
    """``amount`` as a decimal string with the decimals of the currency (the site's unless
    ``code`` is given), rounded half to even."""
    quantum = _quantum(code or currency())
    return f"{amount.quantize(quantum, rounding=ROUND_HALF_EVEN, context=ROUNDING):f}"


def to_units(price: Decimal) -> int:
    """A price (at most ``UNIT_PLACES`` decimals, as stored) as a whole number of units."""
    units = price.scaleb(UNIT_PLACES, context=EXACT)
    if units != units.to_integral_value():
        raise ValueError(f"A price has at most {UNIT_PLACES} decimals, not {price}.")
    return int(units)


def units_shown(units: int, places: int) -> str:
    """``units`` (of ``UNIT_PLACES`` decimals) as a decimal string with ``places`` decimals,
    rounded half to even: what ``display`` shows for the same amount as a ``Decimal``."""
    return units_formatter(places)(units)


@lru_cache(maxsize=8)
def units_formatter(places: int) -> Callable[[int], str]:
    """``units_shown`` for one number of decimals, its constants worked out once: a
    summary formats hundreds of figures."""
    drop = UNIT_PLACES - places
    step = 10 ** max(drop, 0)
    half = step // 2
    scale = 10**places
    pattern = f"%d.%0{places}d" if places else "%d"

    def shown(units: int) -> str:
        if units < 0:
            return "-" + shown(-units)
        if drop < 0:
            whole = units * 10**-drop
        else:
            whole, rest = divmod(units, step)
            if rest > half or (rest == half and rest and whole % 2):
                whole += 1
        return pattern % divmod(whole, scale) if places else pattern % whole

    return shown


def exact(amount: Decimal) -> str:
    """``amount`` exactly, with at least the currency's decimals (``0.125``, ``3.10``): for
    CSV files, whose sums in a spreadsheet must come out as the totals do."""
    shown = amount.normalize(EXACT)
    if -shown.as_tuple().exponent < decimals():
        shown = shown.quantize(Decimal(1).scaleb(-decimals()), context=EXACT)
    return f"{shown:f}"


# Images per stretch, from the rollups ------------------------------------------------------


Stretch = tuple[datetime, datetime]


def interval_images(
    owner_id: int, stretches: list[Stretch], token: int | None = None
) -> dict[tuple[Stretch, str], int]:
    """``{(stretch, model): images}`` for stretches ``[start, end)`` of aware UTC times on
    quarter hours, read in one statement from the rollups and the records not counted into
    them yet, as ``usage.summary`` reads its buckets (whose SQL for the pieces it reuses);
    of one API token's records only with ``token`` (``usage.devices.parse_token``)."""
    filtered = token is not None
    of_token = [token] if filtered else []
    daily: list[tuple] = []
    hourly: list[tuple] = []
    for label, (start, end) in enumerate(stretches):
        _cut(start, end, label, daily, hourly)
    parts = []
    if daily:
        parts.append(summary._daily_sql(daily, filtered))
    if hourly:
        parts.append(summary._hourly_sql(hourly, filtered))
    if not parts:
        return {}
    selects = [rollup for _, rollup, _ in parts] + [uncounted for _, _, uncounted in parts]
    sql = (
        f"WITH {', '.join(cte for cte, _, _ in parts)} "
        "SELECT bucket, model, CAST(SUM(images) AS BIGINT) "
        f"FROM ({' UNION ALL '.join(selects)}) AS pieces GROUP BY bucket, model "
        "HAVING SUM(events) > 0"
    )
    connection = connections[router.db_for_read(DailyUsageRollup)]
    day, moment = connection.ops.adapt_datefield_value, connection.ops.adapt_datetimefield_value
    hours = [piece[0] for piece in hourly]
    params: list[object] = [moment(hour) for hour in hours]
    if daily:
        days = [piece[0] for piece in daily]
        params += [owner_id, day(min(days)), day(max(days)), *of_token]
    if hourly:
        params += [owner_id, *(moment(hour) for hour in dict.fromkeys(hours)), *of_token]
    params += [owner_id, *of_token] * len(parts)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {(stretches[label], model): images for label, model, images in cursor.fetchall()}


def _cut(start: datetime, end: datetime, label: int, daily: list, hourly: list) -> None:
    """The pieces of ``[start, end)`` as ``usage.summary`` reads them: quarters of the hours
    at either end (hourly rollups), whole hours of each UTC day between (daily rollups)."""
    first_hour, last_hour = rollups.ceil_hour(start), rollups.hour_of(end)
    if first_hour > last_hour:  # both inside one hour
        if start < end:
            hourly.append((last_hour, _quarter(start), _quarter(end), label))
        return
    if start < first_hour:
        hourly.append((rollups.hour_of(start), _quarter(start), 4, label))
    moment = first_hour
    while moment < last_hour:
        day_end = datetime.combine(moment.date() + timedelta(days=1), time.min, tzinfo=UTC)
        piece_end = min(last_hour, day_end)
        to_hour = 24 if piece_end == day_end else piece_end.hour
        daily.append((moment.date(), moment.hour, to_hour, label))
        moment = piece_end
    if last_hour < end:
        hourly.append((last_hour, 0, _quarter(end), label))


def _quarter(moment: datetime) -> int:
    return moment.minute // 15


def ceil_quarter(moment: datetime) -> datetime:
    """The first quarter hour at or after ``moment`` (a local midnight is on one in every
    zone since 1972; before, a few had offsets in seconds)."""
    moment = moment.astimezone(UTC)
    floor = moment.replace(minute=moment.minute - moment.minute % 15, second=0, microsecond=0)
    return floor if floor == moment else floor + rollups.QUARTER


# Costs ------------------------------------------------------------------------------------


def split_cost(
    book: PriceBook,
    model: str,
    stretch: Stretch,
    images: int,
    tails: dict[tuple[Stretch, str], int],
) -> Spend:
    """What ``images`` of ``model`` in ``stretch`` cost, given in ``tails`` the images from
    each price start inside the stretch to its end (``interval_images``)."""
    start, end = stretch
    cuts = book.starts_inside(model, start, end)
    if not cuts:  # nearly always: one price (or none) for the whole stretch
        price = book.price_at(model, start)
        if price is None:
            return Spend(images, ZERO, images)
        return Spend(images, multiply(images, price), 0)
    starts = [start, *cuts]
    from_start = [images, *(tails.get(((cut, end), model), 0) for cut in starts[1:])]
    cost, unpriced = ZERO, 0
    for position, moment in enumerate(starts):
        later = from_start[position + 1] if position + 1 < len(starts) else 0
        part = from_start[position] - later
        price = book.price_at(model, moment)
        if price is None:
            unpriced += part
        else:
            cost = EXACT.add(cost, multiply(part, price))
    return Spend(images, cost, unpriced)


def tails_needed(book: PriceBook, stretches: Iterable[Stretch]) -> list[Stretch]:
    """The stretches that ``split_cost`` needs read: from each price start (of any model)
    inside one of ``stretches`` to that stretch's end. Few: prices change seldom."""
    needed: dict[Stretch, None] = {}
    for start, end in stretches:
        for cut in book.starts_between(start, end):
            needed[(cut, end)] = None
    return list(needed)


def multiply(images: int, price: Decimal) -> Decimal:
    return EXACT.multiply(Decimal(images), price)


def spend_between(
    owner_id: int, start: datetime, end: datetime, book: PriceBook | None = None
) -> Spend:
    """The owner's images from ``start`` to ``end`` (aware, on quarter hours; the end
    excluded) and what they cost, exactly: from the rollups and the uncounted records, in
    one statement (and one of the prices, unless they are given as ``book``)."""
    if not (on_quarter_hour(start) and on_quarter_hour(end)):
        raise ValueError("spend_between reads whole quarter hours: start and end must be on one.")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        return NOTHING
    book = book or price_book()
    whole = (start, end)
    read = interval_images(owner_id, [whole, *tails_needed(book, [whole])])
    total = NOTHING
    for (stretch, model), images in read.items():
        if stretch == whole:
            total += split_cost(book, model, whole, images, read)
    return total


def costs_of(
    owner_id: int,
    cells: list[tuple[Stretch, str, int]],
    token: int | None = None,
    book: PriceBook | None = None,
) -> list[Spend]:
    """What each ``(stretch, model, images)`` costs, the images being the owner's images of
    the model in the stretch as the rollups hold them (the local days of a CSV, say;
    summaries price their buckets in their own statement, ``summarize_with_costs``). One read of
    the prices, and one of the rollups only when a price starts inside some stretch.

    That read takes the images of the whole stretch again, beside those after each price
    start: the parts of a stretch then come from one snapshot, even if records arrived
    since ``images`` were read.
    """
    book = book or price_book()
    changed = {stretch for stretch, model, _ in cells if book.starts_inside(model, *stretch)}
    stretches = [*changed, *tails_needed(book, changed)]
    read = interval_images(owner_id, stretches, token) if changed else {}
    return [
        split_cost(
            book,
            model,
            stretch,
            read.get((stretch, model), 0) if stretch in changed else images,
            read,
        )
        for stretch, model, images in cells
    ]


def bucket_stretches(date_range: summary.DateRange, granularity: str) -> list[Stretch]:
    """The UTC stretch of each bucket of ``summary.periods``, cut to the range."""
    tz = date_range.tz
    starts = [max(day, date_range.start) for day in summary.periods(date_range, granularity)]
    ends = [*starts[1:], date_range.end + timedelta(days=1)]
    return [
        (
            ceil_quarter(summary.local_midnight(start, tz)),
            ceil_quarter(summary.local_midnight(end, tz)),
        )
        for start, end in zip(starts, ends, strict=True)
    ]


def shown(spend: Spend, code: str | None = None) -> str | None:
    """The cost as the API shows it: ``None`` when none of the images had a price."""
    return display(spend.cost, code) if spend.priced_images or not spend.images else None


def summarize_with_costs(
    owner,
    date_range: summary.DateRange,
    granularity: str,
    token: int | None = None,
    book: PriceBook | None = None,
) -> dict:
    """``usage.summary.summarize``, with what each bucket and model, each bucket, each model
    and the whole range cost, the site's currency, and the models with unpriced images; of
    one API token's records only with ``token``.

    One read of the prices, then one statement: the summary's own, with each bucket cut
    where a price (of any model) starts inside the range, so that every part it returns has
    one price per model. Money is added up as whole units of the prices' last decimal
    (``UNIT_PLACES``): exact, and cheap enough for the 720 buckets and models of 90 days
    of 8 models, on every summary and dashboard. A caller that prices more than one range
    can read the prices once and give them as ``book``.
    """
    book = book or price_book()
    start, end = date_range.utc_bounds()
    cuts = tuple(sorted(book.starts_between(start, end)))
    totals = summary.range_totals(owner.pk, date_range, granularity, token, cuts)
    # The price of each model in each part: the one in force where the part starts.
    part_starts = (start, *cuts)
    units = {
        model: [book.units_at(model, moment) for moment in part_starts]
        for model in {row[1] for row in totals.rows}
    }
    pricing = summary.Pricing(units, units_formatter(decimals()), currency())
    return summary.summary_of(date_range, granularity, totals, pricing)


def daily_costs(
    owner_id: int,
    date_range: summary.DateRange,
    totals: dict[tuple[date, str], list[int]],
    token: int | None = None,
) -> dict[tuple[date, str], Spend]:
    """What each local day and model of ``usage.summary.daily_totals`` cost."""
    stretches = bucket_stretches(date_range, "day")
    keys = list(totals)
    cells = [
        (stretches[(day - date_range.start).days], model, totals[(day, model)][0])
        for day, model in keys
    ]
    return dict(zip(keys, costs_of(owner_id, cells, token), strict=True))
