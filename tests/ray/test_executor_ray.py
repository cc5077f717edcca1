"""The Ray executor on its own, against the real cluster: its guarantee (messages in order, exactly
one `Ended`, last), an actor that stops answering, a stop before the actor started, shutdown; and
the outbox that carries the messages, without a cluster."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from app.executor import ExecutorError
from app.main import make_executor
from app.protocol import Checkpoint, Ended, Iterations, Message, from_wire
from app.settings import Settings, SettingsError
from app.worker import RunJob
from engine.config import TrainConfig
from engine.events import EpochEvent, PauseEvent, StartEvent
from tests.app.conftest import TEST_SUBSET, TRAIN_SUBSET
from tests.waiting import wait_for

pytestmark = [pytest.mark.ray]


class Recorder:
    """An executor's `on_message`: every message of every run, in the order they came."""

    def __init__(self) -> None:
        self.messages: dict[int, list[Message]] = {}
        self.lock = threading.Lock()

    def __call__(self, run_id: int, message: Message) -> None:
        with self.lock:
            self.messages.setdefault(run_id, []).append(message)

    def of(self, run_id: int) -> list[Message]:
        with self.lock:
            return list(self.messages.get(run_id, []))

    def ended(self, run_id: int) -> Ended | None:
        messages = self.of(run_id)
        return messages[-1] if messages and isinstance(messages[-1], Ended) else None

    def steps(self, run_id: int) -> list[int]:
        return [p[0] for m in self.of(run_id) if isinstance(m, Iterations) for p in m.points]


def job(run_id: int, mnist_dir: Path, models: Path, **config) -> RunJob:
    values = {"epochs": 2, "batch_size": 50, "seed": run_id, **config}
    return RunJob(run_id=run_id, config=TrainConfig.from_dict(values), data_dir=mnist_dir.parent,
                  model_path=models / f"run-{run_id}.npz", train_subset=TRAIN_SUBSET,
                  test_subset=TEST_SUBSET, threads=1)


@pytest.fixture
def executor(ray_driver):
    from app.executor_ray import RayExecutor

    made = RayExecutor(silence_timeout_s=3.0)
    yield made
    made.shutdown(10.0)


def test_a_run_is_told_in_order_ending_once(executor, mnist_dir, tmp_path):
    recorder = Recorder()
    handle = executor.submit(job(1, mnist_dir, tmp_path), recorder)
    ended = wait_for(lambda: recorder.ended(1), 120, what="the run to end")
    assert ended.status == "completed" and ended.test_accuracy > 0.7, ended
    assert handle.join(10)
    messages = recorder.of(1)
    assert isinstance(messages[0], StartEvent)
    assert sum(isinstance(m, Ended) for m in messages) == 1
    assert recorder.steps(1) == list(range(2 * TRAIN_SUBSET // 50))
    kinds = [type(m) for m in messages]
    for i, kind in enumerate(kinds):  # every epoch followed by its checkpoint, a file here now
        if kind is EpochEvent:
            assert isinstance(messages[i + 1], Checkpoint)
            assert messages[i + 1].epoch == messages[i].epoch
    assert all(Path(m.path).is_file() for m in messages if isinstance(m, Checkpoint))
    assert handle.where and handle.where["node"] == "127.0.0.1" and handle.where["pid"] != os.getpid()


def test_a_stop_sent_before_the_actor_started_is_honoured(executor, mnist_dir, tmp_path):
    recorder = Recorder()
    handle = executor.submit(job(2, mnist_dir, tmp_path, epochs=200), recorder)
    handle.stop()  # the actor is being created: the stop waits for it in the actor's queue
    ended = wait_for(lambda: recorder.ended(2), 120, what="the run to end")
    assert ended.status == "stopped" and not ended.died, ended
    assert len(recorder.steps(2)) < 2 * TRAIN_SUBSET // 50


def test_an_actor_that_stops_answering_fails_its_run_and_is_ended(executor, mnist_dir, tmp_path,
                                                                  ray_driver):
    recorder = Recorder()
    handle = executor.submit(job(3, mnist_dir, tmp_path, epochs=200), recorder)
    wait_for(lambda: len(recorder.steps(3)) > 10 and handle.where, 120, what="the run to train")
    pid = handle.where["pid"]
    os.kill(pid, signal.SIGSTOP)  # alive, but answers nothing (a hung process, a lost network)
    try:
        ended = wait_for(lambda: recorder.ended(3), 60, what="the silent run to be failed")
    finally:
        if pid in ray_driver.actor_processes():
            os.kill(pid, signal.SIGCONT)
    assert ended.status == "failed" and ended.died
    assert "answered nothing for" in ended.reason and f"pid {pid}" in ended.reason, ended.reason
    wait_for(lambda: pid not in ray_driver.actor_processes(), 30, what="the silent actor to be ended")


def test_pause_holds_the_trainer_between_two_steps(executor, mnist_dir, tmp_path):
    recorder = Recorder()
    handle = executor.submit(job(4, mnist_dir, tmp_path, epochs=200), recorder)
    wait_for(lambda: len(recorder.steps(4)) > 10, 120, what="the run to train")
    handle.pause()
    pause = wait_for(lambda: next((m for m in recorder.of(4) if isinstance(m, PauseEvent)), None),
                     30, what="the pause to take effect")
    assert pause.paused and pause.step == len(recorder.steps(4))
    handle.resume()
    wait_for(lambda: len(recorder.steps(4)) > pause.step + 10, 60, what="training to go on")
    handle.stop()
    ended = wait_for(lambda: recorder.ended(4), 60, what="the run to end")
    assert ended.status == "stopped"
    assert recorder.steps(4) == list(range(len(recorder.steps(4))))


def test_a_step_request_trains_exactly_that_many_steps_then_pauses_again(executor, mnist_dir,
                                                                          tmp_path):
    recorder = Recorder()
    handle = executor.submit(job(7, mnist_dir, tmp_path, epochs=200), recorder)
    wait_for(lambda: len(recorder.steps(7)) > 10, 120, what="the run to train")
    handle.pause()

    def pauses() -> list[PauseEvent]:
        return [m for m in recorder.of(7) if isinstance(m, PauseEvent) and m.paused]

    first = wait_for(lambda: (pauses() or [None])[0], 30, what="the pause to take effect")
    handle.step(3)
    second = wait_for(lambda: (pauses()[1:] or [None])[0], 30, what="the pause after 3 steps")
    assert second.step == first.step + 3
    assert recorder.steps(7) == list(range(first.step + 3))
    handle.stop()
    assert wait_for(lambda: recorder.ended(7), 60, what="the run to end").status == "stopped"


def test_shutdown_ends_every_run_and_its_actor(ray_driver, mnist_dir, tmp_path):
    from app.executor_ray import RayExecutor

    executor = RayExecutor()
    recorder = Recorder()
    executor.submit(job(5, mnist_dir, tmp_path, epochs=200), recorder)
    executor.submit(job(6, mnist_dir, tmp_path, epochs=200), recorder)
    wait_for(lambda: recorder.steps(5) and recorder.steps(6), 120, what="both runs to train")
    executor.shutdown(10.0)
    for run_id in (5, 6):
        assert recorder.ended(run_id) is not None
        assert sum(isinstance(m, Ended) for m in recorder.of(run_id)) == 1
    assert not [t for t in threading.enumerate() if t.name.endswith("-ray")]
    wait_for(lambda: not ray_driver.actor_processes(forks=True), 30, what="the actors to exit")


# --- without a cluster --------------------------------------------------------------------------
def test_the_outbox_answers_what_the_server_lacks_in_order_and_forgets_what_it_has():
    from app.executor_ray import Outbox

    outbox = Outbox()
    assert outbox.take(-1, 0.01) == []  # nothing yet: waits, then answers nothing
    sent = [StartEvent(epochs=1, steps_per_epoch=2, train_samples=10, test_samples=5),
            Iterations(((0, 1, 2.3),), None, 0.1), Iterations(((1, 1, 2.2),), 10.0, 0.1)]
    for message in sent:
        outbox.put(message)
    first = outbox.take(-1, 1.0)
    assert [number for number, _ in first] == [0, 1, 2]
    assert [from_wire(wire) for _, wire in first] == sent
    assert outbox.take(-1, 1.0) == first  # that answer was lost on the way: asked again, same
    assert [number for number, _ in outbox.take(1, 1.0)] == [2]
    outbox.put(Ended("completed", None))
    assert [from_wire(wire) for _, wire in outbox.take(2, 1.0)] == [Ended("completed", None)]

    waiting = threading.Thread(target=lambda: late.extend(outbox.take(3, 30.0)))
    late: list = []
    waiting.start()
    outbox.put(Ended("failed", "late"))  # a waiting take answers as soon as there is something
    waiting.join(30)
    assert [number for number, _ in late] == [4]


def test_a_cluster_address_is_checked_before_ray_is_asked():
    from app.executor_ray import connect

    for address in ("ray://head:10001", "no-port", "head:http"):
        with pytest.raises(ExecutorError, match="a Ray address is host:port"):
            connect(address)


def test_without_ray_installed_the_ray_executor_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an installation without the extra sees
    monkeypatch.delitem(sys.modules, "app.executor_ray", raising=False)
    with pytest.raises(ExecutorError, match=r"pip install 'mnist-lab\[ray\]'"):
        make_executor(Settings(data_dir=tmp_path, executor="ray"))


def test_the_executor_is_chosen_by_flag_or_environment(tmp_path):
    settings = Settings.from_env({"MNIST_LAB_EXECUTOR": "ray", "MNIST_LAB_RAY_ADDRESS": "head:6379",
                                  "MNIST_LAB_RAY_CPUS_PER_RUN": "2"}, data_dir=tmp_path)
    assert (settings.executor, settings.ray_address, settings.ray_cpus_per_run) == ("ray", "head:6379", 2.0)
    assert Settings.from_env({}, data_dir=tmp_path).executor == "local"
    flagged = Settings.from_env({"MNIST_LAB_EXECUTOR": "local"}, data_dir=tmp_path, executor="ray")
    assert flagged.executor == "ray"
    with pytest.raises(SettingsError, match="ray_cpus_per_run must be above 0"):
        Settings(data_dir=tmp_path, ray_cpus_per_run=0)
