"""A process pool in which one task cannot take the others down.

Indexing decodes untrusted files with FFmpeg in worker processes. A corrupt or
hostile file can crash the decoder (SIGSEGV in libav) or make a call that never
returns. ``concurrent.futures.ProcessPoolExecutor`` handles neither: a dead
worker breaks the whole pool (every pending future raises ``BrokenProcessPool``,
with no way to tell which task killed it), and a hung call blocks forever.

:class:`SupervisedPool` runs each worker on its own pipe and gives it one task
at a time, so it always knows which task a worker holds:

* a worker that dies fails only its own task, with :class:`WorkerCrashedError`
  naming the exit code or signal; a fresh worker takes its place;
* a task still running ``task_timeout_s`` after it started is killed with its
  worker and fails with :class:`WorkerTimeoutError`;
* results and exceptions of tasks that return normally pass through unchanged.

It is a :class:`concurrent.futures.Executor`; one supervisor thread moves tasks
and results between the caller's futures and the workers.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
from collections import deque
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Optional

logger = logging.getLogger(__name__)

#: How long ``shutdown`` lets an idle worker exit on its own before killing it (seconds).
EXIT_GRACE_S = 5.0


class WorkerLostError(RuntimeError):
    """A task ended without a result because its worker process was lost."""


class WorkerCrashedError(WorkerLostError):
    """The worker process died while running the task (e.g. a segfault in a decoder)."""


class WorkerTimeoutError(WorkerLostError):
    """The task ran past the pool's ``task_timeout_s``; its worker was killed."""


@dataclass
class _Task:
    future: Future
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


#: A worker's first message: its initializer has run and it takes tasks.
_READY = "ready"
#: Workers that die before they are ready, in a row, before the pool gives up.
MAX_START_FAILURES = 3


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    ready: bool = False
    task: Optional[_Task] = None
    started_task_at: float = 0.0

    @property
    def pid(self) -> Optional[int]:
        return self.process.pid


def _worker_main(conn: Connection, initializer: Optional[Callable[[], None]]) -> None:
    """Body of a worker process: run ``(fn, args, kwargs)`` messages until ``None`` or EOF."""
    # Ctrl-C reaches the whole process group; the parent decides what to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer()
    # Tell the parent the worker is up, so start-up time does not count against a task's timeout.
    conn.send(_READY)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        fn, args, kwargs = message
        try:
            reply = (True, fn(*args, **kwargs))
        except BaseException as error:  # noqa: BLE001 - the caller's future gets it
            reply = (False, error)
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return
        except Exception as error:  # noqa: BLE001 - e.g. an unpicklable result
            conn.send((False, RuntimeError(f"the task's result could not be sent back: {error!r}")))


def _exit_description(exitcode: Optional[int]) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


class SupervisedPool(Executor):
    """``workers`` processes, one task each at a time; crashes and overruns fail only their task.

    Args:
        workers: number of worker processes (>= 1), started on demand.
        task_timeout_s: a task running longer than this (seconds, from when a
            worker took it) is killed; None or <= 0: no limit.
        initializer: called once in every worker process before its first task.
        mp_context: multiprocessing context (default ``spawn``: safe beside
            threads and CUDA in the parent).

    ``shutdown(cancel_futures=True)`` also stops tasks that are already running
    (their futures fail with :class:`WorkerLostError`): the pool is shut down
    that way when the caller has stopped waiting, and a stuck decoder must not
    hold the caller up.
    """

    def __init__(self, workers: int, task_timeout_s: Optional[float] = None,
                 initializer: Optional[Callable[[], None]] = None,
                 mp_context: Optional[multiprocessing.context.BaseContext] = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._size = workers
        self._timeout_s = task_timeout_s if task_timeout_s and task_timeout_s > 0 else None
        self._initializer = initializer
        self._context = mp_context or multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._pending: deque[_Task] = deque()
        self._workers: list[_Worker] = []
        self._shutdown = False
        self._stop_running = False
        self._start_failures = 0
        self._broken: Optional[str] = None
        self._wake_reader, self._wake_writer = self._context.Pipe(duplex=False)
        self._thread = threading.Thread(target=self._supervise, name="SupervisedPool", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ public API

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit to a pool that was shut down")
            self._pending.append(_Task(future, fn, args, kwargs))
        self._wake()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                self._stop_running = True
                while self._pending:
                    self._pending.popleft().future.cancel()
        self._wake()
        if wait:
            self._thread.join()

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (for diagnostics and tests)."""
        with self._lock:
            return [w.pid for w in self._workers]

    # ------------------------------------------------------------ supervisor

    def _wake(self) -> None:
        try:
            self._wake_writer.send_bytes(b"")
        except OSError:  # the supervisor has already closed it
            pass

    def _start_worker(self) -> _Worker:
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(target=_worker_main, args=(child_end, self._initializer), daemon=True)
        process.start()
        child_end.close()
        worker = _Worker(process, parent_end)
        self._workers.append(worker)
        return worker

    def _dispatch(self) -> None:
        """Hand pending tasks to idle ready workers, starting workers up to the pool size."""
        while self._pending:
            if self._broken is not None:
                task = self._pending.popleft()
                if task.future.set_running_or_notify_cancel():
                    task.future.set_exception(WorkerCrashedError(self._broken))
                continue
            worker = next((w for w in self._workers if w.ready and w.task is None), None)
            if worker is None:
                starting = sum(1 for w in self._workers if not w.ready)
                if len(self._workers) < self._size and starting < len(self._pending):
                    self._start_worker()
                    continue
                return
            task = self._pending.popleft()
            if not task.future.set_running_or_notify_cancel():
                continue
            try:
                worker.conn.send((task.fn, task.args, task.kwargs))
            except Exception as error:  # noqa: BLE001 - e.g. unpicklable arguments
                task.future.set_exception(error)
                continue
            worker.task = task
            worker.started_task_at = time.monotonic()

    def _retire(self, worker: _Worker, error: Optional[WorkerLostError], kill: bool) -> None:
        if kill and worker.process.is_alive():
            worker.process.kill()
        worker.process.join(EXIT_GRACE_S)
        worker.conn.close()
        self._workers.remove(worker)
        if worker.task is not None and error is not None:
            worker.task.future.set_exception(error)
            worker.task = None

    def _receive(self, worker: _Worker) -> None:
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            self._lost(worker)
            return
        except Exception as error:  # noqa: BLE001 - a result that cannot be unpickled here
            message = (False, RuntimeError(f"the task's result could not be read: {error!r}"))
        if not worker.ready:
            worker.ready = message == _READY
            self._start_failures = 0
            return
        ok, value = message
        task, worker.task = worker.task, None
        if task is None:
            return
        if ok:
            task.future.set_result(value)
        else:
            task.future.set_exception(value)

    def _lost(self, worker: _Worker) -> None:
        worker.process.join(EXIT_GRACE_S)
        reason = _exit_description(worker.process.exitcode)
        if worker.task is not None:
            logger.warning("worker process %d died (%s) while running a task", worker.pid, reason)
        elif not worker.ready:
            self._start_failures += 1
            logger.warning("worker process %d died (%s) while starting", worker.pid, reason)
            if self._start_failures >= MAX_START_FAILURES:
                self._broken = f"worker processes die while starting ({reason}, {self._start_failures} in a row)"
        self._retire(worker, WorkerCrashedError(f"the worker process died ({reason}) while running this task"),
                     kill=True)

    def _enforce_deadlines(self) -> Optional[float]:
        """Kill workers whose task overran; return seconds until the next deadline (None: none)."""
        if self._timeout_s is None:
            return None
        now = time.monotonic()
        soonest: Optional[float] = None
        for worker in [w for w in self._workers if w.task is not None]:
            left = worker.started_task_at + self._timeout_s - now
            if left <= 0:
                logger.warning("worker process %d ran a task for more than %.0f s; killing it",
                               worker.pid, self._timeout_s)
                self._retire(worker, WorkerTimeoutError(
                    f"no result after {self._timeout_s:g} s; the worker process was killed"), kill=True)
            else:
                soonest = left if soonest is None else min(soonest, left)
        return soonest

    def _supervise(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._stop_running:
                        for worker in list(self._workers):
                            if worker.task is not None:
                                self._retire(worker, WorkerLostError("the pool was shut down while this task ran"),
                                             kill=True)
                    self._dispatch()
                    busy = [w for w in self._workers if w.task is not None]
                    if self._shutdown and not self._pending and not busy:
                        break
                    timeout = self._enforce_deadlines()
                    watched: dict[Any, tuple[str, _Worker]] = {}
                    for worker in self._workers:
                        watched[worker.process.sentinel] = ("exit", worker)
                        if worker.task is not None or not worker.ready:
                            watched[worker.conn] = ("reply", worker)
                ready = wait([self._wake_reader, *watched], timeout)
                with self._lock:
                    if self._wake_reader in ready:
                        while self._wake_reader.poll():
                            self._wake_reader.recv_bytes()
                    # Replies first: a worker that answered and then died still delivered its result.
                    for item in ready:
                        kind, worker = watched.get(item, ("", None))
                        if kind == "reply" and worker in self._workers:
                            self._receive(worker)
                    for item in ready:
                        kind, worker = watched.get(item, ("", None))
                        if kind == "exit" and worker in self._workers:
                            self._lost(worker)
                    self._enforce_deadlines()
        except BaseException as error:  # noqa: BLE001 - callers must not wait forever on a dead supervisor
            logger.exception("the worker pool's supervisor failed")
            with self._lock:
                self._shutdown = True
                lost = WorkerLostError(f"the worker pool failed: {error!r}")
                for worker in list(self._workers):
                    self._retire(worker, lost, kill=True)
                while self._pending:
                    task = self._pending.popleft()
                    if task.future.set_running_or_notify_cancel():
                        task.future.set_exception(lost)
        finally:
            self._close_workers()

    def _close_workers(self) -> None:
        with self._lock:
            for worker in self._workers:
                try:
                    worker.conn.send(None)
                except OSError:
                    pass
            deadline = time.monotonic() + EXIT_GRACE_S
            for worker in list(self._workers):
                worker.process.join(max(0.0, deadline - time.monotonic()))
                self._retire(worker, WorkerLostError("the pool was shut down while this task ran"), kill=True)
            for task in self._pending:
                task.future.cancel()
            self._pending.clear()
            self._wake_reader.close()
            self._wake_writer.close()


__all__ = ["SupervisedPool", "WorkerCrashedError", "WorkerLostError", "WorkerTimeoutError"]
