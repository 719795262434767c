"""Property tests: any JSON at all gets a per-record outcome or a clear 400, never a crash."""

import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import post_usage
from tests.example_counts import examples
from usage.ingest import (
    COUNT_KEYS,
    EMAIL_KEYS,
    EVENT_ID_KEYS,
    MODEL_KEYS,
    TIMESTAMP_KEYS,
    USERNAME_KEYS,
    RecordInvalid,
    parse_body,
    validate_record,
)
from usage.model_names import normal_model_name
from usage.models import UsageRecord
from usage.problems import InvalidBody

NOW = datetime(2026, 11, 21, 12, tzinfo=UTC)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)
field_keys = st.sampled_from(
    MODEL_KEYS + COUNT_KEYS + USERNAME_KEYS + EMAIL_KEYS + TIMESTAMP_KEYS + EVENT_ID_KEYS
)
# Records whose keys are mostly the real ones, so that validation goes deep, not just "missing".
records = st.dictionaries(field_keys | st.text(max_size=5), json_values, max_size=8)


class Owner:
    email = "alice@example.com"

    def get_username(self) -> str:
        return "alice"


@settings(max_examples=examples(400), deadline=None)
@given(records | json_values)
def test_validation_of_any_json_value_either_cleans_it_or_names_the_bad_fields(item):
    try:
        record = validate_record(item, Owner(), NOW)
    except RecordInvalid as invalid:
        assert invalid.problems
        assert all(message for _field, message in invalid.problems)
        return
    assert 1 <= len(record.model) <= 100 and record.model == normal_model_name(record.model)
    assert type(record.image_count) is int and 1 <= record.image_count <= 10_000
    assert record.occurred_at.tzinfo is not None
    assert record.event_id is None or 1 <= len(record.event_id) <= 100


@settings(max_examples=examples(300), deadline=None)
@given(st.binary(max_size=200) | json_values.map(lambda value: json.dumps(value).encode()))
def test_parsing_any_body_gives_records_or_a_body_error(raw):
    try:
        items = parse_body(raw)
    except InvalidBody as error:
        assert error.status == 400 and error.message
        return
    assert 1 <= len(items) <= 1000


@pytest.mark.django_db
@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=st.lists(records, min_size=1, max_size=5))
def test_posting_any_batch_accounts_for_every_record_and_stores_only_the_accepted(owner_api, body):
    before = UsageRecord.objects.count()
    response = post_usage(owner_api, body)
    result = response.json()
    assert response.status_code in (201, 207, 400)
    assert result["accepted"] + result["duplicates"] + result["rejected"] == len(body)
    assert all(0 <= error["index"] < len(body) for error in result["errors"])
    assert len({error["index"] for error in result["errors"]}) == result["rejected"]
    assert UsageRecord.objects.count() - before == result["accepted"]
