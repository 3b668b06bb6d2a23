"""What a load-dump did: rows loaded, already present, skipped, and what it ignored."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class BadRow:
    """A row of the faces table that was skipped, with the dump line it came from."""

    line: int
    reason: str


@dataclass(frozen=True)
class Ignored:
    """Something in the dump other than the faces rows, which was not run."""

    line: int
    what: str


@dataclass
class LoadReport:
    """What `load_dump` did: rows loaded, already present, skipped, and what it ignored."""

    gallery: str
    path: Path
    format: str
    rows_read: int = 0
    rows_loaded: int = 0
    rows_present: int = 0
    bad_rows: list[BadRow] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)
    seconds: float = 0.0
    index_seconds: float = 0.0
    index_built: bool = False
    index_background: bool = False  # handed to a background process; exact search meanwhile
    index_log: Path | None = None

    @property
    def rate(self) -> float:
        """Rows read per second, excluding the index build."""
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0
