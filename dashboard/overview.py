"""What the dashboard shows, built in one place for the first paint and for Refresh Data.

The numbers come from ``usage.costs.summarize_with_costs``, the same call that answers
``GET /api/model-usage/summary``, so the page and the API can never disagree.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from django.contrib.auth.models import AbstractBaseUser

from dashboard.comparison import Change, period_words, previous_range, versus_words
from dashboard.model_colours import OTHER, chart_slots
from usage.costs import summarize_with_costs
from usage.models import UsageRecord
from usage.problems import InvalidQuery
from usage.records import RecordQuery, list_records
from usage.summary import DateRange, parse_granularity, parse_range

PRESET_DAYS = (7, 30, 90)
DEFAULT_DAYS = 30
RECENT_LIMIT = 10
# A stacked bar of twenty colours reads as noise: the charts show the largest models and
# group the rest. The share table below the doughnut still lists every model.
CHART_MODELS = 7
OTHER_MODELS = "Other models"


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


@dataclass(frozen=True)
class Row:
    label: str
    values: list[int]
    total: int
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

    @property
    def top_model(self) -> str | None:
        return self.summary["models"][0]["model"] if self.summary["models"] else None

    @property
    def grouped(self) -> bool:
        return len(self.columns) < len(self.summary["models"])

    @property
    def column_totals(self) -> list[int]:
        return [sum(row.values[index] for row in self.rows) for index in range(len(self.columns))]

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
        """Every model with its share of the images, and its colour in the charts."""
        total = self.summary["totals"]["images"] or 1
        coloured = len(self.columns) - 1 if self.grouped else len(self.columns)
        colours = self.column_colours
        return [
            {
                **entry,
                "percent": f"{100 * entry['images'] / total:.1f}",
                "colour": colours[position] if position < coloured else OTHER,
            }
            for position, entry in enumerate(self.summary["models"])
        ]

    @property
    def changes(self) -> dict[str, Change]:
        """The cards' figures against the days just before: images, generations, top model."""
        period = period_words(self.previous_range.days)
        now, before = self.summary["totals"], self.previous["totals"]
        changes = {
            "images": Change(now["images"], before["images"], "images", period),
            "generations": Change(now["events"], before["events"], "generations", period),
        }
        if self.top_model is not None:
            earlier = {entry["model"]: entry["images"] for entry in self.previous["models"]}
            top = self.summary["models"][0]
            changes["top_model"] = Change(
                top["images"], earlier.get(top["model"], 0), f"{top['model']} images", period
            )
        return changes

    @property
    def versus(self) -> str:
        return versus_words(self.previous_range.days)

    def previous_per_period(self) -> list[int | None]:
        """The days before, bucket by bucket, lined up with the range's buckets (the first
        day of each against the first day of the other); None where the range has more."""
        totals = dict.fromkeys(self.previous["periods"], 0)
        for point in self.previous["series"]:
            totals[point["period"]] += point["images"]
        values: list[int | None] = list(totals.values())[: len(self.rows)]
        return values + [None] * (len(self.rows) - len(values))

    def chart(self) -> dict:
        """What the two charts draw, for ``json_script`` and the refresh JSON alike."""
        colours = self.column_colours
        return {
            "labels": [row.label for row in self.rows],
            "periods": self.summary["periods"],
            "datasets": [
                {
                    "label": name,
                    "data": [row.values[index] for row in self.rows],
                    "colour": colours[index],
                }
                for index, name in enumerate(self.columns)
            ],
            "share": {
                "labels": self.columns,
                "data": self.column_totals,
                "colours": colours,
            },
            "previous": {
                "label": period_words(self.previous_range.days).capitalize(),
                "data": self.previous_per_period(),
                "periods": self.previous["periods"][: len(self.rows)],
            },
            "grouped": self.grouped,
            "granularity": self.summary["granularity"],
        }


def build_overview(
    owner: AbstractBaseUser, date_range: DateRange, token: int | None = None
) -> Overview:
    granularity = parse_granularity(None, date_range.days)
    summary = summarize_with_costs(owner, date_range, granularity, token)
    # The same query again for the days before: the cost of the comparison is one rollup read.
    before = previous_range(date_range)
    previous = summarize_with_costs(owner, before, granularity, token)
    lo, hi = date_range.utc_bounds()
    recent, _ = list_records(owner, RecordQuery(lo, hi, RECENT_LIMIT, after=None))
    last_activity = (
        UsageRecord.objects.filter(owner=owner)
        .order_by("-occurred_at", "-id")
        .values_list("occurred_at", flat=True)
        .first()
    )
    return Overview(summary, recent, last_activity, *_table(summary), previous, before)


def _table(summary: dict) -> tuple[list[str], list[Row]]:
    """Images per period (rows) and model (columns): the bar chart's data, as a table."""
    names = [entry["model"] for entry in summary["models"]]
    shown = names if len(names) <= CHART_MODELS + 1 else names[:CHART_MODELS]
    column_of = {name: index for index, name in enumerate(shown)}
    columns = shown + ([OTHER_MODELS] if len(shown) < len(names) else [])
    cells = {period: [0] * len(columns) for period in summary["periods"]}
    for point in summary["series"]:
        cells[point["period"]][column_of.get(point["model"], len(shown))] += point["images"]
    # A week can start in the year before the range does.
    spans_years = summary["periods"][0][:4] != summary["periods"][-1][:4]
    rows = [
        Row(
            period_label(date.fromisoformat(period), summary["granularity"], spans_years),
            values,
            sum(values),
            period,
        )
        for period, values in cells.items()
    ]
    return columns, rows


def period_label(first_day: date, granularity: str, with_year: bool) -> str:
    if granularity == "month":
        return first_day.strftime("%b %Y")
    label = f"{first_day.day} {first_day.strftime('%b')}"
    if with_year:
        label += f" {first_day.year}"
    return f"Week of {label}" if granularity == "week" else label
