"""Worker processes that end with the process that started them."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context


def die_with_parent(parent: int) -> None:
    """In a worker: end when the parent process dies, even by SIGKILL (Linux), and leave
    Ctrl-C to the parent. The terminal sends SIGINT to every process of the command;
    the parent stops the pool and prints one line, where each worker would print a
    KeyboardInterrupt traceback."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of fresh interpreters (spawn, not fork: the parent may hold TensorFlow or
    database threads, which fork would copy half-way)."""
    return ProcessPoolExecutor(
        workers,
        mp_context=get_context("spawn"),
        initializer=die_with_parent,
        initargs=(os.getpid(),),
    )
