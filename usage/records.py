"""Reading one user's raw records back, newest first, with an opaque keyset cursor.

A keyset cursor (the last row's time and id) rather than an offset keeps every page as
cheap as the first, however deep a client pages, and never skips or repeats a row when
new records arrive between pages.
"""

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q

from usage.models import UsageRecord
from usage.problems import InvalidQuery
from usage.retention import kept_from
from usage.summary import local_midnight, parse_date, parse_zone

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
MAX_CURSOR_LENGTH = 200


@dataclass(frozen=True)
class RecordQuery:
    start: datetime | None
    end: datetime | None  # exclusive
    limit: int
    after: tuple[datetime, int] | None


def parse_record_query(params: Mapping[str, str]) -> RecordQuery:
    tz = parse_zone(params.get("tz"))
    start = end = None
    if params.get("start"):
        start = local_midnight(parse_date("start", params["start"]), tz)
    if params.get("end"):
        end = local_midnight(parse_date("end", params["end"]) + timedelta(days=1), tz)
    if start and end and start >= end:
        raise InvalidQuery("start", "start must be on or before end.")
    return RecordQuery(start, end, _parse_limit(params.get("limit")), _decode(params.get("cursor")))


def _parse_limit(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_LIMIT
    # The length first: int() refuses over 4300 digits with an error of its own.
    digits_ok = value.isascii() and value.isdigit() and len(value) <= len(str(MAX_LIMIT))
    if not digits_ok or not 1 <= int(value) <= MAX_LIMIT:
        raise InvalidQuery("limit", f"limit must be a whole number from 1 to {MAX_LIMIT}.")
    return int(value)


def encode_cursor(record: UsageRecord) -> str:
    raw = json.dumps([record.occurred_at.isoformat(), record.pk]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(value: str | None) -> tuple[datetime, int] | None:
    if not value:
        return None
    try:
        # Ours are under 100 characters; a long one is not ours (and could nest deeply).
        if len(value) > MAX_CURSOR_LENGTH:
            raise ValueError
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        moment, pk = json.loads(raw)
        parsed = datetime.fromisoformat(moment)
        if parsed.tzinfo is None or type(pk) is not int:
            raise ValueError
        parsed = parsed.astimezone(UTC)
    except (ValueError, TypeError, OverflowError):
        raise InvalidQuery("cursor", "cursor is not one this API handed out.") from None
    return parsed, pk


def list_records(owner: AbstractBaseUser, query: RecordQuery) -> tuple[list[UsageRecord], bool]:
    """One page of the owner's records, and whether another page follows."""
    records = UsageRecord.objects.filter(owner=owner)
    if query.start:
        records = records.filter(occurred_at__gte=query.start)
    if query.end:
        records = records.filter(occurred_at__lt=query.end)
    if query.after:
        moment, pk = query.after
        records = records.filter(Q(occurred_at__lt=moment) | Q(occurred_at=moment, id__lt=pk))
    fields = ("id", "model", "image_count", "occurred_at", "event_id", "received_at")
    page = list(records.only(*fields).order_by("-occurred_at", "-id")[: query.limit + 1])
    return page[: query.limit], len(page) > query.limit


def kept_from_text() -> str | None:
    """Since when raw records are kept (``usage.retention``), as the API writes times; None
    when every record is kept."""
    moment = kept_from()
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def record_as_dict(record: UsageRecord) -> dict:
    return {
        "id": record.pk,
        "model": record.model,
        "imageCount": record.image_count,
        "timestamp": record.occurred_at.isoformat().replace("+00:00", "Z"),
        "eventId": record.event_id,
        "receivedAt": record.received_at.isoformat().replace("+00:00", "Z"),
    }
