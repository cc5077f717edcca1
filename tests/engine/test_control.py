"""TrainingControl across a process boundary: a pause undone at once by a resume, then asked for
again, must still reach the trainer (issue 13, item 8)."""

from __future__ import annotations

import multiprocessing
import threading

from engine.control import TrainingControl
from tests.waiting import wait_for

ROUNDS = 60
MISSED_AFTER_S = 3.0  # the trainer reports a pause within microseconds; a missed one never


def trainer(control: TrainingControl, reports: list[bool], done: threading.Event) -> None:
    """A trainer's loop: a checkpoint between steps, reporting pauses like the worker does."""
    while not done.is_set():
        if control.checkpoint(reports.append):
            return


def test_a_resume_undone_by_a_pause_before_the_trainer_woke_is_still_reported():
    context = multiprocessing.get_context("spawn")
    control = TrainingControl(context.Event(), context.Event(), context.Value("q", 0))
    reports: list[bool] = []
    done = threading.Event()
    thread = threading.Thread(target=trainer, args=(control, reports, done), daemon=True)
    thread.start()
    missed = 0
    try:
        for _ in range(ROUNDS):
            control.pause()
            wait_for(lambda: reports and reports[-1] is True, 10, 0.0005, "the first pause")
            seen = len(reports)
            control.resume()
            control.pause()  # at once: the trainer may not have woken up yet
            try:
                # It went on and paused again (False, True), or never went on and says so.
                wait_for(lambda n=seen: len(reports) >= n + 2, MISSED_AFTER_S, 0.0005,
                         "the second pause to be reported")
            except AssertionError:
                missed += 1
            assert reports[-1] is True
            control.resume()
            wait_for(lambda: reports[-1] is False, 10, 0.0005, "the resume")
    finally:
        control.stop()
        done.set()
        thread.join(10)
    assert missed == 0, f"{missed} of {ROUNDS} pauses never reached the trainer"
    assert all(a != b for a, b in zip(reports, reports[1:], strict=False)), "pause reports must alternate"
