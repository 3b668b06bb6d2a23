"""Photos sent to `doppel serve`, held in the database a short while.

Every serve process on one database (several workers, several machines behind a load
balancer) finds an upload that any of them took, with the faces a detector found in
it and the vectors made of them, so a search never detects or embeds twice. Faces
travel as a NumPy archive (boxes, scores, crops), read back without pickles.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import psycopg

from doppel.types import Box, DetectedFace

# How an upload's vectors are told apart: (gallery configuration key, detector, face).
VectorKey = tuple[str, str, int]


@dataclass
class HeldUpload:
    """An upload as the database holds it."""

    id: str
    name: str
    data: bytes
    content_hash: str
    detections: dict[str, list[DetectedFace]] = field(default_factory=dict)
    embeddings: dict[VectorKey, np.ndarray] = field(default_factory=dict)


def faces_bytes(faces: list[DetectedFace]) -> bytes:
    """A detector's faces of one photo as an .npz archive (crops may differ in size)."""
    arrays: dict[str, np.ndarray] = {
        "boxes": np.array([[f.box.x, f.box.y, f.box.w, f.box.h] for f in faces], np.int64),
        "scores": np.array([f.confidence for f in faces], np.float64),
    }
    arrays.update({f"crop{i}": np.asarray(f.crop) for i, f in enumerate(faces)})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def faces_from_bytes(data: bytes) -> list[DetectedFace]:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        boxes, scores = archive["boxes"].reshape(-1, 4), archive["scores"]
        return [
            DetectedFace(i, Box(*(int(v) for v in boxes[i])), float(scores[i]), archive[f"crop{i}"])
            for i in range(len(scores))
        ]


class UploadRows:
    """The SQL of held uploads: the newest `size` of them, none older than `ttl_s`."""

    def __init__(self, conn: psycopg.Connection, size: int, ttl_s: float) -> None:
        self.conn, self.size, self.ttl_s = conn, size, ttl_s

    def _expire(self) -> None:
        self.conn.execute(
            "DELETE FROM uploads WHERE created_at < now() - make_interval(secs => %s)",
            (self.ttl_s,),
        )

    def add(self, upload: HeldUpload) -> None:
        """Hold an upload (and what was found in it); the oldest used go past `size`."""
        self._expire()
        self.conn.execute(
            # The clock, not the transaction's start: the order of use decides what goes.
            "INSERT INTO uploads (id, name, content_hash, data, created_at, used_at) "
            "VALUES (%s, %s, %s, %s, clock_timestamp(), clock_timestamp())",
            (upload.id, upload.name, upload.content_hash, upload.data),
        )
        for detector, faces in upload.detections.items():
            self.add_faces(upload.id, detector, faces)
        for key, vector in upload.embeddings.items():
            self.add_vector(upload.id, key, vector)
        self.conn.execute(
            "DELETE FROM uploads WHERE id IN (SELECT id FROM uploads "
            "ORDER BY used_at DESC, created_at DESC OFFSET %s)",
            (self.size,),
        )

    def add_faces(self, upload_id: str, detector: str, faces: list[DetectedFace]) -> None:
        self.conn.execute(
            "INSERT INTO upload_faces (upload_id, detector, faces) VALUES (%s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            (upload_id, detector, faces_bytes(faces)),
        )

    def add_vector(self, upload_id: str, key: VectorKey, vector: np.ndarray) -> None:
        self.conn.execute(
            "INSERT INTO upload_vectors (upload_id, config_key, detector, face_index, vector) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (upload_id, *key, np.asarray(vector, dtype="<f4").tobytes()),
        )

    def get(self, upload_id: str) -> HeldUpload | None:
        """The upload with its faces and vectors, marked as used now; None once expired."""
        self._expire()
        row = self.conn.execute(
            "UPDATE uploads SET used_at = clock_timestamp() WHERE id = %s "
            "RETURNING name, data, content_hash",
            (upload_id,),
        ).fetchone()
        if row is None:
            return None
        upload = HeldUpload(upload_id, row[0], bytes(row[1]), row[2])
        for detector, data in self.conn.execute(
            "SELECT detector, faces FROM upload_faces WHERE upload_id = %s", (upload_id,)
        ):
            upload.detections[detector] = faces_from_bytes(bytes(data))
        for key, detector, index, data in self.conn.execute(
            "SELECT config_key, detector, face_index, vector FROM upload_vectors "
            "WHERE upload_id = %s",
            (upload_id,),
        ):
            upload.embeddings[(key, detector, index)] = np.frombuffer(bytes(data), dtype="<f4")
        return upload

    def forget(self, upload_id: str) -> bool:
        deleted = self.conn.execute("DELETE FROM uploads WHERE id = %s", (upload_id,))
        return deleted.rowcount > 0
