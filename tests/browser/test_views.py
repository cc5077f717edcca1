"""Reading and sharing runs in Chromium against a real server: the x axes, zoom, the run table
(sort, filter, row menu), comparison with the config diff and readable legends, exports
(metrics CSV/JSON, chart PNG), "Copy CLI command", the view in the URL, a failed run's chart and
an ETA that says "estimating" until it can know."""

from __future__ import annotations

import csv
import io
import json
import re
import shlex

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from engine.cli import build_parser, train_config_from_args
from tests.browser.conftest import Server
from tests.browser.helpers import configure, open_run, row_action, run_row, start, wait_for_points

pytestmark = [pytest.mark.browser, pytest.mark.mnist]

BASE = {"hidden_layers": [32], "epochs": 2, "batch_size": 64}


@pytest.fixture(scope="module")
def three_runs(server: Server) -> list[dict]:
    """Three completed runs whose configs differ in the learning rate, then the batch size."""
    return [
        server.train(**BASE),
        server.train(**BASE, learning_rate=0.2),
        server.train(**{**BASE, "batch_size": 32, "epochs": 3}, dropout=0.1),
    ]


def chart_view(page: Page, name: str = "loss") -> dict:
    """What a chart of the training card drew: its x range, ticks, titles and legend."""
    return page.evaluate("""async (name) => {
        const { charts } = await import('/static/js/training.js');
        const chart = charts[name];
        chart.draw();
        const l = chart.layout;
        return { x0: l?.x0, x1: l?.x1, xTicks: l?.xTicks, yLabels: l?.labels, xTitle: chart.options.xTitle,
                 yTitle: chart.options.yTitle, legend: chart.legendItems().map((item) => item.label) };
    }""", name)


def query(page: Page) -> dict[str, str]:
    return dict(re.findall(r"([a-z]+)=([^&]+)", page.url.split("?", 1)[1])) if "?" in page.url else {}


# --- charts ---------------------------------------------------------------------------------------
def test_the_x_axis_can_be_steps_epochs_samples_or_time(server: Server, three_runs, new_page):
    run = three_runs[2]
    metrics = server.metrics(run["id"])
    last_step = metrics["iterations"][-1]["step"]
    epochs = run["config"]["epochs"]
    page = new_page(server.url)
    open_run(page, run["id"])
    expect(page.get_by_test_id("accuracy-chart")).to_have_attribute("data-epochs", str(epochs))
    axis = page.get_by_test_id("x-axis")

    view = chart_view(page)
    assert view["x1"] == last_step and view["xTitle"] == "Step"
    assert view["yTitle"].startswith("Loss")

    axis.select_option("epoch")
    view = chart_view(page)
    assert view["xTitle"] == "Epoch" and view["x1"] == pytest.approx(epochs)
    assert view["xTicks"] == list(range(1, epochs + 1)), view["xTicks"]  # whole epochs only
    assert chart_view(page, "accuracy")["xTicks"] == list(range(1, epochs + 1))

    axis.select_option("samples")
    view = chart_view(page)
    assert view["xTitle"] == "Training samples seen"
    assert view["x1"] == (last_step + 1) * run["config"]["batch_size"]

    axis.select_option("time")
    view = chart_view(page)
    assert view["xTitle"].startswith("Wall time")
    total = sum(epoch["duration_s"] for epoch in metrics["epochs"])
    assert view["x1"] == pytest.approx(total, rel=1e-6)  # the last step ends with the last epoch
    assert query(page)["x"] == "time"


def test_drag_zooms_every_chart_and_reset_shows_the_whole_run(server: Server, three_runs,
                                                               new_page):
    run = three_runs[2]
    page = new_page(server.url)
    open_run(page, run["id"])
    reset = page.get_by_test_id("zoom-reset")
    expect(reset).to_be_hidden()
    full = chart_view(page)
    box = page.get_by_test_id("loss-chart").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.5, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.8, y, steps=6)
    page.mouse.up()
    expect(reset).to_be_visible()
    assert page.get_by_test_id("loss-chart").bounding_box() == box  # nothing moved
    zoomed = chart_view(page)
    assert full["x0"] < zoomed["x0"] < zoomed["x1"] < full["x1"]
    assert chart_view(page, "accuracy")["x0"] == zoomed["x0"]  # one x range for all charts
    reset.click()
    expect(reset).to_be_hidden()
    assert chart_view(page)["x1"] == full["x1"]
    # Double-click resets too.
    box = page.get_by_test_id("loss-chart").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.3, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=6)
    page.mouse.up()
    expect(reset).to_be_visible()
    page.mouse.dblclick(box["x"] + box["width"] * 0.5, y)
    expect(reset).to_be_hidden()


def test_a_failed_run_plots_every_stored_step(server: Server, new_page):
    """A learning rate that makes the loss explode: the run fails, and the chart shows each step
    the server stored before it (not an empty chart)."""
    answer = server.api.post("/api/runs", json={**BASE, "epochs": 1, "learning_rate": 10,
                                                "optimizer": "sgd", "weight_decay": 0})
    run_id = answer.json()["id"]
    page = new_page(server.url)
    open_run(page, run_id)
    expect(page.get_by_test_id("run-status")).to_have_text("failed", timeout=60_000)
    stored = len(server.metrics(run_id)["iterations"])
    assert server.run(run_id)["reason"].startswith("diverged")
    expect(page.get_by_test_id("loss-chart")).to_have_attribute("data-points", str(stored))
    view = chart_view(page)
    if stored:
        assert view["x1"] is not None and view["x1"] >= 0  # axes around the stored steps
    else:
        assert view["x1"] is None  # nothing stored: the chart says so
        expect(page.locator("#run-summary")).to_contain_text("diverged")
    # The diverging step the server recorded (`run.diverged`): marked on the chart with its loss,
    # one step past the last stored one, and in view.
    diverged = server.run(run_id)["diverged"]
    assert diverged is not None and diverged["step"] == stored
    loss = "not a number" if diverged["loss"] is None else f"{diverged['loss']:.0f}"
    marked = page.evaluate("""async () => {
        const { charts } = await import('/static/js/training.js');
        charts.loss.draw();
        return { notes: charts.loss.annotations, x1: charts.loss.layout.x1 };
    }""")
    assert marked["notes"] == [{"x": stored, "label": f"diverged at step {stored} (loss {loss})"}]
    assert marked["x1"] >= stored


def test_the_eta_says_estimating_until_it_has_measured(server: Server, new_page):
    page = new_page(server.url)
    page.evaluate("""() => {
        window.etas = [];
        const eta = document.querySelector('[data-testid=eta]');
        const status = document.querySelector('[data-testid=run-status]');
        // Every text the ETA shows, with the run it is about, also texts replaced within one task.
        new MutationObserver((records) => {
            for (const record of records) {
                for (const node of record.addedNodes) {
                    window.etas.push([status.dataset.runId, node.textContent]);
                }
            }
        }).observe(eta, {childList: true});
    }""")
    configure(page, epochs=200, layer=32, batch=16)
    run_id = str(start(page, server))
    page.wait_for_function(
        "(id) => window.etas.some(([run, text]) => run === id && /^(≈ )?[0-9]/.test(text))",
        arg=run_id, timeout=60_000)
    seen = [text for run, text in page.evaluate("() => window.etas")
            if run == run_id and text not in ("–", "waiting")]
    assert seen[0] == "estimating…", seen  # no number from the first few steps
    first_number = next(text for text in seen if re.match(r"^(≈ )?[0-9]", text))
    assert re.match(r"^(≈ )?\d+(\.\d)?s$|^(≈ )?\d+m \d\ds$|^(≈ )?\d+h \d+m$", first_number)
    server.stop_active_runs()


# --- the run table ---------------------------------------------------------------------------------
def test_runs_sort_filter_and_keep_their_actions_in_one_menu(server: Server, three_runs,
                                                            new_page):
    page = new_page(server.url)
    table = page.get_by_test_id("run-table")
    for run in three_runs:
        expect(run_row(page, run["id"])).to_be_visible()
    # One Actions button per row, not a row of buttons.
    row = run_row(page, three_runs[0]["id"])
    expect(row.get_by_role("button")).to_have_count(2)  # the name (opens) and Actions
    # Sorting by best validation accuracy, both ways; runs without one stay last.
    best = {run["id"]: server.run(run["id"])["best_val_accuracy"] for run in three_runs}
    show_all = page.locator("#show-all-runs")
    if show_all.is_visible():
        show_all.click()  # other tests' runs may push ours below the first eight
    table.get_by_role("button", name="Best val").click()
    expect(table.locator('th[data-sort="best_val_accuracy"]')).to_have_attribute(
        "aria-sort", "descending")
    order = [int(i) for i in page.get_by_test_id("run-list").locator("tr").evaluate_all(
        "rows => rows.map(r => r.dataset.runId)")]
    ours = [i for i in order if i in best]
    assert ours == sorted(best, key=lambda i: (-best[i], -i))
    table.get_by_role("button", name="Best val").click()
    expect(table.locator('th[data-sort="best_val_accuracy"]')).to_have_attribute(
        "aria-sort", "ascending")
    # Filtering: every word must match the run's name, preset, status, tags or config.
    page.get_by_test_id("run-filter").fill("lr 0.2")
    expect(page.get_by_test_id("run-list").locator("tr")).to_have_count(
        sum(1 for run in server.runs() if run["config"]["learning_rate"] == 0.2))
    expect(run_row(page, three_runs[1]["id"])).to_be_visible()
    expect(page.locator("#run-list-filtered")).to_contain_text("match")
    page.get_by_test_id("run-filter").fill("")
    # The menu works from the keyboard: Enter opens it on its first item, arrows move, Escape
    # closes it and gives focus back to its button.
    button = page.get_by_role("button", name=f"Actions for run {three_runs[0]['id']}")
    button.focus()
    page.keyboard.press("Enter")
    menu = page.get_by_role("menu")
    expect(menu).to_be_visible()
    expect(menu.get_by_role("menuitem", name="Open")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(menu.get_by_role("menuitem", name="Use for predictions")).to_be_focused()
    page.keyboard.press("Escape")
    expect(menu).to_be_hidden()
    expect(button).to_be_focused()
    expect(button).to_have_attribute("aria-expanded", "false")


def test_runs_are_named_tagged_and_noted_on_the_server(server: Server, three_runs, new_page):
    """Without a name, a run reads as its preset and what differs from it. "Name, tags and
    notes…" stores them on the server (PATCH /api/runs/{id}); the row, the title and the filter
    show them, and another tab sees them without reloading."""
    run_id = three_runs[0]["id"]
    page = new_page(server.url)
    other = new_page(server.url)
    expect(run_row(page, three_runs[1]["id"]).locator(".run-name")).to_have_text(
        "default · hidden 32, lr 0.2 +2")
    unnamed = run_row(page, run_id).locator(".run-name").inner_text()
    assert unnamed.startswith("default · hidden 32")
    open_run(other, run_id)
    expect(other.locator("#watched-label")).to_have_text(f"· #{run_id} {unnamed}")
    try:
        row_action(page, run_id, "Name, tags and notes…").click()
        dialog = page.locator("#run-details-dialog")
        expect(dialog).to_be_visible()
        dialog.get_by_label("Name").fill("baseline")
        dialog.get_by_label("Tags").fill("small, tagged-in-test, small")
        dialog.get_by_label("Notes").fill("the reference")
        dialog.get_by_role("button", name="Save").click()
        row = run_row(page, run_id)
        expect(row.locator(".run-name")).to_have_text("baseline")
        expect(row.locator(".run-tag")).to_have_text(["small", "tagged-in-test"])
        expect(row.locator(".run-notes")).to_have_text("the reference")
        stored = server.run(run_id)
        assert (stored["name"], stored["tags"], stored["notes"]) == \
            ("baseline", ["small", "tagged-in-test"], "the reference")
        # The other tab learns it from the run list's stream: its row and its title.
        expect(run_row(other, run_id).locator(".run-name")).to_have_text("baseline")
        expect(other.locator("#watched-label")).to_have_text(f"· #{run_id} baseline")
        # Tags and notes are searchable.
        for words in ("tagged-in-test", "reference"):
            page.get_by_test_id("run-filter").fill(words)
            expect(page.get_by_test_id("run-list").locator("tr")).to_have_count(1)
            expect(run_row(page, run_id)).to_be_visible()
        page.get_by_test_id("run-filter").fill("")
        # A tag the server refuses: its reason is shown, and the run keeps what it had.
        row_action(page, run_id, "Name, tags and notes…").click()
        expect(dialog.get_by_label("Name")).to_have_value("baseline")
        dialog.get_by_label("Tags").fill("small, <script>")
        dialog.get_by_role("button", name="Save").click()
        expect(page.get_by_role("alert").filter(has_text="is not a tag")).to_be_visible()
        assert server.run(run_id)["tags"] == ["small", "tagged-in-test"]
    finally:  # the other tests read this run by its config
        server.api.patch(f"/api/runs/{run_id}", json={"name": None, "tags": [], "notes": None})
    expect(run_row(page, run_id).locator(".run-name")).to_have_text(unnamed)


# --- comparison ------------------------------------------------------------------------------------
def test_comparing_runs_shows_only_the_settings_that_differ(server: Server, three_runs, new_page):
    first, second, third = three_runs
    page = new_page(server.url)
    open_run(page, first["id"])
    expect(page.get_by_test_id("config-diff")).to_be_hidden()
    page.get_by_label(f"Compare run {second['id']} on the charts").check()
    diff = page.get_by_test_id("config-diff")
    expect(diff).to_be_visible()
    expect(diff.locator("tbody tr")).to_have_count(1)
    expect(diff.locator("tbody tr")).to_have_attribute("data-field", "learning_rate")
    expect(diff.locator("tbody tr td")).to_have_text(["0.05", "0.2"])

    page.get_by_label(f"Compare run {third['id']} on the charts").check()
    expect(diff.locator("thead th")).to_have_count(4)
    fields = diff.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.field)")
    assert set(fields) == {"learning_rate", "batch_size", "epochs", "dropout"}
    # Legends stay short: one entry per run on the loss chart, and per run plus the two line
    # styles on the epoch charts (not train and validation for every run).
    expect(page.locator("#loss-legend .legend-item")).to_have_count(3)
    expect(page.locator("#accuracy-legend .legend-item")).to_have_count(5)
    expect(page.locator("#loss-legend")).to_contain_text(f"#{third['id']} default · ")
    assert query(page)["compare"] == f"{second['id']},{third['id']}"


# --- exports ---------------------------------------------------------------------------------------
def test_a_runs_metrics_export_as_csv_and_json(server: Server, three_runs, new_page):
    run = three_runs[0]
    page = new_page(server.url)
    open_run(page, run["id"])
    exports = page.get_by_test_id("export-metrics")
    stored = server.metrics(run["id"])
    with page.expect_download() as info:
        exports.get_by_role("link", name=re.compile("CSV")).click()
    download = info.value
    assert download.suggested_filename == f"run-{run['id']}-metrics.csv"  # the server's name
    rows = list(csv.DictReader(io.StringIO(open(download.path()).read())))
    assert [int(r["step"]) for r in rows] == [p["step"] for p in stored["iterations"]]
    with page.expect_download() as info:
        exports.get_by_role("link", name=re.compile("JSON")).click()
    assert info.value.suggested_filename == f"run-{run['id']}-metrics.json"
    assert json.loads(open(info.value.path()).read()) == stored
    # The same from any row's menu.
    link = row_action(page, three_runs[1]["id"], "Export metrics as CSV")
    expect(link).to_have_attribute("href", f"/api/runs/{three_runs[1]['id']}/metrics?format=csv")


def test_each_chart_saves_as_a_png(server: Server, three_runs, new_page):
    run = three_runs[0]
    page = new_page(server.url)
    open_run(page, run["id"])
    buttons = page.get_by_test_id("export-png")
    expect(buttons).to_have_count(3)
    for index, name in enumerate(("loss", "epoch-loss", "accuracy")):
        with page.expect_download() as info:
            buttons.nth(index).click()
        assert info.value.suggested_filename == f"mnist-lab-run-{run['id']}-{name}.png"
        image = Image.open(info.value.path())
        box = page.locator(f"#{name}-chart").bounding_box()
        assert image.width >= box["width"] and image.height > box["height"]  # chart + title
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
        assert len(colours) > 50  # lines, text and antialiasing: not a blank picture


def test_copy_cli_gives_a_command_that_trains_the_same_config(server: Server, three_runs,
                                                              new_page):
    page = new_page(server.url)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    for run in three_runs:
        open_run(page, run["id"])
        page.get_by_test_id("copy-cli").click()
        preview = page.locator("#cli-preview")
        expect(preview).to_have_text(re.compile(r"^mnist-lab train --preset "))
        command = preview.text_content()
        assert page.evaluate("() => navigator.clipboard.readText()") == command
        words = shlex.split(command)
        assert words[:2] == ["mnist-lab", "train"]
        config = train_config_from_args(build_parser().parse_args(words[1:])).to_dict()
        assert config == run["config"], command
    assert "--lr 0.2" in page.evaluate(f"""async () => {{
        const {{ cliCommand }} = await import('/static/js/configs.js');
        const {{ state }} = await import('/static/js/state.js');
        return cliCommand(state.runs.find((r) => r.id === {three_runs[1]['id']}).config);
    }}""")


# --- the view in the URL ---------------------------------------------------------------------------
def test_the_url_holds_the_view_and_a_reload_restores_it(server: Server, three_runs, new_page):
    first, second, third = three_runs
    url = (f"{server.url}/?run={first['id']}&compare={second['id']},{third['id']}"
           "&smooth=0.9&log=1&x=epoch")
    page = new_page(url)
    expect(page.get_by_test_id("run-status")).to_have_attribute("data-run-id", str(first["id"]))
    for other in (second, third):
        expect(page.get_by_label(f"Compare run {other['id']} on the charts")).to_be_checked()
    expect(page.locator("#smoothing")).to_have_value("0.9")
    expect(page.locator("#log-scale")).to_be_checked()
    expect(page.get_by_test_id("x-axis")).to_have_value("epoch")
    expect(page.get_by_test_id("loss-chart")).to_have_attribute("data-smoothing", "0.9")
    assert chart_view(page)["xTitle"] == "Epoch"

    # Changing the view rewrites the URL in place; a reload brings the same view back.
    page.get_by_label(f"Compare run {third['id']} on the charts").uncheck()
    page.get_by_test_id("x-axis").select_option("samples")
    page.locator("#log-scale").uncheck(force=True)
    expect(page).to_have_url(re.compile(r"x=samples"))
    assert query(page) == {"run": str(first["id"]), "compare": str(second["id"]),
                           "smooth": "0.9", "x": "samples"}
    page.reload()
    expect(page.get_by_test_id("run-status")).to_have_attribute("data-run-id", str(first["id"]))
    expect(page.get_by_label(f"Compare run {second['id']} on the charts")).to_be_checked()
    expect(page.get_by_label(f"Compare run {third['id']} on the charts")).not_to_be_checked()
    expect(page.get_by_test_id("x-axis")).to_have_value("samples")
    expect(page.locator("#log-scale")).not_to_be_checked()
    # Back to automatic smoothing: the parameter leaves the URL.
    page.locator("#smoothing-auto").click()
    expect(page).not_to_have_url(re.compile("smooth="))


def test_a_shared_url_keeps_its_run_while_another_trains(server: Server, three_runs, new_page):
    page = new_page(server.url)
    configure(page, epochs=200, layer=16, batch=32)
    live = start(page, server)
    wait_for_points(page, 1)
    shared = new_page(f"{server.url}/?run={three_runs[0]['id']}")
    expect(shared.get_by_test_id("run-status")).to_have_attribute(
        "data-run-id", str(three_runs[0]["id"]))
    # The list that shows the live run is the one that would make the page follow it: once the
    # link to it is there, the page has decided, and stays on the shared run.
    expect(shared.get_by_role("button", name=f"Run #{live} is running: watch it")).to_be_visible()
    expect(shared.get_by_test_id("run-status")).to_have_attribute(
        "data-run-id", str(three_runs[0]["id"]))
    server.stop_active_runs()


def test_a_finished_runs_curve_that_comes_in_pages_is_drawn_whole(server_factory, new_page):
    """With 50 points to a message, a finished run's 125 steps come as a snapshot and two more
    pages: the page keeps the socket open until the last (`backlog` 0) and draws every step."""
    paged = server_factory(MNIST_LAB_STREAM_PAGE_POINTS="50")
    run = paged.train(hidden_layers=[16], epochs=1, batch_size=16)
    stored = len(paged.metrics(run["id"])["iterations"])
    assert stored > 100
    page = new_page(paged.url)
    open_run(page, run["id"])
    expect(page.get_by_test_id("loss-chart")).to_have_attribute("data-points", str(stored))
