"""The dashboard per device (dashboard/devices.py, templates/dashboard/_devices.html): the
device filter, kept across links, Refresh Data and the CSVs, and the By device table."""

import html
import re
from datetime import UTC, datetime

import pytest
from django.test import Client

from tests.conftest import make_record
from usage.tokens import create_token, revoke_token

MARCH = {"start": "2026-03-01", "end": "2026-03-31", "tz": "UTC"}


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def total_images(content: str) -> int:
    match = re.search(r'data-testid="total-images">([\d,]+)<', content)
    assert match
    return int(match.group(1).replace(",", ""))


def devices_table(content: str) -> list[list[str]]:
    """The By device table's rows as text cells: device, images, generations, share."""
    table = re.search(r'<table class="devices".*?</table>', content, re.S)
    assert table, content
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(0).split("<tbody>")[1], re.S)
    return [
        [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", cell)).split()) for cell in cells]
        for cells in (re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S) for row in rows)
    ]


def device_options(content: str) -> list[tuple[str, str, bool]]:
    select = re.search(r'<select name="token".*?</select>', content, re.S)
    assert select
    return [
        (value, html.unescape(label), " selected" in attributes)
        for value, attributes, label in re.findall(
            r'<option value="([^"]*)"([^>]*)>(.*?)</option>', select.group(0)
        )
    ]


@pytest.fixture
def tokens(owner):
    return {name: create_token(owner, name).token for name in ("Laptop", "Studio PC", "Old Mac")}


@pytest.fixture
def device_records(owner, other, tokens, other_token):
    make_record(owner, datetime(2026, 3, 2, 9, tzinfo=UTC), images=6, token=tokens["Laptop"])
    make_record(owner, datetime(2026, 3, 3, 9, tzinfo=UTC), images=3, token=tokens["Old Mac"])
    make_record(owner, datetime(2026, 3, 4, 9, tzinfo=UTC), images=1)
    make_record(other, datetime(2026, 3, 2, 9, tzinfo=UTC), images=90, token=other_token.token)
    revoke_token(tokens["Old Mac"])


def test_the_table_lists_each_device_with_its_share(owner, tokens, device_records):
    content = client_for(owner).get("/dashboard/", MARCH).content.decode()
    laptop, old_mac = tokens["Laptop"], tokens["Old Mac"]
    assert devices_table(content) == [
        [f"Laptop {laptop.display_prefix}…", "6", "1", "60.0 %"],
        [f"Old Mac {old_mac.display_prefix}… revoked", "3", "1", "30.0 %"],
        ["No token", "1", "1", "10.0 %"],
    ]


def test_the_filter_offers_active_tokens_and_used_revoked_ones_only(owner, tokens, device_records):
    unused = create_token(owner, "Never used").token
    revoke_token(unused)
    content = client_for(owner).get("/dashboard/", MARCH).content.decode()
    laptop, studio, old_mac = tokens["Laptop"], tokens["Studio PC"], tokens["Old Mac"]
    assert device_options(content) == [
        ("", "All devices", True),
        (str(laptop.pk), f"Laptop ({laptop.display_prefix}…)", False),
        (str(old_mac.pk), f"Old Mac ({old_mac.display_prefix}…), revoked", False),
        (str(studio.pk), f"Studio PC ({studio.display_prefix}…)", False),
        ("none", "No token", False),
    ]


def test_a_chosen_device_narrows_the_page_and_stays_chosen(owner, tokens, device_records):
    laptop = tokens["Laptop"]
    content = client_for(owner).get("/dashboard/", {**MARCH, "token": laptop.pk}).content.decode()
    assert total_images(content) == 6
    assert (str(laptop.pk), f"Laptop ({laptop.display_prefix}…)", True) in device_options(content)
    assert [row[0] for row in devices_table(content)] == [f"Laptop {laptop.display_prefix}…"]
    kept = f"token={laptop.pk}"
    # The range links, the custom range, Refresh Data's address and both CSV links keep it.
    for days in (7, 30, 90):
        assert f'href="?days={days}&amp;tz=UTC&amp;{kept}"' in content
    assert f'<input type="hidden" name="token" value="{laptop.pk}">' in content
    assert re.search(rf'data-data-url="/dashboard/data/\?[^"]*{kept}"', content)
    assert re.search(rf'href="/dashboard/export.csv\?[^"]*{kept}"', content)
    assert re.search(rf'href="/dashboard/daily-totals.csv\?[^"]*{kept}"', content)


def test_no_token_shows_the_records_sent_without_one(owner, device_records):
    content = client_for(owner).get("/dashboard/", {**MARCH, "token": "none"}).content.decode()
    assert total_images(content) == 1
    assert ("none", "No token", True) in device_options(content)


def test_refresh_data_renders_the_devices_region_for_the_chosen_device(
    owner, tokens, device_records
):
    client = client_for(owner)
    query = {**MARCH, "token": tokens["Laptop"].pk}
    make_record(owner, datetime(2026, 3, 5, 9, tzinfo=UTC), images=4, token=tokens["Laptop"])
    make_record(owner, datetime(2026, 3, 5, 9, tzinfo=UTC), images=50)  # not the laptop's
    body = client.get("/dashboard/data/", query).json()
    assert body["summary"]["totals"]["images"] == 10
    assert devices_table(body["html"]["devices"]) == [
        [f"Laptop {tokens['Laptop'].display_prefix}…", "10", "2", "100.0 %"]
    ]


def test_another_users_token_shows_a_problem_and_only_the_owners_own_usage(
    owner, other_token, device_records
):
    response = client_for(owner).get("/dashboard/", {**MARCH, "token": other_token.token.pk})
    content = response.content.decode()
    assert response.status_code == 400
    assert "token must be the id of one of your API tokens" in content
    assert total_images(content) == 10  # alice's every device, never bob's 90
    assert "Bob" not in content


def test_refresh_data_answers_another_users_token_with_a_json_400(owner, other_token):
    response = client_for(owner).get("/dashboard/data/", {**MARCH, "token": other_token.token.pk})
    assert response.status_code == 400
    assert response.json()["field"] == "token"


def test_another_user_gets_nothing_of_the_owners_devices(other, other_token, device_records):
    content = client_for(other).get("/dashboard/", MARCH).content.decode()
    assert "Laptop" not in content and "Old Mac" not in content
    bobs = other_token.token
    assert devices_table(content) == [
        [f"Bob's desktop {bobs.display_prefix}…", "90", "1", "100.0 %"]
    ]
    assert [option[1] for option in device_options(content)] == [
        "All devices",
        f"Bob's desktop ({bobs.display_prefix}…)",
        "No token",
    ]


def test_staff_see_and_filter_a_users_devices(staff, tokens, device_records):
    laptop = tokens["Laptop"]
    query = {**MARCH, "user": "alice"}
    content = client_for(staff).get("/dashboard/", query).content.decode()
    assert [option[1].split(" (")[0] for option in device_options(content)] == [
        "All devices",
        "Laptop",
        "Old Mac",
        "Studio PC",
        "No token",
    ]
    filtered = client_for(staff).get("/dashboard/", {**query, "token": laptop.pk}).content.decode()
    assert total_images(filtered) == 6


def test_staff_cannot_filter_a_user_by_someone_elses_token(staff, other_token, device_records):
    response = client_for(staff).get(
        "/dashboard/", {**MARCH, "user": "alice", "token": other_token.token.pk}
    )
    assert response.status_code == 400
    assert total_images(response.content.decode()) == 10


def test_an_empty_range_says_so(owner, tokens):
    content = client_for(owner).get("/dashboard/", MARCH).content.decode()
    assert '<p class="empty" data-testid="devices-table">No images in this range.</p>' in content
