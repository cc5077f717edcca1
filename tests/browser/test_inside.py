"""The card "Inside the network" in a real Chromium against a real server: the `layers` messages
arrive over the run's WebSocket and the charts draw them; a page opened mid-run draws everything
so far; the epoch slider scrubs the first layer's weights; the Step button advances a paused run
by exactly n steps; a drawn digit shows which hidden units fire."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Server
from tests.browser.helpers import draw_seven, expect_in_step, open_run, points, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.mnist]


def count_layers_frames(page: Page) -> list[dict]:
    """Every `layers` message the page receives on any WebSocket, as parsed JSON."""
    received: list[dict] = []

    def on_socket(socket):
        def on_frame(payload):
            if isinstance(payload, str) and payload.startswith('{"type":"layers"'):
                received.append(json.loads(payload))
        socket.on("framereceived", on_frame)

    page.on("websocket", on_socket)
    return received


def coloured_pixels(page: Page, test_id: str) -> int:
    """Pixels of a canvas that are not transparent: proof that something was drawn on it."""
    return page.evaluate("""id => {
        const canvas = document.querySelector(`[data-testid="${id}"]`);
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let drawn = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) drawn += 1;
        return drawn;
    }""", test_id)


def chart_points(page: Page, test_id: str) -> int:
    return int(page.get_by_test_id(test_id).get_attribute("data-points") or 0)


def stored_layers(server: Server, run_id: int) -> list[int]:
    steps, after = [], -1
    while True:
        page = server.api.get(f"/api/runs/{run_id}/layers", params={"after": after}).json()
        steps += [snapshot["step"] for snapshot in page["snapshots"]]
        if not page["more"]:
            return steps
        after = steps[-1]


def test_layers_arrive_live_and_the_charts_draw_them(server: Server, new_page):
    page = new_page(server.url)
    frames = count_layers_frames(page)
    answer = server.api.post("/api/runs", json={"hidden_layers": [32], "batch_size": 32,
                                                "epochs": 200, "stats_every": 5, "seed": 21})
    run_id = answer.json()["id"]
    open_run(page, run_id)
    card = page.get_by_test_id("inside-network")
    expect(card).to_contain_text("Inside the network")
    # Live messages: the first epoch ends at step 62 (2,000 digits in batches of 32).
    wait_until(page, lambda: len(frames) >= 15 and any(f["epoch_end"] for f in frames),
               lambda: f"layers messages over the socket ({len(frames)} so far)", 90)
    assert all(frame["run_id"] == run_id for frame in frames)
    assert {layer["name"] for layer in frames[-1]["layers"]} == {"hidden1", "output"}
    page.wait_for_function(
        "n => Number(document.querySelector('[data-testid=inside-network]').dataset.snapshots) >= n",
        arg=15)
    bands = page.get_by_test_id("layer-histograms").locator("canvas")
    expect(bands).to_have_count(2)
    for test_id in ("grad-norm-chart", "update-ratio-chart", "lr-chart", "dead-units-chart"):
        wait_until(page, lambda t=test_id: chart_points(page, t) >= 10, f"{test_id} to have points")
        wait_until(page, lambda t=test_id: coloured_pixels(page, t) > 500, f"{test_id} to draw")
    wait_until(page, lambda: int(bands.first.get_attribute("data-drawn") or 0) >= 15,
               "the distribution bands to draw 15 steps")
    for kind in ("Gradients", "Activations", "Weights"):
        page.get_by_role("button", name=kind, exact=True).click()
        expect(page.get_by_role("button", name=kind, exact=True)).to_have_attribute("aria-pressed", "true")
    assert page.evaluate("""() => {
        const canvas = document.querySelector('[data-testid=layer-histograms] canvas');
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let drawn = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) drawn += 1;
        return drawn;
    }""") > 1000

    # A page opened now draws everything so far: the stored history, then live.
    server.api.post(f"/api/runs/{run_id}/pause")
    stored = stored_layers(server, run_id)
    late = new_page(server.url)
    open_run(late, run_id)
    late.wait_for_function(
        "n => Number(document.querySelector('[data-testid=inside-network]').dataset.snapshots) === n",
        arg=len(stored))
    assert late.get_by_test_id("inside-network").get_attribute("data-last-step") == str(stored[-1])

    # The first layer, epoch by epoch.
    slider = late.get_by_test_id("weight-epoch-slider")
    expect(late.locator("#weight-epoch-label")).to_contain_text("32 of 32 units")
    epochs = sum(1 for step in stored if (step + 1) % 63 == 0)
    if epochs >= 2:
        slider.fill("1")
        expect(late.locator("#weight-epoch-label")).to_contain_text("Epoch 1 ")
    assert late.evaluate("""() => {
        const canvas = document.getElementById('weight-tiles');
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let opaque = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] === 255) opaque += 1;
        return opaque;
    }""") >= 32 * 28 * 28 * 4  # 32 tiles of 28x28, drawn at twice the size
    server.api.post(f"/api/runs/{run_id}/stop")


def test_the_step_button_advances_a_paused_run_by_exactly_n_steps(server: Server, new_page):
    page = new_page(server.url)
    answer = server.api.post("/api/runs", json={"hidden_layers": [32], "batch_size": 32,
                                                "epochs": 200, "seed": 22})
    run_id = answer.json()["id"]
    open_run(page, run_id)
    step_button = page.get_by_test_id("step-run")
    status = page.get_by_test_id("run-status")
    expect(status).to_have_text("running")
    expect(step_button).to_be_disabled()  # only a paused run steps
    page.wait_for_function(
        "() => Number(document.querySelector('[data-testid=loss-chart]').dataset.points) >= 5")
    page.get_by_test_id("pause-run").click()
    expect(status).to_have_text("paused")
    expect(step_button).to_be_enabled()
    before = expect_in_step(server, run_id, page)
    assert server.run(run_id)["progress"]["step"] == before

    page.get_by_test_id("step-count").fill("3")
    step_button.click()
    wait_until(page, lambda: server.run(run_id)["progress"]["step"] == before + 3,
               "the server to have taken 3 steps")
    expect(status).to_have_text("paused")
    expect(step_button).to_be_enabled()
    assert expect_in_step(server, run_id, page) == before + 3 == points(page)

    page.get_by_test_id("step-count").fill("1")
    step_button.click()
    wait_until(page, lambda: points(page) == before + 4, "the page to draw one more step")
    assert server.run(run_id)["progress"]["step"] == before + 4
    assert server.run(run_id)["status"] == "paused"
    page.get_by_test_id("stop-run").click()
    expect(status).to_have_text("stopped")
    expect(step_button).to_be_disabled()


def test_a_drawn_digit_shows_which_hidden_units_fire(server: Server, new_page):
    run = server.train(hidden_layers=[48], epochs=1, batch_size=64)
    page = new_page(server.url)
    open_run(page, run["id"])
    draw_seven(page)
    panel = page.get_by_test_id("hidden-activations")
    expect(panel.locator(".hidden-unit")).to_have_count(8)
    expect(panel).to_contain_text("of 48 units of the first layer fire for your drawing")
    expect(panel).to_contain_text(f"run #{run['id']}")
