"""What the web app holds for its lifetime: one connection, the face models, uploads.

The app keeps one database connection and its face worker processes (each with one
embedder per gallery configuration) for the life of the process, so only the first
search pays for loading models; uploads are held in the database, where every serve
process finds them. Routes reach this state through the `app_state` dependency.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import psycopg
from fastapi import Request

from doppel.config import DEFAULT_QUEUE_WAIT_S, FaceOptions, Settings
from doppel.errors import NoFaceFound, UnknownModel, UsageError, WeightsMissing
from doppel.search import query_detector
from doppel.store.repository import Repository
from doppel.types import DetectedFace, Gallery
from doppel.web.facework import FaceWork
from doppel.web.uploads import Upload, UploadStore

log = logging.getLogger("doppel.web")
T = TypeVar("T")

# Gallery pictures kept, as JPEG bytes, for the result pages' thumbnails.
PICTURES_HELD = 256


class Database:
    """The app's one database connection, used by one request at a time."""

    def __init__(
        self, settings: Settings, connect: Callable[[Settings], psycopg.Connection] | None = None
    ) -> None:
        from doppel.store.db import connect as db_connect

        self.settings = settings
        self._connect = connect or db_connect
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """The connection (opened again if it broke), committed or rolled back after."""
        with self._lock:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = self._connect(self.settings)
            try:
                yield self._conn
                self._conn.commit()
            except BaseException:
                if not self._conn.closed:
                    self._conn.rollback()
                raise

    @contextmanager
    def repo(self) -> Iterator[Repository]:
        with self.connection() as conn:
            yield Repository(conn)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class FaceModels:
    """The face work behind the app, on worker processes (`FaceWork`), done once per
    upload: its faces per detector and each chosen face's vector are kept with it."""

    def __init__(
        self,
        default_detector: str | None,
        options: FaceOptions,
        workers: int = 0,
        max_wait_s: float = DEFAULT_QUEUE_WAIT_S,
    ) -> None:
        self.default_detector = default_detector
        self.options = options  # the runtime and where missing weights come from
        self.work = FaceWork(options, workers, max_wait_s)
        self.loaded: set[str] = set()
        # gallery name -> why its model could not be loaded (missing weights, ...)
        self.unavailable: dict[str, str] = {}

    def detector_for(self, gallery: Gallery) -> str:
        return query_detector(gallery, None, self.default_detector)

    def warm_up(self, galleries: list[Gallery]) -> None:
        """Start the workers and load the models of every gallery now, so the first
        search is as fast as the rest.

        A gallery whose model cannot be loaded is marked unavailable, with the reason,
        and the others are served: one gallery must not keep the server from starting.
        """
        self.work.start()
        for gallery in galleries:
            detector = self.detector_for(gallery)
            try:
                self.work.warm(gallery.config, detector)
            except Exception as exc:  # any model that fails to load, for any reason
                self.unavailable[gallery.name] = str(exc) or type(exc).__name__
                log.warning("gallery %s is unavailable: %s", gallery.name, exc)
                continue
            self.unavailable.pop(gallery.name, None)
            self.loaded.add(f"{gallery.config.model}/{detector}")

    def _run(self, gallery: Gallery, fn: Callable[..., T], *args: Any) -> T:
        """Face work for a gallery; a model that cannot load marks it unavailable (its
        error says why: missing weights, 503), one that now can makes it available."""
        try:
            result = fn(*args)
        except (WeightsMissing, UnknownModel) as exc:  # not a photo's trouble, nor the queue's
            self.unavailable[gallery.name] = str(exc)
            raise
        self.unavailable.pop(gallery.name, None)
        return result

    def detect(self, upload: Upload, gallery: Gallery, detector: str) -> list[DetectedFace]:
        """The upload's faces by this detector, found once per upload."""
        if detector not in upload.detections:
            faces = self._run(gallery, self.work.detect, gallery.config, upload.photo, detector)
            upload.detections[detector] = faces
            self.loaded.add(f"{gallery.config.model}/{detector}")
        return upload.detections[detector]

    def embedding(
        self, upload: Upload, gallery: Gallery, detector: str, index: int
    ) -> tuple[DetectedFace, np.ndarray]:
        """One face of the upload and its vector for the gallery, embedded once per upload
        (a new photo is detected and embedded in one trip to a worker)."""
        key = (gallery.config.key, detector, index)
        if detector not in upload.detections:
            config = gallery.config
            work = self.work.detect_and_embed
            faces, vector = self._run(gallery, work, config, upload.photo, detector, index)
            upload.detections[detector] = faces
            self.loaded.add(f"{gallery.config.model}/{detector}")
            if vector is not None:
                upload.embeddings[key] = vector
        faces = upload.detections[detector]
        if not faces:
            raise NoFaceFound(f"{upload.name}: no face found; try a clearer, front-facing photo")
        if index >= len(faces):
            raise UsageError(
                f"{upload.name} has {len(faces)} face(s); choose face 0 to {len(faces) - 1}"
            )
        if key not in upload.embeddings:
            crop = faces[index].crop
            upload.embeddings[key] = self._run(gallery, self.work.embed, gallery.config, crop)
        return faces[index], upload.embeddings[key]


class PictureCache:
    """Gallery pictures as JPEG bytes, the most recently used few."""

    def __init__(self, size: int = PICTURES_HELD) -> None:
        self.size = size
        self._items: OrderedDict[tuple[int, bool], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[int, bool]) -> bytes | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: tuple[int, bool], data: bytes) -> None:
        with self._lock:
            self._items[key] = data
            while len(self._items) > self.size:
                self._items.popitem(last=False)


@dataclass
class AppState:
    """Everything the routes share; one per app, kept in app.state.doppel."""

    settings: Settings
    gallery: str | None = None  # searched when a request names none
    reports_dir: Path | None = None
    report_cwd: Path | None = None
    keep_uploads: Path | None = None
    workers: int | None = None  # face worker processes; None: DOPPEL_WORKERS, else 0
    db: Database = field(init=False)
    models: FaceModels = field(init=False)
    uploads: UploadStore = field(init=False)
    pictures: PictureCache = field(default_factory=PictureCache)

    def __post_init__(self) -> None:
        self.db = Database(self.settings)
        self.models = FaceModels(
            self.settings.detector,
            self.settings.face_options,
            (self.settings.workers or 0) if self.workers is None else self.workers,
            self.settings.queue_wait_s,
        )
        self.uploads = UploadStore(self.db.connection, max_pixels=self.settings.max_pixels)

    def warm_up(self) -> None:
        with self.db.repo() as repo:
            galleries = repo.galleries()
        self.models.warm_up(galleries)


def app_state(request: Request) -> AppState:
    """The dependency that hands a route the app's state."""
    state: AppState = request.app.state.doppel
    return state
