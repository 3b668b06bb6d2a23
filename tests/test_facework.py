"""`doppel serve`'s face work queue: bounded by time, and surviving a lost worker."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from doppel.config import FaceOptions
from doppel.errors import Overloaded
from doppel.web.facework import FIRST_GUESS_S, FaceWork, FaceWorkerLost


def test_the_queue_takes_what_fits_in_the_wait_and_refuses_the_rest() -> None:
    """One worker, a search taken to cost FIRST_GUESS_S: with 2.5 of those allowed,
    two searches may wait behind the running one; the next is refused with the wait."""
    work = FaceWork(FaceOptions(), workers=0, max_wait_s=2.5 * FIRST_GUESS_S)
    release = threading.Event()
    threads = [threading.Thread(target=work.run, args=(release.wait,)) for _ in range(3)]
    try:
        for expected, thread in enumerate(threads):
            thread.start()
            while work.state().running + work.state().waiting <= expected:
                time.sleep(0.01)
        assert (work.state().running, work.state().waiting) == (1, 2)
        with pytest.raises(Overloaded) as refused:
            work.run(release.wait)
        assert refused.value.retry_after == 3
        assert work.state().refused == 1
    finally:
        release.set()
        for thread in threads:
            thread.join()
    assert work.state().waiting == 0
    assert work.run(int, "7") == 7


def test_a_lost_worker_fails_its_search_and_is_replaced() -> None:
    work = FaceWork(FaceOptions(), workers=1, max_wait_s=60)
    work.start()
    try:
        first = work.run(os.getpid)
        assert first != os.getpid()
        os.kill(first, signal.SIGKILL)
        with pytest.raises(FaceWorkerLost):
            work.run(time.sleep, 5)
        second = work.run(os.getpid)
        assert second not in (first, os.getpid())
    finally:
        work.close()


def _meet(folder: str, me: str, other: str) -> tuple[int, bool]:
    """Leave a mark, then wait for the other task's: only tasks running at the same time
    both see each other's (a minute is a safety net, not a measurement)."""
    from pathlib import Path

    (Path(folder) / me).touch()
    deadline = time.monotonic() + 60
    while not (Path(folder) / other).exists():
        if time.monotonic() > deadline:
            return os.getpid(), False
        time.sleep(0.01)
    return os.getpid(), True


def test_two_workers_run_two_searches_at_once(tmp_path: os.PathLike[str]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    work = FaceWork(FaceOptions(), workers=2, max_wait_s=60)
    work.start()
    try:
        with ThreadPoolExecutor(2) as pool:
            a = pool.submit(work.run, _meet, str(tmp_path), "a", "b")
            b = pool.submit(work.run, _meet, str(tmp_path), "b", "a")
            (pid_a, met_a), (pid_b, met_b) = a.result(), b.result()
    finally:
        work.close()
    assert met_a and met_b
    assert len({pid_a, pid_b, os.getpid()}) == 3


def _pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def test_a_worker_that_dies_fails_only_its_own_search() -> None:
    from concurrent.futures import ThreadPoolExecutor

    work = FaceWork(FaceOptions(), workers=2, max_wait_s=60)
    work.start()
    try:
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(work.run, _pid_after, 3.0)
            while work.state().running == 0:
                time.sleep(0.01)
            with pytest.raises(FaceWorkerLost):
                work.run(os._exit, 1)  # the other worker's process ends mid-search
            survivor = slow.result()
        (lost,) = set(work.pids) - {survivor}
        # Both workers serve again, the lost one's place taken by a fresh process.
        with ThreadPoolExecutor(2) as pool:
            both = {f.result() for f in [pool.submit(work.run, _pid_after, 1.0) for _ in "ab"]}
    finally:
        work.close()
    assert survivor in both and lost not in both and len(both) == 2


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_the_server_and_its_workers_keep_blas_to_one_thread() -> None:
    """OpenBLAS's spare threads spin after each product, on the face workers' cores."""
    from threadpoolctl import threadpool_limits

    from doppel.web.facework import one_blas_thread

    with threadpool_limits(limits=None):  # this test process gets its own limits back
        assert _blas_threads(), "numpy has no BLAS that threadpoolctl can see"
        one_blas_thread()
        assert set(_blas_threads()) == {1}
    work = FaceWork(FaceOptions(), workers=1, max_wait_s=60)
    work.start()
    try:
        assert set(work.run(_blas_threads)) == {1}
    finally:
        work.close()
