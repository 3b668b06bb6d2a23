"""A gallery's writer lock, and the changes to a gallery as a whole: rename, delete.

One ingest or load-dump writes a gallery at a time. The lock is a PostgreSQL advisory
lock on the gallery's name, held by the writer's session: it ends with the session,
so a killed run never leaves it held, and taken again on the same connection it is
counted rather than waited for (a command may hold it around a library call that
takes it too).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg

from doppel.errors import GalleryBusy, UsageError
from doppel.store.statistics import GalleryStatistics
from doppel.types import GalleryStats, check_gallery_name

# The advisory lock class of a gallery's writer (ingest, load-dump); the second key is
# hashtext(name). Two names that hash alike only make their writers take turns.
WRITER_LOCK = 4242002


@contextmanager
def writing(
    conn: psycopg.Connection, name: str, waiting: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the gallery's writer lock: one ingest or load-dump per gallery at a time.

    A second writer waits for the first to finish (told through `waiting`), then finds
    its files or rows present and adds only what is still missing, so each run's
    summary counts what that run added.
    """
    name = check_gallery_name(name)
    if not _try(conn, name):
        if waiting is not None:
            waiting(
                f"gallery {name!r} is being written by another doppel run; waiting for it to finish"
            )
        conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (WRITER_LOCK, name))
    try:
        yield
    finally:
        _release(conn, name)


def _try(conn: psycopg.Connection, name: str) -> bool:
    got = conn.execute(
        "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (WRITER_LOCK, name)
    ).fetchone()
    return bool(got and got[0])


def _release(conn: psycopg.Connection, name: str) -> None:
    if not conn.closed and not conn.broken:
        with contextlib.suppress(psycopg.Error):
            conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (WRITER_LOCK, name))


@contextmanager
def _claimed(conn: psycopg.Connection, name: str) -> Iterator[None]:
    """The writer lock taken now, or GalleryBusy: a rename or delete does not wait."""
    if not _try(conn, name):
        raise GalleryBusy(
            f"gallery {name!r} is being written by another doppel run (an ingest or "
            "load-dump); try again when it has finished"
        )
    try:
        yield
    finally:
        _release(conn, name)


def rename_gallery(conn: psycopg.Connection, old: str, new: str) -> None:
    """Give a gallery another name; refused while it is being written."""
    repo = GalleryStatistics(conn)
    gallery = repo.gallery(old)
    new = check_gallery_name(new)
    if repo.find_gallery(new) is not None:
        raise UsageError(f"there is already a gallery named {new!r}")
    try:
        with _claimed(conn, old), _claimed(conn, new):
            conn.execute("UPDATE galleries SET name = %s WHERE id = %s", (new, gallery.id))
    except psycopg.errors.UniqueViolation:
        raise UsageError(f"there is already a gallery named {new!r}") from None


def delete_gallery(conn: psycopg.Connection, name: str) -> GalleryStats:
    """Delete a gallery with its faces, file records and index; refused while it is
    being written. Returns what it held."""
    repo = GalleryStatistics(conn)
    gallery = repo.gallery(name)
    held = next(s for s in repo.stats() if s.gallery.id == gallery.id)
    with _claimed(conn, name):
        # The partial index names the gallery's id; it would outlive the rows.
        repo.drop_index(gallery)
        conn.execute("DELETE FROM galleries WHERE id = %s", (gallery.id,))
    return held
