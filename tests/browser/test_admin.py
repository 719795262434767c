"""The admin's record list in Chromium at a laptop's width (1366 px): every column fits,
long event ids are cut to one line with the whole id in their title, and dates read as on
the rest of the site."""

from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from usage.ingest import ingest
from usage.tokens import create_token

pytestmark = pytest.mark.django_db(transaction=True)

LAPTOP = {"width": 1366, "height": 768}
LONG_EVENT_ID = "desktop-app-7f3c9a2e-5b1d-4e8f-9a6c-2d4b8e1f0c3a-" + "x" * 51  # 100 characters
WHEN = datetime(2026, 12, 3, 19, 31, tzinfo=UTC)


@pytest.fixture
def long_records(db):
    owner = get_user_model().objects.create_user("a.rather.long.username@studio.example")
    token = create_token(owner, "Studio workstation in the back office").token
    records = [
        {
            "modelName": "Stable-Diffusion-XL-Turbo-Lightning",
            "imageCount": 4,
            "id": f"{LONG_EVENT_ID[:-2]}{n:02d}",
            "timestamp": WHEN.isoformat(),
        }
        for n in range(5)
    ]
    ingest(owner, token, records, WHEN)


def test_the_record_list_fits_a_laptop_screen_with_event_ids_on_one_line(
    open_tab, live_server, staff, long_records, screenshots
):
    tab = open_tab(staff, viewport=LAPTOP)
    page = tab.page

    page.goto(f"{live_server.url}/admin/usage/usagerecord/")

    table = page.locator("#result_list")
    expect(table).to_be_visible()
    page.screenshot(path=screenshots / "admin-records-1366.png", full_page=True)
    # Nothing of the table is cut off or scrolled away at the right.
    widths = page.evaluate(
        "() => { const r = document.querySelector('#changelist .results');"
        " return [r.scrollWidth, r.clientWidth, document.documentElement.scrollWidth]; }"
    )
    assert widths[0] <= widths[1] and widths[2] <= LAPTOP["width"], widths
    narrowest = page.evaluate(
        "() => { const t = document.querySelector('#result_list'); t.style.width = 'min-content';"
        " const w = t.getBoundingClientRect().width; t.style.width = ''; return w; }"
    )
    print("record list: width, room, page width; narrowest:", widths, narrowest)
    token_cell = page.locator("td.field-token_prefix").first
    assert token_cell.bounding_box()["x"] + token_cell.bounding_box()["width"] <= LAPTOP["width"]
    # Each event id is one line, cut short, with the whole id in its title.
    event = page.locator("td.field-event span.event-id").first
    assert event.get_attribute("title").startswith(LONG_EVENT_ID[:-2])
    line_height = page.evaluate(
        "(e) => parseFloat(getComputedStyle(e).lineHeight) || e.getBoundingClientRect().height",
        event.element_handle(),
    )
    assert event.bounding_box()["height"] <= line_height * 1.5
    # The site's own date style, in 24-hour time.
    expect(page.locator("#result_list .field-occurred_at").first).to_have_text("3 Dec 2026, 19:31")
    # If a time goes under its day, the day stays whole on the first line.
    first_line = page.evaluate(
        "(e) => { const r = document.createRange(); r.selectNodeContents(e);"
        " const top = r.getClientRects()[0].top;"
        " return [...e.textContent].filter((_, i) => { const c = document.createRange();"
        " c.setStart(e.firstChild, i); c.setEnd(e.firstChild, i + 1);"
        " return c.getClientRects()[0].top === top; }).join(''); }",
        page.locator("#result_list td.field-received_at").first.element_handle(),
    )
    assert first_line.startswith("3 Dec 2026")
    assert tab.errors == []
