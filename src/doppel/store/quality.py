"""The SQL of faces' quality: which faces are below a floor, and a gallery's distribution.

A measure that is NULL (faces from load-dump, detector skip, galleries made before
the measures were stored) is unknown and never counts as low.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields

import psycopg
from psycopg import sql

from doppel.store.people import PERSON_JOIN
from doppel.types import Gallery, QualityFloor

# (name shown, column): the four measures, in the order `gallery stats` shows them.
MEASURES = (
    ("size", "face_size"),
    ("confidence", "confidence"),
    ("sharpness", "sharpness"),
    ("frontalness", "frontalness"),
)
QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


@dataclass(frozen=True)
class Distribution:
    """One measure over a gallery's faces: how many have it, its quantiles (QUANTILES;
    empty when no face has it), its floor (None: not gated) and the faces below it."""

    name: str
    known: int
    quantiles: tuple[float, ...]
    floor: float | None
    below: int


@dataclass(frozen=True)
class QualityStats:
    gallery: Gallery
    faces: int
    measures: tuple[Distribution, ...]
    below_floor: int  # faces below any floor (searchable, in no person)
    below_unassigned: int  # of those, faces in no person now
    floor: QualityFloor = QualityFloor()


def _limits(floor: QualityFloor) -> list[tuple[str, float]]:
    values = {
        "face_size": floor.size,
        "confidence": floor.confidence,
        "sharpness": floor.sharpness,
        "frontalness": floor.frontalness,
    }
    return [(column, float(v)) for column, v in values.items() if v is not None]


def below_floor_sql(floor: QualityFloor, alias: str = "") -> sql.Composable:
    """A condition true for a face below any of the floor's measures (false if none set)."""
    prefix = f"{alias}." if alias else ""
    parts = [
        sql.SQL("coalesce({} < {}, false)").format(
            sql.SQL(prefix) + sql.Identifier(column), sql.Literal(value)
        )
        for column, value in _limits(floor)
    ]
    return sql.SQL("(") + sql.SQL(" OR ").join(parts) + sql.SQL(")") if parts else sql.SQL("false")


class QualityStore:
    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def below_floor(self, gallery: Gallery, floor: QualityFloor) -> list[int]:
        """Ids of the gallery's faces below the floor."""
        statement = sql.SQL("SELECT id FROM faces WHERE gallery_id = %s AND {} ORDER BY id").format(
            below_floor_sql(floor)
        )
        return [int(row[0]) for row in self.conn.execute(statement, (gallery.id,)).fetchall()]

    def stats(self, gallery: Gallery, floor: QualityFloor) -> QualityStats:
        """Each measure's quantiles and how many faces are below the floor.

        The measures are read (binary, four numbers a face) and their quantiles taken
        here, as percentile_cont would: an ordered-set aggregate over a distributed
        table is not something every Citus planner takes.
        """
        import numpy as np

        limits = dict(_limits(floor))
        statement = sql.SQL(
            "SELECT {}, {} AS low, fp.person_id IS NULL FROM faces f "
            + PERSON_JOIN
            + " WHERE f.gallery_id = %s"
        ).format(
            sql.SQL(", ").join(sql.Identifier(column) for _, column in MEASURES),
            below_floor_sql(floor),
        )
        with self.conn.cursor(binary=True) as cur:
            rows = cur.execute(statement, (gallery.id,)).fetchall()
        measures = []
        for k, (name, column) in enumerate(MEASURES):
            values = np.array([row[k] for row in rows if row[k] is not None], dtype=np.float64)
            limit = limits.get(column)
            measures.append(
                Distribution(
                    name,
                    len(values),
                    tuple(float(q) for q in np.quantile(values, QUANTILES)) if len(values) else (),
                    limit,
                    int((values < limit).sum()) if limit is not None else 0,
                )
            )
        low = [row for row in rows if row[len(MEASURES)]]
        unassigned = sum(1 for row in low if row[len(MEASURES) + 1])
        return QualityStats(gallery, len(rows), tuple(measures), len(low), unassigned, floor)

    def stored_floor(self, gallery: Gallery) -> QualityFloor | None:
        """The floor set for this gallery (`doppel people floor`), or None: the shipped one."""
        row = self.conn.execute(
            "SELECT quality_floor FROM galleries WHERE id = %s", (gallery.id,)
        ).fetchone()
        if row is None or row[0] is None:
            return None
        stored = row[0] if isinstance(row[0], dict) else json.loads(row[0])
        known = {f.name for f in fields(QualityFloor)}
        return QualityFloor(**{k: v for k, v in stored.items() if k in known})

    def store_floor(self, gallery: Gallery, floor: QualityFloor | None) -> None:
        """Set the gallery's floor; None goes back to the shipped one. A floor with no
        measure set is stored as such: every face may be grouped."""
        value = None if floor is None else json.dumps(floor_values(floor))
        self.conn.execute(
            "UPDATE galleries SET quality_floor = %s::jsonb WHERE id = %s", (value, gallery.id)
        )


def floor_values(floor: QualityFloor) -> dict[str, float]:
    """The gated measures of a floor and their least values, by their names."""
    return {
        f.name: getattr(floor, f.name) for f in fields(floor) if getattr(floor, f.name) is not None
    }
