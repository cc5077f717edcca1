"""The API's documentation page works offline: every request that would leave this machine is
aborted, and /docs (Swagger UI) still renders every operation from the server's own assets."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from tests.browser.conftest import CHROMIUM_ARGS, expect  # noqa: F401 - expect's timeout is set there

pytestmark = [pytest.mark.browser, pytest.mark.mnist]
LOCAL = {"127.0.0.1", "localhost", "[::1]"}


@pytest.fixture
def offline_page(playwright_browser):
    """A page whose every request to another host is aborted (and recorded)."""
    context = playwright_browser.new_context()
    left: list[str] = []

    def only_local(route):
        if urlparse(route.request.url).hostname in LOCAL:
            return route.continue_()
        left.append(route.request.url)
        return route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page, left, errors
    context.close()


def test_swagger_ui_renders_every_operation_offline(server, offline_page):
    page, left, errors = offline_page
    page.goto(f"{server.url}/docs")
    operations = page.locator(".opblock")
    expect(operations.first).to_be_visible()
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert {"/predict", "/api/runs", "/api/runs/{run_id}/metrics"} <= {p.replace("\u200b", "") for p in paths}
    assert operations.count() >= 12
    assert left == [], f"requests that tried to leave the machine: {left}"
    assert errors == []
