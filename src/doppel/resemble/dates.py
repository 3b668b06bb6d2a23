"""When the target's photos were taken, and their grouping by period."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from doppel.errors import UsageError
from doppel.resemble.trust import MethodResult


def capture_time(path: Path) -> datetime:
    """When a photo was taken: EXIF DateTimeOriginal, else the file's modification time."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            exif = img.getexif()
            text = exif.get_ifd(0x8769).get(36867) or exif.get(306)
        if text:
            return datetime.strptime(str(text).strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S")
    except (OSError, ValueError, SyntaxError):
        pass
    return datetime.fromtimestamp(path.stat().st_mtime)


PERIODS = ("auto", "year", "month", "day")


def period_of(moment: datetime, unit: str) -> str:
    if unit == "year":
        return f"{moment:%Y}"
    return f"{moment:%Y-%m}" if unit == "month" else f"{moment:%Y-%m-%d}"


def choose_period(moments: Sequence[datetime]) -> str:
    """Years for photos spread over years, months over months, else days."""
    if not moments:
        return "day"
    span = max(moments) - min(moments)
    if span.days >= 2 * 365:
        return "year"
    return "month" if span.days >= 60 else "day"


@dataclass(frozen=True)
class Period:
    """The target's photos from one period and each method's scores over them."""

    label: str
    photos: list[str]
    scores: dict[str, dict[str, float]]  # method -> person -> mean score

    def first(self, method: str) -> str:
        """The person the method scores highest in this period."""
        scores = self.scores[method]
        return max(scores, key=lambda person: scores[person])


def by_period(
    moments: Sequence[datetime],
    results: Sequence[MethodResult],
    names: Sequence[str],
    photos: Sequence[str],
    unit: str = "auto",
) -> list[Period]:
    """Group the target photos by capture period and average each method's scores within it."""
    if unit not in PERIODS:
        raise UsageError(f"unknown period {unit!r}; use one of {', '.join(PERIODS)}")
    unit = choose_period(moments) if unit == "auto" else unit
    groups: dict[str, list[int]] = {}
    for i in sorted(range(len(moments)), key=lambda i: moments[i]):
        groups.setdefault(period_of(moments[i], unit), []).append(i)
    return [
        Period(
            label,
            [photos[i] for i in idx],
            {
                r.name: {p: float(r.per_photo[idx, j].mean()) for j, p in enumerate(names)}
                for r in results
            },
        )
        for label, idx in groups.items()
    ]
