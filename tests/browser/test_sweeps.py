"""A sweep from the page: the Sweep tab's form, the sweep view with its trials table, parallel
coordinates and scatter plots, pruned trials greyed, the best trial used for predictions, and a
trial opened as the run it is."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Server
from tests.browser.helpers import configure
from tests.waiting import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.mnist]

DRAWN_PIXELS = """(canvas) => {
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let drawn = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] > 0) drawn += 1;
    return drawn;
}"""


def sweep_of(server: Server, sweep_id: int) -> dict:
    return server.api.get(f"/api/sweeps/{sweep_id}").json()


def test_a_sweep_started_from_the_page_shows_its_trials_and_serves_its_best(server_factory, new_page,
                                                                            axe):
    server = server_factory(MNIST_LAB_MAX_CONCURRENT_RUNS="2")
    page = new_page(server.url)
    expect(page.get_by_test_id("sweep-list")).to_contain_text("No sweeps yet")
    configure(page, epochs=2, layer=32, batch=100)  # the Run tab: what every trial starts from
    page.get_by_test_id("sweep-tab").click()
    form = page.get_by_test_id("sweep-form")
    expect(form).to_be_visible()
    expect(page.locator("#run-form")).to_be_hidden()
    first = form.locator(".sweep-param").nth(0)
    expect(first.get_by_label("Field to vary")).to_have_value("learning_rate")
    expect(first.get_by_label("Varies as")).to_have_value("log")
    first.get_by_label("From", exact=True).fill("0.01")
    first.get_by_label("To", exact=True).fill("0.5")
    form.get_by_role("button", name="+ Add field").click()
    second = form.locator(".sweep-param").nth(1)
    expect(second.get_by_label("Field to vary")).to_have_value("hidden_layers")
    second.get_by_label("Values", exact=True).fill("16; 32, 16")
    form.get_by_label("Name").fill("from the page")
    form.get_by_label("Trials", exact=True).fill("4")
    form.get_by_label("Pruner").select_option("median")
    form.get_by_label("Trials at once").fill("2")
    page.get_by_test_id("start-sweep").click()

    view = page.get_by_test_id("sweep-view")
    expect(view).to_be_visible()
    expect(view.locator("h3")).to_contain_text("from the page")
    sweep_id = int(view.get_attribute("data-sweep"))
    asked = sweep_of(server, sweep_id)
    assert asked["spec"]["base"]["hidden_layers"] == [32] and asked["spec"]["base"]["epochs"] == 2
    assert asked["spec"]["space"] == {"learning_rate": {"min": 0.01, "max": 0.5, "log": True},
                                      "hidden_layers": {"values": [[16], [32, 16]]}}
    assert (asked["spec"]["trials"], asked["spec"]["max_concurrent"], asked["spec"]["pruner"]) == (
        4, 2, "median")
    done = wait_for(lambda: (s := sweep_of(server, sweep_id))["status"] == "completed" and s, 300,
                    0.5, "the sweep to complete")
    expect(view).to_have_attribute("data-status", "completed")  # the page polled it

    rows = view.locator(".sweep-trials tbody tr")
    expect(rows).to_have_count(4)
    shown = [row.get_attribute("data-trial") for row in rows.all()]
    ranked = sorted(done["trials"], key=lambda t: (t["status"] != "completed", t["pruned"],
                                                    -(t["value"] or 0)))
    assert shown == [str(t["trial"]) for t in ranked]  # best metric first, pruned after
    for trial in done["trials"]:
        row = view.locator(f'.sweep-trials tr[data-trial="{trial["trial"]}"]')
        expect(row).to_contain_text(f"{trial['value']:.4f}")
        if trial["pruned"]:
            expect(row).to_have_attribute("data-pruned", "true")
    best = done["best_trial"]
    expect(view.locator(f'.sweep-trials tr[data-trial="{best["trial"]}"]')).to_have_attribute(
        "data-best", "true")

    plot = page.get_by_test_id("parallel-coordinates")
    expect(plot).to_have_attribute("data-trials", "4")
    expect(plot).to_have_attribute("data-axes", "3")  # two fields and the metric
    expect(plot).to_have_attribute("data-pruned", str(done["progress"]["pruned"]))
    assert plot.evaluate(DRAWN_PIXELS) > 2000
    scatters = page.get_by_test_id("sweep-scatter")
    expect(scatters).to_have_count(2)
    for scatter in scatters.all():
        expect(scatter).to_have_attribute("data-points", "4")
        assert scatter.evaluate(DRAWN_PIXELS) > 500
    violations = axe(page)
    assert violations == [], "\n".join(violations)

    page.get_by_test_id("use-best-trial").click()
    expect(page.locator("#model-pill-text")).to_have_text(f"Model: run #{best['run_id']}")
    assert server.api.get("/api/active-model").json()["run_id"] == best["run_id"]

    other = next(t for t in done["trials"] if t["trial"] != best["trial"])
    view.get_by_role("button", name=f"Open run #{other['run_id']} (trial {other['trial']})").click()
    expect(page.get_by_test_id("run-status")).to_have_attribute("data-run-id", str(other["run_id"]))
    expect(page.get_by_test_id("sweep-list")).to_contain_text(re.compile(r"4/4 trials"))


def test_the_server_s_refusal_shows_under_the_sweep_form(server: Server, new_page):
    page = new_page(server.url)
    page.get_by_test_id("sweep-tab").click()
    form = page.get_by_test_id("sweep-form")
    form.get_by_label("Search").select_option("grid")  # a grid of a continuous range: refused
    page.get_by_test_id("start-sweep").click()
    expect(form.locator("#sweep-error")).to_contain_text("learning_rate is a continuous range")
    expect(page.get_by_test_id("sweep-tab")).to_have_attribute("aria-pressed", "true")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.locator("#run-form")).to_be_visible()
    expect(form).to_be_hidden()
