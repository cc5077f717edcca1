"""Runs on a Ray cluster: every run trains in a Ray actor of its own, on whichever node has a CPU.

`RayExecutor` is the second `Executor` (app/executor.py), with the same guarantee: the run
service's `on_message(run_id, message)` is called from a background thread, in order for each run,
and the last message of every run is exactly one `Ended`, also when its actor, the actor's process
or its node died. What crosses the cluster, and how:

- The job: `RunActor.train(job, mnist)` runs the same `run_job` as a local worker. MNIST is read
  (verified) from the server's disk once and put in the object store once per connection; each node
  gets it from there, read-only and shared by the actors on that node. A worker never touches the
  server's disk: it is handed the data, and it sends every checkpoint as `CheckpointBytes`, which
  the server writes where a local worker would have saved it and hands on as that `Checkpoint`.
- Messages: the actor keeps them numbered in an `Outbox`; the run's pump thread here asks for those
  after the last one it has (`take`, a long poll), so they arrive in order, and a reply lost on the
  way is asked for again instead of being lost or arriving twice.
- Controls: `stop`, `pause`, `resume` are actor methods in a concurrency group of their own, so they
  reach the trainer while `train` runs and `take` waits; another control is one more such method.
- Deaths: a `take` that fails because the actor died (its process killed, its node lost) ends the
  run with the cause Ray reports; an actor that has started and then answers nothing for
  `silence_timeout_s` is killed and its run failed, so the server never waits on it forever.

Imported only when the server runs with `--executor ray`: Ray is an optional extra
(`pip install 'mnist-lab[ray]'`). docs/ray.md says how to point the server at a cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
import time
from collections import deque
from typing import Any

import ray
from ray.exceptions import (
    ActorUnavailableError,
    GetTimeoutError,
    RayActorError,
    RayError,
)

from app.executor import ExecutorError, MessageCallback, stop_all
from app.protocol import CheckpointBytes, Ended, Message, ProtocolError, from_wire, to_wire
from app.worker import RunJob, checkpoint_from_bytes, run_job
from engine.blas import THREAD_VARIABLES
from engine.control import TrainingControl

logger = logging.getLogger("app.executor")

POLL_S = 0.5  # how long a `take` waits on the actor for the next message
ANSWER_MARGIN_S = 10.0  # how much longer its answer may take over the network before we ask again
CONNECT_TIMEOUT_S = 10.0
RAY_NAMESPACE = "mnist-lab"
LOST_RUN_ADVICE = ("Metrics and the model of the epochs finished before are kept; start a new run "
                   "to train again")


class Outbox:
    """A worker's messages as wire dicts, numbered from 0 in the order they were sent, kept until
    the server has them: `take(after)` forgets those up to `after` (the server has them) and
    answers the rest, waiting up to `wait_s` for one when there are none."""

    def __init__(self) -> None:
        self._kept: deque[tuple[int, dict[str, Any]]] = deque()
        self._sent = 0
        self._changed = threading.Condition()

    def put(self, message: Message) -> None:
        with self._changed:
            self._kept.append((self._sent, to_wire(message)))
            self._sent += 1
            self._changed.notify_all()

    def take(self, after: int, wait_s: float) -> list[tuple[int, dict[str, Any]]]:
        with self._changed:
            while self._kept and self._kept[0][0] <= after:
                self._kept.popleft()
            if not self._kept:
                self._changed.wait(wait_s)
            return list(self._kept)


@ray.remote(concurrency_groups={"messages": 1, "control": 1})
class RunActor:
    """One run on some node of the cluster: `train` runs it (the default group's one thread), the
    server takes its messages (`take`) and steers it (`stop`, `pause`, `resume`) meanwhile, each
    group in a thread of its own. Controls are applied in the order they were sent: the group has
    one thread, and the run service sends a resume only after the pause took effect."""

    def __init__(self) -> None:
        self.control = TrainingControl()
        self.outbox = Outbox()

    def train(self, job: RunJob, mnist) -> None:
        """Train `job` on `mnist` (the object store's copy, resolved by Ray on this node)."""
        raise_niceness_to(job.nice)
        run_job(job, self.outbox.put, self.control, data=lambda: mnist, checkpoints="bytes")

    @ray.method(concurrency_group="messages")
    def take(self, after: int, wait_s: float) -> list[tuple[int, dict[str, Any]]]:
        return self.outbox.take(after, wait_s)

    @ray.method(concurrency_group="control")
    def where(self) -> dict[str, Any]:
        """The node and process this run trains in (for the server's log and reasons)."""
        return {"node": ray.util.get_node_ip_address(), "pid": os.getpid()}

    @ray.method(concurrency_group="control")
    def stop(self) -> None:
        self.control.stop()

    @ray.method(concurrency_group="control")
    def pause(self) -> None:
        self.control.pause()

    @ray.method(concurrency_group="control")
    def resume(self) -> None:
        self.control.resume()

    @ray.method(concurrency_group="control")
    def step(self, steps: int) -> None:
        self.control.step(steps)


def raise_niceness_to(niceness: int) -> None:
    """At least `niceness` (Ray starts its workers nicer than that already, at 15: kept)."""
    current = os.nice(0)
    if niceness > current:
        with contextlib.suppress(OSError):
            os.nice(niceness - current)


class RayRunHandle:
    """One run's actor, and the thread here that follows its messages until its `Ended`."""

    def __init__(self, executor: RayExecutor, job: RunJob, actor, training, on_message: MessageCallback):
        self.run_id = job.run_id
        self.actor = actor
        self.where: dict[str, Any] | None = None  # known once the actor has answered
        self._executor = executor
        self._model_path = job.model_path
        self._training = training  # the ObjectRef of `train`: an error there is the run's end
        self._on_message = on_message
        self._pump = threading.Thread(target=self._pump_messages, name=f"run-{job.run_id}-ray",
                                      daemon=True)

    def start(self) -> None:
        self._pump.start()

    def stop(self) -> None:
        self._tell("stop")

    def pause(self) -> None:
        self._tell("pause")

    def resume(self) -> None:
        self._tell("resume")

    def step(self, steps: int) -> None:
        self._tell("step", steps)

    def terminate(self) -> None:
        """End the actor now (the run ends as `died`; its pump reports it)."""
        with contextlib.suppress(RayError, ValueError):
            ray.kill(self.actor, no_restart=True)

    def join(self, timeout: float | None = None) -> bool:
        self._pump.join(timeout)
        return not self._pump.is_alive()

    def _tell(self, control: str, *args) -> None:
        # Sent, not awaited (the run service calls this on its event loop); an actor that is gone
        # cannot be told anything, and its pump reports how it ended.
        with contextlib.suppress(RayError):
            getattr(self.actor, control).remote(*args)

    # --- the pump thread ----------------------------------------------------------------------
    def _pump_messages(self) -> None:
        try:
            end = self._follow()
        except Exception as error:  # noqa: BLE001 - whatever happened, the run gets its end
            logger.exception("run %s: lost track of its Ray actor", self.run_id)
            end = Ended("failed", f"the server lost track of the Ray actor training this run "
                                  f"({type(error).__name__}: {error}). {LOST_RUN_ADVICE}", died=True)
        if end is not None:
            self._on_message(self.run_id, end)
        self.terminate()  # the run is over: its actor's CPU goes back to the cluster
        self._executor._forget(self)

    def _follow(self) -> Ended | None:
        """Hand on the actor's messages in order until its `Ended` (then None); or the `Ended`
        that says why none will come."""
        received = -1
        answered_at: float | None = None  # None until the actor has started and answered
        trained = False  # `train` returned: everything it sent is in the outbox
        while True:
            try:
                batch = ray.get(self.actor.take.remote(received, POLL_S), timeout=POLL_S + min(
                    ANSWER_MARGIN_S, self._executor.silence_timeout_s))
            except (GetTimeoutError, ActorUnavailableError):
                silent = time.monotonic() - answered_at if answered_at is not None else 0.0
                if silent > self._executor.silence_timeout_s:
                    return Ended("failed", self._silence_reason(silent), died=True)
                continue
            except RayActorError as error:
                return Ended("failed", death_reason(error, self.where), died=True)
            if answered_at is None:
                self._locate()
            answered_at = time.monotonic()
            fresh = [(number, wire) for number, wire in batch if number > received]
            for number, wire in fresh:
                received = number
                message = self._decode(wire)
                if message is None:
                    continue
                self._on_message(self.run_id, message)
                if isinstance(message, Ended):
                    return None
            if not fresh:
                if trained:  # `train` returned, and the Ended it always sends never came
                    return Ended("failed", "the Ray worker finished without saying how the run "
                                           f"ended; the server log may say why. {LOST_RUN_ADVICE}")
                outcome = self._training_outcome()
                if isinstance(outcome, Ended):
                    return outcome
                trained = outcome

    def _training_outcome(self) -> bool | Ended:
        """False while `train` runs, True once it returned, or the `Ended` of a `train` that
        failed (a worker that could not even start `run_job`)."""
        done, _ = ray.wait([self._training], timeout=0)
        if not done:
            return False
        try:
            ray.get(self._training)
        except RayActorError as error:
            return Ended("failed", death_reason(error, self.where), died=True)
        except RayError as error:
            logger.error("run %s: its Ray worker failed:\n%s", self.run_id, error)
            return Ended("failed", f"the Ray worker could not train this run: "
                                   f"{_last_line(error)}. {LOST_RUN_ADVICE}")
        return True

    def _decode(self, wire: dict[str, Any]) -> Message | None:
        try:
            message = from_wire(wire)
        except ProtocolError:
            logger.exception("run %s: the Ray worker sent a message this server does not "
                             "understand; ignored", self.run_id)
            return None
        if isinstance(message, CheckpointBytes):
            try:
                return checkpoint_from_bytes(self._model_path, message)
            except OSError:  # a full or read-only disk: the model stays at the epoch before
                logger.exception("run %s: could not write the checkpoint of epoch %s",
                                 self.run_id, message.epoch)
                return None
        return message

    def _locate(self) -> None:
        with contextlib.suppress(RayError):
            self.where = ray.get(self.actor.where.remote(), timeout=ANSWER_MARGIN_S)
            logger.info("run %s trains on Ray node %s (pid %s)", self.run_id, self.where["node"],
                        self.where["pid"])

    def _silence_reason(self, silent: float) -> str:
        return (f"the Ray actor training this run{_on(self.where)} answered nothing for "
                f"{silent:.0f} s (its node may be unreachable, or its process stopped), so the "
                f"server ended it. {LOST_RUN_ADVICE}")


class RayExecutor:
    """Each run in a Ray actor of its own, on the cluster at `address` (see `connect`).

    `cpus_per_run`: the CPUs Ray reserves for each run's actor (a node with 8 trains 8 runs at
    once at 1); `silence_timeout_s`: how long an actor that has started may answer nothing before
    its run is failed."""

    def __init__(self, address: str | None = None, *, cpus_per_run: float = 1.0,
                 silence_timeout_s: float = 120.0):
        self.silence_timeout_s = silence_timeout_s
        self._cpus_per_run = cpus_per_run
        self._owns_connection = not ray.is_initialized()
        if self._owns_connection:
            connect(address)
        self._mnist: dict[tuple, Any] = {}  # (data dir, subsets) -> ObjectRef, put once
        self._handles: dict[int, RayRunHandle] = {}
        self._lock = threading.Lock()

    def submit(self, job: RunJob, on_message: MessageCallback) -> RayRunHandle:
        options: dict[str, Any] = {"num_cpus": self._cpus_per_run, "max_restarts": 0,
                                   "max_task_retries": 0}
        if job.threads > 0:  # set before the actor's process loads NumPy's BLAS
            options["runtime_env"] = {"env_vars": {name: str(job.threads)
                                                   for name in THREAD_VARIABLES}}
        mnist = self._mnist_in_object_store(job)
        actor = RunActor.options(**options).remote()
        handle = RayRunHandle(self, job, actor, actor.train.remote(job, mnist), on_message)
        with self._lock:
            self._handles[job.run_id] = handle
        handle.start()
        return handle

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop every run, wait for their actors to report it, kill those that do not; then leave
        the cluster (if this executor joined it)."""
        with self._lock:
            handles = list(self._handles.values())
        # A killed actor's pending `take` fails at once: its pump then reports the run's end.
        stop_all(handles, timeout, lambda handle, seconds: handle.join(seconds))
        with self._lock:
            self._mnist.clear()
        if self._owns_connection:
            ray.shutdown()

    def _forget(self, handle: RayRunHandle) -> None:
        with self._lock:
            if self._handles.get(handle.run_id) is handle:
                del self._handles[handle.run_id]

    def _mnist_in_object_store(self, job: RunJob):
        """MNIST as this server reads it (verified, from its own disk), put once per connection."""
        # The whole training set: the worker holds the validation digits out (its last ones) and
        # keeps the job's train_subset of the others (app/worker.py).
        key = (str(job.data_dir), job.test_subset)
        with self._lock:
            if key not in self._mnist:
                from engine.data import load_mnist  # the server's own copy, checked by SHA-256

                data = load_mnist(job.data_dir, fetch=False, test=job.test_subset)
                self._mnist[key] = ray.put(data)
            return self._mnist[key]


def connect(address: str | None) -> None:
    """Join the Ray cluster whose head is at `address` ("host:port", as its `ray start --head`
    printed). None: $RAY_ADDRESS, else the cluster `ray start` last started on this machine, else
    a Ray instance of this server's own. ExecutorError, saying what to do, if no head answers
    there (ray.init itself would keep trying for minutes)."""
    target = address or os.environ.get("RAY_ADDRESS") or None
    if target and target not in ("auto", "local"):
        _check_reachable(target)
    try:
        ray.init(address=target, namespace=RAY_NAMESPACE, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise ExecutorError(f"could not join the Ray cluster at {target or 'this machine'}: "
                            f"{error}") from None


def _check_reachable(address: str) -> None:
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        raise ExecutorError(f"a Ray address is host:port (the head node's, as `ray start --head` "
                            f"printed it), got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise ExecutorError(
            f"no Ray cluster answers at {address} ({error}); start one there with "
            "`ray start --head --port PORT`, or pass the address its head printed "
            "(--ray-address or RAY_ADDRESS)") from None


def death_reason(error: RayActorError, where: dict[str, Any] | None) -> str:
    """Why an actor died, in a sentence: Ray's own account ("its worker process has died", "its
    node has died", an error in its creation), and where it ran."""
    text = str(error)
    cause = re.search(r"The actor is dead because (.+?)(?:\. |\.$|$)", text, re.MULTILINE)
    detail = re.search(r"Worker exit detail: (.+?)(?:\. |\.$|$)", text, re.MULTILINE)
    if cause:
        account = cause.group(1) + (f" ({detail.group(1)})" if detail else "")
    else:
        account = next((line.strip() for line in text.splitlines() if line.strip()),
                       type(error).__name__)
    if where is None:
        found = dict(re.findall(r"^\s*(ip|pid): (\S+)$", text, re.MULTILINE))
        where = {"node": found["ip"], "pid": found.get("pid")} if "ip" in found else None
    return f"the Ray actor training this run died{_on(where)}: {account}. {LOST_RUN_ADVICE}"


def _last_line(error: BaseException) -> str:
    """The last line of an error's text: for a remote traceback, the exception itself."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _on(where: dict[str, Any] | None) -> str:
    if not where:
        return ""
    pid = f", pid {where['pid']}" if where.get("pid") else ""
    return f" (node {where['node']}{pid})"
