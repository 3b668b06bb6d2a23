"""Galleries: what there is to search, the faces' pictures, and the server's health."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import Response

from doppel import sources
from doppel.composer import face_crop
from doppel.web.pictures import jpeg, outlined, scaled
from doppel.web.schemas import (
    GalleriesOut,
    GalleryOut,
    HealthOut,
    QueueOut,
    attributes_out,
    errors,
)
from doppel.web.state import AppState, app_state

router = APIRouter()
State = Annotated[AppState, Depends(app_state)]


@router.get("/api/health", response_model=HealthOut, tags=["server"], responses=errors(503))
def health(state: State) -> HealthOut:
    """Whether the server and its database answer, and how long the queue is."""
    with state.db.repo() as repo:
        count = len(repo.galleries())
    queue = QueueOut(**dataclasses.asdict(state.models.work.state()))
    return HealthOut(
        status="ok", galleries=count, models_loaded=sorted(state.models.loaded), queue=queue
    )


@router.get(
    "/api/galleries", response_model=GalleriesOut, tags=["galleries"], responses=errors(503)
)
def galleries(state: State) -> GalleriesOut:
    """The galleries to search, with the attribute values each can be filtered on."""
    with state.db.repo() as repo:
        items = [
            GalleryOut(
                name=g.name,
                model=g.config.model,
                detector=g.config.detector,
                faces=repo.face_count(g),
                attributes=attributes_out(repo.attribute_values(g)),
                available=g.name not in state.models.unavailable,
                unavailable=state.models.unavailable.get(g.name),
            )
            for g in repo.galleries()
        ]
    default = state.gallery or (items[0].name if len(items) == 1 else None)
    return GalleriesOut(default=default, galleries=items)


@router.get(
    "/api/faces/{face_id}/image",
    tags=["galleries"],
    responses=errors(404, 422, 503, jpeg=True),
    response_class=Response,
)
def face_image(state: State, face_id: int, crop: bool = False, outline: bool = False) -> Response:
    """A gallery face's photo (at most 1024 px), or a square crop around the face;
    `outline` draws the face's box on the photo (the page's enlarged view)."""
    # The face is looked up every time (a key lookup): a deleted gallery's faces must
    # not live on in the picture cache.
    with state.db.repo() as repo:
        found = repo.face(face_id)
    if found is None:
        raise HTTPException(404, f"no face with id {face_id}")
    if outline and not crop and found.box is not None:
        # Drawn on each request, not cached: only a click on a match asks for it.
        photo = sources.load_source(found.source, state.settings)
        if photo is None:
            raise HTTPException(404, f"face {face_id}'s photo is no longer at {found.source}")
        return Response(
            jpeg(outlined(scaled(photo, 1024), photo, found.box)),
            media_type="image/jpeg",
            headers={"cache-control": "private, max-age=3600"},
        )
    key = (face_id, crop)
    cached = state.pictures.get(key)
    if cached is None:
        photo = sources.load_source(found.source, state.settings)
        if photo is None:
            raise HTTPException(404, f"face {face_id}'s photo is no longer at {found.source}")
        cached = jpeg(face_crop(photo, found.box, 320) if crop else scaled(photo, 1024))
        state.pictures.put(key, cached)
    return Response(
        cached, media_type="image/jpeg", headers={"cache-control": "private, max-age=3600"}
    )
