"""Expected failures, each with a message that says what happened and what to do next.

A message speaks of doppel's own things (galleries, photos, models), never of one
front end's: what to type next is a Remedy, which the CLI words as flags and commands
(doppel.cli.common.HINTS) and the web API leaves out.
"""

from __future__ import annotations

from enum import Enum


class Remedy(str, Enum):
    """What the user can do next, for a front end to put in its own words."""

    OTHER_DETECTOR = "other-detector"
    MAKE_GALLERY = "make-gallery"
    CHOOSE_GALLERY = "choose-gallery"
    OTHER_GALLERY = "other-gallery"
    SKIP_BAD_ROWS = "skip-bad-rows"
    NO_SAME_ATTRIBUTES = "no-same-attributes"
    LIST_MODELS = "list-models"
    INSTALL_WEIGHTS = "install-weights"
    CALIBRATE = "calibrate"
    LIST_FACES = "list-faces"
    PREDICT_ATTRIBUTES = "predict-attributes"
    START_CLUSTER = "start-cluster"
    NEW_CLUSTER = "new-cluster"
    DISTRIBUTE = "distribute"
    LIST_PEOPLE = "list-people"
    MAKE_PEOPLE = "make-people"


class DoppelError(Exception):
    """Base of every failure doppel expects; the CLI prints it as one line.

    `remedy` names what to do next and `context` fills its wording (a model's name);
    str() of the error is the message alone.
    """

    exit_code = 1

    def __init__(self, message: str, *, remedy: Remedy | None = None, **context: str) -> None:
        super().__init__(message)
        self.remedy = remedy
        self.context = context


class UsageError(DoppelError):
    """The command was called with arguments that cannot work together."""

    exit_code = 2


class DatabaseUnavailable(DoppelError):
    """The database cannot be reached or lacks what doppel needs."""


class UnknownGallery(DoppelError):
    """The named gallery does not exist."""


class EmptyGallery(DoppelError):
    """The gallery exists but holds no faces."""


class GalleryMismatch(DoppelError):
    """A gallery was asked to take faces embedded another way than it was made with."""


class GalleryBusy(DoppelError):
    """Another run is writing the gallery, and this change cannot wait for it."""


class UnreadableImage(DoppelError):
    """A file could not be decoded as an image."""


class ImageTooLarge(UnreadableImage):
    """An image has more pixels than doppel decodes (the pixel limit)."""


class NoFaceFound(DoppelError):
    """No face was detected in a photo."""


class PhotoTooSmall(DoppelError):
    """A photo too small or too thin to hold a face that any detector can find."""


class DetectorFailed(DoppelError):
    """A face detector's native code failed on one photo; the photo is passed over."""


class OutputUnwritable(DoppelError):
    """A file doppel was asked to write (a picture, a report, a log) cannot be written."""


class BadGalleryName(UsageError):
    """A gallery name doppel cannot keep: empty, blank, too long or with control
    characters."""


class WeightsMissing(DoppelError):
    """A model's weights file is not installed and cannot be downloaded here."""


class WeightsUnreadable(WeightsMissing):
    """A model's weights file is there but does not load: cut short, or another file."""


class UnknownModel(DoppelError):
    """A model or detector name doppel does not know."""


class BadDump(DoppelError):
    """A dump file cannot be read as a faces dump."""


class NotCalibrated(DoppelError):
    """No same-person threshold has been measured for a model."""


class UnknownPerson(DoppelError):
    """A person id that the gallery does not have."""


class SamePhoto(DoppelError):
    """A change to people would put two faces of one photo into one person."""


class Overloaded(DoppelError):
    """More searches wait than the server's workers can take in the time allowed."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[type, tuple[str, int]]:
        return (Overloaded, (str(self), self.retry_after))
