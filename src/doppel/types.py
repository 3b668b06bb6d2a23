"""doppel's value types: plain frozen dataclasses shared by every layer.

Nothing heavy is imported here (no DeepFace, no database driver), so the store, the
dump loader, the composer and the web schemas can use these types without loading
the face pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class EmbeddingConfig:
    """Everything that decides what vector a face gets; galleries record it."""

    model: str
    detector: str
    align: bool = True
    normalization: str = "base"
    # How an aligned face is cut: "eyes" rotates the photo until the eyes are level and
    # cuts the detector's box (DeepFace's way, and every gallery made before this field);
    # "five-point" maps dlib's five landmarks onto a fixed 150-pixel chip, the alignment
    # the Dlib model was trained with.
    alignment: str = "eyes"
    # Embed the face and its mirror image and average the two vectors.
    flip: bool = False

    @property
    def key(self) -> str:
        """A stable text key, used to cache embeddings per configuration."""
        key = f"{self.model}|{self.detector}|{int(self.align)}|{self.normalization}"
        # Options added later join the key only when set, so older cached rows still match.
        if self.alignment != "eyes":
            key += f"|{self.alignment}"
        if self.flip:
            key += "|flip"
        return key


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        return self.w * self.h


@dataclass(frozen=True)
class FaceQuality:
    """How well a face can be told apart, measured where it is detected
    (`doppel.faces.quality`): None where a measure is unknown.

    size: the shorter side of the face's box in the pixels the face was cut from;
    sharpness: variance of the Laplacian of the aligned face in grey at 150 pixels;
    frontalness: 1 for a face looking at the camera, 0 for one turned until the
    nose stands in front of an eye (from the landmarks). The detector's confidence
    is the face's own `confidence`.
    """

    size: int | None = None
    sharpness: float | None = None
    frontalness: float | None = None


@dataclass(frozen=True)
class QualityFloor:
    """The least quality a face needs to be clustered into a person. A face below any
    floor stays searchable but in no person; an unknown measure (NULL) is never low."""

    size: int | None = None
    sharpness: float | None = None
    frontalness: float | None = None
    confidence: float | None = None


@dataclass(frozen=True)
class DetectedFace:
    """A face found in a photo: its box in file pixels and the aligned crop (BGR, 0..1)."""

    index: int
    box: Box
    confidence: float
    crop: np.ndarray
    quality: FaceQuality | None = None


@dataclass(frozen=True)
class EmbeddedFace:
    index: int
    box: Box
    confidence: float
    embedding: np.ndarray


# Long enough for any name a person types; a longer one is almost surely a mistake.
GALLERY_NAME_CHARS = 100


def check_gallery_name(name: str) -> str:
    """The gallery name as doppel keeps it, or a BadGalleryName saying why it cannot be.

    Every way a name comes in (the CLI, the web API, renames) passes through here: no
    control characters (a NUL cannot even be stored), not blank (the gallery would be
    invisible in lists), at most GALLERY_NAME_CHARS characters. Spaces at either end
    are dropped, so "family " and "family" are one gallery.
    """
    from doppel.errors import BadGalleryName

    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        raise BadGalleryName(
            "a gallery name cannot hold control characters (such as NUL, tab or newline)"
        )
    kept = name.strip()
    if not kept:
        raise BadGalleryName("a gallery name cannot be empty or blank")
    if len(kept) > GALLERY_NAME_CHARS:
        raise BadGalleryName(
            f"a gallery name has at most {GALLERY_NAME_CHARS} characters, not {len(kept)}"
        )
    return kept


def is_storable(text: str) -> bool:
    """Whether PostgreSQL's text can hold this string (it cannot hold NUL)."""
    return "\x00" not in text


@dataclass(frozen=True)
class Gallery:
    id: int
    name: str
    config: EmbeddingConfig
    dimension: int
    storage: str
    created_at: datetime

    @property
    def index_name(self) -> str:
        return f"faces_hnsw_g{self.id}"


@dataclass(frozen=True)
class BuildProgress:
    """One reading of an index build's progress (pg_stat_progress_create_index)."""

    phase: str
    done: int
    total: int

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


@dataclass(frozen=True)
class IndexState:
    """A gallery's index as the database catalog sees it."""

    name: str
    valid: bool  # false while a background (concurrent) build runs, or after one failed
    size_bytes: int
    rows: int  # the server's count from the build
    building: BuildProgress | None = None


@dataclass(frozen=True)
class GalleryStats:
    gallery: Gallery
    faces: int
    images: int
    no_face: int
    unreadable: int
    index: str | None
    index_bytes: int
    index_state: IndexState | None = None


@dataclass(frozen=True)
class NewFace:
    """A row to write: where the face came from, its box and its vector."""

    source: str
    content_hash: str | None
    face_index: int
    embedding: np.ndarray
    box: Box | None = None
    confidence: float | None = None
    age: int | None = None
    sex: str | None = None
    race: str | None = None
    phash: int | None = None  # the photo's difference hash (doppel.duplicates)
    quality: FaceQuality | None = None  # None: not measured (skip detector)


@dataclass(frozen=True)
class ImageRecord:
    """The outcome of looking at one file: ok, no_face or unreadable."""

    source: str
    content_hash: str
    status: str
    detail: str | None = None


@dataclass(frozen=True)
class Face:
    id: int
    source: str
    face_index: int
    box: Box | None
    age: int | None
    sex: str | None
    race: str | None
    person_id: int | None = None  # the person `doppel people` put it in
    person_name: str | None = None

    @property
    def person(self) -> str | None:
        """The person's name, else its number; None outside any person."""
        if self.person_id is None:
            return None
        return self.person_name or f"person {self.person_id}"


@dataclass(frozen=True)
class Strength:
    """How alike a match is, for a person: the calibrated probability that the model
    would take the two faces for the same person (on balanced pairs), and that in words."""

    probability: float
    same_person: bool  # at or above the same-person threshold: probably the query person
    words: str  # e.g. "23% — could pass for you"


@dataclass(frozen=True)
class Match:
    rank: int
    face: Face
    distance: float
    strength: Strength | None = None  # None where the pipeline has no calibration

    @property
    def similarity(self) -> float:
        return 1.0 - self.distance


# The attribute values faces can have: DeepFace's labels, and the original dump's.
SEXES = frozenset({"F", "M"})
RACES = frozenset({"asian", "white", "middle eastern", "indian", "latino hispanic", "black"})
MAX_AGE = 150


@dataclass(frozen=True)
class Filters:
    """Attribute filters for a search; empty means none.

    Filters no face could pass (an age range upside down, a race no model predicts)
    are refused here, where the CLI and the web API both build them, rather than
    answered with an empty result.
    """

    sex: str | None = None
    races: tuple[str, ...] = ()
    age_min: int | None = None
    age_max: int | None = None
    exclude_hashes: tuple[str, ...] = field(default_factory=tuple)
    # Doppelganger mode: leave out these people's faces, and any face at least this
    # similar to the query (the same-person threshold).
    exclude_people: tuple[int, ...] = ()
    below_similarity: float | None = None

    def __post_init__(self) -> None:
        from doppel.errors import UsageError

        if self.sex is not None and self.sex not in SEXES:
            raise UsageError(f"sex {self.sex[:20]!r} is neither F nor M")
        unknown = [race for race in self.races if race not in RACES]
        if unknown:
            raise UsageError(f"race {unknown[0][:30]!r} is not one of {', '.join(sorted(RACES))}")
        for bound in (self.age_min, self.age_max):
            if bound is not None and not 0 <= bound <= MAX_AGE:
                raise UsageError(f"age {bound} is outside 0 to {MAX_AGE}")
        if self.age_min is not None and self.age_max is not None and self.age_min > self.age_max:
            raise UsageError(
                f"age range {self.age_min}-{self.age_max} is empty: its lowest age is above "
                "its highest"
            )

    @property
    def on_attributes(self) -> bool:
        """Whether the filters ask for any attribute (sex, race or age)."""
        return bool(self.sex or self.races or self.age_min is not None or self.age_max is not None)


@dataclass(frozen=True)
class CachedEmbedding:
    """The largest face of a loose photo, by file content (embedding None: no face)."""

    content_hash: str
    face_count: int
    embedding: np.ndarray | None
    box: Box | None = None
    confidence: float | None = None


@dataclass(frozen=True)
class AttributeValues:
    """The attribute values a gallery holds, to offer as search filters."""

    sexes: tuple[str, ...]
    races: tuple[str, ...]
    age_min: int | None
    age_max: int | None


def describe(config: EmbeddingConfig) -> str:
    align = f"{config.alignment} alignment" if config.align else "not aligned"
    flip = ", mirror averaged" if config.flip else ""
    return f"{config.model} ({config.detector} detector, {align}{flip}, {config.normalization})"


@dataclass(frozen=True)
class QueryResult:
    """One face of the query photo and the gallery faces nearest to it."""

    face: EmbeddedFace
    matches: list[Match]
