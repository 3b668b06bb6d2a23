"""An ingest on this machine: worker processes decode, the main process detects and
embeds, a writer thread stores each batch; the three overlap, and a run resumes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import psycopg

from doppel.config import DEFAULT_MAX_PIXELS
from doppel.faces import imaging
from doppel.faces.embed import Embedder
from doppel.ingest.batches import (
    BatchWriter,
    IngestJob,
    IngestReport,
    Prepared,
    Progress,
    examine,
    face_rows,
    finish_report,
    prepare,
    start_run,
    tally,
)
from doppel.ingest.workers import process_pool
from doppel.outputs import file_stem
from doppel.store.repository import Repository
from doppel.types import DetectedFace, ImageRecord


def _prepared_stream(
    paths: list[Path],
    known: dict[str, str],
    resize_to: int | None,
    workers: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Iterator[Prepared]:
    """Prepared files in order, decoded by `workers` processes with bounded look-ahead."""

    def args(path: Path) -> tuple[str, str | None, int | None, int]:
        return str(path), known.get(imaging.path_text(path)), resize_to, max_pixels

    if workers <= 0 or len(paths) < 16:
        for path in paths:
            yield prepare(*args(path))
        return
    with process_pool(workers) as pool:
        pending: list[Future[Prepared]] = []
        window = 8 * workers + 32
        todo = iter(paths)
        try:
            for path in todo:
                pending.append(pool.submit(prepare, *args(path)))
                if len(pending) >= window:
                    yield pending.pop(0).result()
            while pending:
                yield pending.pop(0).result()
        finally:
            for future in pending:
                future.cancel()


class CrashJournal:
    """The photo being examined, named in a small file before its detector runs.

    A detector's native code can abort the whole process (dlib's CNN has, on thin
    pictures). The photo then stays named here, and the next run records it as
    unreadable instead of crashing on it again. Naming a photo costs a few
    microseconds against a detection's tens of milliseconds. Best effort: a journal
    that cannot be written never stops an ingest.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._fd: int | None = None

    def leftover(self) -> tuple[str, str] | None:
        """(source, content hash) of the photo a crashed run was examining, if any."""
        if self.path is None:
            return None
        try:
            text = self.path.read_bytes().decode("utf-8", "surrogateescape")
        except OSError:
            return None
        source, _, digest = text.partition("\t")
        return (source, digest) if source and digest else None

    def open(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError:
            self._fd = None

    def begin(self, source: str, digest: str) -> None:
        if self._fd is not None:
            data = f"{source}\t{digest}".encode("utf-8", "surrogateescape")
            os.pwrite(self._fd, data, 0)
            os.ftruncate(self._fd, len(data))

    def end(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)

    def close(self) -> None:
        """Forget the journal: the run ended without a crash."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def journal_path(log_dir: Path | None, gallery: str) -> Path | None:
    return None if log_dir is None else log_dir / f".detecting-{file_stem(gallery)}"


def ingest(
    conn: psycopg.Connection,
    job: IngestJob,
    *,
    embedder: Embedder | None = None,
    progress: Progress | None = None,
    notice: Callable[[str], None] | None = None,
    waiting: Callable[[str], None] | None = None,
) -> IngestReport:
    """Embed every photo under job.root into the gallery; files already there are skipped.

    Each batch of files and its faces is committed together, so an interrupted run
    loses at most the batch in flight and the next run picks up where it stopped.
    One run writes a gallery at a time: a second waits (told through `waiting`) and
    then adds only what the first did not. Special files, link loops and folders that
    cannot be read are passed over and listed; nothing is opened that could block.
    embedder: a model loaded beforehand (else one is made from the job); notice hears
    what the run says before its first file (a model being loaded).
    """
    began = time.perf_counter()
    scan = imaging.photos_to_ingest(job.root)
    if embedder is None:
        embedder = Embedder(job.config, batch_size=job.batch_size, options=job.options)
    labeller = None
    if job.attributes:
        from doppel.faces.attributes import AttributePredictor

        labeller = AttributePredictor(options=job.options).predict_crops
    repo = Repository(conn)
    with repo.writing(job.gallery, waiting):
        journal = CrashJournal(journal_path(job.log_dir, job.gallery))
        run = _Run(job, embedder, labeller, journal, notice)
        report = run.go(repo, scan, progress)
    return finish_report(report, began, job.log_dir)


class _Run:
    """One run's model, crash journal and batch in the making, under the writer lock."""

    def __init__(
        self,
        job: IngestJob,
        embedder: Embedder,
        labeller: Callable[[list[np.ndarray]], list[tuple[int, str, str]]] | None,
        journal: CrashJournal,
        notice: Callable[[str], None] | None,
    ) -> None:
        self.job, self.embedder, self.labeller = job, embedder, labeller
        self.journal, self.notice = journal, notice
        self.skip_detection = embedder.config.detector == "skip"
        self.pending: list[tuple[Prepared, list[DetectedFace]]] = []  # (file, faces)
        self.crops = 0

    def load_model(self, new_files: int) -> None:
        """Load the model before any index is dropped: missing weights fail first.
        Loading takes seconds before the first file; with nothing new, none."""
        if new_files:
            if self.notice:
                self.notice(f"loading the {self.embedder.config.model} model…")
            self.embedder.warm_up()

    def go(
        self, repo: Repository, scan: imaging.FolderScan, progress: Progress | None
    ) -> IngestReport:
        """Every file of the scan through decoding, detection, embedding and the writer."""
        embedder, job = self.embedder, self.job
        start = start_run(
            repo,
            scan,
            job,
            embedder.config,
            embedder.dimension,
            crashed=self.journal.leftover(),
            before_drop=self.settle_threads,
        )
        report, paths, images = start.report, start.paths, start.images
        workers = self.workers()
        resize_to = embedder.input_size if self.skip_detection else None
        writer = BatchWriter(repo, start.gallery)
        writer.start()
        self.journal.open()
        done = 0
        try:
            for item in _prepared_stream(paths, start.known, resize_to, workers, job.max_pixels):
                done += 1
                if item.status == "ok":
                    self.journal.begin(item.source, item.content_hash)
                try:
                    record, faces = examine(item, embedder, job.all_faces)
                finally:
                    self.journal.end()  # only a crash that unwinds nothing leaves it named
                if record is None:
                    report.skipped += 1
                else:
                    images.append(record)
                    if tally(report, item, record, faces):
                        self.pending.append((item, faces))
                        self.crops += len(faces)
                if self.crops >= job.batch_size or len(images) >= 4 * job.batch_size:
                    self.flush(writer, report, images)
                    images = []
                if progress:
                    progress(done, len(paths), report)
            if images or self.pending:
                self.flush(writer, report, images)
        finally:
            writer.close()
        self.journal.close()
        return report

    def workers(self) -> int:
        return (os.cpu_count() or 1) if self.job.workers is None else self.job.workers

    def settle_threads(self, new_files: int, files: int) -> None:
        """The model's threads, then the model loaded (before any index is dropped)."""
        cores = os.cpu_count() or 1
        workers = self.workers()
        if self.embedder.threads is None and workers > 0 and files >= 16:
            # The decoding workers keep the cores busy; the model gets what they leave, at
            # least one thread. One ONNX Runtime thread spends a third less CPU per face
            # than two competing with the decoders (docs/benchmarks.md, section 1).
            self.embedder.threads = max(1, cores - workers)
        self.load_model(new_files)

    def flush(self, writer: BatchWriter, report: IngestReport, images: list[ImageRecord]) -> None:
        """Embed the pending faces and hand them, with the batch's files, to the writer."""
        crops = [f.crop for _, faces in self.pending for f in faces]
        vectors = self.embedder.embed_crops(crops)
        labels = self.labeller(crops) if self.labeller else None
        rows = face_rows(self.pending, vectors, self.skip_detection, labels)
        report.faces_added += len(rows)
        report.images_added += len(self.pending)
        writer.put(images, rows)
        self.pending, self.crops = [], 0
