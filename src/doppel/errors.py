"""Expected failures, each with a message that says what happened and what to do next."""

from __future__ import annotations


class DoppelError(Exception):
    """Base of every failure doppel expects; the CLI prints it as one line."""

    exit_code = 1


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


class UnreadableImage(DoppelError):
    """A file could not be decoded as an image."""


class NoFaceFound(DoppelError):
    """No face was detected in a photo."""


class WeightsMissing(DoppelError):
    """A model's weights file is not installed and cannot be downloaded here."""


class UnknownModel(DoppelError):
    """A model or detector name doppel does not know."""


class BadDump(DoppelError):
    """A dump file cannot be read as a faces dump."""
