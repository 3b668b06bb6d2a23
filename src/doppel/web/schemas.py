"""The JSON API's shapes, and the conversions from doppel's value types to them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from doppel.serialize import match_fields
from doppel.types import AttributeValues, Box, DetectedFace, EmbeddedFace, Match


class ErrorOut(BaseModel):
    """Every refusal: one sentence saying what happened and what to do."""

    detail: str


# What each error status means in this API (the OpenAPI document lists them per route).
ERROR_MEANINGS = {
    400: "Arguments that cannot work together, or a gallery name doppel cannot keep.",
    404: "No such gallery, face, upload or report.",
    409: "The gallery is empty, being written, or holds faces embedded another way.",
    413: "The upload, or the image's pixels, exceed the server's limits.",
    415: "Not an image of a format doppel reads (judged by its content).",
    422: "No face, a photo too small to hold one, or invalid fields.",
    503: (
        "The database is unreachable, a model's weights are missing, or the server is "
        "busy (then with Retry-After)."
    ),
}


def errors(*codes: int, jpeg: bool = False) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route that can answer these error statuses (and, with
    jpeg, whose answer is a JPEG picture)."""
    responses: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorOut, "description": ERROR_MEANINGS[code]}
        for code in codes
        if code != 422
    }
    if 422 in codes:
        # FastAPI's own schema of invalid fields stays; doppel's 422s share the status.
        responses[422] = {"description": ERROR_MEANINGS[422]}
    if jpeg:
        responses[200] = {"content": {"image/jpeg": {}}}
    return responses


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
    probability: float | None = Field(
        None,
        description="Calibrated probability that the model takes the two faces for one "
        "person (balanced pairs); null where the gallery's pipeline has no calibration.",
    )
    strength: str | None = Field(None, description='In words, e.g. "23% — could pass for you".')
    probably_query_person: bool | None = Field(
        None, description="At or above the same-person threshold (outside strangers mode)."
    )
    face_id: int
    source: str
    name: str
    age: int | None
    sex: str | None
    race: str | None
    person_id: int | None = Field(None, description="The person `doppel people` put it in.")
    person: str | None = Field(None, description="That person's name, else 'person N'.")
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
    also: list[str] = Field(
        default_factory=list,
        max_length=9,
        description="Further uploads of the same person: with upload_id's face, their "
        "largest faces make one query (a template), checked to be one person.",
    )
    threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Same-person threshold for this search (default: the calibrated one).",
    )
    all_photos: bool = Field(
        default=False, description="Strangers mode: every face of each stranger, not one each."
    )
    strangers: bool = Field(
        False,
        description="Doppelganger mode: leave out the query person's own faces (their person "
        "in the gallery, and any face at or above the model's same-person threshold).",
    )


class StrangersOut(BaseModel):
    threshold: float = Field(description="Faces at least this similar were left out.")
    left_out_people: list[int]
    left_out: list[str] = Field(default_factory=list, description="Their names, else 'person N'.")
    one_per_person: bool = True


class SearchOut(BaseModel):
    gallery: str
    upload_id: str | None
    face: DetectedOut
    matches: list[MatchOut]
    photos: list[str] = Field(
        default_factory=list, description="The photos that made the query (several: a template)."
    )
    threshold: float | None = Field(
        None, description="The same-person threshold the strengths are measured against."
    )
    note: str | None = Field(None, description="E.g. that the pipeline has no calibration.")
    strangers: StrangersOut | None = Field(None, description="Set when doppelganger mode was on.")
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
    available: bool = Field(True, description="False when its model could not be loaded.")
    unavailable: str | None = Field(None, description="Why it cannot be searched now.")


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


class QueueOut(BaseModel):
    workers: int = Field(description="Face worker processes (0: the server's own).")
    running: int = Field(description="Searches a worker is doing now.")
    waiting: int = Field(description="Searches waiting for a worker.")
    max_wait_s: float = Field(description="Longer waits are refused: 503 with Retry-After.")
    search_s: float = Field(description="What a search has been costing a worker, averaged.")
    refused: int = Field(description="Searches refused as too many since the server started.")


class HealthOut(BaseModel):
    status: str
    galleries: int
    models_loaded: list[str]
    queue: QueueOut


def box_out(box: Box | None) -> BoxOut | None:
    return None if box is None else BoxOut(x=box.x, y=box.y, w=box.w, h=box.h)


def detected_out(face: DetectedFace | EmbeddedFace) -> DetectedOut:
    box = box_out(face.box)
    assert box is not None
    return DetectedOut(index=face.index, box=box, confidence=round(face.confidence, 4))


def match_out(match: Match) -> MatchOut:
    """doppel.serialize's match, with the URLs of its pictures."""
    face_id = match.face.id
    return MatchOut(
        **match_fields(match),
        image_url=f"/api/faces/{face_id}/image",
        crop_url=f"/api/faces/{face_id}/image?crop=true",
    )


def attributes_out(values: AttributeValues | None) -> AttributesOut | None:
    """The attribute values present in a gallery, to offer as filters."""
    if values is None:
        return None
    return AttributesOut(
        sexes=list(values.sexes),
        races=list(values.races),
        age_min=values.age_min,
        age_max=values.age_max,
    )


class PersonOut(BaseModel):
    id: int
    name: str | None
    faces: int
    hidden: bool
    cover_face_id: int | None = Field(
        description="Its picture: /api/faces/{cover_face_id}/image?crop=true."
    )


class PeopleOut(BaseModel):
    gallery: str
    people: list[PersonOut] = Field(description="Most faces first.")
    unassigned: int = Field(description="Faces in no person, the low-quality ones apart.")
    low_quality: int = Field(
        0,
        description="Faces in no person because they are below the quality floor (too small,"
        " blurred or turned): searchable, never grouped.",
    )
    floor: dict[str, float] = Field(
        default_factory=dict,
        description="The gallery's quality floor: each gated measure and its least value"
        " (`doppel people floor`).",
    )


class PersonFaceOut(BaseModel):
    face_id: int
    source: str


class PersonFacesOut(BaseModel):
    person: PersonOut
    faces: list[PersonFaceOut]


class SuggestionOut(BaseModel):
    first: PersonOut
    second: PersonOut
    similarity: float = Field(description="Cosine similarity of the two mean faces.")
    probability: float = Field(description="Calibrated probability that they are one person.")


class NameIn(BaseModel):
    name: str


class MergeIn(BaseModel):
    keep: int = Field(description="The person that stays (its id; its name, else the other's).")
    other: int


class ApartIn(BaseModel):
    first: int
    second: int


class SplitIn(BaseModel):
    faces: list[int] | None = Field(
        default=None, description="Faces that become a new person; none: group again."
    )
    stricter: float = Field(default=0.02, ge=0.0, le=0.5)


class HideIn(BaseModel):
    hidden: bool = True


class CoverIn(BaseModel):
    face_id: int


class MoveIn(BaseModel):
    faces: list[int] = Field(min_length=1)
    to: int | None = Field(default=None, description="A person id; none: a new person.")


class FacesIn(BaseModel):
    faces: list[int] = Field(min_length=1)


class RestoreIn(BaseModel):
    edit: int | None = Field(default=None, description="An edit id; none: the latest.")


class EditOut(BaseModel):
    edit: int
    kind: str = Field(description="merge, remove or move (a split is journalled as a move).")
    person_id: int | None = Field(
        description="merge: the person kept; remove, move: the person the faces left."
    )
    other_id: int | None = Field(
        description="merge: the person merged away; move: the person the faces went to."
    )
    faces: list[int]
    undone: bool = False
    created_at: datetime | None = None
