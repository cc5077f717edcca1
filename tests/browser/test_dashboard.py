"""The dashboard in a real Chromium against a real server training on real MNIST digits.

What a user does on the page, checked against what the server says (its API is the witness):
live charts, run control, drawing, reloads, several tabs, validation, history, reconnection.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS, TEST_SUBSET, Server
from tests.browser.helpers import (
    configure,
    draw_seven,
    expect_in_step,
    lit_model_input_pixels,
    open_run,
    points,
    row_action,
    run_row,
    start,
    wait_for_points,
)

pytestmark = [pytest.mark.browser, pytest.mark.mnist]

# A run that trains until it is stopped: small, so that it costs little CPU while it lasts.
LONG_RUN = {"layer": 32, "batch": 32, "epochs": 200}


@pytest.fixture(scope="module")
def trained(server: Server) -> dict:
    """A completed run whose model serves predictions."""
    return server.train(hidden_layers=[64], epochs=2, batch_size=64)


# --- tests ---------------------------------------------------------------------------------------
def test_a_run_started_from_a_preset_updates_the_charts_live(server: Server, new_page):
    page = new_page(server.url)
    expect(page).to_have_title(re.compile("MNIST Lab"))
    presets = server.api.get("/api/options").json()["presets"]
    preset_select = page.get_by_test_id("preset-select")
    expect(preset_select.locator("option")).to_have_count(len(presets))
    preset_select.select_option("notebook")
    notebook = next(p for p in presets if p["name"] == "notebook")["config"]
    expect(page.get_by_label("Units in hidden layer 1")).to_have_value(
        str(notebook["hidden_layers"][0]))
    expect(page.get_by_label("Optimizer")).to_have_value(notebook["optimizer"])
    expect(page.get_by_label("Schedule")).to_have_value(notebook["lr_schedule"])
    configure(page, epochs=3, batch=64)
    # Record every value the charts' counts take, to see them grow while the run trains.
    page.evaluate("""() => {
        window.seen = {points: new Set(), epochs: new Set()};
        const watch = (testid, attribute, into) => {
            const chart = document.querySelector(`[data-testid=${testid}]`);
            new MutationObserver((records) => {
                for (const record of records) into.add(Number(record.oldValue));
                into.add(Number(chart.getAttribute(attribute)));
            }).observe(chart, {attributes: true, attributeOldValue: true,
                               attributeFilter: [attribute]});
        };
        watch('loss-chart', 'data-points', window.seen.points);
        watch('accuracy-chart', 'data-epochs', window.seen.epochs);
    }""")

    run_id = start(page, server)
    expect(page.get_by_test_id("run-status")).to_have_text("completed", timeout=90_000)
    expect(page.get_by_test_id("accuracy-chart")).to_have_attribute("data-epochs", "3")
    run = server.run(run_id)
    assert run["config"]["preset"] == "notebook" and run["config"]["epochs"] == 3
    assert expect_in_step(server, run_id, page) == run["progress"]["steps_total"]
    seen = page.evaluate("() => ({points: [...window.seen.points], epochs: [...window.seen.epochs]})")
    assert len([n for n in seen["points"] if 0 < n < run["progress"]["steps_total"]]) >= 2, seen
    assert {1, 2, 3} <= set(seen["epochs"]), seen
    expect(page.get_by_test_id("progress")).to_contain_text("3 / 3")
    # A finished run evaluates itself: the confusion matrix covers every test digit.
    matrix = page.get_by_test_id("confusion-matrix")
    expect(matrix.locator("tbody tr")).to_have_count(10, timeout=30_000)
    counts = matrix.locator("td").evaluate_all(
        "cells => cells.map(td => Number(td.textContent.replace(/\\D/g, '')))")
    total = sum(counts)
    assert total == TEST_SUBSET
    expect(page.get_by_test_id("run-list")).to_contain_text(f"#{run_id}")


def test_drawing_a_digit_shows_a_prediction_and_what_the_model_saw(server, trained, new_page):
    page = new_page(server.url)
    expect(page.locator("#no-model")).to_be_hidden()
    draw_seven(page)
    prediction = page.get_by_test_id("prediction")
    expect(prediction).to_have_text(re.compile(r"^[0-9]$"))
    bars = page.get_by_test_id("probabilities").locator(".prob-bar")
    expect(bars).to_have_count(10)
    # The page predicts while the pen moves, so a later answer may land between two reads: read
    # the bars and the digit in one evaluation, from the same rendered answer.
    shown = page.evaluate("""() => ({
        digit: document.querySelector('[data-testid=prediction]').textContent,
        heights: [...document.querySelectorAll('[data-testid=probabilities] .prob-bar')]
            .map(b => parseFloat(b.style.height)),
    })""")
    heights = shown["heights"]
    assert 99 <= sum(heights) <= 101, heights
    assert heights.index(max(heights)) == int(shown["digit"])
    width, height, lit = lit_model_input_pixels(page)
    assert (width, height) == (28, 28)
    assert 20 < lit < 600, lit  # a stroke, centred and scaled like MNIST: neither blank nor full

    page.get_by_test_id("clear-canvas").click()
    expect(prediction).to_have_text("–")
    assert lit_model_input_pixels(page)[2] == 0


def test_pause_resume_and_stop_follow_the_real_status(server: Server, new_page):
    page = new_page(server.url)
    configure(page, **LONG_RUN)
    run_id = start(page, server)
    status = page.get_by_test_id("run-status")
    pause, resume, stop = (page.get_by_test_id(n) for n in ("pause-run", "resume-run", "stop-run"))
    expect(status).to_have_text("running")
    expect(pause).to_be_enabled()
    expect(resume).to_be_disabled()
    expect(stop).to_be_enabled()
    wait_for_points(page, 5)

    pause.click()
    expect(status).to_have_text("paused")
    expect(resume).to_be_enabled()
    expect(pause).to_be_disabled()
    expect(stop).to_be_enabled()
    assert server.run(run_id)["status"] == "paused"
    paused_at = expect_in_step(server, run_id, page)
    # Nothing trains: a page opened meanwhile (a real stretch of the run being paused) draws the
    # same steps as the first one and the server.
    other = new_page(server.url)
    open_run(other, run_id)
    assert expect_in_step(server, run_id, page, other) == paused_at == points(page)

    resume.click()
    expect(status).to_have_text("running")
    expect(pause).to_be_enabled()
    wait_for_points(page, paused_at + 5)

    stop.click()
    expect(status).to_have_text("stopped")
    for button in (pause, resume, stop):
        expect(button).to_be_disabled()
    assert server.run(run_id)["status"] == "stopped"
    expect(page.get_by_test_id("start-run")).to_be_enabled()


def test_reloading_mid_run_shows_the_whole_curve_again(server: Server, new_page):
    page = new_page(server.url)
    configure(page, **LONG_RUN)
    run_id = start(page, server)
    wait_for_points(page, 40)
    before = points(page)

    page.reload()
    # The page finds the running run by itself and gets its whole history from the snapshot.
    expect(page.get_by_test_id("run-status")).to_have_attribute("data-run-id", str(run_id))
    expect(page.get_by_test_id("run-status")).to_have_text("running")
    wait_for_points(page, before, timeout_ms=10_000)
    wait_for_points(page, points(page) + 5)  # and goes on live

    page.get_by_test_id("pause-run").click()
    expect(page.get_by_test_id("run-status")).to_have_text("paused")
    # Same count as the server: nothing missing, nothing twice.
    expect_in_step(server, run_id, page)


def test_two_tabs_watching_one_run_stay_in_step(server: Server, new_page):
    first = new_page(server.url)
    second = new_page(server.url)
    configure(first, **LONG_RUN)
    run_id = start(first, server)
    # The second tab notices the new run on its own and follows it.
    expect(second.get_by_test_id("run-status")).to_have_attribute("data-run-id", str(run_id))
    wait_for_points(second, 10)

    first.get_by_test_id("pause-run").click()
    expect(second.get_by_test_id("run-status")).to_have_text("paused")
    expect(second.get_by_test_id("resume-run")).to_be_enabled()
    expect(second.get_by_test_id("pause-run")).to_be_disabled()
    paused_at = expect_in_step(server, run_id, first, second)

    second.get_by_test_id("resume-run").click()
    expect(first.get_by_test_id("run-status")).to_have_text("running")
    wait_for_points(first, paused_at + 5)
    second.get_by_test_id("stop-run").click()
    expect(first.get_by_test_id("run-status")).to_have_text("stopped")
    expect(first.get_by_test_id("stop-run")).to_be_disabled()


def test_the_server_tells_an_open_page_when_runs_change(server: Server, new_page):
    page = new_page(server.url)
    expect(page.get_by_test_id("run-list")).to_have_attribute("data-updates", "push")
    # While the server pushes changes, the page polls the run list every 30 s at most: within
    # these few seconds, only the push can tell it.
    quickly = 3000
    run_id = server.api.post("/api/runs", json={"hidden_layers": [16], "epochs": 200}).json()["id"]
    opener = run_row(page, run_id)
    expect(opener).to_be_visible(timeout=quickly)
    expect(page.get_by_test_id("run-status")).to_have_attribute("data-run-id", str(run_id))
    wait_for_points(page, 1)
    server.api.post(f"/api/runs/{run_id}/stop")
    expect(page.get_by_test_id("run-status")).to_have_text("stopped", timeout=quickly)
    assert server.api.delete(f"/api/runs/{run_id}").status_code == 204
    expect(opener).to_have_count(0, timeout=quickly)


def test_an_invalid_config_is_explained_and_not_sent(server: Server, new_page):
    page = new_page(server.url)
    runs_before = len(server.runs())
    page.get_by_label("Units in hidden layer 1").fill("-5")
    page.get_by_label("Epochs", exact=True).fill("0")
    page.get_by_test_id("start-run").click()

    max_epochs = server.api.get("/api/options").json()["limits"].get("max_epochs", 1000)
    expect(page.locator("#epochs-error")).to_contain_text(f"Epochs must be between 1 and {max_epochs}")
    expect(page.get_by_label("Epochs", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#hidden_layers-error")).to_contain_text("Hidden layer 1")
    expect(page.locator("#form-error")).to_contain_text("Fix the 2 highlighted fields")

    page.get_by_label("Units in hidden layer 1").fill("16")
    page.get_by_label("Epochs", exact=True).fill("1")
    start(page, server)
    assert len(server.runs()) == runs_before + 1  # this run; the invalid one was never created
    expect(page.locator("#form-error")).to_be_empty()
    expect(page.get_by_label("Epochs", exact=True)).not_to_have_attribute("aria-invalid", "true")


def test_the_form_checks_the_bounds_the_server_advertises(server: Server, new_page):
    page = new_page(server.url)
    expect(page.get_by_test_id("start-run")).to_be_enabled()  # the options have arrived
    fields = server.api.get("/api/options").json()["fields"]
    inputs = {name: f"#{name}" for name in ("learning_rate", "batch_size", "epochs", "dropout",
                                            "weight_decay", "momentum", "seed", "lr_decay",
                                            "warmup_epochs")}
    inputs |= {name: f"#aug-{name.removeprefix('augmentation.')}" for name in fields
               if name.startswith("augmentation.")}
    inputs["hidden_layers"] = "#layers input >> nth=0"
    for name, selector in inputs.items():
        for key in ("min", "max"):
            assert float(page.locator(selector).get_attribute(key)) == fields[name][key], (name, key)

    page.locator(".advanced summary").click()
    shift = fields["augmentation.shift"]
    page.locator("#aug-shift").fill(str(shift["max"] + 0.5))
    page.get_by_test_id("start-run").click()
    expect(page.locator("#aug-shift-error")).to_contain_text(
        f"Shift (px) must be between {shift['min']:g} and {shift['max']:g}; got {shift['max'] + 0.5:g}")
    expect(page.locator("#form-error")).to_contain_text("Fix this before starting")


def test_without_a_model_the_page_says_so_and_offers_a_run(fresh_server: Server, new_page):
    page = new_page(fresh_server.url)
    no_model = page.locator("#no-model")
    expect(no_model).to_be_visible()
    expect(no_model).to_contain_text("No trained model yet")
    expect(page.locator("#run-list-empty")).to_be_visible()
    with page.expect_response(lambda answer: "/predict" in answer.url and answer.status == 409):
        draw_seven(page)
    expect(page.get_by_test_id("prediction")).to_have_text("–")

    configure(page, epochs=2, layer=32)
    no_model.get_by_role("button", name="Train a model now").click()
    expect(page.get_by_test_id("run-status")).to_have_attribute("data-run-id", re.compile(r"\d"))
    # While it trains, the panel says which run will answer instead of offering another one.
    expect(no_model).to_contain_text(re.compile(r"Run #\d+ is (queued|running)"))
    expect(no_model.get_by_role("button", name="Train a model now")).to_be_hidden()
    # Once the first epoch gives a model, the drawing already on the canvas is read.
    expect(no_model).to_be_hidden(timeout=60_000)
    expect(page.get_by_test_id("prediction")).to_have_text(re.compile(r"^[0-9]$"))
    fresh_server.stop_active_runs()


def test_history_compares_activates_and_deletes_runs(server: Server, new_page):
    older = server.train(hidden_layers=[16], epochs=1, batch_size=64)
    newer = server.train(hidden_layers=[16], epochs=1, batch_size=64, learning_rate=0.2)
    page = new_page(server.url)
    expect(run_row(page, newer["id"])).to_contain_text("completed")
    open_run(page, newer["id"])

    page.get_by_label(f"Compare run {older['id']} on the charts").check()
    legend = page.locator("#loss-legend")
    expect(legend).to_contain_text(f"#{older['id']}")
    expect(legend).to_contain_text(f"#{newer['id']}")

    row_action(page, older["id"], "Use for predictions").click()
    expect(page.locator("#model-pill")).to_contain_text(f"run #{older['id']}")
    assert server.api.get("/api/active-model").json() == {"run_id": older["id"],
                                                          "chosen_by": "user"}
    download = row_action(page, older["id"], "Download model (.npz)")
    expect(download).to_have_attribute("href", f"/api/runs/{older['id']}/model")
    page.keyboard.press("Escape")
    expect(page.get_by_role("menu")).to_be_hidden()
    page.get_by_role("button", name="Use the best run instead").click()
    expect(page.locator("#draw-model")).to_contain_text("the best so far")
    assert server.api.get("/api/active-model").json()["chosen_by"] == "best"

    row_action(page, newer["id"], "Reuse settings in the form").click()
    expect(page.get_by_label("Learning rate")).to_have_value("0.2")
    expect(page.get_by_label("Units in hidden layer 1")).to_have_value("16")
    expect(page.get_by_label("Epochs", exact=True)).to_have_value("1")

    # Watching an older run while another trains: one click leads back to the live one.
    open_run(page, older["id"])
    live = server.api.post("/api/runs", json={"hidden_layers": [16], "epochs": 200}).json()
    expect(page.get_by_role("button", name=f"Run #{live['id']} is")).to_be_visible()
    page.get_by_role("button", name=f"Run #{live['id']} is").click()
    expect(page.get_by_test_id("run-status")).to_have_attribute("data-run-id", str(live["id"]))
    server.stop_active_runs()

    row_action(page, older["id"], "Delete…").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Delete").click()
    expect(run_row(page, older["id"])).to_have_count(0)
    expect(legend).not_to_contain_text(f"#{older['id']}")
    assert server.api.get(f"/api/runs/{older['id']}").status_code == 404


def test_the_page_reconnects_after_a_server_restart(server_factory, new_page):
    server = server_factory()
    page = new_page(server.url)
    configure(page, **LONG_RUN)
    run_id = start(page, server)
    wait_for_points(page, 10)

    server.stop()
    connection = page.locator("#connection")
    run_list = page.get_by_test_id("run-list")
    expect(connection).to_have_attribute("data-state", "reconnecting")
    expect(connection).to_contain_text("reconnecting")
    expect(run_list).to_have_attribute("data-updates", "polling")
    server.start()
    # Back: the stream resumes by itself and the run shows what the server made of it.
    expect(connection).not_to_have_attribute("data-state", "reconnecting", timeout=30_000)
    expect(page.get_by_test_id("run-status")).to_have_text("interrupted")
    expect_in_step(server, run_id, page)
    expect(run_list).to_have_attribute("data-updates", "push", timeout=15_000)


def test_after_a_restart_the_page_still_hears_of_new_runs(server_factory, new_page):
    server = server_factory()
    for _ in range(2):
        server.train(hidden_layers=[16], epochs=2, batch_size=64)  # many changes to count
    page = new_page(server.url)
    run_list = page.get_by_test_id("run-list")
    expect(run_list).to_have_attribute("data-updates", "push")
    server.stop()
    expect(run_list).to_have_attribute("data-updates", "polling")
    server.start()
    expect(run_list).to_have_attribute("data-updates", "push", timeout=15_000)
    # The restarted server counts its changes from 0 again: lower numbers are news all the same.
    newer = server.api.post("/api/runs", json={"hidden_layers": [16], "epochs": 200}).json()["id"]
    expect(run_row(page, newer)).to_be_visible(timeout=3000)


def test_a_server_with_a_token_asks_the_user_for_it(server_factory, new_page):
    token = "a-token-for-the-browser-test"
    server = server_factory(MNIST_LAB_TOKEN=token)
    page = new_page(server.url)
    expect(page.locator("#token-button")).to_have_text("Enter token")
    configure(page, epochs=1, layer=16)
    page.get_by_test_id("start-run").click()
    dialog = page.locator("#token-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Authorization: Bearer")
    token_field = dialog.get_by_label("Token")
    token_field.fill("not-the-token-of-this-server")
    token_field.press("Enter")
    expect(dialog).to_be_hidden()
    page.get_by_test_id("start-run").click()
    expect(dialog).to_contain_text("not this server's token")
    assert server.runs() == []

    token_field.fill(token)
    token_field.press("Enter")
    expect(page.locator("#token-button")).to_have_text("Token set")
    start(page, server)  # the run exists: the server took the token


def test_dashboard_screenshots(server: Server, trained, new_page):
    """Saves test-artifacts/dashboard*.png (look at them) and checks the phone layout fits."""
    ARTIFACTS.mkdir(exist_ok=True)
    page = new_page(server.url)
    open_run(page, trained["id"])
    expect(page.get_by_test_id("confusion-matrix").locator("tbody tr")).to_have_count(10)
    draw_seven(page)
    expect(page.get_by_test_id("prediction")).to_have_text(re.compile(r"^[0-9]$"))
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(400)
    page.screenshot(path=ARTIFACTS / "dashboard.png", full_page=True)

    for name, scheme in (("dashboard-phone.png", "light"), ("dashboard-phone-dark.png", "dark")):
        phone = new_page(server.url, width=390, height=844, color_scheme=scheme)
        # The page follows the newest run, which an earlier test may have stopped before its
        # first epoch: show the trained one.
        open_run(phone, trained["id"])
        phone.evaluate("window.scrollTo(0, 0)")
        expect(phone.get_by_test_id("accuracy-chart")).not_to_have_attribute("data-epochs", "0")
        phone.wait_for_timeout(400)
        overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow}px wider than a phone screen"
        phone.screenshot(path=ARTIFACTS / name, full_page=True)
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 50_000
