"""`doppel serve`'s face work (detection, embedding) on every core, behind a bounded queue.

dlib's detectors and its ResNet hold the GIL for their whole run (two threads are no
faster than one) and its networks keep per-call state, so threads cannot use a second
core. The work goes to worker processes instead, each with its own copy of the models
(ONNX Runtime sessions, dlib's detectors); the server process decodes, queries the
database and answers. The functions a worker runs are the ones the CLI runs, so an
answer is the same however many workers there are.

Each worker is a process with a pipe of its own, and the request's thread talks to it
directly: the task goes down the pipe and the answer comes back up, with no executor's
threads handing them on (two thread switches fewer a search, in a server process whose
threads share one interpreter lock). A worker that dies (killed, out of memory, a crash
in native code) fails only the search it was on; the other workers' searches go on,
and a fresh process takes its place.

The queue is bounded by time: a search that would wait longer than `max_wait_s` for a
worker (judged from how long searches have been taking) is refused at once with
`Overloaded`, which the app answers with 503 and Retry-After.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection
from typing import Any, TypeVar

import numpy as np

from doppel.config import FaceOptions
from doppel.errors import DoppelError, Overloaded
from doppel.faces.embed import Embedder, embedder_for
from doppel.faces.imaging import Photo
from doppel.types import DetectedFace, EmbeddingConfig

T = TypeVar("T")
# What a search is taken to cost before one has been timed (seconds of a worker).
FIRST_GUESS_S = 1.0
# Weight of the newest timing in the running average of a search's cost.
SMOOTHING = 0.2

_worker_threads: int | None = None  # threads per model in a worker process
_worker_models: dict[tuple[EmbeddingConfig, FaceOptions], Embedder] = {}


def _embedder(config: EmbeddingConfig, options: FaceOptions) -> Embedder:
    """This process's embedder: the app's shared one, or in a worker a one-thread copy
    (several workers with a thread per core each would only fight over the cores)."""
    if _worker_threads is None:
        return embedder_for(config, options)
    key = (config, options)
    if key not in _worker_models:
        _worker_models[key] = Embedder(config, options=options, threads=_worker_threads)
    return _worker_models[key]


def detect(
    config: EmbeddingConfig, options: FaceOptions, photo: Photo, detector: str
) -> list[DetectedFace]:
    """The photo's faces by this detector, largest first (its crops for this config)."""
    embedder = _embedder(config, options)
    embedder.warm_up()
    return embedder.detect(photo, detector)


def embed(config: EmbeddingConfig, options: FaceOptions, crop: np.ndarray) -> np.ndarray:
    """One face crop's vector."""
    vectors: np.ndarray = _embedder(config, options).embed_crops([crop])
    return vectors[0]


def detect_and_embed(
    config: EmbeddingConfig, options: FaceOptions, photo: Photo, detector: str, index: int
) -> tuple[list[DetectedFace], np.ndarray | None]:
    """The photo's faces and the vector of face `index` (None when there is no such
    face), in one trip to a worker."""
    faces = detect(config, options, photo, detector)
    if index >= len(faces):
        return faces, None
    return faces, embed(config, options, faces[index].crop)


def warm(config: EmbeddingConfig, options: FaceOptions, detector: str) -> None:
    """Load a configuration's models and run its detector once."""
    detect(config, options, Photo(np.zeros((64, 64, 3), dtype=np.uint8), 1.0), detector)


def one_blas_thread() -> None:
    """Keep numpy's BLAS in this process to one thread, for the life of the process.

    OpenBLAS starts a thread per core, and after each matrix product big enough to share
    out, the extra threads spin for a while waiting for the next. In `doppel serve` the
    cores belong to the face workers: with Facenet512 the copy check's product over its
    candidates left a thread of the server spinning at about three quarters of a core,
    and a one-client search cost 83 ms of the server's CPU, 22 with one thread."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def _serve(conn: Connection, threads: int) -> None:
    """A worker process: run each task that comes down the pipe and send back its
    answer, or the exception it raised, until the server closes the pipe."""
    global _worker_threads
    _worker_threads = threads
    one_blas_thread()  # a worker is one of one per core already
    # Ctrl-C reaches the whole process group; the server stops its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            fn, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            answer: tuple[bool, Any] = (True, fn(*args))
        except BaseException as exc:  # the caller's to handle, as if the call were local
            answer = (False, exc)
        try:
            conn.send(answer)
        except (EOFError, OSError):
            return
        except Exception as exc:  # an answer or exception that cannot be pickled
            conn.send((False, RuntimeError(f"{type(exc).__name__}: {exc}")))


class FaceWorkerLost(DoppelError):
    """The worker process doing a search stopped before it answered."""


class _Worker:
    """One worker process and the server's end of its pipe."""

    def __init__(self, threads: int) -> None:
        context = get_context("spawn")  # not fork: the server already runs threads
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, threads), daemon=True)
        self.process.start()
        child.close()  # so that the process's death closes the pipe at this end
        # A task and its answer go through the pipe together: two threads' calls must
        # not interleave (FaceWork gives a worker one search at a time; start-up's
        # calls come outside that queue).
        self._talk = threading.Lock()

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            with self._talk:
                self.conn.send((fn, args))
                ok, value = self.conn.recv()
        except (EOFError, OSError):
            raise FaceWorkerLost(
                "a face worker stopped while working on this photo; try again"
            ) from None
        if not ok:
            raise value
        result: T = value
        return result

    def stop(self) -> None:
        self.conn.close()  # the worker reads the end of the pipe and returns
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


@dataclass(frozen=True)
class QueueState:
    """What /api/health says of the queue."""

    workers: int
    running: int
    waiting: int
    max_wait_s: float
    search_s: float  # what a search has been costing a worker, averaged
    refused: int  # searches answered 503 since the server started


class FaceWork:
    """Runs face work on `workers` processes (0: in this process, one at a time), at most
    one task per worker at once; the rest wait in a queue bounded by `max_wait_s`."""

    def __init__(self, options: FaceOptions, workers: int, max_wait_s: float) -> None:
        self.options = options
        self.workers = workers
        self.max_wait_s = max_wait_s
        self._slots = threading.Semaphore(max(1, workers))
        self._lock = threading.Lock()
        self._running = 0
        self._waiting = 0
        self._refused = 0
        self._cost = FIRST_GUESS_S
        self._timed = False
        # One process per worker (None until started, or after it died), and the free.
        self._workers: list[_Worker | None] = [None] * workers
        self._idle = list(range(workers))
        self.pids: list[int] = []

    def start(self) -> None:
        """Start the worker processes (all at once: each takes a while to import); once
        started, nothing to do (the app's start-up and its warm-up both ask)."""
        if self.workers == 0 or self.pids:
            return
        with self._lock:
            workers = [self._worker(number) for number in range(self.workers)]
        self.pids = sorted(worker.call(os.getpid) for worker in workers)

    def _worker(self, number: int) -> _Worker:
        """The worker, started if it is not running (call with the lock held)."""
        worker = self._workers[number]
        if worker is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
            worker = self._workers[number] = _Worker(max(1, cores // self.workers))
        return worker

    def close(self) -> None:
        with self._lock:
            workers, self._workers = self._workers, [None] * self.workers
        for worker in workers:
            if worker is not None:
                worker.stop()

    def warm(self, config: EmbeddingConfig, detector: str) -> None:
        """Load a configuration's models in the workers (or here). A worker that a task
        missed loads them on its first search instead."""
        if self.workers == 0:
            warm(config, self.options, detector)
            return
        with self._lock:
            workers = [self._worker(number) for number in range(self.workers)]
        with ThreadPoolExecutor(self.workers) as loading:  # every worker loads at once
            futures = [
                loading.submit(worker.call, warm, config, self.options, detector)
                for worker in workers
            ]
        for future in futures:
            future.result()

    def state(self) -> QueueState:
        with self._lock:
            return QueueState(
                self.workers,
                self._running,
                self._waiting,
                self.max_wait_s,
                round(self._cost, 4),
                self._refused,
            )

    def _admit(self) -> None:
        """Join the queue, or raise Overloaded when the wait would be too long."""
        with self._lock:
            width = max(1, self.workers)
            if self._running + self._waiting >= width:
                # The newcomer runs once the searches ahead of it have gone through
                # the workers: about this many rounds of one search each.
                wait = (self._waiting + 1) / width * self._cost
                if wait > self.max_wait_s:
                    self._refused += 1
                    seconds = max(1, math.ceil(wait))
                    raise Overloaded(
                        f"the server is busy: {self._waiting} searches are waiting for "
                        f"{width} worker(s); try again in {seconds} s",
                        retry_after=seconds,
                    )
            self._waiting += 1

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) on a free worker, waiting in the queue for one."""
        self._admit()
        self._slots.acquire()
        with self._lock:
            self._waiting -= 1
            self._running += 1
            worker = self._idle.pop() if self.workers else None
        start = time.perf_counter()
        try:
            if worker is None:
                return fn(*args)
            return self._on_worker(worker, fn, *args)
        finally:
            took = time.perf_counter() - start
            with self._lock:
                self._running -= 1
                self._cost = (
                    took if not self._timed else ((1 - SMOOTHING) * self._cost + SMOOTHING * took)
                )
                self._timed = True
                if worker is not None:
                    self._idle.append(worker)
            self._slots.release()

    def _on_worker(self, number: int, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            worker = self._worker(number)
        try:
            return worker.call(fn, *args)
        except FaceWorkerLost:
            # Its search fails; a fresh process takes the next one.
            with self._lock:
                if self._workers[number] is worker:
                    self._workers[number] = None
            worker.stop()
            raise

    def detect(self, config: EmbeddingConfig, photo: Photo, detector: str) -> list[DetectedFace]:
        return self.run(detect, config, self.options, photo, detector)

    def embed(self, config: EmbeddingConfig, crop: np.ndarray) -> np.ndarray:
        return self.run(embed, config, self.options, crop)

    def detect_and_embed(
        self, config: EmbeddingConfig, photo: Photo, detector: str, index: int
    ) -> tuple[list[DetectedFace], np.ndarray | None]:
        return self.run(detect_and_embed, config, self.options, photo, detector, index)
