"""`doppel serve`: a web page and a small JSON API over the library, models loaded once.

The app keeps one database connection and one embedder per gallery configuration for
the life of the process, so only the first search pays for loading models. Uploaded
photos live in memory for a short while (to pick another face, gallery or k without
sending them again) and are written to disk only when `keep_uploads` names a folder.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import logging
import secrets
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import psycopg
from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from doppel import sources
from doppel.composer import face_crop
from doppel.config import Settings
from doppel.errors import (
    DatabaseUnavailable,
    DoppelError,
    EmptyGallery,
    GalleryMismatch,
    NoFaceFound,
    UnknownGallery,
    UnreadableImage,
    UsageError,
    WeightsMissing,
)
from doppel.faces import imaging
from doppel.faces.embed import embedder_for
from doppel.faces.imaging import Photo
from doppel.search import query_detector
from doppel.store.repository import Repository
from doppel.types import Box, DetectedFace, Filters, Gallery, Match

log = logging.getLogger("doppel.server")

DEFAULT_PORT = 8765
DEFAULT_MAX_UPLOAD = 20 * 2**20
# Formats a browser shows and Pillow decodes without outside help; checked on content.
UPLOAD_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
# Larger photos would take gigabytes to decode; no camera needs more.
MAX_PIXELS = 80_000_000
REPORT_SUFFIXES = {
    ".html": "text/html",
    ".json": "application/json",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
    ".css": "text/css",
    ".txt": "text/plain",
    ".csv": "text/csv",
}
UPLOAD_TTL_S = 15 * 60
UPLOADS_HELD = 8
# A refused upload's body is read and dropped up to this much, so that the client,
# still sending, gets the 413 instead of a reset connection.
DRAIN_LIMIT = 256 * 2**20

STATUS = {
    UnknownGallery: 404,
    EmptyGallery: 409,
    NoFaceFound: 422,
    UnreadableImage: 415,
    UsageError: 400,
    GalleryMismatch: 409,
    WeightsMissing: 503,
    DatabaseUnavailable: 503,
}


def is_loopback(host: str) -> bool:
    """Whether a listen address only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# API shapes -------------------------------------------------------------------------


class BoxOut(BaseModel):
    x: int
    y: int
    w: int
    h: int


class DetectedOut(BaseModel):
    index: int = Field(description="Faces are numbered largest first.")
    box: BoxOut = Field(description="In pixels of the photo as uploaded (EXIF-rotated).")
    confidence: float


class UploadOut(BaseModel):
    upload_id: str = Field(description="Refer to the photo with this in /api/search.")
    name: str
    width: int
    height: int
    detector: str
    faces: list[DetectedOut]
    kept: str | None = Field(None, description="Where the photo was saved, if it was.")


class MatchOut(BaseModel):
    rank: int
    similarity: float = Field(description="Cosine similarity, 1 - distance.")
    distance: float
    face_id: int
    source: str
    name: str
    age: int | None
    sex: str | None
    race: str | None
    box: BoxOut | None
    image_url: str
    crop_url: str


class SearchIn(BaseModel):
    upload_id: str
    face: int = Field(0, ge=0, description="Index of the face in the upload, largest first.")
    gallery: str | None = Field(None, description="Default: the server's, or the only one.")
    k: int = Field(5, ge=1, le=100)
    sex: str | None = Field(None, pattern="^[FMfm]$")
    races: list[str] = Field(default_factory=list)
    age_min: int | None = Field(None, ge=0, le=150)
    age_max: int | None = Field(None, ge=0, le=150)
    exact: bool = False


class SearchOut(BaseModel):
    gallery: str
    upload_id: str | None
    face: DetectedOut
    matches: list[MatchOut]
    seconds: dict[str, float] = Field(description="Time spent: embed, search, total.")


class FindOut(SearchOut):
    faces: list[DetectedOut]


class AttributesOut(BaseModel):
    sexes: list[str]
    races: list[str]
    age_min: int | None
    age_max: int | None


class GalleryOut(BaseModel):
    name: str
    model: str
    detector: str
    faces: int
    attributes: AttributesOut | None = Field(description="Null when no face has attributes.")


class GalleriesOut(BaseModel):
    default: str | None
    galleries: list[GalleryOut]


class ReportOut(BaseModel):
    id: str
    name: str
    folder: str
    modified: datetime
    title: str | None
    index_url: str | None
    json_url: str | None
    pictures: list[str]


class HealthOut(BaseModel):
    status: str
    galleries: int
    models_loaded: list[str]


# State ------------------------------------------------------------------------------


@dataclass
class Upload:
    """A photo sent by the user, held in memory with what was worked out from it."""

    id: str
    name: str
    data: bytes
    content_hash: str
    photo: Photo
    created: float = field(default_factory=time.monotonic)
    detections: dict[str, list[DetectedFace]] = field(default_factory=dict)
    embeddings: dict[tuple[str, str, int], np.ndarray] = field(default_factory=dict)


class UploadStore:
    """The last few uploads, each forgotten after a while; nothing touches the disk."""

    def __init__(self, size: int = UPLOADS_HELD, ttl: float = UPLOAD_TTL_S) -> None:
        self.size, self.ttl = size, ttl
        self._items: OrderedDict[str, Upload] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, upload: Upload) -> None:
        with self._lock:
            self._expire()
            self._items[upload.id] = upload
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def get(self, upload_id: str) -> Upload:
        with self._lock:
            self._expire()
            upload = self._items.get(upload_id)
            if upload is None:
                raise HTTPException(
                    404,
                    f"no upload {upload_id!r}: it expired or was never "
                    "made; send the photo again to /api/uploads",
                )
            self._items.move_to_end(upload_id)
            return upload

    def forget(self, upload_id: str) -> bool:
        with self._lock:
            return self._items.pop(upload_id, None) is not None

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, u in self._items.items() if now - u.created > self.ttl]:
            del self._items[key]


class Library:
    """The library behind the app: one connection and the embedders, used one at a time."""

    def __init__(
        self, settings: Settings, connect: Callable[[Settings], psycopg.Connection] | None = None
    ) -> None:
        from doppel.store.db import connect as db_connect

        self.settings = settings
        self._connect = connect or db_connect
        self._conn: psycopg.Connection | None = None
        self._db_lock = threading.Lock()
        # DeepFace and TensorFlow models are shared; one photo goes through at a time.
        self.model_lock = threading.Lock()
        self.loaded: set[str] = set()

    @contextmanager
    def repo(self) -> Iterator[Repository]:
        with self._db_lock:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = self._connect(self.settings)
            try:
                yield Repository(self._conn)
                self._conn.commit()
            except BaseException:
                if not self._conn.closed:
                    self._conn.rollback()
                raise

    def close(self) -> None:
        with self._db_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def warm_up(self) -> None:
        """Load the models of every gallery now, so the first search is as fast as the rest."""
        with self.repo() as repo:
            galleries = repo.galleries()
        blank = Photo(np.zeros((64, 64, 3), dtype=np.uint8), 1.0)
        for gallery in galleries:
            embedder = embedder_for(gallery.config)
            detector = query_detector(gallery, None, self.settings.detector)
            with self.model_lock:
                embedder.warm_up()
                embedder.detect(blank, detector)
            self.loaded.add(f"{gallery.config.model}/{detector}")

    def detect(self, upload: Upload, gallery: Gallery) -> tuple[str, list[DetectedFace]]:
        detector = query_detector(gallery, None, self.settings.detector)
        if detector not in upload.detections:
            with self.model_lock:
                faces = embedder_for(gallery.config).detect(upload.photo, detector)
            upload.detections[detector] = faces
            self.loaded.add(f"{gallery.config.model}/{detector}")
        return detector, upload.detections[detector]

    def embedding(
        self, upload: Upload, gallery: Gallery, index: int
    ) -> tuple[DetectedFace, np.ndarray]:
        detector, faces = self.detect(upload, gallery)
        if not faces:
            raise NoFaceFound(f"{upload.name}: no face found; try a clearer, front-facing photo")
        if index >= len(faces):
            raise UsageError(
                f"{upload.name} has {len(faces)} face(s); choose face 0 to {len(faces) - 1}"
            )
        key = (gallery.config.key, detector, index)
        if key not in upload.embeddings:
            with self.model_lock:
                vector = embedder_for(gallery.config).embed_crops([faces[index].crop])[0]
            upload.embeddings[key] = vector
        return faces[index], upload.embeddings[key]


# Helpers ----------------------------------------------------------------------------


def read_image(data: bytes, name: str) -> Photo:
    """Decode an upload, accepting only the image formats browsers show (by content)."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise UnreadableImage(f"{name}: the file is empty; choose a photo")
    try:
        with warnings.catch_warnings():
            # Refused below with a plainer message than Pillow's warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as img:
                width, height = img.size
                img.verify()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise UnreadableImage(
            f"{name}: not an image (JPEG, PNG, WebP, BMP or GIF expected, "
            "judged by its content, not its name)"
        ) from None
    if width * height > MAX_PIXELS:
        raise UnreadableImage(
            f"{name}: {width}x{height} pixels is more than this server "
            f"decodes ({MAX_PIXELS // 1_000_000} megapixels); send a "
            "smaller photo"
        )
    return imaging.decode(data, name)


def jpeg(image: Any, quality: int = 88) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def scaled(photo: Photo, side: int) -> Any:
    from PIL import Image

    image = Image.fromarray(photo.pixels)
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return image


def box_out(box: Box | None) -> BoxOut | None:
    return None if box is None else BoxOut(x=box.x, y=box.y, w=box.w, h=box.h)


def detected_out(face: DetectedFace) -> DetectedOut:
    box = box_out(face.box)
    assert box is not None
    return DetectedOut(index=face.index, box=box, confidence=round(face.confidence, 4))


def match_out(match: Match) -> MatchOut:
    face = match.face
    return MatchOut(
        rank=match.rank,
        similarity=round(match.similarity, 6),
        distance=round(match.distance, 6),
        face_id=face.id,
        source=face.source,
        name=Path(face.source).name or face.source,
        age=face.age,
        sex=face.sex,
        race=face.race,
        box=box_out(face.box),
        image_url=f"/api/faces/{face.id}/image",
        crop_url=f"/api/faces/{face.id}/image?crop=true",
    )


def gallery_attributes(repo: Repository, gallery: Gallery) -> AttributesOut | None:
    """The attribute values present in a gallery, to offer as filters."""
    values = repo.attribute_values(gallery)
    if values is None:
        return None
    return AttributesOut(
        sexes=list(values.sexes),
        races=list(values.races),
        age_min=values.age_min,
        age_max=values.age_max,
    )


@dataclass(frozen=True)
class Report:
    """A `doppel resemble` output folder found on disk."""

    id: str
    folder: Path
    modified: float


def find_reports(reports_dir: Path | None, cwd: Path | None) -> list[Report]:
    """Report folders: those under reports_dir, and cwd's resemble-report* folders."""
    candidates: list[Path] = []
    if reports_dir is not None and reports_dir.is_dir():
        candidates.extend(p for p in reports_dir.iterdir() if p.is_dir())
    if cwd is not None and cwd.is_dir():
        candidates.extend(p for p in cwd.glob("resemble-report*") if p.is_dir())
    found: dict[str, Report] = {}
    for folder in candidates:
        folder = folder.resolve()
        if not ((folder / "index.html").is_file() or (folder / "report.json").is_file()):
            continue
        rid = hashlib.blake2b(str(folder).encode(), digest_size=6).hexdigest()
        found[rid] = Report(rid, folder, folder.stat().st_mtime)
    return sorted(found.values(), key=lambda r: r.modified, reverse=True)


def report_title(folder: Path) -> str | None:
    import json

    try:
        data = json.loads((folder / "report.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    for key in ("title", "verdict", "query", "name"):
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def safe_child(folder: Path, relative: str) -> Path | None:
    """folder/relative when it is a file inside folder (after links), else None."""
    if "\x00" in relative:
        return None
    root = folder.resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        return None
    return target


class BodyLimit:
    """ASGI middleware: refuse request bodies over `limit` bytes with 413, early."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._drain(receive)
            await self._refuse(send)
            return
        seen = 0
        too_big = False
        started = False
        body_done = False

        async def counting_receive() -> dict:
            nonlocal seen, too_big, body_done
            message = await receive()
            if message["type"] == "http.request":
                body_done = not message.get("more_body", False)
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    too_big = True
                    raise _TooBig
            return message

        async def guarded_send(message: dict) -> None:
            nonlocal started
            # Once the body ran over, whatever the app answers is replaced by the 413.
            if not too_big:
                started = True
                await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not too_big or started:
                raise
        if too_big and not started:
            if not body_done:
                await self._drain(receive)
            await self._refuse(send)

    async def _drain(self, receive: Callable) -> None:
        drained = 0
        while drained < DRAIN_LIMIT:
            message = await receive()
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body"):
                return

    async def _refuse(self, send: Callable) -> None:
        mib = self.limit / 2**20
        body = JSONResponse(
            {"detail": f"upload too large: the limit is {mib:g} MiB; send a smaller photo"},
            status_code=413,
        ).body
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooBig(Exception):
    pass


# The app ----------------------------------------------------------------------------


def create_app(
    settings: Settings,
    *,
    gallery: str | None = None,
    reports_dir: Path | None = None,
    report_cwd: Path | None = None,
    max_upload: int = DEFAULT_MAX_UPLOAD,
    keep_uploads: Path | None = None,
    warm_up: bool = True,
) -> FastAPI:
    """The web app: the page at /, the API under /api, reports under /reports/{id}/."""
    library = Library(settings)
    uploads = UploadStore()
    image_cache: OrderedDict[tuple[int, bool], bytes] = OrderedDict()
    cache_lock = threading.Lock()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        if warm_up:
            library.warm_up()
        yield
        library.close()

    app = FastAPI(
        title="doppel",
        summary="Find look-alikes of a face in a gallery; browse resemblance reports.",
        version="1",
        lifespan=lifespan,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
        # A path that matches nothing is a 404, never a redirect somewhere else.
        redirect_slashes=False,
    )

    @app.exception_handler(DoppelError)
    async def doppel_error(_: Request, exc: DoppelError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=STATUS.get(type(exc), 400))

    @app.exception_handler(psycopg.OperationalError)
    async def database_error(_: Request, exc: psycopg.OperationalError) -> JSONResponse:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreachable"
        return JSONResponse({"detail": f"database unavailable: {reason}"}, status_code=503)

    def pick_gallery(repo: Repository, name: str | None) -> Gallery:
        name = name or gallery
        if name:
            return repo.gallery(name)
        found = repo.galleries()
        if len(found) == 1:
            return found[0]
        if not found:
            raise EmptyGallery("no gallery yet; make one with `doppel ingest DIR`")
        raise UsageError("several galleries; name one (" + ", ".join(g.name for g in found) + ")")

    def take_upload(data: bytes, name: str) -> Upload:
        photo = read_image(data, name)
        digest = imaging.content_hash(data)
        return Upload(secrets.token_urlsafe(12), name, data, digest, photo)

    def keep(upload: Upload) -> str | None:
        if keep_uploads is None:
            return None
        keep_uploads.mkdir(parents=True, exist_ok=True)
        name = Path(upload.name)
        suffix = name.suffix.lower() if imaging.is_image_name(name) else ".img"
        path = keep_uploads / f"{upload.content_hash}{suffix}"
        path.write_bytes(upload.data)
        return str(path)

    def run_search(upload: Upload, body: SearchIn) -> SearchOut:
        start = time.perf_counter()
        with library.repo() as repo:
            target = pick_gallery(repo, body.gallery)
        face, vector = library.embedding(upload, target, body.face)
        embedded = time.perf_counter()
        filters = Filters(
            body.sex.upper() if body.sex else None,
            tuple(body.races),
            body.age_min,
            body.age_max,
            (upload.content_hash,),
        )
        with library.repo() as repo:
            matches = repo.search(target, vector, body.k, filters, body.exact)
        done = time.perf_counter()
        return SearchOut(
            gallery=target.name,
            upload_id=upload.id,
            face=detected_out(face),
            matches=[match_out(m) for m in matches],
            seconds={
                "embed": round(embedded - start, 4),
                "search": round(done - embedded, 4),
                "total": round(done - start, 4),
            },
        )

    @app.get("/api/health", response_model=HealthOut, tags=["server"])
    def health() -> HealthOut:
        """Whether the server and its database answer."""
        with library.repo() as repo:
            count = len(repo.galleries())
        return HealthOut(status="ok", galleries=count, models_loaded=sorted(library.loaded))

    @app.get("/api/galleries", response_model=GalleriesOut, tags=["galleries"])
    def galleries() -> GalleriesOut:
        """The galleries to search, with the attribute values each can be filtered on."""
        with library.repo() as repo:
            items = [
                GalleryOut(
                    name=g.name,
                    model=g.config.model,
                    detector=g.config.detector,
                    faces=repo.face_count(g),
                    attributes=gallery_attributes(repo, g),
                )
                for g in repo.galleries()
            ]
        default = gallery or (items[0].name if len(items) == 1 else None)
        return GalleriesOut(default=default, galleries=items)

    @app.post("/api/uploads", response_model=UploadOut, tags=["search"])
    def upload_photo(
        file: Annotated[UploadFile, File(description="A photo: JPEG, PNG, WebP, BMP or GIF.")],
        gallery_name: Annotated[str | None, Form(alias="gallery")] = None,
    ) -> UploadOut:
        """Send a photo and get the faces found in it, largest first.

        The photo stays in memory for 15 minutes (or until 8 newer ones) so that
        /api/search can use it; it is written to disk only when the server was started
        with --keep-uploads.
        """
        data = file.file.read()
        upload = take_upload(data, Path(file.filename or "upload").name)
        with library.repo() as repo:
            target = pick_gallery(repo, gallery_name)
        detector, faces = library.detect(upload, target)
        uploads.add(upload)
        height, width = upload.photo.pixels.shape[:2]
        return UploadOut(
            upload_id=upload.id,
            name=upload.name,
            width=round(width * upload.photo.scale),
            height=round(height * upload.photo.scale),
            detector=detector,
            faces=[detected_out(f) for f in faces],
            kept=keep(upload),
        )

    @app.get(
        "/api/uploads/{upload_id}/image",
        tags=["search"],
        responses={200: {"content": {"image/jpeg": {}}}},
        response_class=Response,
    )
    def upload_image(
        upload_id: str,
        face: Annotated[int | None, Query(ge=0)] = None,
        size: Annotated[int, Query(ge=32, le=2048)] = 1024,
    ) -> Response:
        """The uploaded photo (upright, as JPEG), or one of its faces with face=N."""
        upload = uploads.get(upload_id)
        photo = imaging.decode(upload.data, upload.name, max_side=max(size, 640))
        if face is None:
            return Response(jpeg(scaled(photo, size)), media_type="image/jpeg")
        for faces in upload.detections.values():
            if face < len(faces):
                return Response(
                    jpeg(face_crop(photo, faces[face].box, min(size, 512))), media_type="image/jpeg"
                )
        raise HTTPException(404, f"the upload has no face {face}")

    @app.delete("/api/uploads/{upload_id}", status_code=204, tags=["search"])
    def forget_upload(upload_id: str) -> Response:
        """Forget an upload now rather than when it expires."""
        if not uploads.forget(upload_id):
            raise HTTPException(404, f"no upload {upload_id!r}")
        return Response(status_code=204)

    @app.post("/api/search", response_model=SearchOut, tags=["search"])
    def search(body: SearchIn) -> SearchOut:
        """The k gallery faces most like one face of an uploaded photo."""
        return run_search(uploads.get(body.upload_id), body)

    @app.post("/api/find", response_model=FindOut, tags=["search"])
    def find(
        file: Annotated[UploadFile, File(description="A photo: JPEG, PNG, WebP, BMP or GIF.")],
        gallery_name: Annotated[str | None, Form(alias="gallery")] = None,
        k: Annotated[int, Form(ge=1, le=100)] = 5,
        face: Annotated[int, Form(ge=0, description="Which face, largest first.")] = 0,
        sex: Annotated[str | None, Form(pattern="^[FMfm]$")] = None,
        race: Annotated[list[str] | None, Form()] = None,
        age_min: Annotated[int | None, Form(ge=0, le=150)] = None,
        age_max: Annotated[int | None, Form(ge=0, le=150)] = None,
    ) -> FindOut:
        """Upload and search in one call; the photo is not held after the answer."""
        upload = take_upload(file.file.read(), Path(file.filename or "upload").name)
        body = SearchIn(
            upload_id=upload.id,
            face=face,
            gallery=gallery_name,
            k=k,
            sex=sex,
            races=race or [],
            age_min=age_min,
            age_max=age_max,
        )
        result = run_search(upload, body)
        faces = next(iter(upload.detections.values()))
        return FindOut(
            **result.model_dump(exclude={"upload_id"}),
            upload_id=None,
            faces=[detected_out(f) for f in faces],
        )

    @app.get(
        "/api/faces/{face_id}/image",
        tags=["galleries"],
        responses={200: {"content": {"image/jpeg": {}}}},
        response_class=Response,
    )
    def face_image(face_id: int, crop: bool = False) -> Response:
        """A gallery face's photo (at most 1024 px), or a square crop around the face."""
        key = (face_id, crop)
        with cache_lock:
            cached = image_cache.get(key)
        if cached is None:
            with library.repo() as repo:
                found = repo.face(face_id)
            if found is None:
                raise HTTPException(404, f"no face with id {face_id}")
            photo = sources.load_source(found.source)
            if photo is None:
                raise HTTPException(404, f"face {face_id}'s photo is no longer at {found.source}")
            cached = jpeg(face_crop(photo, found.box, 320) if crop else scaled(photo, 1024))
            with cache_lock:
                image_cache[key] = cached
                while len(image_cache) > 256:
                    image_cache.popitem(last=False)
        return Response(
            cached, media_type="image/jpeg", headers={"cache-control": "private, max-age=3600"}
        )

    def reports_found() -> dict[str, Report]:
        return {r.id: r for r in find_reports(reports_dir, report_cwd)}

    @app.get("/api/reports", response_model=list[ReportOut], tags=["reports"])
    def reports() -> list[ReportOut]:
        """Resemblance reports written by `doppel resemble`, newest first."""
        out = []
        for r in reports_found().values():
            pictures = sorted(
                p.name
                for p in r.folder.iterdir()
                if p.suffix.lower() in (".png", ".jpg", ".jpeg") and p.is_file()
            )
            out.append(
                ReportOut(
                    id=r.id,
                    name=r.folder.name,
                    folder=str(r.folder),
                    modified=datetime.fromtimestamp(r.modified, tz=timezone.utc),
                    title=report_title(r.folder),
                    index_url=f"/reports/{r.id}/index.html"
                    if (r.folder / "index.html").is_file()
                    else None,
                    json_url=f"/reports/{r.id}/report.json"
                    if (r.folder / "report.json").is_file()
                    else None,
                    pictures=[f"/reports/{r.id}/{name}" for name in pictures],
                )
            )
        return out

    @app.get("/reports/{report_id}/{file_path:path}", tags=["reports"], response_class=FileResponse)
    def report_file(report_id: str, file_path: str) -> FileResponse:
        """A file inside a report folder; nothing outside the folder is served."""
        report = reports_found().get(report_id)
        if report is None:
            raise HTTPException(404, f"no report {report_id!r}")
        target = safe_child(report.folder, file_path or "index.html")
        if target is None:
            raise HTTPException(404, "no such file in this report")
        media = REPORT_SUFFIXES.get(target.suffix.lower())
        if media is None:
            raise HTTPException(403, f"{target.suffix or 'this'} files are not served")
        # A report is shown in a sandboxed frame; it may not script this origin.
        return FileResponse(
            target,
            media_type=media,
            headers={
                "content-security-policy": "sandbox allow-scripts allow-popups",
                "x-content-type-options": "nosniff",
            },
        )

    static = resources.files("doppel.web") / "static"

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(str(static / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    app.add_middleware(BodyLimit, limit=max_upload)
    return app


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Run the app with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)
