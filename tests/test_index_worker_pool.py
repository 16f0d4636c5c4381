"""The supervised decoder pool: a crashed or hung task fails alone, the others go on."""

from __future__ import annotations

import time

import pytest

from index.worker_pool import SupervisedPool, WorkerCrashedError, WorkerLostError, WorkerTimeoutError
from tests import pool_tasks


def test_results_and_exceptions_pass_through_in_submission_order() -> None:
    pool = SupervisedPool(2)
    try:
        futures = [pool.submit(pool_tasks.square, i) for i in range(6)]
        failing = pool.submit(pool_tasks.fail_with, "bad input x.mp4")
        assert [f.result(timeout=60) for f in futures] == [i * i for i in range(6)]
        with pytest.raises(ValueError, match="bad input x.mp4"):
            failing.result(timeout=60)
        assert len(pool.worker_pids) <= 2
    finally:
        pool.shutdown()


def test_a_crashing_task_fails_alone_and_a_fresh_worker_takes_over() -> None:
    pool = SupervisedPool(1)
    try:
        first_pid = pool.submit(pool_tasks.own_pid).result(timeout=60)
        before = pool.submit(pool_tasks.square, 3)
        crashed = pool.submit(pool_tasks.crash)
        after = [pool.submit(pool_tasks.square, i) for i in range(3)]
        assert before.result(timeout=60) == 9
        with pytest.raises(WorkerCrashedError, match="SIGSEGV"):
            crashed.result(timeout=60)
        assert [f.result(timeout=60) for f in after] == [0, 1, 4]
        assert pool.submit(pool_tasks.own_pid).result(timeout=60) != first_pid
    finally:
        pool.shutdown()


def test_a_task_past_the_timeout_is_killed_and_the_pool_goes_on() -> None:
    pool = SupervisedPool(2, task_timeout_s=2.0)
    try:
        pool.submit(pool_tasks.square, 1).result(timeout=60)  # both workers may still be starting: warm one
        started = time.monotonic()
        hung = pool.submit(pool_tasks.sleep_then_return, 600, "never")
        quick = pool.submit(pool_tasks.sleep_then_return, 0.1, "quick")
        assert quick.result(timeout=60) == "quick"
        with pytest.raises(WorkerTimeoutError, match="no result after 2 s"):
            hung.result(timeout=60)
        assert time.monotonic() - started < 30
        assert pool.submit(pool_tasks.square, 5).result(timeout=60) == 25
    finally:
        pool.shutdown()


def test_shutdown_with_cancel_stops_running_and_pending_tasks_at_once() -> None:
    pool = SupervisedPool(1)
    running = pool.submit(pool_tasks.sleep_then_return, 600, "never")
    waiting = pool.submit(pool_tasks.square, 2)
    deadline = time.monotonic() + 60
    while not running.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    pool.shutdown(wait=True, cancel_futures=True)
    assert time.monotonic() - started < 15
    assert waiting.cancelled()
    with pytest.raises(WorkerLostError, match="shut down"):
        running.result(timeout=1)
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(pool_tasks.square, 1)


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="workers must be >= 1"):
        SupervisedPool(0)


def test_workers_that_cannot_start_fail_the_tasks_instead_of_restarting_forever() -> None:
    pool = SupervisedPool(1, initializer=pool_tasks.fail_on_start)
    try:
        future = pool.submit(pool_tasks.square, 2)
        with pytest.raises(WorkerCrashedError, match="die while starting .*exit code 1, 3 in a row"):
            future.result(timeout=60)
    finally:
        pool.shutdown()
