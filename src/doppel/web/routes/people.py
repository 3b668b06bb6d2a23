"""People of a gallery: list, one person's faces, and the edits `doppel people` makes.

Each route calls the same library function as the command (doppel.people.groups and
doppel.people.suggest); a refused edit (an unknown person, two faces of one photo in
one person) is the library's error, answered with its message.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from doppel.people import groups, suggest
from doppel.store.people_rows import Edit, Person
from doppel.web.schemas import (
    ApartIn,
    CoverIn,
    EditOut,
    FacesIn,
    HideIn,
    MergeIn,
    MoveIn,
    NameIn,
    PeopleOut,
    PersonFaceOut,
    PersonFacesOut,
    PersonOut,
    RestoreIn,
    SplitIn,
    SuggestionOut,
    errors,
)
from doppel.web.state import AppState, app_state

router = APIRouter(tags=["people"])
State = Annotated[AppState, Depends(app_state)]


def person_out(person: Person) -> PersonOut:
    return PersonOut(
        id=person.id,
        name=person.name,
        faces=person.faces,
        hidden=person.hidden,
        cover_face_id=person.cover.id if person.cover else None,
    )


def edit_out(edit: Edit) -> EditOut:
    return EditOut(
        edit=edit.id,
        kind=edit.kind,
        person_id=edit.person_id,
        other_id=edit.other_id,
        faces=list(edit.face_ids),
        undone=edit.undone,
        created_at=edit.created_at,
    )


@router.get("/api/people/{gallery}", response_model=PeopleOut, responses=errors(404, 503))
def people(state: State, gallery: str, hidden: bool = False) -> PeopleOut:
    """The gallery's people with their covers and counts (hidden ones on request)."""
    with state.db.connection() as conn:
        listing = groups.list_people(conn, gallery, hidden=hidden)
    return PeopleOut(
        gallery=listing.gallery.name,
        people=[person_out(p) for p in listing.people],
        unassigned=len(listing.unassigned),
        low_quality=len(listing.low_quality),
        floor={k: v for k, v in vars(listing.floor).items() if v is not None},
    )


@router.get(
    "/api/people/{gallery}/unassigned",
    response_model=list[PersonFaceOut],
    responses=errors(404, 503),
)
def unassigned(state: State, gallery: str, low_quality: bool = False) -> list[PersonFaceOut]:
    """The faces in no person (low_quality=true: those below the quality floor), oldest
    first; each can be moved into a person with /move."""
    with state.db.connection() as conn:
        listing = groups.list_people(conn, gallery)
    faces = listing.low_quality if low_quality else listing.unassigned
    return [PersonFaceOut(face_id=f.id, source=f.source) for f in faces]


@router.get(
    "/api/people/{gallery}/suggestions",
    response_model=list[SuggestionOut],
    responses=errors(404, 503),
)
def suggestions(state: State, gallery: str, k: int = 10) -> list[SuggestionOut]:
    """Pairs of people likeliest to be one person, likeliest first."""
    with state.db.connection() as conn:
        found = suggest.suggest(
            conn, gallery, max(1, min(k, 100)), calibration_file=state.settings.calibration_file
        )
    return [
        SuggestionOut(
            first=person_out(s.first),
            second=person_out(s.second),
            similarity=s.similarity,
            probability=s.probability,
        )
        for s in found
    ]


@router.get("/api/people/{gallery}/edits", response_model=list[EditOut], responses=errors(404, 503))
def edits(state: State, gallery: str) -> list[EditOut]:
    """The edits that restore can undo (merges, removals, moves, splits), latest first."""
    with state.db.connection() as conn:
        return [edit_out(e) for e in groups.edits(conn, gallery)]


@router.get(
    "/api/people/{gallery}/{person_id}", response_model=PersonFacesOut, responses=errors(404, 503)
)
def person(state: State, gallery: str, person_id: int) -> PersonFacesOut:
    """One person and all its faces (pictures: /api/faces/{face_id}/image?crop=true)."""
    with state.db.connection() as conn:
        listing = groups.list_people(conn, gallery)
        found = groups.find_person(listing, conn, person_id)
    faces = listing.members.get(person_id, [])
    return PersonFacesOut(
        person=person_out(found),
        faces=[PersonFaceOut(face_id=f.id, source=f.source) for f in faces],
    )


@router.post(
    "/api/people/{gallery}/{person_id}/name",
    response_model=PersonOut,
    responses=errors(400, 404, 503),
)
def rename(state: State, gallery: str, person_id: int, body: NameIn) -> PersonOut:
    with state.db.connection() as conn:
        return person_out(groups.name_person(conn, gallery, person_id, body.name))


@router.post(
    "/api/people/{gallery}/merge", response_model=PersonOut, responses=errors(400, 404, 503)
)
def merge(state: State, gallery: str, body: MergeIn) -> PersonOut:
    """Merge other into keep; refused when both have a face in one photo."""
    with state.db.connection() as conn:
        return person_out(groups.merge_people(conn, gallery, body.keep, body.other))


@router.post("/api/people/{gallery}/apart", status_code=204, responses=errors(400, 404, 503))
def apart(state: State, gallery: str, body: ApartIn) -> None:
    """Two people are different: never suggested again, never joined by a recluster."""
    with state.db.connection() as conn:
        suggest.keep_apart(conn, gallery, body.first, body.second)


@router.post(
    "/api/people/{gallery}/{person_id}/split",
    response_model=list[PersonOut],
    responses=errors(400, 404, 503),
)
def split(state: State, gallery: str, person_id: int, body: SplitIn) -> list[PersonOut]:
    """The person, then the new people split off it."""
    with state.db.connection() as conn:
        parts = suggest.split(
            conn,
            gallery,
            person_id,
            [str(f) for f in body.faces] if body.faces else None,
            stricter=body.stricter,
            calibration_file=state.settings.calibration_file,
        )
    return [person_out(p) for p in parts]


@router.post(
    "/api/people/{gallery}/{person_id}/hide",
    response_model=PersonOut,
    responses=errors(404, 503),
)
def hide(state: State, gallery: str, person_id: int, body: HideIn) -> PersonOut:
    with state.db.connection() as conn:
        return person_out(groups.hide_person(conn, gallery, person_id, body.hidden))


@router.post(
    "/api/people/{gallery}/{person_id}/cover",
    response_model=PersonOut,
    responses=errors(400, 404, 503),
)
def cover(state: State, gallery: str, person_id: int, body: CoverIn) -> PersonOut:
    with state.db.connection() as conn:
        return person_out(groups.set_cover(conn, gallery, person_id, str(body.face_id)))


@router.post(
    "/api/people/{gallery}/move", response_model=PersonOut, responses=errors(400, 404, 503)
)
def move(state: State, gallery: str, body: MoveIn) -> PersonOut:
    """Faces into a person, or a new one; refused when it would hold two faces of a photo."""
    with state.db.connection() as conn:
        return person_out(groups.move_faces(conn, gallery, [str(f) for f in body.faces], body.to))


@router.post(
    "/api/people/{gallery}/{person_id}/remove",
    response_model=PersonOut | None,
    responses=errors(400, 404, 503),
)
def remove(state: State, gallery: str, person_id: int, body: FacesIn) -> PersonOut | None:
    """Take faces out of a person (the person, or nothing when it has no face left)."""
    with state.db.connection() as conn:
        groups.take_out(conn, gallery, person_id, [str(f) for f in body.faces])
        left = groups.list_people(conn, gallery)
        return next((person_out(p) for p in left.people if p.id == person_id), None)


@router.post(
    "/api/people/{gallery}/restore", response_model=EditOut, responses=errors(400, 404, 503)
)
def restore(state: State, gallery: str, body: RestoreIn) -> EditOut:
    """Undo a merge, a removal, a move or a split (the latest, or the edit named)."""
    with state.db.connection() as conn:
        return edit_out(groups.restore(conn, gallery, body.edit))
