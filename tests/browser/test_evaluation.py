"""The numbers behind a prediction and an evaluation, in Chromium against a real server:
percentages on the probability bars, misclassified digits with confidence and runner-up a page at
a time, "Draw this", "n of N units" with a way to see all, and the confusion matrix as a filter."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Server
from tests.browser.helpers import draw_seven, open_run

pytestmark = [pytest.mark.browser, pytest.mark.mnist]


@pytest.fixture(scope="module")
def weak_model(server: Server) -> dict:
    """A small model trained briefly: it makes enough mistakes to fill several pages."""
    return server.train(hidden_layers=[80], epochs=1, batch_size=128, learning_rate=0.02,
                        optimizer="sgd")


def test_probability_bars_carry_their_percentages(server: Server, weak_model, new_page):
    page = new_page(server.url)
    draw_seven(page)
    prediction = page.get_by_test_id("prediction")
    expect(prediction).to_have_text(re.compile(r"^[0-9]$"))
    expect(page.get_by_test_id("probabilities").locator(".prob-value")).to_have_count(10)
    # One reading of the whole panel, so that an answer arriving meanwhile cannot mix in.
    shown = page.evaluate("""() => ({
        digit: Number(document.querySelector('[data-testid=prediction]').textContent),
        texts: [...document.querySelectorAll('.prob-value')].map((v) => v.textContent),
        heights: [...document.querySelectorAll('.prob-bar')].map((b) => parseFloat(b.style.height)),
        state: document.getElementById('prediction-panel').dataset.state,
        confidence: document.querySelector('[data-testid=prediction-confidence]').textContent,
    })""")
    texts, heights, top, state = shown["texts"], shown["heights"], shown["digit"], shown["state"]
    assert all(re.fullmatch(r"<1%|>99%|\d{1,3}%", text) for text in texts), texts
    for text, height in zip(texts, heights, strict=True):  # each bar says its own height
        if text == "<1%":  # (a bar from 0.5% up rounds to 1 but is still shown as under 1%)
            assert height < 1, (text, height)
        elif text == ">99%":
            assert height > 99, (text, height)
        else:
            assert abs(int(text.rstrip("%")) - height) <= 0.51, (text, height)
    assert heights.index(max(heights)) == top
    if heights[top] >= 60:
        assert state == "ready"
        assert re.fullmatch(r"\d+% sure", shown["confidence"]), shown
    else:  # a weak model may well hesitate over a hand-drawn 7
        assert state == "unsure"
        assert re.fullmatch(r"Unsure: \d \(\d+%\) or \d \(\d+%\)\?", shown["confidence"]), shown


def test_misclassified_digits_show_confidence_runner_up_and_load_more(server: Server, weak_model,
                                                                      new_page):
    run_id = weak_model["id"]
    page = new_page(server.url)
    open_run(page, run_id)
    gallery = page.get_by_test_id("misclassified")
    tiles = gallery.locator("figure")
    expect(tiles.first).to_be_visible()
    first_page = server.api.get(f"/api/runs/{run_id}/misclassified?limit=100").json()
    total = first_page["total"]
    shown = min(24, total)
    expect(tiles).to_have_count(shown)
    expect(page.locator("#misclassified-count")).to_have_text(f"{shown} of {total} shown")
    for tile, item in zip(tiles.all()[:5], first_page["items"], strict=False):
        expect(tile.locator("figcaption")).to_have_text(
            f"{item['true']} → {item['predicted']} {round(item['confidence'] * 100)}%")
        expect(tile.locator(".mistake-runner-up")).to_have_text(
            f"2nd: {item['runner_up']} {round(item['runner_up_confidence'] * 100)}%")
    more = page.get_by_test_id("load-more")
    if total > 24:
        more.click()
        expect(tiles).to_have_count(min(48, total))
        labels = tiles.locator("canvas").evaluate_all(
            "cs => cs.map(c => Number(c.getAttribute('aria-label').match(/test digit (\\d+)/)[1]))")
        assert labels == [item["index"] for item in first_page["items"][:min(48, total)]]
    else:
        expect(more).to_be_hidden()

    # "Draw this" puts the digit on the canvas, and the model reads it there.
    tiles.first.get_by_role("button", name=re.compile("^Draw this")).click()
    expect(page.locator(".draw-surface")).to_have_attribute("data-drawn", "true")
    expect(page.get_by_test_id("prediction")).to_have_text(re.compile(r"^[0-9]$"))
    lit = page.evaluate("""() => {
        const data = document.querySelector('[data-testid=model-input]').getContext('2d')
            .getImageData(0, 0, 28, 28).data;
        let lit = 0;
        for (let i = 0; i < data.length; i += 4) if (data[i] > 0) lit += 1;
        return lit;
    }""")
    assert lit > 20


def test_a_confusion_matrix_cell_filters_the_gallery(server: Server, weak_model, new_page):
    run_id = weak_model["id"]
    matrix = server.api.get(f"/api/runs/{run_id}/evaluation").json()["confusion_matrix"]
    true, predicted = max(((t, p) for t in range(10) for p in range(10) if t != p),
                          key=lambda pair: matrix[pair[0]][pair[1]])
    count = matrix[true][predicted]
    page = new_page(server.url)
    open_run(page, run_id)
    cells = page.get_by_test_id("confusion-cell")
    expect(cells).to_have_count(100)
    cell = page.locator(
        f'[data-testid=confusion-cell][data-true="{true}"][data-predicted="{predicted}"]')
    expect(cell).to_have_text(str(count))
    cell.click()
    expect(cell).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#misclassified-filter")).to_contain_text(
        f"Showing the {true}s read as {predicted} ({count})")
    tiles = page.get_by_test_id("misclassified").locator("figure figcaption")
    expect(tiles).to_have_count(min(count, 24))
    assert {text.split(" ")[0] + text.split(" ")[2] for text in tiles.all_text_contents()} \
        == {f"{true}{predicted}"}
    # The matrix is one tab stop; arrow keys move between cells, Enter picks one.
    cell.focus()
    page.keyboard.press("ArrowLeft" if predicted > 0 else "ArrowRight")
    focused = page.evaluate(
        "() => [document.activeElement.dataset.true, document.activeElement.dataset.predicted]")
    assert focused[0] == str(true) and focused[1] != str(predicted)
    page.get_by_role("button", name="Show every mistake").click()
    expect(page.locator("#misclassified-filter")).to_be_hidden()
    expect(cell).to_have_attribute("aria-pressed", "false")


def test_weight_tiles_say_how_many_units_and_show_all_on_request(server: Server, weak_model,
                                                                 new_page):
    page = new_page(server.url)
    open_run(page, weak_model["id"])
    count = page.get_by_test_id("weights-count")
    expect(count).to_have_text("64 of 80 units")
    expect(page.locator("#weights canvas")).to_have_count(64)
    page.get_by_role("button", name="Show all 80 units").click()
    expect(page.locator("#weights canvas")).to_have_count(80)
    expect(count).to_have_text("80 of 80 units")
    expect(page.get_by_role("button", name="Show all 80 units")).to_be_hidden()
    expect(page.locator("#weights canvas").last).to_have_attribute(
        "aria-label", "weights of hidden unit 80")
