"""/api/schema/ in Chromium: shown in the tab as text (YAML, or JSON with ?format=json),
not saved as a file; ?download=1 still saves it."""

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(("query", "starts"), [("", "openapi: 3."), ("?format=json", "{")])
def test_the_schema_opens_in_the_tab(open_tab, live_server, query, starts):
    tab = open_tab(accept_downloads=True)
    downloads = []
    tab.page.on("download", lambda download: downloads.append(download))

    response = tab.page.goto(f"{live_server.url}/api/schema/{query}")

    assert response.status == 200
    assert tab.page.locator("body").inner_text().startswith(starts)
    assert "Bearer" in tab.page.locator("body").inner_text()
    assert downloads == []


def test_the_download_link_saves_the_file(open_tab, live_server):
    tab = open_tab(accept_downloads=True)

    with tab.page.expect_download() as download:
        # A navigation that ends in a download is reported as aborted: only the file counts.
        try:
            tab.page.goto(f"{live_server.url}/api/schema/?download=1")
        except Exception as navigation:
            assert "net::ERR_ABORTED" in str(navigation) or "Download" in str(navigation)

    assert download.value.suggested_filename == "usage-site-api.yaml"
