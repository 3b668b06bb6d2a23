"""`doppel load-dump`: read the original project's pg_dump of its faces table, safely.

The dump is untrusted input: none of its SQL runs. Its text is split into statements
here, only the rows of the `faces` table are read (from COPY data or INSERT values),
validated (vectors parsed here, in batches) and sent with binary COPY inside one
transaction, so the gallery appears or grows in one step. Everything else the dump
held is reported and ignored.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

from doppel.dump.batches import DIMENSION, Batcher
from doppel.dump.files import open_dump
from doppel.dump.report import LoadReport
from doppel.dump.rows import Reader
from doppel.errors import BadDump
from doppel.index_builds import finish_index
from doppel.outputs import log_file, write_text
from doppel.store.gallery_rows import check_config
from doppel.store.repository import Repository
from doppel.types import BuildProgress, EmbeddingConfig, Gallery

# What the original project's faces were embedded with: Facenet512 on aligned crops.
CONFIG = EmbeddingConfig("Facenet512", "skip", align=False)

# (bytes read, bytes in all, rows accepted so far)
Progress = Callable[[int, int, int], None]


# A batch for the sender: its first and last line, its row count and its COPY data.
_Batch = tuple[int, int, int, bytes]


class Sender:
    """Stores batches with binary COPY from a thread of its own, at most three waiting.

    The connection belongs to this thread until close(); a failure is raised again in
    the caller's thread at its next send() or at close().
    """

    STATEMENT = sql.SQL(
        "COPY faces (gallery_id, source, age, sex, race, embedding) FROM STDIN (FORMAT BINARY)"
    )

    def __init__(
        self, conn: psycopg.Connection, report: LoadReport, grew: Callable[[int], None]
    ) -> None:
        self.conn = conn
        self.report = report
        self.grew = grew
        self.queue: queue.Queue[_Batch | None] = queue.Queue(maxsize=3)
        self.queued = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="doppel-copy", daemon=True)
        self.thread.start()

    def send(self, first_line: int, last_line: int, count: int, data: bytes) -> None:
        """Queue a batch's COPY data: `count` rows from the dump's lines first to last."""
        self._raise()
        self.queued += count
        self.queue.put((first_line, last_line, count, data))

    def close(self) -> None:
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()
        self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def _run(self) -> None:
        while (batch := self.queue.get()) is not None:
            try:
                if self.error is None:
                    self._store(*batch)
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller
                self.error = exc
            finally:
                self.queued -= batch[2]

    def _store(self, first_line: int, last_line: int, count: int, data: bytes) -> None:
        self.grew(self.report.rows_loaded + count)
        try:
            with self.conn.cursor() as cur, cur.copy(self.STATEMENT) as copy:
                copy.write(data)
        except psycopg.DataError as exc:
            raise BadDump(
                f"the server refused rows between lines {first_line} and {last_line}: "
                f"{str(exc).splitlines()[0]}"
            ) from exc
        self.report.rows_loaded += count


def write_load_log(report: LoadReport, log_dir: Path) -> Path | None:
    """List every skipped row and ignored statement in log_dir; None when there is none."""
    if not (report.bad_rows or report.ignored):
        return None
    path = log_file(log_dir, "load-dump", report.gallery)
    write_text(
        path,
        "".join(f"bad row\tline {b.line}\t{b.reason}\n" for b in report.bad_rows)
        + "".join(f"ignored\tline {i.line}\t{i.what}\n" for i in report.ignored),
    )
    return path


def default_gallery_name(path: Path) -> str:
    """The dump's file name without .gz, .sql, .dump and the like."""
    name = path.name
    while True:
        stem, dot, suffix = name.rpartition(".")
        if dot and stem and suffix.lower() in ("gz", "sql", "dump", "pgdump", "backup", "tar"):
            name = stem
        else:
            return name


def load_dump(
    conn: psycopg.Connection,
    path: Path,
    gallery_name: str | None = None,
    *,
    strict: bool = False,
    build_index: bool = True,
    progress: Progress | None = None,
    index: str = "auto",
    index_progress: Callable[[BuildProgress], None] | None = None,
    log_dir: Path | None = None,
    waiting: Callable[[str], None] | None = None,
) -> LoadReport:
    """Load the faces of a pg_dump (plain, INSERTs, custom; gzip or not) into a gallery.

    Nothing of the dump runs. All rows go in one transaction, so the gallery appears or
    grows in one step and an interrupted load leaves no trace; faces already in the
    gallery (same image_key) are kept, so a second load of the same dump adds nothing.
    The index is built after the commit, as `index` says (doppel.index_builds.finish_index;
    build_index False is index "skip"): the gallery is searchable, exactly, meanwhile.
    One run writes a gallery at a time: a second load or ingest waits for it (told
    through `waiting`).
    """
    name = gallery_name or default_gallery_name(path)
    with Repository(conn).writing(name, waiting):
        return _load_dump(
            conn,
            path,
            name,
            strict=strict,
            build_index=build_index,
            progress=progress,
            index=index,
            index_progress=index_progress,
            log_dir=log_dir,
        )


def _load_dump(
    conn: psycopg.Connection,
    path: Path,
    name: str,
    *,
    strict: bool,
    build_index: bool,
    progress: Progress | None,
    index: str,
    index_progress: Callable[[BuildProgress], None] | None,
    log_dir: Path | None,
) -> LoadReport:
    """load_dump's work, while this run holds the gallery's writer lock."""
    start = time.perf_counter()
    repo = Repository(conn)
    existing = repo.find_gallery(name)
    conn.commit()
    if existing is not None and repo.face_count(existing):
        check_config(existing, CONFIG)  # an empty gallery takes the dump's configuration
    source = open_dump(path)
    report = LoadReport(gallery=name, path=path, format=source.format)

    def tick() -> None:
        if progress:
            progress(
                min(source.counter.count, source.total),
                source.total,
                report.rows_loaded + loader.pending,
            )

    try:
        with conn.transaction():
            # One load per gallery at a time; the faces it finds present stay right.
            conn.execute("SELECT pg_advisory_xact_lock(4242002, hashtext(%s))", (name,))
            gallery = repo.ensure_gallery(name, CONFIG, dimension=DIMENSION)
            _skip_gallery_checks(conn, gallery)
            known = _sources_present(conn, gallery)
            grew = _index_dropper(repo, gallery, len(known))
            loader = Batcher(Sender(conn, report, grew), report, strict, gallery, known)
            reader = Reader(loader, report)
            try:
                reader.run(source.lines, tick)
                loader.flush()
            finally:
                loader.close()
            report.bad_rows.sort(key=lambda bad: bad.line)
            if not reader.found_faces:
                raise _not_faces(path, report)
    finally:
        source.close()
    tick()
    report.seconds = time.perf_counter() - start
    outcome = finish_index(
        conn, gallery, index if build_index else "skip", progress=index_progress, log_dir=log_dir
    )
    report.index_built, report.index_seconds = outcome.built, outcome.seconds
    report.index_background, report.index_log = outcome.background, outcome.log
    return report


def _sources_present(conn: psycopg.Connection, gallery: Gallery) -> set[str]:
    """The image_keys the gallery holds already: their rows are not loaded again."""
    return {
        row[0]
        for row in conn.execute(
            "SELECT source FROM faces WHERE gallery_id = %s AND face_index = 0",
            (gallery.id,),
        )
    }


def _index_dropper(repo: Repository, gallery: Gallery, present: int) -> Callable[[int], None]:
    """What the sender calls as rows come in: the gallery's index dropped, once, when the
    load grows large for it (Repository.drop_index_before_bulk_load)."""
    indexed = repo.has_index(gallery)

    def grew(rows: int) -> None:
        nonlocal indexed
        if indexed and repo.drop_index_before_bulk_load(gallery, rows, present):
            indexed = False

    return grew


def _not_faces(path: Path, report: LoadReport) -> BadDump:
    """The error for a dump without a faces table's data, naming the tables it holds."""
    tables = sorted({i.what for i in report.ignored if "TABLE" in i.what.upper()})
    return BadDump(
        f"{path} holds no data for a faces table, so it is not the faces dump "
        "doppel expects" + (f" (it holds: {'; '.join(tables[:5])})" if tables else "")
    )


def _skip_gallery_checks(conn: psycopg.Connection, gallery: Gallery) -> bool:
    """Skip, until the commit, the check of each new face's gallery_id against galleries.

    PostgreSQL checks a foreign key row by row, a third of the server's time in a
    load. The gallery is locked here instead, once, as that check would lock it, so
    it cannot be deleted before the commit. Skipping needs the right to set
    session_replication_role (a superuser, as on the embedded server); without it
    the checks run as usual.
    """
    conn.execute("SELECT 1 FROM galleries WHERE id = %s FOR KEY SHARE", (gallery.id,))
    try:
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True
