"""Searching: upload a photo, see its faces, search with one of them (or all in one call).

Searches go through doppel.search.find, as the CLI's do; this module only keeps each
upload's detected faces and vectors, so that choosing another face, gallery or k
does not detect or embed again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, UploadFile
from fastapi.responses import Response

from doppel.composer import face_crop
from doppel.faces import imaging
from doppel.faces.query import Query as SearchQuery
from doppel.search import FindResult, QueryFaces, SearchRequest
from doppel.search import find as find_faces
from doppel.types import EmbeddedFace, Filters, Gallery
from doppel.web.pictures import jpeg, scaled
from doppel.web.schemas import (
    FindOut,
    SearchIn,
    SearchOut,
    StrangersOut,
    UploadOut,
    detected_out,
    errors,
    match_out,
)
from doppel.web.state import AppState, app_state
from doppel.web.uploads import Upload, keep, take_upload

router = APIRouter(tags=["search"])
State = Annotated[AppState, Depends(app_state)]
PhotoFile = Annotated[UploadFile, File(description="A photo: JPEG, PNG, WebP, BMP or GIF.")]


class _Checked(Exception):
    """find() has checked a request and asks for its faces (see run_search)."""

    def __init__(self, gallery: Gallery, detector: str) -> None:
        super().__init__(gallery.name)
        self.gallery, self.detector = gallery, detector


def run_search(
    state: AppState, upload: Upload, body: SearchIn, others: Sequence[Upload] = ()
) -> SearchOut:
    """One face of an upload searched in a gallery, through the library's find(); with
    other uploads of the same person (body.also), their largest faces join it in one
    template."""

    def face_of(one: Upload, index: int) -> QueryFaces:
        def chosen_face(gallery: Gallery, detector: str) -> list[EmbeddedFace]:
            face, vector = state.models.embedding(one, gallery, detector, index)
            return [EmbeddedFace(face.index, face.box, face.confidence, vector)]

        return chosen_face

    others = list(others) or [state.uploads.get(upload_id) for upload_id in body.also]
    photos = [upload, *others]

    chosen = [face_of(upload, body.face), *(face_of(one, 0) for one in others)]
    queries = [SearchQuery(one.name, one.photo, one.content_hash) for one in photos]
    request = _request(state, body)

    def search(faces: Sequence[QueryFaces]) -> FindResult:
        with state.db.connection() as conn:
            return find_faces(conn, queries, request, faces=list(faces))

    def stop(gallery: Gallery, detector: str) -> list[EmbeddedFace]:
        raise _Checked(gallery, detector)

    # find() checks the request before it asks for the faces. The first call stops
    # there, so a refused request costs no face work, and the face work (on a worker)
    # runs without holding the database connection that the other requests share; the
    # second call takes the vectors now kept with the uploads.
    started = time.perf_counter()
    try:
        search([stop] * len(chosen))
        raise AssertionError("find() searched without asking for the faces")
    except _Checked as checked:
        target, detector = checked.gallery, checked.detector
    try:
        for embed in chosen:
            embed(target, detector)
    finally:
        for one in photos:
            state.uploads.save(one)
    face_seconds = time.perf_counter() - started
    return _search_out(search(chosen), upload, face_seconds)


def _request(state: AppState, body: SearchIn) -> SearchRequest:
    """The library's search request for the API's body."""
    filters = Filters(
        body.sex.upper() if body.sex else None,
        tuple(race.strip().lower() for race in body.races),
        body.age_min,
        body.age_max,
    )
    return SearchRequest(
        body.gallery or state.gallery,
        k=body.k,
        filters=filters,
        exact=body.exact,
        default_detector=state.settings.detector,
        strangers=body.strangers,
        threshold=body.threshold,
        all_photos=body.all_photos,
        calibration_file=state.settings.calibration_file,
    )


def _search_out(result: FindResult, upload: Upload, face_seconds: float) -> SearchOut:
    """The API's answer to a search: the face, its matches and how long each part took."""
    (found,) = result.results
    return SearchOut(
        gallery=result.gallery.name,
        upload_id=upload.id,
        face=detected_out(found.face),
        matches=[match_out(m) for m in found.matches],
        photos=list(result.photos),
        threshold=result.calibration.threshold if result.calibration else None,
        note=None if result.calibration else result.not_calibrated,
        strangers=(
            StrangersOut(
                threshold=result.strangers.threshold,
                left_out_people=list(result.strangers.people),
                left_out=list(result.strangers.names),
                one_per_person=result.strangers.one_per_person,
            )
            if result.strangers
            else None
        ),
        seconds={
            "embed": round(face_seconds + result.embed_seconds, 4),
            "search": round(result.search_seconds, 4),
            "total": round(face_seconds + result.embed_seconds + result.search_seconds, 4),
        },
    )


@router.post(
    "/api/uploads",
    response_model=UploadOut,
    responses=errors(400, 404, 409, 413, 415, 422, 503),
)
def upload_photo(
    state: State,
    file: PhotoFile,
    gallery_name: Annotated[str | None, Form(alias="gallery")] = None,
) -> UploadOut:
    """Send a photo and get the faces found in it, largest first.

    The photo stays in memory for 15 minutes (or until 8 newer ones) so that
    /api/search can use it; it is written to disk only when the server was started
    with --keep-uploads.
    """
    data = file.file.read()
    upload = take_upload(data, Path(file.filename or "upload").name, state.settings.max_pixels)
    with state.db.repo() as repo:
        target = repo.pick_gallery(gallery_name or state.gallery)
    detector = state.models.detector_for(target)
    faces = state.models.detect(upload, target, detector)
    state.uploads.add(upload)
    height, width = upload.photo.pixels.shape[:2]
    return UploadOut(
        upload_id=upload.id,
        name=upload.name,
        width=round(width * upload.photo.scale),
        height=round(height * upload.photo.scale),
        detector=detector,
        faces=[detected_out(f) for f in faces],
        kept=keep(upload, state.keep_uploads),
    )


@router.get(
    "/api/uploads/{upload_id}/image",
    responses=errors(404, 422, jpeg=True),
    response_class=Response,
)
def upload_image(
    state: State,
    upload_id: str,
    face: Annotated[int | None, Query(ge=0)] = None,
    size: Annotated[int, Query(ge=32, le=2048)] = 1024,
) -> Response:
    """The uploaded photo (upright, as JPEG), or one of its faces with face=N."""
    upload = state.uploads.get(upload_id)
    photo = imaging.decode(
        upload.data, upload.name, max(size, 640), max_pixels=state.settings.max_pixels
    )
    if face is None:
        return Response(jpeg(scaled(photo, size)), media_type="image/jpeg")
    for faces in upload.detections.values():
        if face < len(faces):
            return Response(
                jpeg(face_crop(photo, faces[face].box, min(size, 512))), media_type="image/jpeg"
            )
    raise HTTPException(404, f"the upload has no face {face}")


@router.delete("/api/uploads/{upload_id}", status_code=204, responses=errors(404))
def forget_upload(state: State, upload_id: str) -> Response:
    """Forget an upload now rather than when it expires."""
    if not state.uploads.forget(upload_id):
        raise HTTPException(404, f"no upload {upload_id!r}")
    return Response(status_code=204)


@router.post("/api/search", response_model=SearchOut, responses=errors(400, 404, 409, 422, 503))
def search(state: State, body: SearchIn) -> SearchOut:
    """The k gallery faces most like one face of an uploaded photo."""
    return run_search(state, state.uploads.get(body.upload_id), body)


@router.post(
    "/api/find", response_model=FindOut, responses=errors(400, 404, 409, 413, 415, 422, 503)
)
def find(
    state: State,
    file: PhotoFile,
    gallery_name: Annotated[str | None, Form(alias="gallery")] = None,
    k: Annotated[int, Form(ge=1, le=100)] = 5,
    face: Annotated[int, Form(ge=0, description="Which face, largest first.")] = 0,
    sex: Annotated[str | None, Form(pattern="^[FMfm]$")] = None,
    race: Annotated[list[str] | None, Form()] = None,
    age_min: Annotated[int | None, Form(ge=0, le=150)] = None,
    age_max: Annotated[int | None, Form(ge=0, le=150)] = None,
    strangers: Annotated[
        bool, Form(description="Doppelganger mode: leave out the query person's own faces.")
    ] = False,
    threshold: Annotated[
        float | None,
        Form(
            ge=0.0,
            le=1.0,
            description="Same-person threshold for this search (default: the calibrated one).",
        ),
    ] = None,
    all_photos: Annotated[
        bool, Form(description="Strangers mode: every face of each stranger, not one each.")
    ] = False,
    more: Annotated[
        list[UploadFile] | None,
        File(description="More photos of the same person: one query (a template) with file."),
    ] = None,
) -> FindOut:
    """Upload and search in one call; the photos are not held after the answer."""
    upload = take_upload(
        file.file.read(), Path(file.filename or "upload").name, state.settings.max_pixels
    )
    others = [
        take_upload(
            extra.file.read(), Path(extra.filename or "upload").name, state.settings.max_pixels
        )
        for extra in (more or [])[:9]
    ]
    body = SearchIn(
        upload_id=upload.id,
        face=face,
        gallery=gallery_name,
        k=k,
        sex=sex,
        races=race or [],
        age_min=age_min,
        age_max=age_max,
        strangers=strangers,
        threshold=threshold,
        all_photos=all_photos,
    )
    result = run_search(state, upload, body, others)
    faces = next(iter(upload.detections.values()))
    return FindOut(
        **result.model_dump(exclude={"upload_id"}),
        upload_id=None,
        faces=[detected_out(f) for f in faces],
    )
