"""`doppel calibrate`: measure a pipeline's same-person threshold on the user's own photos.

A folder with one subfolder of photos per person; the largest face of each photo is
embedded the way a gallery of this pipeline embeds it, and the labelled pairs give
the threshold, the probability fit and the clustering cut points (calibration.measure),
saved to the user's calibration file beside the shipped ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from doppel.config import DEFAULT_MAX_PIXELS, FaceOptions
from doppel.errors import UnreadableImage, UsageError
from doppel.faces import imaging
from doppel.people import calibration
from doppel.people.calibration import Calibration
from doppel.types import EmbeddingConfig

MIN_PEOPLE = 2
MIN_PHOTOS = 2  # of at least one person, or there is no same-person pair


@dataclass(frozen=True)
class CalibrationReport:
    calibration: Calibration
    people: int
    faces: int
    same_pairs: int
    different_pairs: int
    skipped: tuple[str, ...]  # photos without a face, or unreadable
    saved_to: Path


def labelled_photos(folder: Path) -> list[tuple[Path, str]]:
    """(photo, person) for each image file in each subfolder of folder."""
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder of people (one subfolder of photos each)")
    found = []
    for person in sorted(p for p in folder.iterdir() if p.is_dir()):
        for photo in sorted(person.iterdir()):
            if photo.is_file() and photo.suffix.lower() in imaging.IMAGE_SUFFIXES:
                found.append((photo, person.name))
    people = {name for _, name in found}
    if len(people) < MIN_PEOPLE or len(found) <= len(people):
        raise UsageError(
            f"{folder} holds photos of {len(people)} people in {len(found)} files; calibrating "
            f"needs one subfolder per person, at least {MIN_PEOPLE} people, and two or more "
            "photos of at least one of them"
        )
    return found


def calibrate_folder(
    folder: Path,
    config: EmbeddingConfig,
    save_to: Path,
    options: FaceOptions | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: Callable[[int, int], None] | None = None,
) -> CalibrationReport:
    """Embed each labelled photo's largest face, measure, and save to save_to."""
    from doppel.faces.embed import embedder_for

    photos = labelled_photos(folder)
    embedder = embedder_for(config, options)
    vectors, labels, skipped = [], [], []
    for done, (path, person) in enumerate(photos, start=1):
        try:
            photo = imaging.decode(imaging.read_file(path), str(path), max_pixels=max_pixels)
        except UnreadableImage:
            faces = []
        else:
            faces = embedder.embed_photo(photo)  # largest first
        if faces:
            vectors.append(np.asarray(faces[0].embedding, dtype=np.float64))
            labels.append(person)
        else:
            skipped.append(str(path))
        if progress:
            progress(done, len(photos))
    if len(set(labels)) < MIN_PEOPLE or len(labels) <= len(set(labels)):
        raise UsageError(
            f"faces were found in only {len(labels)} photos of {len(set(labels))} people: too "
            "few to measure a threshold"
        )
    matrix = np.vstack(vectors)
    same, different = calibration.labelled_pairs(matrix, labels)
    cal = calibration.measure(
        matrix,
        labels,
        config.key,
        config.model,
        f"{folder.name}: {len(labels)} faces of {len(set(labels))} people (every pair), "
        "doppel calibrate",
    )
    calibration.save(cal, save_to)
    return CalibrationReport(
        cal, len(set(labels)), len(labels), len(same), len(different), tuple(skipped), save_to
    )
