"""Writing faces: a batch of files with their faces in one transaction, by binary COPY."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from psycopg import sql

from doppel.store.rows import Rows
from doppel.types import Gallery, ImageRecord, NewFace

FACE_COLUMNS = (
    "gallery_id",
    "source",
    "content_hash",
    "face_index",
    "box_x",
    "box_y",
    "box_w",
    "box_h",
    "confidence",
    "age",
    "sex",
    "race",
    "embedding",
    "phash",
    "face_size",
    "sharpness",
    "frontalness",
)
FACE_TYPES = (
    "int4",
    "text",
    "text",
    "int4",
    "int4",
    "int4",
    "int4",
    "int4",
    "float4",
    "int4",
    "text",
    "text",
    "vector",  # text: sex is char(1)
    "int8",
    "int4",
    "float4",
    "float4",
)


class FaceWrites(Rows):
    """Files and faces written into a gallery (ingest, load-dump)."""

    def known_images(self, gallery: Gallery) -> dict[str, str]:
        """source -> content hash of every file this gallery has already looked at."""
        rows = self.conn.execute(
            "SELECT source, content_hash FROM images WHERE gallery_id = %s", (gallery.id,)
        )
        return dict(rows.fetchall())

    def write_batch(
        self, gallery: Gallery, images: Sequence[ImageRecord], faces: Sequence[NewFace]
    ) -> None:
        """Record files and their faces in one transaction, replacing earlier versions."""
        with self.conn.transaction():
            sources = [image.source for image in images]
            if sources:
                self.conn.execute(
                    "DELETE FROM faces WHERE gallery_id = %s AND source = ANY(%s)",
                    (gallery.id, sources),
                )
                self.conn.execute(
                    "DELETE FROM images WHERE gallery_id = %s AND source = ANY(%s)",
                    (gallery.id, sources),
                )
                with (
                    self.conn.cursor() as cur,
                    cur.copy(
                        "COPY images (gallery_id, source, content_hash, status, detail)"
                        " FROM STDIN WITH (FORMAT BINARY)"
                    ) as copy,
                ):
                    copy.set_types(["int4", "text", "text", "text", "text"])
                    for image in images:
                        copy.write_row(
                            (
                                gallery.id,
                                image.source,
                                image.content_hash,
                                image.status,
                                image.detail,
                            )
                        )
            self.copy_faces(gallery, faces, "faces")

    def copy_faces(self, gallery: Gallery, faces: Iterable[NewFace], table: str) -> int:
        """Binary COPY of face rows into `table` (faces or a staging table with its columns)."""
        count = 0
        statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT BINARY)").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, FACE_COLUMNS))
        )
        # The cursor is made after register_vector, so set_types knows "vector".
        with self.conn.cursor() as cur, cur.copy(statement) as copy:
            copy.set_types(list(FACE_TYPES))
            for face in faces:
                box, quality = face.box, face.quality
                copy.write_row(
                    (
                        gallery.id,
                        face.source,
                        face.content_hash,
                        face.face_index,
                        box.x if box else None,
                        box.y if box else None,
                        box.w if box else None,
                        box.h if box else None,
                        face.confidence,
                        face.age,
                        face.sex,
                        face.race,
                        np.asarray(face.embedding, dtype=np.float32),
                        face.phash,
                        quality.size if quality else None,
                        quality.sharpness if quality else None,
                        quality.frontalness if quality else None,
                    )
                )
                count += 1
        return count
