"""`Repository`: the store's parts on one connection, for whoever needs several of them.

Each concern has its module: the galleries table (store/gallery_rows.py), the index
policy (store/index_policy.py), statistics (store/statistics.py), writes
(store/writes.py) and searches (store/nearest.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from doppel.store.galleries import writing
from doppel.store.nearest import FaceSearch
from doppel.store.statistics import GalleryStatistics
from doppel.store.writes import FaceWrites


class Repository(FaceSearch, GalleryStatistics, FaceWrites):
    """Galleries, their faces, writes and searches, on a connection from
    doppel.store.db.connect (autocommit).

    Statements stand alone; writes that must land together run in conn.transaction().
    """

    def writing(self, name: str, waiting: Callable[[str], None] | None = None) -> Any:
        """The gallery's writer lock, as a context manager (see store.galleries.writing)."""
        return writing(self.conn, name, waiting)
