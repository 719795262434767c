"""Ingestion: parse a request body, validate each record, store the accepted ones.

Plain functions with no HTTP in them, so that tests and the view share one code path.
Validation is hand-written rather than a serializer per record: a 1000-record batch is
checked in about a millisecond, and each record gets its own outcome (accepted,
duplicate, rejected) so that a desktop client with a queue knows what to drop and what
to keep.
"""

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser

from usage import dialects, strict_json
from usage.model_names import normal_model_name
from usage.models import (
    EVENT_ID_MAX_LENGTH,
    MAX_IMAGE_COUNT,
    MODEL_NAME_MAX_LENGTH,
    ApiToken,
)
from usage.problems import BodyTooLarge, InvalidBody

MAX_BODY_BYTES = 1024 * 1024
MAX_BATCH = 1000
MAX_FUTURE = timedelta(minutes=5)
MAX_AGE = timedelta(days=366)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# C0 and C1 control characters, DEL, and lone surrogates (valid in JSON's \u escapes but
# not storable as UTF-8 text).
_FORBIDDEN_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_MODEL_NAME_MAX_RAW = 4 * MODEL_NAME_MAX_LENGTH

# Each meaning, with the keys a desktop app may send it under (first one is canonical).
MODEL_KEYS = ("modelName", "model")
COUNT_KEYS = ("imageCount", "count")
USERNAME_KEYS = ("userId", "user_id")
EMAIL_KEYS = ("email",)
TIMESTAMP_KEYS = ("timestamp",)
EVENT_ID_KEYS = ("id", "eventId")


def body_too_large() -> BodyTooLarge:
    return BodyTooLarge(f"The body is larger than {MAX_BODY_BYTES} bytes.")


@dataclass(frozen=True)
class RecordError:
    index: int
    field: str | None
    message: str

    def as_dict(self) -> dict:
        return {"index": self.index, "field": self.field, "message": self.message}


@dataclass(frozen=True)
class CleanRecord:
    model: str
    image_count: int
    occurred_at: datetime
    event_id: str | None


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[RecordError] = field(default_factory=list)

    @property
    def status(self) -> int:
        if self.rejected == 0:
            return 201
        return 207 if self.accepted + self.duplicates else 400

    def as_dict(self) -> dict:
        body: dict[str, Any] = {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "errors": [error.as_dict() for error in self.errors],
        }
        if self.status == 400:
            body["error"] = "Every record was rejected; see errors."
            body["code"] = "records_rejected"
        return body


def parse_body(raw: bytes) -> list[Any]:
    """The records in a body: one JSON object, or an array of 1 to MAX_BATCH of them."""
    if len(raw) > MAX_BODY_BYTES:
        raise body_too_large()
    try:
        payload = strict_json.loads(raw)
    except strict_json.NestedTooDeeply:
        raise InvalidBody("The JSON body is nested too deeply.") from None
    except ValueError:  # UnicodeDecodeError is one
        raise InvalidBody("The body is not valid JSON.") from None
    if isinstance(payload, dict):
        return [payload]
    if isinstance(payload, list):
        if not payload:
            raise InvalidBody("The array is empty: send 1 to 1000 records.")
        if len(payload) > MAX_BATCH:
            raise InvalidBody(f"Too many records: {len(payload)}; send at most {MAX_BATCH}.")
        return payload
    raise InvalidBody("The body must be a JSON object (one record) or an array of records.")


class _Invalid(Exception):
    """One bad field. ``message`` is a predicate of the key, e.g. "must be a string."."""

    def __init__(self, field: str | None, message: str):
        self.field = field
        self.message = f"'{field}' {message}" if field else message


class RecordInvalid(Exception):
    """A record failed validation; ``problems`` holds (field, message) for each bad field."""

    def __init__(self, problems: list[tuple[str | None, str]]):
        self.problems = problems


def _pick(item: dict, keys: tuple[str, ...]) -> tuple[str, Any] | None:
    """The (key, value) given under any of ``keys``; null counts as absent.

    A key and its alias with different values make the record invalid.
    """
    found = [(key, item[key]) for key in keys if item.get(key) is not None]
    if not found:
        return None
    first_key, first_value = found[0]
    for key, value in found[1:]:
        if value != first_value or type(value) is not type(first_value):
            raise _Invalid(first_key, f"and '{key}' disagree; send only one of them.")
    return found[0]


def _model_name(item: dict) -> str:
    picked = _pick(item, MODEL_KEYS)
    if picked is None:
        raise _Invalid("modelName", "is required (as 'modelName' or 'model').")
    key, value = picked
    if not isinstance(value, str):
        raise _Invalid(key, "must be a string.")
    value = value.strip()
    # The length is checked on the normal form (NFKC can lengthen a name, and removing
    # invisible characters shorten it), after a bound on the raw text that keeps the
    # work done for a hostile name small.
    if len(value) > _MODEL_NAME_MAX_RAW:
        raise _Invalid(key, f"must be 1 to {MODEL_NAME_MAX_LENGTH} characters.")
    if _FORBIDDEN_CHARS.search(value):
        raise _Invalid(key, "must not contain control characters.")
    value = normal_model_name(value)
    if not 1 <= len(value) <= MODEL_NAME_MAX_LENGTH:
        raise _Invalid(key, f"must be 1 to {MODEL_NAME_MAX_LENGTH} characters.")
    return value


def _image_count(item: dict) -> int:
    picked = _pick(item, COUNT_KEYS)
    if picked is None:
        raise _Invalid("imageCount", "is required (as 'imageCount' or 'count').")
    key, value = picked
    # bool is a subclass of int in Python; JSON true is not a count.
    if type(value) is not int:
        raise _Invalid(key, "must be a JSON integer.")
    if not 1 <= value <= MAX_IMAGE_COUNT:
        raise _Invalid(key, f"must be from 1 to {MAX_IMAGE_COUNT}.")
    return value


def _check_username(item: dict, owner: AbstractBaseUser) -> None:
    picked = _pick(item, USERNAME_KEYS)
    if picked is not None:
        key, value = picked
        if not isinstance(value, str) or value != owner.get_username():
            raise _Invalid(key, "does not name the owner of the API token.")


def _check_email(item: dict, owner: AbstractBaseUser) -> None:
    picked = _pick(item, EMAIL_KEYS)
    if picked is not None:
        key, value = picked
        owner_email = (getattr(owner, "email", "") or "").casefold()
        if not isinstance(value, str) or not owner_email or value.casefold() != owner_email:
            raise _Invalid(key, "does not match the email of the API token's owner.")


def _occurred_at(item: dict, now: datetime) -> datetime:
    picked = _pick(item, TIMESTAMP_KEYS)
    if picked is None:
        return now
    key, value = picked
    if type(value) is int:
        try:
            moment = _EPOCH + timedelta(milliseconds=value)
        except OverflowError:
            raise _Invalid(key, "is out of range.") from None
    elif isinstance(value, str):
        moment = _parse_iso(key, value)
    else:
        raise _Invalid(key, "must be an ISO 8601 string or integer epoch milliseconds.")
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # e.g. year 1 at +14:00 falls before datetime.min in UTC
        raise _Invalid(key, "is out of range.") from None
    if moment > now + MAX_FUTURE:
        raise _Invalid(key, "is more than 5 minutes in the future.")
    if moment < now - MAX_AGE:
        raise _Invalid(key, "is more than 366 days in the past.")
    return moment


def _parse_iso(key: str, value: str) -> datetime:
    if len(value) > 40:
        raise _Invalid(key, "is not an ISO 8601 date-time.")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _Invalid(key, "is not an ISO 8601 date-time.") from None
    if moment.tzinfo is None:
        raise _Invalid(key, "must include a UTC offset or 'Z'.")
    return moment


def _event_id(item: dict) -> str | None:
    picked = _pick(item, EVENT_ID_KEYS)
    if picked is None:
        return None
    key, value = picked
    if not isinstance(value, str):
        raise _Invalid(key, "must be a string.")
    if not 1 <= len(value) <= EVENT_ID_MAX_LENGTH:
        raise _Invalid(key, f"must be 1 to {EVENT_ID_MAX_LENGTH} characters.")
    if _FORBIDDEN_CHARS.search(value):
        raise _Invalid(key, "must not contain control characters.")
    return value


def validate_record(item: Any, owner: AbstractBaseUser, now: datetime) -> CleanRecord:
    """A clean record, or ``RecordInvalid`` naming every field that is wrong."""
    if not isinstance(item, dict):
        raise RecordInvalid([(None, "A record must be a JSON object.")])
    problems: list[tuple[str | None, str]] = []

    def check(reader, *args):
        try:
            return reader(item, *args)
        except _Invalid as invalid:
            problems.append((invalid.field, invalid.message))
            return None

    check(_check_username, owner)
    check(_check_email, owner)
    record = CleanRecord(
        model=check(_model_name),
        image_count=check(_image_count),
        occurred_at=check(_occurred_at, now),
        event_id=check(_event_id),
    )
    if problems:
        raise RecordInvalid(problems)
    return record


def ingest(
    owner: AbstractBaseUser, token: ApiToken | None, items: list[Any], now: datetime
) -> IngestResult:
    """Validate ``items`` and store the accepted ones for ``owner`` in one transaction."""
    result = IngestResult()
    clean: list[CleanRecord] = []
    seen_ids: set[str] = set()
    for index, item in enumerate(items):
        try:
            record = validate_record(item, owner, now)
        except RecordInvalid as invalid:
            result.rejected += 1
            result.errors += [RecordError(index, f, message) for f, message in invalid.problems]
            continue
        if record.event_id is not None:
            if record.event_id in seen_ids:
                result.duplicates += 1
                continue
            seen_ids.add(record.event_id)
        clean.append(record)
    if clean:
        inserted = store(owner, token, clean, now)
        result.accepted = inserted
        result.duplicates += len(clean) - inserted
    return result


def store(
    owner: AbstractBaseUser, token: ApiToken | None, records: list[CleanRecord], now: datetime
) -> int:
    """Insert ``records`` and count them into the rollups, all or nothing.

    ``ON CONFLICT DO NOTHING`` (rather than a lookup first) keeps concurrent requests with
    the same event id from storing it twice, and only the rows really inserted are counted
    into the rollups. How is the database's own (``usage.dialects``): on PostgreSQL, one
    statement whatever the batch size, which is its own transaction.
    Returns how many rows were inserted.
    """
    # One lock order for every writer: two batches sharing event ids cannot deadlock.
    records = sorted(records, key=lambda r: (r.event_id is None, r.event_id or ""))
    token_id = token.pk if token else None
    return dialects.current().insert_and_count(owner.pk, token_id, records, now)
