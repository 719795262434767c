"""The summary's orjson renderer writes what REST framework's own JSON renderer writes."""

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.renderers import JSONRenderer

from tests.example_counts import examples
from usage.renderers import FastJSONRenderer

# What a summary holds: strings (any text, a model name included), integers, lists, dicts.
scalars = st.one_of(st.text(), st.integers(-(2**63), 2**63 - 1), st.booleans(), st.none())
answers = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(), inner, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=examples(200), deadline=None)
@given(answers)
def test_the_same_bytes_as_rest_frameworks_renderer(data):
    assert FastJSONRenderer().render(data) == JSONRenderer().render(data)


@pytest.mark.parametrize(
    "value",
    [
        date(2026, 12, 3),
        datetime(2026, 12, 3, 19, 31, 5, 123456, tzinfo=UTC),
        Decimal("1.10"),
        "line\u2028and paragraph\u2029separators",
    ],
)
def test_dates_decimals_and_separators_as_rest_framework_writes_them(value):
    data = {"value": value, "list": [value]}
    fast = FastJSONRenderer().render(data)
    assert fast == JSONRenderer().render(data)
    assert b"\xe2\x80\xa8" not in fast  # valid JavaScript too
    json.loads(fast)


def test_indented_answers_are_rest_frameworks():
    data = {"a": [1, 2]}
    context = {"indent": 2}
    assert FastJSONRenderer().render(data, renderer_context=context) == (
        JSONRenderer().render(data, renderer_context=context)
    )
