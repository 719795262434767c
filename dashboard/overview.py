"""What the dashboard shows, built in one place for the first paint and for Refresh Data.

The numbers come from ``usage.summary.summarize``, the same call that answers
``GET /api/model-usage/summary``, so the page and the API can never disagree.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from django.contrib.auth.models import AbstractBaseUser

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


@dataclass(frozen=True)
class Overview:
    summary: dict
    recent: list[UsageRecord]
    last_activity: datetime | None
    columns: list[str]  # the charts' series: models, the smallest grouped as one
    rows: list[Row]  # images per period, one value per column

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
    def shares(self) -> list[dict]:
        """Every model with its share of the images, and its colour in the charts."""
        total = self.summary["totals"]["images"] or 1
        coloured = len(self.columns) - 1 if self.grouped else len(self.columns)
        return [
            {
                **entry,
                "percent": f"{100 * entry['images'] / total:.1f}",
                "series": position if position < coloured else "other",
            }
            for position, entry in enumerate(self.summary["models"])
        ]

    def chart(self) -> dict:
        """What the two charts draw, for ``json_script`` and the refresh JSON alike."""
        return {
            "labels": [row.label for row in self.rows],
            "datasets": [
                {"label": name, "data": [row.values[index] for row in self.rows]}
                for index, name in enumerate(self.columns)
            ],
            "share": {
                "labels": self.columns,
                "data": self.column_totals,
            },
            "grouped": self.grouped,
            "granularity": self.summary["granularity"],
        }


def build_overview(
    owner: AbstractBaseUser, date_range: DateRange, token: int | None = None
) -> Overview:
    summary = summarize(owner, date_range, parse_granularity(None, date_range.days), token)
    lo, hi = date_range.utc_bounds()
    recent, _ = list_records(owner, RecordQuery(lo, hi, RECENT_LIMIT, after=None))
    last_activity = (
        UsageRecord.objects.filter(owner=owner)
        .order_by("-occurred_at", "-id")
        .values_list("occurred_at", flat=True)
        .first()
    )
    return Overview(summary, recent, last_activity, *_table(summary))


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
