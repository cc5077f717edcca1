"""Fixtures for the browser tests: Debian's Chromium driven by Playwright, and a real server.

Each server is `python -m app.cli serve` in a subprocess on a free port with its own data dir,
training on the first few thousand real MNIST digits (MNIST_LAB_TRAIN_SUBSET) so that a run
takes seconds. Chromium or Playwright missing: skipped locally, a failure when CI is set.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # reported by the playwright_browser fixture: a skip, or a failure in CI
    expect = sync_playwright = None
else:
    # The machine may be busy (training runs in other processes): give the page time to answer.
    expect.set_options(timeout=20_000)

from app.runs.state import ACTIVE_STATUSES, STATUSES
from tests.app.liveserver import LiveServer, wait_for_status
from tests.conftest import missing_requirement
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
# axe-core from npm (`make test` installs it under .cache/, never committed): WCAG 2.0 and 2.1, levels
# A and AA, plus axe's best practices.
AXE_SCRIPTS = sorted(REPO.glob(".cache/axe-*/node_modules/axe-core/axe.min.js"))
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
TRAIN_SUBSET = 2000
TEST_SUBSET = 500
ACTIVE = {"queued", "running", "paused"}
FINISHED = set(STATUSES) - set(ACTIVE_STATUSES)  # every status a run ends with


class Server:
    """A live `mnist-lab serve` (tests/app/liveserver.py) training on a slice of real MNIST, and
    an HTTP client for arranging and checking state. `stop()` then `start()` restarts it on the
    same port with the same data dir."""

    def __init__(self, data_dir: Path, mnist_dir: Path, env: dict[str, str]):
        self.live = LiveServer(data_dir, env={
            "MNIST_DIR": str(mnist_dir),
            "MNIST_LAB_TRAIN_SUBSET": str(TRAIN_SUBSET),
            "MNIST_LAB_TEST_SUBSET": str(TEST_SUBSET),
            "MNIST_LAB_MAX_CONCURRENT_RUNS": "1",  # a second run waits queued, on any machine
            **env,
        })
        self.url = self.live.url
        self.api = httpx.Client(base_url=self.url, timeout=30)

    def start(self) -> Server:
        self.live.start()
        return self

    def stop(self) -> None:
        self.live.stop()

    def close(self) -> None:
        self.live.stop()
        self.api.close()

    # --- arranging state through the API ------------------------------------------------------
    def runs(self) -> list[dict]:
        return self.api.get("/api/runs").json()["runs"]

    def run(self, run_id: int) -> dict:
        return self.api.get(f"/api/runs/{run_id}").json()

    def metrics(self, run_id: int) -> dict:
        return self.api.get(f"/api/runs/{run_id}/metrics").json()

    def stop_active_runs(self) -> None:
        for run in self.runs():
            if run["status"] in ACTIVE:
                self.api.post(f"/api/runs/{run['id']}/stop")
        wait_for(lambda: not any(run["status"] in ACTIVE for run in self.runs()), 20,
                 what="every run to stop")

    def train(self, **config) -> dict:
        """Start a run through the API and wait for it to complete."""
        answer = self.api.post("/api/runs", json=config)
        assert answer.status_code == 201, answer.text
        run = wait_for_status(self.api, answer.json()["id"], FINISHED, timeout=90)
        assert run["status"] == "completed", run
        return run


def _launch_server(tmp_path_factory, mnist_dir: Path, name: str, **env: str) -> Server:
    return Server(tmp_path_factory.mktemp(name), mnist_dir, env).start()


@pytest.fixture(scope="session")
def playwright_browser():
    if sync_playwright is None:
        missing_requirement("Playwright for Python is not installed (pip install -e '.[dev]')")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        missing_requirement(f"Chromium not found at {CHROMIUM}; `make chromium` installs it")
    manager = sync_playwright().start()
    try:
        browser = manager.chromium.launch(executable_path=CHROMIUM, headless=True,
                                          args=CHROMIUM_ARGS)
    except Exception as error:  # a broken install is an environment problem, reported as such
        manager.stop()
        missing_requirement(f"Chromium at {CHROMIUM} does not start: {error}")
    yield browser
    browser.close()
    manager.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory, mnist_dir) -> Iterator[Server]:
    """One server shared by the browser tests; every test leaves no run active behind it."""
    instance = _launch_server(tmp_path_factory, mnist_dir, "browser-server")
    yield instance
    instance.close()


@pytest.fixture
def fresh_server(tmp_path_factory, mnist_dir) -> Iterator[Server]:
    """A server with no runs at all, for the empty states."""
    instance = _launch_server(tmp_path_factory, mnist_dir, "fresh-server")
    yield instance
    instance.close()


@pytest.fixture
def server_factory(tmp_path_factory, mnist_dir):
    """Servers the test itself starts and stops (a restart keeps the port and the data dir);
    keyword arguments are extra environment variables."""
    started: list[Server] = []

    def make(**env: str) -> Server:
        instance = _launch_server(tmp_path_factory, mnist_dir, "own-server", **env)
        started.append(instance)
        return instance

    yield make
    for instance in started:
        instance.close()


def _expected_console_error(text: str) -> bool:
    """What Chromium itself logs for answers the page handles: a 4xx it shows to the user, a
    WebSocket that cannot connect while the server is down."""
    return text.startswith("Failed to load resource") or "WebSocket connection to" in text


@pytest.fixture
def new_page(playwright_browser, request):
    """new_page(url, width=1440, height=900): a page in its own context, closed after the test.
    Uncaught errors in the page, and errors it logs (a widget that failed), fail the test."""
    contexts = []
    errors: list[str] = []

    def open_page(url: str, width: int = 1440, height: int = 900, color_scheme: str = "light"):
        context = playwright_browser.new_context(viewport={"width": width, "height": height},
                                                 color_scheme=color_scheme)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: errors.append(message.text)
                if message.type == "error" and not _expected_console_error(message.text) else None)
        page.goto(url)
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture(scope="session")
def axe_script() -> str:
    if not AXE_SCRIPTS:
        missing_requirement("axe-core is not installed; `make test` installs it from npm into .cache/")
    return AXE_SCRIPTS[-1].read_text()


@pytest.fixture
def axe(axe_script):
    """axe(page) -> the violations axe-core finds in the page as it is now, each as
    "rule-id: help (n nodes: selectors...)"; an empty list when it finds none."""

    def check(page) -> list[str]:
        if not page.evaluate("() => Boolean(window.axe)"):
            page.add_script_tag(content=axe_script)
        result = page.evaluate("""async (tags) => {
            const result = await axe.run(document, {runOnly: {type: 'tag', values: tags},
                                                    resultTypes: ['violations']});
            return result.violations.map((v) => `${v.id}: ${v.help} (${v.nodes.length} nodes: ` +
                v.nodes.slice(0, 6).map((n) => n.target.join(' ')).join(', ') + ')');
        }""", AXE_TAGS)
        return result

    return check


@pytest.fixture(autouse=True)
def _no_active_runs_after(request):
    """Whatever a test started, the next one begins with no run training."""
    yield
    if "server" in request.fixturenames:
        request.getfixturevalue("server").stop_active_runs()
