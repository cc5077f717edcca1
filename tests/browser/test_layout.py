"""The page's flow, layout and accessibility in Chromium: Start in reach and the Training card
shown after it, the phone order, DOM order that follows the visual order, field errors that keep
the grid, toasts that cover no control and replace each other per run, a focus ring of at least
3:1, and axe-core (WCAG 2.0/2.1 A and AA plus best practices) finding nothing in the main states
of the page, in both themes. Screenshots go to test-artifacts/ (look at them)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import ARTIFACTS, Server
from tests.browser.helpers import (
    configure,
    draw_seven,
    open_run,
    settle,
    start,
    wait_for_points,
)

pytestmark = [pytest.mark.browser, pytest.mark.mnist]

CARDS = ["area-controls", "area-training", "area-draw", "area-history", "area-eval", "area-inside",
         "area-sweeps"]


@pytest.fixture(scope="module")
def two_runs(server: Server) -> list[dict]:
    return [server.train(hidden_layers=[48], epochs=2, batch_size=64),
            server.train(hidden_layers=[48], epochs=2, batch_size=64, learning_rate=0.15)]


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / name, full_page=True)


def in_viewport(page: Page, selector: str) -> bool:
    return page.evaluate("""(selector) => {
        const rect = document.querySelector(selector).getBoundingClientRect();
        return rect.top >= 0 && rect.bottom <= window.innerHeight && rect.height > 0;
    }""", selector)


def card_order(page: Page) -> dict[str, list[str]]:
    """The cards in DOM order and in reading order (top to bottom, then left to right)."""
    return page.evaluate("""(cards) => {
        const nodes = [...document.querySelectorAll('main > section')];
        const name = (node) => cards.find((c) => node.classList.contains(c));
        const visual = [...nodes].sort((a, b) => {
            const ra = a.getBoundingClientRect(), rb = b.getBoundingClientRect();
            return Math.abs(ra.top - rb.top) > 4 ? ra.top - rb.top : ra.left - rb.left;
        });
        return { dom: nodes.map(name), visual: visual.map(name) };
    }""", CARDS)


def contrast(first: list[float], second: list[float]) -> float:
    def luminance(rgb):
        channels = [c / 255 for c in rgb[:3]]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    lighter, darker = sorted((luminance(first), luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


# --- flow --------------------------------------------------------------------------------------------
def test_start_stays_in_reach_and_shows_the_training_card(server: Server, new_page):
    page = new_page(server.url)  # 1440 x 900
    expect(page.get_by_test_id("start-run")).to_be_enabled()
    assert in_viewport(page, "#start-run")  # above the fold without scrolling
    page.locator(".advanced summary").click()
    assert in_viewport(page, "#start-run")  # still, with More options open
    page.locator("#aug-thickness").scroll_into_view_if_needed()
    page.evaluate("window.scrollBy(0, 200)")
    assert in_viewport(page, "#start-run")
    assert not in_viewport(page, "#training-title")
    configure(page, epochs=200, layer=16, batch=32)
    page.get_by_test_id("start-run").click()
    expect(page.locator("#training-announce")).to_contain_text(
        re.compile(r"Run #\d+ (started|is queued).*Training card"))
    page.wait_for_function("""() => {
        const top = document.getElementById('training').getBoundingClientRect().top;
        return top >= 0 && top < window.innerHeight / 2;
    }""")
    server.stop_active_runs()


def test_on_a_phone_the_form_comes_first_and_start_brings_the_charts(server: Server, new_page):
    page = new_page(server.url, width=390, height=844)
    order = card_order(page)
    assert order["visual"] == CARDS and order["dom"] == CARDS
    configure(page, epochs=200, layer=16, batch=32)
    page.get_by_test_id("start-run").click()
    page.wait_for_function("""() => {
        const rect = document.getElementById('training').getBoundingClientRect();
        return rect.top >= 0 && rect.top < window.innerHeight / 2;
    }""")
    wait_for_points(page, 1)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than a phone screen"
    server.stop_active_runs()


@pytest.mark.parametrize("width", [1440, 1000, 390])
def test_dom_order_follows_the_visual_order(server: Server, new_page, width):
    page = new_page(server.url, width=width)
    order = card_order(page)
    assert order["dom"] == order["visual"], order


def test_a_field_error_does_not_stretch_its_neighbours(server: Server, new_page):
    page = new_page(server.url)
    expect(page.get_by_test_id("start-run")).to_be_enabled()
    sizes = """() => ['learning_rate', 'lr_schedule', 'batch_size', 'epochs']
        .map((id) => Math.round(document.getElementById(id).getBoundingClientRect().height))"""
    before = page.evaluate(sizes)
    page.get_by_label("Learning rate").fill("-1")
    page.get_by_test_id("start-run").click()
    expect(page.locator("#learning_rate-error")).to_be_visible()
    assert page.evaluate(sizes) == before


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_focus_ring_has_at_least_3_to_1_contrast(server: Server, new_page, scheme):
    page = new_page(server.url, color_scheme=scheme)
    expect(page.get_by_test_id("start-run")).to_be_enabled()
    page.keyboard.press("Tab")  # keyboard use: :focus-visible applies from now on
    for selector in ("#start-run", "#preset", "#smoothing", "#run-filter"):
        page.locator(selector).focus()
        ring = page.evaluate("""(selector) => {
            const node = document.querySelector(selector);
            const style = getComputedStyle(node);
            let back = node.parentElement;
            const clear = (node) =>
                /rgba\\(.*, 0\\)$|transparent/.test(getComputedStyle(node).backgroundColor);
            while (back && clear(back)) back = back.parentElement;
            const rgb = (text) => text.match(/[\\d.]+/g).slice(0, 3).map(Number);
            return { style: style.outlineStyle, width: parseFloat(style.outlineWidth),
                     color: rgb(style.outlineColor),
                     background: rgb(getComputedStyle(back).backgroundColor) };
        }""", selector)
        assert ring["style"] == "solid" and ring["width"] >= 2, (selector, ring)
        assert contrast(ring["color"], ring["background"]) >= 3, (selector, ring)


def test_toasts_cover_no_control_and_replace_each_other_per_run(server: Server, new_page):
    page = new_page(server.url)
    configure(page, epochs=200, layer=16, batch=32)
    run_id = start(page, server)
    toast = page.locator(f'#toasts .toast[data-key="run-{run_id}"]')
    expect(toast).to_contain_text(re.compile(f"Run #{run_id} (started|is queued)"))
    wait_for_points(page, 1)

    def covered() -> list[str]:
        return page.evaluate("""() => {
            const box = document.getElementById('toasts').getBoundingClientRect();
            const hit = (r) => r.left < box.right && box.left < r.right
                && r.top < box.bottom && box.top < r.bottom;
            return [...document.querySelectorAll('button, a[href], input, select, textarea, canvas, summary')]
                .filter((n) => !n.closest('#toasts') && n.offsetParent !== null)
                .filter((n) => hit(n.getBoundingClientRect()))
                .map((n) => n.id || n.dataset.testid || n.getAttribute('aria-label') || n.tagName);
        }""")

    assert covered() == []
    page.get_by_test_id("run-list").scroll_into_view_if_needed()
    settle(page)  # the region moves once the scrolling has settled
    page.wait_for_function("() => document.getElementById('toasts').dataset.corner !== undefined")
    assert covered() == []
    page.get_by_test_id("stop-run").click()
    expect(toast).to_contain_text(f"Run #{run_id} stopped")
    expect(page.locator(f'#toasts .toast[data-key="run-{run_id}"]')).to_have_count(1)
    expect(page.locator("#toasts")).not_to_contain_text(re.compile(f"Run #{run_id} (started|is queued)"))


# --- axe-core on the main states -------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_on_an_empty_dashboard(fresh_server: Server, new_page, axe, scheme):
    for width in (1440, 390):
        page = new_page(fresh_server.url, width=width, color_scheme=scheme)
        expect(page.locator("#run-list-empty")).to_be_visible()
        expect(page.get_by_test_id("start-run")).to_be_enabled()
        assert axe(page) == [], (scheme, width)
        screenshot(page, f"empty-{width}-{scheme}.png")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_while_a_run_trains(server: Server, two_runs, new_page, axe, scheme):
    page = new_page(server.url, color_scheme=scheme)
    configure(page, epochs=200, layer=16, batch=32)
    start(page, server)
    wait_for_points(page, 5)
    expect(page.get_by_test_id("run-status")).to_have_text("running")
    assert axe(page) == [], scheme
    screenshot(page, f"training-{scheme}.png")
    server.stop_active_runs()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_with_evaluation_and_comparison_open(server: Server, two_runs, new_page,
                                                               axe, scheme):
    first, second = two_runs
    page = new_page(f"{server.url}/?run={first['id']}&compare={second['id']}", color_scheme=scheme)
    expect(page.get_by_test_id("config-diff")).to_be_visible()
    expect(page.get_by_test_id("confusion-cell")).to_have_count(100)
    expect(page.get_by_test_id("misclassified").locator("figure").first).to_be_visible()
    draw_seven(page)
    expect(page.get_by_test_id("prediction")).to_have_text(re.compile(r"^[0-9]$"))
    assert axe(page) == [], scheme
    screenshot(page, f"dashboard-{scheme}.png")
    # A row's menu open, a cell of the matrix picked.
    page.get_by_role("button", name=f"Actions for run {second['id']}").click()
    expect(page.get_by_role("menu")).to_be_visible()
    assert axe(page) == [], scheme
    page.keyboard.press("Escape")
    page.locator('[data-testid=confusion-cell]:not([aria-disabled="true"])').first.click()
    expect(page.locator("#misclassified-filter")).to_be_visible()
    assert axe(page) == [], scheme


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_on_a_phone(server: Server, two_runs, new_page, axe, scheme):
    first, second = two_runs
    page = new_page(f"{server.url}/?run={first['id']}&compare={second['id']}", width=390,
                    height=844, color_scheme=scheme)
    expect(page.get_by_test_id("confusion-cell")).to_have_count(100)
    expect(page.get_by_test_id("config-diff")).to_be_visible()
    assert axe(page) == [], scheme
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than a phone screen"
    screenshot(page, f"dashboard-phone-{scheme}.png")


def test_screenshot_of_the_first_screen(server: Server, two_runs, new_page):
    """The first screen a user sees at 1440x900 (not full page): form, charts and drawing."""
    page = new_page(f"{server.url}/?run={two_runs[1]['id']}")
    expect(page.get_by_test_id("accuracy-chart")).to_have_attribute("data-epochs", "2")
    open_run(page, two_runs[1]["id"])
    page.evaluate("window.scrollTo(0, 0)")
    settle(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "first-screen.png")
