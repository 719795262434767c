"""The cards' figures against the days just before the range."""

from datetime import date
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from dashboard.comparison import Change, period_words, previous_range, versus_words
from usage.summary import DateRange

BERLIN = ZoneInfo("Europe/Berlin")
MINUS, DASH = "\N{MINUS SIGN}", "\N{EN DASH}"


def images(now: int, before: int) -> Change:
    return Change(now, before, "images", "the 30 days before")


def test_the_previous_range_is_as_many_whole_days_just_before_in_the_same_zone():
    march = DateRange(date(2026, 3, 1), date(2026, 3, 31), BERLIN)
    assert previous_range(march) == DateRange(date(2026, 1, 29), date(2026, 2, 28), BERLIN)
    one_day = DateRange(date(2026, 1, 1), date(2026, 1, 1), BERLIN)
    assert previous_range(one_day) == DateRange(date(2025, 12, 31), date(2025, 12, 31), BERLIN)


def test_the_period_is_named_in_plain_words():
    assert (period_words(30), period_words(1)) == ("the 30 days before", "the day before")
    assert (versus_words(7), versus_words(1)) == ("vs the previous 7 days", "vs the day before")


@pytest.mark.parametrize(
    ("now", "before", "percent", "shown", "direction"),
    [
        (112, 100, 12, "+12%", "up"),
        (46, 50, -8, f"{MINUS}8%", "down"),
        (0, 50, -100, f"{MINUS}100%", "down"),
        (7, 7, 0, "0%", "same"),
        (2, 3, -33, f"{MINUS}33%", "down"),
        (5, 2, 150, "+150%", "up"),
        (1005, 1000, 1, "+1%", "up"),  # half a percent rounds away from zero
        (995, 1000, -1, f"{MINUS}1%", "down"),
        (1004, 1000, 0, "<1%", "up"),  # a change, but under a whole percent
    ],
)
def test_a_change_is_a_whole_percent_with_its_sign(now, before, percent, shown, direction):
    change = images(now, before)
    assert (change.percent, change.shown, change.direction) == (percent, shown, direction)


def test_something_where_there_was_nothing_is_new_not_a_percent():
    change = images(12, 0)
    assert (change.percent, change.shown, change.direction, change.arrow) == (
        None,
        "new",
        "new",
        "↑",
    )
    assert change.words == "12 images, none in the 30 days before"


def test_nothing_against_nothing_says_so():
    change = images(0, 0)
    assert (change.shown, change.arrow) == (DASH, "")
    assert change.words == "No images in this range or in the 30 days before"


def test_the_words_say_more_or_fewer_and_than_when():
    assert images(112, 100).words == "12% more images than the 30 days before"
    assert images(46, 50).words == "8% fewer images than the 30 days before"
    assert images(7, 7).words == "As many images as in the 30 days before"
    assert images(1004, 1000).words == "Under 1% more images than the 30 days before"
    assert (images(112, 100).arrow, images(46, 50).arrow, images(7, 7).arrow) == ("↑", "↓", "→")


def money(now: str, before: str) -> Change:
    return Change(Decimal(now), Decimal(before), "cost", "the 30 days before", f"{now} USD")


def test_a_cost_is_compared_in_exact_decimals_and_plain_money_words():
    assert (money("2.36", "0.62").shown, money("2.36", "0.62").words) == (
        "+281%",
        "281% higher cost than the 30 days before",
    )
    assert money("0.10", "0.20").words == "50% lower cost than the 30 days before"
    assert money("1.005", "1.00").shown == "+1%"  # 0.5% rounds half away from zero
    assert money("3.00", "3.00").words == "The same cost as in the 30 days before"
    assert money("4.50", "0").words == "Cost: 4.50 USD, nothing in the 30 days before"
    assert money("0", "0").words == "No cost in this range or in the 30 days before"
