"""What the browser tests do on the page, as a user would: fill the form, start, open a run,
choose from a row's menu, draw; and waits on what the page shows against what the server says."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.conftest import Server
from tests.waiting import wait_for


def configure(page: Page, *, epochs: int, layer: int | None = None, batch: int | None = None):
    if layer is not None:
        page.get_by_label("Units in hidden layer 1").fill(str(layer))
    if batch is not None:
        page.get_by_label("Batch size").fill(str(batch))
    page.get_by_label("Epochs", exact=True).fill(str(epochs))


def start(page: Page, server: Server) -> int:
    """Press Start and return the new run's id (the page switches to watching it)."""
    before = {run["id"] for run in server.runs()}
    page.get_by_test_id("start-run").click()
    new_ids: set[int] = set()

    def created() -> bool:
        nonlocal new_ids
        new_ids = {run["id"] for run in server.runs()} - before
        return bool(new_ids)

    wait_until(page, created, lambda: "the run to be created; the page says: "
               + page.locator("#form-error").inner_text() + page.locator("#toasts").inner_text())
    run_id = max(new_ids)
    expect(page.get_by_test_id("run-status")).to_have_attribute("data-run-id", str(run_id))
    return run_id


def run_row(page: Page, run_id: int):
    return page.get_by_test_id("run-list").locator(f'tr[data-run-id="{run_id}"]')


def settle(page: Page):
    """Wait until the page has stopped scrolling (opening a run scrolls smoothly to its charts):
    positions measured before then would be stale."""
    page.evaluate("""async () => {
        for (;;) {
            const y = window.scrollY;
            await new Promise((resolve) => setTimeout(resolve, 150));
            if (window.scrollY === y) return;
        }
    }""")


def open_run(page: Page, run_id: int):
    """Watch a run from the run table: its name opens it."""
    name = run_row(page, run_id).locator("button.run-open")
    expect(name).to_be_visible()
    name.click()
    expect(page.get_by_test_id("run-status")).to_have_attribute("data-run-id", str(run_id))
    settle(page)


def row_action(page: Page, run_id: int, item: str):
    """Choose `item` in the Actions menu of a run's row; returns the menu item."""
    page.get_by_role("button", name=f"Actions for run {run_id}").click()
    entry = page.get_by_role("menu").get_by_role("menuitem", name=item)
    expect(entry).to_be_visible()
    return entry


def wait_until(page: Page, condition, what, timeout_s: float = 30):
    """tests.waiting.wait_for, passing the time in the page (so that it keeps serving events)."""
    return wait_for(condition, timeout_s, 0.1, what, sleep=lambda s: page.wait_for_timeout(s * 1000))


def points(page: Page) -> int:
    return int(page.get_by_test_id("loss-chart").get_attribute("data-points"))


def wait_for_points(page: Page, at_least: int, timeout_ms: int = 30_000):
    page.wait_for_function(
        "n => Number(document.querySelector('[data-testid=loss-chart]').dataset.points) >= n",
        arg=at_least, timeout=timeout_ms,
    )


def server_points(server: Server, run_id: int) -> int:
    return len(server.metrics(run_id)["iterations"])


def expect_in_step(server: Server, run_id: int, *pages: Page, timeout_s: float = 20) -> int:
    """Wait until every page draws exactly the points the server has stored for the run (a run
    that was just paused or ended may still be delivering its last steps), and return the count.
    """
    counts: list[int] = []

    def in_step() -> bool:
        counts[:] = [server_points(server, run_id), *(points(page) for page in pages)]
        return len(set(counts)) == 1

    wait_until(pages[0], in_step, lambda: f"the pages to draw the server's points: {counts}",
               timeout_s)
    return counts[0]


def draw_seven(page: Page):
    box = page.get_by_test_id("draw-canvas").bounding_box()
    x, y, w, h = box["x"], box["y"], box["width"], box["height"]
    page.mouse.move(x + 0.3 * w, y + 0.25 * h)
    page.mouse.down()
    page.mouse.move(x + 0.7 * w, y + 0.25 * h, steps=8)
    page.mouse.move(x + 0.45 * w, y + 0.8 * h, steps=12)
    page.mouse.up()


def lit_model_input_pixels(page: Page) -> list[int]:
    return page.evaluate("""() => {
        const canvas = document.querySelector('[data-testid=model-input]');
        const data = canvas.getContext('2d').getImageData(0, 0, 28, 28).data;
        let lit = 0;
        for (let i = 0; i < data.length; i += 4) if (data[i] > 0) lit += 1;
        return [canvas.width, canvas.height, lit];
    }""")


