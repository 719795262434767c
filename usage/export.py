"""CSV exports of usage records: streamed row by row, and safe to open in a spreadsheet."""

import csv
import unicodedata
from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from urllib.parse import quote
from zoneinfo import ZoneInfo

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils.http import content_disposition_header

from usage import costs
from usage.models import NO_TOKEN, ApiToken, UsageRecord
from usage.summary import DateRange, daily_totals

# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets
# (tab and carriage return too, which some of them strip before looking).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CHUNK_ROWS = 2000


def spreadsheet_safe(value: object) -> str:
    """A cell that a spreadsheet shows as text, never runs as a formula."""
    text = "" if value is None else str(value)
    # Some spreadsheets skip leading spaces before deciding that a cell is a formula.
    return "'" + text if text.lstrip(" ").startswith(_FORMULA_STARTS) else text


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_lines(header: list[str], rows: Iterable[Iterable[object]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow(row)


def csv_response(filename: str, lines: Iterator[str]) -> StreamingHttpResponse:
    """Stream the lines, so that memory stays flat however many records there are."""
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = attachment(filename)
    return response


def attachment(filename: str) -> str:
    """``Content-Disposition`` for a download named ``filename`` (RFC 6266).

    The name itself goes in ``filename*`` as UTF-8 (RFC 5987), after a plain ASCII
    ``filename`` for clients that read only that one. Both are needed: a header value
    outside latin-1 would otherwise be MIME-encoded by Django (``=?utf-8?q?...``), which
    browsers do not decode.
    """
    fallback = ascii_filename(filename)
    header = content_disposition_header(True, fallback)
    if fallback != filename:
        header += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return header


def ascii_filename(filename: str) -> str:
    """``filename`` in printable ASCII: accents dropped (é to e), anything else as ``_``.

    Quotes and backslashes too, which some clients unescape wrongly in a quoted string.
    """
    decomposed = unicodedata.normalize("NFKD", filename)
    letters = "".join(c for c in decomposed if not unicodedata.combining(c))
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in letters)


def csv_time(moment: datetime) -> str:
    """One format for every time in every CSV: ISO 8601 with microseconds, always, and the
    UTC offset (``2026-03-02T07:30:00.000000+09:00``). ``isoformat()`` alone drops the
    fraction when it is zero, so one column mixed two formats."""
    return moment.isoformat(timespec="microseconds")


def admin_rows(records: QuerySet) -> Iterator[list[object]]:
    """Any users' records, times in UTC: the admin's export."""
    for record in records.select_related("owner").iterator(chunk_size=CHUNK_ROWS):
        yield [
            record.pk,
            spreadsheet_safe(record.owner.get_username()),
            spreadsheet_safe(record.model),
            record.image_count,
            csv_time(record.occurred_at),
            csv_time(record.received_at),
            spreadsheet_safe(record.event_id),
        ]


ADMIN_HEADER = [
    "id",
    "username",
    "model",
    "image_count",
    "occurred_at_utc",
    "received_at_utc",
    "event_id",
]
OWNER_HEADER = ["occurred_at", "date", "model", "image_count", "event_id", "received_at", "token"]
# Both CSVs end with the cost, exact (not rounded, so that a spreadsheet's sums come out as
# the site's totals do), and its currency; both empty when no price was in force.
COST_HEADER = ["cost", "currency"]
OWNER_HEADER += COST_HEADER


def owner_rows(
    owner: AbstractBaseUser,
    start: datetime,
    end: datetime,
    tz: ZoneInfo,
    token: int | None = None,
) -> Iterator[list[object]]:
    """One user's records from ``start`` (inclusive) to ``end`` (exclusive), oldest first,
    with times in ``tz`` and their UTC offset, so every row says which zone it is in, and
    the API token that sent each; only ``token``'s with ``token`` (``usage.devices``)."""
    records = _of_token(
        UsageRecord.objects.filter(owner=owner, occurred_at__gte=start, occurred_at__lt=end), token
    )
    records = (
        records.order_by("occurred_at", "id")
        .select_related("token")
        .only("model", "image_count", "occurred_at", "received_at", "event_id", *_TOKEN_FIELDS)
    )
    book = costs.price_book()
    for record in records.iterator(chunk_size=CHUNK_ROWS):
        local = record.occurred_at.astimezone(tz)
        price = book.price_at(record.model, record.occurred_at)
        yield [
            csv_time(local),
            local.date().isoformat(),
            spreadsheet_safe(record.model),
            record.image_count,
            spreadsheet_safe(record.event_id),
            csv_time(record.received_at.astimezone(tz)),
            token_cell(record.token),
            *cost_cells(None if price is None else costs.multiply(record.image_count, price)),
        ]


_TOKEN_FIELDS = ("token__prefix", "token__name")


def _of_token(records: QuerySet, token: int | None) -> QuerySet:
    if token is None:
        return records
    return records.filter(token__isnull=True) if token == NO_TOKEN else records.filter(token=token)


def token_cell(token: ApiToken | None) -> str:
    """The token as people know it, its public prefix and its name (``usg_1a2b3c4d
    (Laptop)``); empty for a record sent without one."""
    return "" if token is None else spreadsheet_safe(token)


def cost_cells(cost: Decimal | None) -> list[str]:
    return ["", ""] if cost is None else [costs.exact(cost), costs.currency()]


TOTALS_HEADER = ["date", "model", "images", "generations", *COST_HEADER]


def total_rows(
    owner: AbstractBaseUser, date_range: DateRange, token: int | None = None
) -> Iterator[list[object]]:
    """Images, generations and their cost per local day and model, from the rollups, by day
    then model; of one token's records only with ``token``. A day whose images only partly
    had a price shows the priced ones' cost."""
    totals = daily_totals(owner.pk, date_range, token)
    spends = costs.daily_costs(owner.pk, date_range, totals, token)
    for day, model in sorted(totals):
        images, events = totals[(day, model)]
        spend = spends[(day, model)]
        cost = spend.cost if spend.priced_images else None
        yield [day.isoformat(), spreadsheet_safe(model), images, events, *cost_cells(cost)]
