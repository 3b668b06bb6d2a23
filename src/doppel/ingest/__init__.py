"""How photos come into a gallery: this machine's pipeline (ingest.py) or Ray workers
(cluster.py), with age, sex and race when asked. The index comes after, apart
(doppel.indexing.finish_index), so that a caller can show its progress on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg

from doppel.config import DEFAULT_BATCH_SIZE, DEFAULT_MAX_PIXELS, FaceOptions
from doppel.errors import UsageError
from doppel.faces.embed import Embedder
from doppel.ingest.local import IngestReport, Progress, ingest
from doppel.types import EmbeddingConfig


def ingest_photos(
    conn: psycopg.Connection,
    root: Path,
    gallery_name: str,
    config: EmbeddingConfig,
    *,
    all_faces: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    storage: str | None = None,
    attributes: bool = False,
    cluster: str | None = None,
    log_dir: Path | None = None,
    progress: Progress | None = None,
    notice: Callable[[str], None] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    options: FaceOptions | None = None,
) -> IngestReport:
    """`doppel ingest`'s files: on this machine, or on Ray workers when `cluster` is given
    (an address, or "" for a Ray started for the run). The index is left for
    doppel.indexing.finish_index, so that a caller can show its progress apart.
    options (Settings.face_options) go with the models to wherever they run. notice
    hears what the run says before its first file here (a model being loaded).
    """
    if cluster is not None:
        if attributes:
            raise UsageError("attribute prediction does not run on a cluster yet")
        from doppel.ingest.ray import ingest_on_cluster

        return ingest_on_cluster(
            conn,
            root,
            gallery_name,
            config,
            address=cluster or None,
            all_faces=all_faces,
            batch_size=batch_size,
            workers=workers,
            storage=storage,
            log_dir=log_dir,
            progress=progress,
            max_pixels=max_pixels,
            options=options,
        )
    labeller = None
    if attributes:
        from doppel.faces.attributes import AttributePredictor

        labeller = AttributePredictor(options=options).predict_crops
    return ingest(
        conn,
        root,
        gallery_name,
        Embedder(config, batch_size=batch_size, options=options),
        all_faces=all_faces,
        batch_size=batch_size,
        workers=workers,
        log_dir=log_dir,
        progress=progress,
        storage=storage,
        attributes=labeller,
        index="skip",
        max_pixels=max_pixels,
        notice=notice,
    )
