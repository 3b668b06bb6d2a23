"""What every part of the store shares: its connection, and a face read back from a row."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from doppel.types import Box, Face


class Rows:
    """The store's parts on a connection from doppel.store.db.connect (autocommit).

    Statements stand alone; writes that must land together run in conn.transaction().
    """

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn


def storable_id(number: int) -> bool:
    """Whether a row id can be this number: ids are positive and PostgreSQL's bigint ends
    at 2**63 - 1, so a larger one names no row (and would fail as a parameter)."""
    return 0 < number < 2**63


def box_or_none(x: int | None, y: int | None, w: int | None, h: int | None) -> Box | None:
    return None if x is None or y is None or w is None or h is None else Box(x, y, w, h)


def face_from_row(row: Sequence) -> Face:
    """A Face from (id, source, face_index, box x/y/w/h, age, sex, race, person id, name)."""
    return Face(
        row[0], row[1], row[2], box_or_none(*row[3:7]), row[7], row[8], row[9], row[10], row[11]
    )
