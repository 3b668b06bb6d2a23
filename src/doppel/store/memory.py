"""How much of the machine's memory doppel's PostgreSQL servers take, decided in one place."""

from __future__ import annotations

import os

from doppel.config import Settings


def physical_mib() -> int | None:
    """The machine's memory in MiB; None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (OSError, ValueError):
        return None


def buffers_mib(settings: Settings) -> int:
    """shared_buffers for the embedded server: DOPPEL_SHARED_BUFFERS_MIB, else a quarter
    of the machine's memory (PostgreSQL's own advice), 128 MiB to 8 GiB.

    PostgreSQL's default of 128 MiB holds the HNSW index of about 100,000 faces. Past
    that every search reads most of the graph's pages from the operating system's cache
    one by one, which at 1,000,000 faces made a search several times slower
    (docs/benchmarks.md, "Index designs"). The memory is reserved, not used: the
    server's footprint grows only as pages are read. A local Citus cluster's workers
    share this between them (store/citus.py).
    """
    if settings.shared_buffers_mib:
        return settings.shared_buffers_mib
    physical = physical_mib()
    if physical is None:
        return 128
    return max(128, min(physical // 4, 8192))
