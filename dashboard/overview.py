"""What the dashboard shows, built in one place for the first paint and for Refresh Data.

The numbers come from ``usage.costs.summarize_with_costs``, the same call that answers
``GET /api/model-usage/summary``, so the page and the API can never disagree.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cached_property

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone
from django.utils.dateformat import format as date_format

from dashboard.comparison import Change, period_words, previous_range, versus_words
from dashboard.model_colours import OTHER, chart_slots
from usage.costs import PriceBook, display, price_book, summarize_with_costs
from usage.ingest import MAX_FUTURE
from usage.models import UsageRecord
from usage.problems import InvalidQuery
from usage.records import RecordQuery, list_records
from usage.summary import DateRange, parse_granularity, parse_range, summarize

PRESET_DAYS = (7, 30, 90)
DEFAULT_DAYS = 30
RECENT_LIMIT = 10
# A stacked bar of twenty colours reads as noise: the charts show the largest models and
# group the rest. The share table below the doughnut still lists every model.
CHART_MODELS = 7
OTHER_MODELS = "Other models"
# What the cards, charts and tables count: images (the default) or what they cost.
MEASURES = ("images", "cost")


@dataclass(frozen=True)
class DashboardQuery:
    date_range: DateRange
    days: int | None  # the preset, or None for a custom start/end


def parse_query(params: Mapping[str, str], default_zone: str) -> DashboardQuery:
    """``days`` (7, 30 or 90) or ``start``/``end``, and ``tz``, as in the summary API."""
    params = {key: params[key] for key in ("days", "start", "end", "tz") if params.get(key)}
    params.setdefault("tz", default_zone)
    if "start" in params or "end" in params:
        return DashboardQuery(parse_range(params), None)
    days = params.get("days", str(DEFAULT_DAYS))
    if days not in {str(preset) for preset in PRESET_DAYS}:
        raise InvalidQuery("days", "days must be 7, 30 or 90.")
    return DashboardQuery(parse_range(params, default_days=int(days)), int(days))


def parse_measure(value: str | None) -> str:
    """``measure``: ``images`` (also when absent) or ``cost``."""
    if value in (None, "", "images"):
        return "images"
    if value != "cost":
        raise InvalidQuery("measure", "measure must be images or cost.")
    return value


# A cost as the summary API writes it: a decimal string in the site currency, or None when
# none of the images it covers had a price (never a zero cost for unpriced images).
Cost = str | None


@dataclass(frozen=True)
class Row:
    label: str
    values: list  # images (int), or in the cost view each cell's cost (``Cost``)
    total: int | Cost
    period: str = ""  # the first day, ISO: the page writes the label in the reader's locale


@dataclass(frozen=True)
class Overview:
    summary: dict
    recent: list[UsageRecord]
    last_activity: datetime | None
    columns: list[str]  # the charts' series: models, the smallest grouped as one
    rows: list[Row]  # images per period, one value per column
    previous: dict  # the summary of the days just before, as many as the range has
    previous_range: DateRange
    measure: str = "images"
    book: PriceBook | None = None  # the prices the figures are at, for the page's other parts

    @property
    def in_cost(self) -> bool:
        return self.measure == "cost"

    @property
    def currency(self) -> str:
        return self.summary["currency"]

    @property
    def top_model(self) -> str | None:
        return self.summary["models"][0]["model"] if self.summary["models"] else None

    @property
    def grouped(self) -> bool:
        return len(self.columns) < len(self.summary["models"])

    @property
    def column_totals(self) -> list:
        """Each column's images; in the cost view its cost, a model's as the summary API
        has it and the grouped rest's added up from theirs."""
        if not self.in_cost:
            return [
                sum(row.values[index] for row in self.rows) for index in range(len(self.columns))
            ]
        costs = [entry["cost"] for entry in self.summary["models"]]
        shown = len(self.columns) - 1 if self.grouped else len(self.columns)
        return costs[:shown] + ([add_costs(costs[shown:])] if self.grouped else [])

    @property
    def column_colours(self) -> list[int | str]:
        """Each column's colour (see ``dashboard.model_colours``): by name, grey for the rest."""
        named = self.columns[:-1] if self.grouped else self.columns
        slots = chart_slots(named)
        return [slots[name] for name in named] + ([OTHER] if self.grouped else [])

    @property
    def legend(self) -> list[dict]:
        """The charts' series with their colours, for the usage table's header."""
        return [
            {"label": name, "colour": colour}
            for name, colour in zip(self.columns, self.column_colours, strict=True)
        ]

    @property
    def shares(self) -> list[dict]:
        """Every model with its share of the images (of the cost in the cost view, empty for
        a model without a price), and its colour in the charts."""
        coloured = len(self.columns) - 1 if self.grouped else len(self.columns)
        colours = self.column_colours
        return [
            {
                **entry,
                "percent": self._percent(entry),
                "colour": colours[position] if position < coloured else OTHER,
            }
            for position, entry in enumerate(self.summary["models"])
        ]

    def _percent(self, entry: dict) -> str | None:
        if not self.in_cost:
            return f"{100 * entry['images'] / (self.summary['totals']['images'] or 1):.1f}"
        if entry["cost"] is None:
            return None
        total = Decimal(self.summary["totals"]["cost"] or 0) or 1
        return f"{100 * Decimal(entry['cost']) / total:.1f}"

    @property
    def top_cost(self) -> dict | None:
        """The model that cost the most in the range (the first by images on a tie); None
        when no image had a price."""
        priced = [entry for entry in self.summary["models"] if entry["cost"] is not None]
        top = max(priced, key=lambda entry: Decimal(entry["cost"]), default=None)
        return top if top and Decimal(top["cost"]) > 0 else None

    @property
    def changes(self) -> dict[str, Change]:
        """The cards' figures against the days just before: images (or cost), generations,
        and the top model's images (or the costliest model's cost)."""
        period = period_words(self.previous_range.days)
        now, before = self.summary["totals"], self.previous["totals"]
        changes = {"generations": Change(now["events"], before["events"], "generations", period)}
        if self.in_cost:
            changes["cost"] = self._cost_change(now["cost"], before["cost"], "cost", period)
            if (top := self.top_cost) is not None:
                earlier = {entry["model"]: entry["cost"] for entry in self.previous["models"]}
                what = f"cost of {top['model']}"
                changes["top_model"] = self._cost_change(
                    top["cost"], earlier.get(top["model"]), what, period
                )
            return changes
        changes["images"] = Change(now["images"], before["images"], "images", period)
        if self.top_model is not None:
            earlier = {entry["model"]: entry["images"] for entry in self.previous["models"]}
            top = self.summary["models"][0]
            changes["top_model"] = Change(
                top["images"], earlier.get(top["model"], 0), f"{top['model']} images", period
            )
        return changes

    def _cost_change(self, now: Cost, before: Cost, what: str, period: str) -> Change:
        """Costs compared as shown (in the currency's decimals); no price counts as nothing."""
        amount = f"{now or display(Decimal(0))} {self.currency}"
        return Change(Decimal(now or 0), Decimal(before or 0), what, period, amount=amount)

    @cached_property
    def previous_dates(self) -> dict[str, str]:
        """The days before, for each card's comparison: as ISO dates, and as the page writes
        dates (worked out once, not for every card)."""
        start, end = self.previous_range.start, self.previous_range.end
        return {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "shown": f"{date_format(start, 'j M Y')} \N{EN DASH} {date_format(end, 'j M Y')}",
        }

    @property
    def versus(self) -> str:
        return versus_words(self.previous_range.days)

    def previous_per_period(self) -> list:
        """The days before, bucket by bucket, lined up with the range's buckets (the first
        day of each against the first day of the other); None where the range has more.
        In the cost view, each bucket's cost (None also for a bucket without a price)."""
        if self.in_cost:
            values: list = list(self.previous["periodCosts"])[: len(self.rows)]
        else:
            totals = dict.fromkeys(self.previous["periods"], 0)
            for point in self.previous["series"]:
                totals[point["period"]] += point["images"]
            values = list(totals.values())[: len(self.rows)]
        return values + [None] * (len(self.rows) - len(values))

    def chart(self) -> dict:
        """What the two charts draw, for ``json_script`` and the refresh JSON alike. In the
        cost view each dataset has ``data`` as numbers to plot and ``text``, the exact
        decimal strings of the summary API, for tooltips."""
        colours = self.column_colours
        datasets = [
            {
                "label": name,
                **self._plotted([row.values[index] for row in self.rows]),
                "colour": colours[index],
            }
            for index, name in enumerate(self.columns)
        ]
        return {
            "measure": self.measure,
            "currency": self.currency,
            "axis": f"Cost ({self.currency})" if self.in_cost else "Images",
            "empty": "No priced images in this range"
            if self.in_cost
            else "No images in this range",
            "labels": [row.label for row in self.rows],
            "periods": self.summary["periods"],
            "datasets": datasets,
            "share": {
                "labels": self.columns,
                **self._plotted(self.column_totals),
                "colours": colours,
            },
            "previous": {
                "label": period_words(self.previous_range.days).capitalize(),
                **self._plotted(self.previous_per_period()),
                "periods": self.previous["periods"][: len(self.rows)],
            },
            "grouped": self.grouped,
            "granularity": self.summary["granularity"],
        }

    def _plotted(self, values: list) -> dict:
        if not self.in_cost:
            return {"data": values}
        return {"data": [None if cost is None else float(cost) for cost in values], "text": values}


def build_overview(
    owner: AbstractBaseUser,
    date_range: DateRange,
    token: int | None = None,
    measure: str = "images",
) -> Overview:
    granularity = parse_granularity(None, date_range.days)
    book = price_book()
    summary = summarize_with_costs(owner, date_range, granularity, token, book)
    # The same query again for the days before: the cost of the comparison is one rollup read
    # (and their costs, from the same prices, only when the page shows costs).
    before = previous_range(date_range)
    if measure == "cost":
        previous = summarize_with_costs(owner, before, granularity, token, book)
    else:
        previous = summarize(owner, before, granularity, token)
    lo, hi = date_range.utc_bounds()
    recent, _ = list_records(owner, RecordQuery(lo, hi, RECENT_LIMIT, after=None))
    return Overview(
        summary,
        recent,
        last_activity_of(owner, recent, hi),
        *_table(summary, measure),
        previous,
        before,
        measure,
        book,
    )


def last_activity_of(
    owner: AbstractBaseUser, recent: list[UsageRecord], end: datetime
) -> datetime | None:
    """When the owner's newest record occurred. No record is stored more than
    ``MAX_FUTURE`` ahead of when it arrived (``usage.ingest``), so when the range ends later
    than that from now, the newest record of the range (``recent``, newest first, in the
    same order) is the newest of all: the usual dashboard, whose range ends today, asks
    nothing more."""
    if recent and end > timezone.now() + MAX_FUTURE:
        return recent[0].occurred_at
    return (
        UsageRecord.objects.filter(owner=owner)
        .order_by("-occurred_at", "-id")
        .values_list("occurred_at", flat=True)
        .first()
    )


def _table(summary: dict, measure: str = "images") -> tuple[list[str], list[Row]]:
    """Images (or their cost) per period (rows) and model (columns): the bar chart's data,
    as a table. A cost is the summary API's, but for the grouped models' cell, which adds
    theirs up; a period's total is the API's."""
    names = [entry["model"] for entry in summary["models"]]
    shown = names if len(names) <= CHART_MODELS + 1 else names[:CHART_MODELS]
    column_of = {name: index for index, name in enumerate(shown)}
    columns = shown + ([OTHER_MODELS] if len(shown) < len(names) else [])
    cells: dict[str, list[list]] = {period: [[] for _ in columns] for period in summary["periods"]}
    key = "cost" if measure == "cost" else "images"
    for point in summary["series"]:
        cells[point["period"]][column_of.get(point["model"], len(shown))].append(point[key])
    # A week can start in the year before the range does.
    spans_years = summary["periods"][0][:4] != summary["periods"][-1][:4]
    rows = []
    for index, (period, parts) in enumerate(cells.items()):
        if key == "cost":
            values = [add_costs(part) for part in parts]
            total = summary["periodCosts"][index]
        else:
            values = [sum(part) for part in parts]
            total = sum(values)
        label = period_label(date.fromisoformat(period), summary["granularity"], spans_years)
        rows.append(Row(label, values, total, period))
    return columns, rows


def add_costs(costs: list[Cost]) -> Cost:
    """The priced parts added up (nothing at all costs zero); None when no part had a price."""
    if costs and all(cost is None for cost in costs):
        return None
    return display(sum((Decimal(cost) for cost in costs if cost is not None), Decimal(0)))


def period_label(first_day: date, granularity: str, with_year: bool) -> str:
    if granularity == "month":
        return first_day.strftime("%b %Y")
    label = f"{first_day.day} {first_day.strftime('%b')}"
    if with_year:
        label += f" {first_day.year}"
    return f"Week of {label}" if granularity == "week" else label
