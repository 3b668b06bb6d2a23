"""`doppel serve`: a web page and a small JSON API over the library, models loaded once.

The app's state (one database connection, the face models, uploads held in memory
for a short while) lives in web/state.py; the routes, one module per area, in
web/routes/; the API's shapes in web/schemas.py. Uploaded photos are written to disk
only when `keep_uploads` names a folder.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from doppel.config import DEFAULT_HOST, DEFAULT_MAX_UPLOAD_MIB, DEFAULT_PORT, Settings
from doppel.errors import (
    DatabaseUnavailable,
    DetectorFailed,
    DoppelError,
    EmptyGallery,
    GalleryBusy,
    GalleryMismatch,
    ImageTooLarge,
    NoFaceFound,
    Overloaded,
    PhotoTooSmall,
    UnknownGallery,
    UnknownPerson,
    UnreadableImage,
    UsageError,
    WeightsMissing,
)
from doppel.web.access import AccessLog, log_to_stderr
from doppel.web.facework import FaceWorkerLost
from doppel.web.limits import BodyLimit
from doppel.web.routes import galleries, people, reports, search
from doppel.web.state import AppState

log = logging.getLogger("doppel.server")


STATUS: dict[type[Exception], int] = {
    UnknownGallery: 404,
    EmptyGallery: 409,
    NoFaceFound: 422,
    PhotoTooSmall: 422,
    DetectorFailed: 422,
    UnknownPerson: 404,
    UnreadableImage: 415,
    ImageTooLarge: 413,
    GalleryBusy: 409,
    UsageError: 400,
    GalleryMismatch: 409,
    WeightsMissing: 503,
    DatabaseUnavailable: 503,
    FaceWorkerLost: 503,
}


def is_loopback(host: str) -> bool:
    """Whether a listen address only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def status_of(exc: Exception) -> int:
    """The HTTP status of a doppel error: its own kind's, else its nearest parent's."""
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 400


async def doppel_error(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=status_of(exc))


async def overloaded(_: Request, exc: Exception) -> JSONResponse:
    retry = exc.retry_after if isinstance(exc, Overloaded) else 1
    return JSONResponse({"detail": str(exc)}, status_code=503, headers={"retry-after": str(retry)})


async def database_error(_: Request, exc: Exception) -> JSONResponse:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreachable"
    return JSONResponse({"detail": f"database unavailable: {reason}"}, status_code=503)


def create_app(
    settings: Settings,
    *,
    gallery: str | None = None,
    reports_dir: Path | None = None,
    report_cwd: Path | None = None,
    max_upload: int = DEFAULT_MAX_UPLOAD_MIB * 2**20,
    keep_uploads: Path | None = None,
    warm_up: bool = True,
    workers: int | None = None,
) -> FastAPI:
    """The web app: the page at /, the API under /api, reports under /reports/{id}/.

    workers: face worker processes (0: the face work runs in this process, one photo
    at a time); None takes DOPPEL_WORKERS, else 0. `doppel serve` gives one per core.
    """
    state = AppState(settings, gallery, reports_dir, report_cwd, keep_uploads, workers)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.models.work.start()
        if warm_up:
            state.warm_up()
        yield
        state.models.work.close()
        state.db.close()

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
    app.state.doppel = state
    app.add_exception_handler(DoppelError, doppel_error)
    app.add_exception_handler(Overloaded, overloaded)
    app.add_exception_handler(psycopg.OperationalError, database_error)
    for router in (galleries.router, search.router, reports.router, people.router):
        app.include_router(router)

    static = resources.files("doppel.web") / "static"

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(str(static / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    app.add_middleware(BodyLimit, limit=max_upload)
    app.add_middleware(AccessLog)  # outermost: it sees the status of every answer
    return app


def serve(app: FastAPI, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Run the app with uvicorn until interrupted."""
    import uvicorn

    from doppel.web.facework import one_blas_thread

    one_blas_thread()  # the server's own numpy work is small; the cores are the workers'
    log_to_stderr()  # doppel's own access lines; uvicorn's, at "warning", are off
    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)
