"""When a gallery's index is built or dropped: after a load, before a bulk load.

The rules of the index itself (its design by gallery size, building and watching it)
and their SQL live in store/indexes.py; this is the gallery's side of them.
"""

from __future__ import annotations

from collections.abc import Callable

from doppel.store import indexes
from doppel.store.gallery_rows import GalleryRows
from doppel.types import BuildProgress, Gallery, IndexState

# A load adding more rows than this (or than a quarter of the gallery, if more) drops
# the HNSW index and builds it again at the end: see drop_index_before_bulk_load.
BULK_LOAD_MIN_ROWS = 2000


def bulk_load_drops_index(adding: int, present: int) -> bool:
    """Whether adding rows to a gallery of `present` faces should drop its index first."""
    return adding > max(BULK_LOAD_MIN_ROWS, present // 4)


class IndexPolicy(GalleryRows):
    """A gallery's index: its state, built after a load, dropped before a bulk load."""

    def index_state(self, gallery: Gallery) -> IndexState | None:
        return indexes.index_state(self.conn, gallery)

    def has_index(self, gallery: Gallery) -> bool:
        """Whether the gallery has a valid index that searches can use."""
        state = self.index_state(gallery)
        return state is not None and state.valid

    def ensure_index(
        self,
        gallery: Gallery,
        m: int | None = None,
        ef_construction: int | None = None,
        *,
        concurrently: bool = False,
        replace: bool = False,
        progress: Callable[[BuildProgress], None] | None = None,
    ) -> bool:
        """Build the gallery's index, designed for its size, if missing (or anew, with
        replace: see store.indexes.build_index); True if built.

        Building once after a bulk load is much faster than growing it row by row,
        so loaders call this at the end rather than creating the index up front.
        """
        return indexes.build_index(
            self.conn,
            gallery,
            self.face_count(gallery),
            m=m,
            ef_construction=ef_construction,
            concurrently=concurrently,
            replace=replace,
            progress=progress,
        )

    def drop_index(self, gallery: Gallery) -> None:
        indexes.drop_index(self.conn, gallery)

    def drop_index_before_bulk_load(self, gallery: Gallery, adding: int, present: int) -> bool:
        """Drop the gallery's index when a load adds enough rows that rebuilding it is cheaper.

        Growing an HNSW graph row by row is several times slower than building it once
        after the load (benchmarks/bench_search.py), so both ingest and load-dump drop
        the index past this threshold and build it again at the end. True if dropped.
        """
        if not bulk_load_drops_index(adding, present):
            return False
        self.drop_index(gallery)
        return True
