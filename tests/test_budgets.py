"""usage.budgets and its views: months in the budget's zone, used, left and forecast,
GET /api/budget, the budget page and the dashboard's budget card."""

import re
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.test import Client

from dashboard.models import Profile
from tests.conftest import make_record
from usage import budgets
from usage.models import Budget, BudgetAlert, Delivery, ModelPrice
from usage.problems import InvalidQuery

TOKYO = "Asia/Tokyo"  # +09:00: 1 December starts at 15:00 UTC on 30 November


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def budget_for(
    user, limit=100, zone="UTC", thresholds=(50, 80, 100), webhook_url="", unit="images"
):
    return budgets.save_budget(
        user,
        unit=unit,
        limit=limit,
        thresholds=list(thresholds),
        time_zone=zone,
        webhook_url=webhook_url,
    )


def test_a_month_is_counted_in_the_budgets_zone(owner):
    budget = budget_for(owner, zone=TOKYO)
    make_record(owner, at("2026-11-30T14:59:00"), images=5)  # 23:59 on 30 Nov in Tokyo
    make_record(owner, at("2026-11-30T15:00:00"), images=7)  # 00:00 on 1 Dec in Tokyo
    make_record(owner, at("2026-12-31T14:59:00"), images=11)  # 23:59 on 31 Dec in Tokyo
    make_record(owner, at("2026-12-31T15:00:00"), images=13)  # 1 Jan in Tokyo
    status = budgets.status_of(budget, at("2026-12-10T00:00:00"))
    assert (status.month, status.last_day, status.used) == (
        date(2026, 12, 1),
        date(2026, 12, 31),
        18,
    )


def test_another_users_records_do_not_count(owner, other):
    budget = budget_for(owner)
    make_record(other, at("2026-12-02T10:00:00"), images=50)
    assert budgets.status_of(budget, at("2026-12-10T00:00:00")).used == 0


def test_a_late_record_counts_toward_the_month_it_happened_in(owner):
    budget = budget_for(owner)
    make_record(owner, at("2026-11-28T10:00:00"), images=9, received_at=at("2026-12-05T10:00:00"))
    assert budgets.status_of(budget, at("2026-12-06T00:00:00")).used == 0
    november = budgets.status_of(budget, at("2026-12-06T00:00:00"), date(2026, 11, 1))
    assert november.used == 9


def test_left_is_never_below_zero_and_percent_is_rounded_to_a_tenth(owner):
    budget = budget_for(owner, limit=300)
    make_record(owner, at("2026-12-02T10:00:00"), images=1000)
    status = budgets.status_of(budget, at("2026-12-10T00:00:00"))
    assert (status.left, status.percent) == (0, Decimal("333.3"))


def test_the_forecast_scales_the_pace_so_far_to_the_whole_month(owner):
    budget = budget_for(owner, limit=1000)
    make_record(owner, at("2026-12-02T10:00:00"), images=100)
    # 10 of December's 31 days gone: 100 images become 310.
    status = budgets.status_of(budget, at("2026-12-11T00:00:00"))
    assert (status.forecast, status.forecast_percent) == (310, Decimal("31.0"))


def test_the_forecast_of_a_month_that_is_over_is_what_it_used(owner):
    budget = budget_for(owner)
    make_record(owner, at("2026-11-02T10:00:00"), images=40)
    november = budgets.status_of(budget, at("2026-12-11T00:00:00"), date(2026, 11, 1))
    assert november.forecast == 40


def test_the_forecast_follows_local_month_length_across_a_dst_change(owner):
    # March in Berlin has 743 hours (the clocks skip an hour); 371.5 of them gone by the
    # 16th at 12:00 local time.
    budget = budget_for(owner, limit=1000, zone="Europe/Berlin")
    make_record(owner, at("2026-03-02T10:00:00"), images=100)
    now = datetime(2026, 3, 16, 12, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    assert budgets.status_of(budget, now).forecast == 200


def test_crossed_thresholds_are_those_reached(owner):
    budget = budget_for(owner, limit=10, thresholds=(50, 80, 100))
    make_record(owner, at("2026-12-02T10:00:00"), images=8)
    assert budgets.status_of(budget, at("2026-12-10T00:00:00")).crossed() == [50, 80]


@pytest.mark.parametrize(
    ("text", "thresholds"),
    [("50, 80,100", [50, 80, 100]), ("100%, 50%", [50, 100]), ("75,75", [75]), ("1000", [1000])],
)
def test_thresholds_are_parsed_sorted_and_once_each(text, thresholds):
    assert budgets.parse_thresholds(text) == thresholds


@pytest.mark.parametrize(
    "text",
    ["", "0", "1001", "fifty", "50,,", "-5", "\u0665\u0660", ",".join("123456789") + ",10,11"],
)
def test_bad_thresholds_are_refused(text):
    with pytest.raises(InvalidQuery) as refused:
        budgets.parse_thresholds(text)
    assert refused.value.field == "thresholds"


def test_saving_a_budget_twice_changes_the_one_budget(owner):
    budget_for(owner, limit=100)
    budget_for(owner, limit=250, zone=TOKYO)
    [budget] = Budget.objects.filter(owner=owner)
    assert (budget.image_limit, budget.time_zone) == (250, TOKYO)
    budget_for(owner, limit=Decimal("12.5"), unit="money")
    budget.refresh_from_db()
    assert (budget.unit, budget.image_limit, budget.money_limit) == ("money", None, Decimal("12.5"))


def test_a_new_webhook_url_gets_a_new_secret_and_the_same_url_keeps_it(owner, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    first = budget_for(owner, webhook_url="http://127.0.0.1:9/a").webhook_secret
    same = budget_for(owner, limit=5, webhook_url="http://127.0.0.1:9/a").webhook_secret
    moved = budget_for(owner, webhook_url="http://127.0.0.1:9/b").webhook_secret
    assert first.startswith("whsec_") and first == same and moved != first


def price(model: str, amount: str, valid_from: datetime) -> None:
    ModelPrice.objects.create(model=model, price_per_image=Decimal(amount), valid_from=valid_from)


def test_a_money_budget_counts_each_image_at_the_price_in_force_when_it_was_made(owner):
    budget = budget_for(owner, limit=Decimal("20.00"), unit="money")
    price("SD", "0.10", at("2026-11-01T00:00:00"))
    price("SD", "0.25", at("2026-12-15T09:15:00"))  # mid-month, mid-day
    make_record(owner, at("2026-12-15T09:14:00"), images=40)  # 40 x 0.10
    make_record(owner, at("2026-12-15T09:15:00"), images=20)  # 20 x 0.25
    make_record(owner, at("2026-12-16T10:00:00"), model="Flux", images=7)  # no price
    status = budgets.status_of(budget, at("2026-12-20T00:00:00"))
    assert (status.used, status.left, status.percent) == (Decimal("9.00"), Decimal("11.00"), 45)
    assert (status.spend.images, status.spend.unpriced_images) == (67, 7)


def test_a_money_budgets_forecast_is_rounded_only_when_shown(owner):
    budget = budget_for(owner, limit=Decimal("100"), unit="money")
    price("SD", "0.01", at("2026-11-01T00:00:00"))
    make_record(owner, at("2026-12-02T10:00:00"), images=100)
    status = budgets.status_of(budget, at("2026-12-04T00:00:00"))  # 3 of 31 days gone
    assert status.forecast.quantize(Decimal("0.000001")) == Decimal("10.333333")
    assert (status.shown(status.forecast), status.forecast_percent) == ("10.33", Decimal("10.3"))


@pytest.mark.parametrize(
    ("unit", "limit", "says"),
    [
        ("money", Decimal("0"), "above 0"),
        ("money", Decimal("12.345"), "at most 2 decimals"),
        ("money", Decimal("1e13"), "at most"),
        ("images", Decimal("2.5"), "1 to"),
        ("euros", Decimal("5"), "images or in money"),
    ],
)
def test_a_limit_that_does_not_fit_its_unit_is_refused(unit, limit, says):
    with pytest.raises(InvalidQuery) as refused:
        budgets.check_limit(unit, limit)
    assert says in refused.value.message


# GET /api/budget


def test_the_api_answers_null_without_a_budget(owner_api):
    response = owner_api.get("/api/budget")
    assert (response.status_code, response.json()) == (200, {"budget": None})


@time_machine.travel(at("2026-12-11T00:00:00"), tick=False)
def test_the_api_answers_the_month_with_the_bearer_token(owner, owner_api):
    budget_for(owner, limit=1000)
    make_record(owner, at("2026-12-02T10:00:00"), images=600)
    BudgetAlert.objects.create(
        owner=owner, month=date(2026, 12, 1), threshold=50, unit="images", used=600, limit=1000
    )
    body = owner_api.get("/api/budget").json()
    assert body == {
        "budget": {
            "unit": "images",
            "limit": 1000,
            "currency": None,
            "thresholds": [50, 80, 100],
            "timeZone": "UTC",
        },
        "month": {"start": "2026-12-01", "end": "2026-12-31"},
        "used": 600,
        "left": 400,
        "percent": 60.0,
        "forecast": 1860,
        "forecastPercent": 186.0,
        "images": 600,
        "unpricedImages": 600,  # no prices: counted as images, and would cost nothing
        "crossed": [50],
        "alerts": [{"threshold": 50, "at": body["alerts"][0]["at"]}],
    }


@time_machine.travel(at("2026-12-11T00:00:00"), tick=False)
def test_the_api_shows_money_as_decimal_strings_in_the_currency(owner, owner_api, settings):
    settings.SITE_CURRENCY = "EUR"
    budget_for(owner, limit=Decimal("50"), unit="money")
    price("SD", "0.125", at("2026-11-01T00:00:00"))
    make_record(owner, at("2026-12-02T10:00:00"), images=100)
    body = owner_api.get("/api/budget").json()
    assert body["budget"] | {"thresholds": None} == {
        "unit": "money",
        "limit": "50.00",
        "currency": "EUR",
        "thresholds": None,
        "timeZone": "UTC",
    }
    assert (body["used"], body["left"], body["percent"]) == ("12.50", "37.50", 25.0)
    assert (body["forecast"], body["forecastPercent"]) == ("38.75", 77.5)


def test_the_api_shows_another_user_nothing_of_the_owners_budget(owner, other_api):
    budget_for(owner, limit=1000)
    make_record(owner, at("2026-12-02T10:00:00"), images=600)
    assert other_api.get("/api/budget").json() == {"budget": None}


def test_the_api_needs_a_token(db):
    response = Client().get("/api/budget")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


# The budget page


def test_the_budget_page_sets_a_budget(owner):
    client = client_for(owner)
    form = {
        "unit": "images",
        "limit": "500",
        "thresholds": "25, 90",
        "time_zone": TOKYO,
        "webhook_url": "",
    }
    response = client.post("/dashboard/budget/", form)
    assert response.status_code == 302
    budget = Budget.objects.get(owner=owner)
    assert (budget.unit, budget.limit, budget.threshold_list, budget.time_zone) == (
        "images",
        500,
        [25, 90],
        TOKYO,
    )


def test_the_budget_page_offers_the_dashboards_zone(owner):
    Profile.objects.create(user=owner, time_zone=TOKYO)
    response = client_for(owner).get("/dashboard/budget/")
    assert re.search(rf'name="time_zone"[^>]*value="{TOKYO}"', response.content.decode())


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("limit", "0", "A limit in images is 1 to"),
        ("limit", "2.5", "A limit in images is 1 to"),
        ("unit", "euros", "Select a valid choice"),
        ("thresholds", "50, lots", "whole percentages"),
        ("time_zone", "Mars/Olympus", "Unknown time zone"),
        ("webhook_url", "http://169.254.169.254/", "not a public address"),
    ],
)
def test_a_bad_field_is_a_400_that_says_why_and_saves_nothing(owner, field, value, says):
    form = {
        "unit": "images",
        "limit": "500",
        "thresholds": "50",
        "time_zone": "UTC",
        "webhook_url": "",
    }
    response = client_for(owner).post("/dashboard/budget/", {**form, field: value})
    assert response.status_code == 400
    assert says in response.content.decode()
    assert not Budget.objects.exists()


def test_the_budget_page_shows_the_owners_delivery_log_and_no_one_elses(owner, other):
    budget_for(owner)
    budget_for(other)
    for user, target in ((owner, "alice@example.com"), (other, "bob-secret@example.com")):
        Delivery.objects.create(
            event_id=uuid.uuid4(),
            event_type="budget.threshold_crossed",
            owner=user,
            channel="email",
            target=target,
            payload={},
        )
    page = client_for(owner).get("/dashboard/budget/").content.decode()
    assert "alice@example.com" in page
    assert "bob-secret@example.com" not in page


def test_removing_the_budget_removes_only_the_viewers(owner, other):
    budget_for(owner)
    budget_for(other)
    assert client_for(owner).post("/dashboard/budget/delete/").status_code == 302
    assert list(Budget.objects.values_list("owner__username", flat=True)) == ["bob"]


def test_a_test_event_is_queued_for_the_viewers_webhook(owner, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    budget_for(owner, webhook_url="http://127.0.0.1:9/hook")
    assert client_for(owner).post("/dashboard/budget/test-event/").status_code == 302
    [delivery] = Delivery.objects.filter(owner=owner)
    assert (delivery.event_type, delivery.channel, delivery.target) == (
        "webhook.test",
        "webhook",
        "http://127.0.0.1:9/hook",
    )
    assert delivery.payload["id"] == str(delivery.event_id)


def test_a_test_event_without_a_webhook_queues_nothing(owner):
    budget_for(owner)
    client_for(owner).post("/dashboard/budget/test-event/")
    assert not Delivery.objects.exists()


def test_the_budget_pages_need_a_sign_in(db):
    for path in (
        "/dashboard/budget/",
        "/dashboard/budget/delete/",
        "/dashboard/budget/test-event/",
    ):
        response = Client().post(path)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# The dashboard's card


def card_numbers(html: str) -> dict:
    def number(testid: str) -> str:
        match = re.search(rf'data-testid="{testid}">([^<]+)<', html)
        assert match, html[:3000]
        return match.group(1).replace(",", "")

    return {
        "used": int(number("budget-used-amount")),
        "limit": int(number("budget-limit")),
        "percent": float(number("budget-percent")),
        "left": int(number("budget-left")),
        "forecast": int(number("budget-forecast")),
        "forecastPercent": float(number("budget-forecast-percent")),
    }


@time_machine.travel(at("2026-12-11T00:00:00"), tick=False)
def test_the_dashboard_card_shows_the_numbers_of_the_api(owner, owner_api):
    budget_for(owner, limit=12345)
    make_record(owner, at("2026-12-02T10:00:00"), images=4321)
    api = owner_api.get("/api/budget").json()
    card = card_numbers(client_for(owner).get("/dashboard/").content.decode())
    assert card == {key: api["budget"]["limit"] if key == "limit" else api[key] for key in card}


@time_machine.travel(at("2026-12-11T00:00:00"), tick=False)
def test_the_card_of_a_money_budget_shows_the_apis_amounts(owner, owner_api):
    budget_for(owner, limit=Decimal("1000"), unit="money")
    price("SD", "0.37", at("2026-11-01T00:00:00"))
    make_record(owner, at("2026-12-02T10:00:00"), images=1234)
    api = owner_api.get("/api/budget").json()
    html = client_for(owner).get("/dashboard/").content.decode()
    for testid, key in (("used-amount", "used"), ("left", "left"), ("forecast", "forecast")):
        assert f'data-testid="budget-{testid}">{api[key]}<' in html
    assert api["used"] == "456.58"


def test_the_card_is_a_region_that_refresh_data_replaces(owner):
    budget_for(owner, limit=10)
    make_record(owner, at("2026-12-02T10:00:00"), images=3)
    html = client_for(owner).get("/dashboard/data/").json()["html"]["budget"]
    assert 'data-testid="budget-limit">10<' in html


def test_staff_see_the_users_card_and_another_user_cannot(owner, other, staff):
    budget_for(owner, limit=777)
    page = client_for(staff).get("/dashboard/?user=alice").content.decode()
    assert 'data-testid="budget-limit">777<' in page
    assert client_for(other).get("/dashboard/?user=alice").status_code == 403
    assert 'data-testid="budget-none"' in client_for(other).get("/dashboard/").content.decode()


# The demo


@time_machine.travel(at("2026-12-20T12:00:00"), tick=False)
def test_seed_demo_sets_a_budget_the_demo_data_has_crossed(db):
    from io import StringIO

    from django.core.management import call_command

    call_command("seed_demo", "--seed", "7", stdout=StringIO())
    budget = Budget.objects.get(owner__username="demo")
    status = budgets.status_of(budget)
    assert status.used > 0
    assert status.crossed() == [50, 80]


@time_machine.travel(at("2026-12-20T12:00:00"), tick=False)
def test_with_prices_the_demo_budget_is_in_money(db):
    from io import StringIO

    from django.core.management import call_command

    from usage.demo import DEMO_USERNAME, get_or_create_demo_user

    get_or_create_demo_user()
    for model in ("Stable Diffusion XL", "DALL-E 3", "Midjourney v6"):
        price(model, "0.04", at("2026-01-01T00:00:00"))
    call_command("seed_demo", "--seed", "7", stdout=StringIO())
    status = budgets.status_of(Budget.objects.get(owner__username=DEMO_USERNAME))
    assert (status.budget.unit, status.crossed()) == ("money", [50, 80])
    assert status.spend.unpriced_images > 0  # the models without a price


def test_the_card_costs_four_queries_whatever_the_months_records(owner, django_assert_num_queries):
    # The budget, the prices, the month's rollups and uncounted records, its alerts.
    from dashboard.budget import budget_card

    budget_for(owner, limit=10)
    with django_assert_num_queries(4):
        budget_card(owner)
    for day in range(1, 28):
        make_record(owner, at(f"2026-12-{day:02d}T08:00:00"), model=f"m{day % 9}")
    with django_assert_num_queries(4):
        budget_card(owner)
