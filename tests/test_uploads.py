"""Uploads held in the database for every serve process: limits, expiry, faces intact."""

from __future__ import annotations

import numpy as np
import psycopg

from doppel.store.uploads import HeldUpload, UploadRows
from doppel.types import Box, DetectedFace


def _upload(name: str) -> HeldUpload:
    return HeldUpload(name, f"{name}.jpg", name.encode() * 10, f"hash-{name}")


def test_faces_and_vectors_come_back_as_they_went_in(conn: psycopg.Connection) -> None:
    rng = np.random.default_rng(7)
    faces = [
        DetectedFace(0, Box(10, 20, 150, 160), 0.98, rng.random((150, 150, 3), np.float32)),
        DetectedFace(1, Box(300, 5, 40, 44), 0.5, rng.random((61, 47, 3), np.float32)),
    ]
    vector = rng.standard_normal(128).astype(np.float32)
    held = _upload("a")
    held.detections = {"dlib": faces, "mtcnn": []}
    held.embeddings = {("Dlib|dlib|five-point|flip", "dlib", 0): vector}
    rows = UploadRows(conn, size=8, ttl_s=900)
    rows.add(held)
    rows.add_vector("a", ("Dlib|dlib|five-point|flip", "dlib", 1), -vector)
    back = rows.get("a")
    assert back is not None and (back.name, back.data, back.content_hash) == (
        "a.jpg",
        b"a" * 10,
        "hash-a",
    )
    assert back.detections["mtcnn"] == []
    for got, sent in zip(back.detections["dlib"], faces, strict=True):
        assert (got.index, got.box, got.confidence) == (sent.index, sent.box, sent.confidence)
        assert got.crop.dtype == np.float32 and np.array_equal(got.crop, sent.crop)
    assert np.array_equal(back.embeddings[("Dlib|dlib|five-point|flip", "dlib", 0)], vector)
    assert np.array_equal(back.embeddings[("Dlib|dlib|five-point|flip", "dlib", 1)], -vector)
    assert rows.forget("a") and rows.get("a") is None and not rows.forget("a")


def test_the_least_recently_used_go_first_and_old_ones_expire(conn: psycopg.Connection) -> None:
    rows = UploadRows(conn, size=2, ttl_s=900)
    rows.add(_upload("a"))
    rows.add(_upload("b"))
    assert rows.get("a") is not None  # a is now the more recently used
    rows.add(_upload("c"))
    assert rows.get("b") is None
    assert rows.get("a") is not None and rows.get("c") is not None
    conn.commit()
    expiring = UploadRows(conn, size=2, ttl_s=0)
    assert expiring.get("a") is None and expiring.get("c") is None
    assert conn.execute("SELECT count(*) FROM upload_faces").fetchone() == (0,)
