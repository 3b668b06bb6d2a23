"""Copies of one picture: copies of copies through their original, and the photo hash
computed afterwards for faces stored without one (`doppel gallery hash`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import psycopg
import pytest
from typer.testing import CliRunner

from doppel.cli import app
from doppel.config import Settings
from doppel.duplicates import dhash, hash_gallery, pictures
from doppel.faces import imaging
from doppel.store.repository import Repository
from doppel.types import EmbeddingConfig, NewFace

runner = CliRunner()


def test_copies_of_copies_are_one_picture_through_their_original() -> None:
    """A crop and a re-compressed copy further apart than the copy rule allows (23
    bits, about 0.994, as lfw-dev's made copies come) are one picture where their
    original is among the faces, wherever it ranks; a copy of a query photo is -1."""
    rng = np.random.default_rng(5)

    def near(v: np.ndarray, cosine: float) -> np.ndarray:
        noise = rng.standard_normal(v.shape[0])
        noise -= (noise @ v) * v
        return cosine * v + np.sqrt(1 - cosine**2) * noise / np.linalg.norm(noise)

    original = rng.standard_normal(128)
    original /= np.linalg.norm(original)
    crop, squeezed = near(original, 0.9970), near(original, 0.9968)
    assert 0.985 < float(crop @ squeezed) < 0.995
    # The crop 22 bits from the original, the re-compressed copy 1: 23 bits apart.
    h_original, h_crop, h_squeezed = 0, (1 << 22) - 1, -(1 << 63)
    stranger = near(original, 0.95)
    faces = [(h_crop, crop), (h_squeezed, squeezed), (1 << 40, stranger)]
    assert pictures(faces) == [0, 1, 2]
    assert pictures([*faces, (h_original, original)]) == [0, 0, 2, 0]
    assert pictures(faces, query=[(h_original, original)]) == [-1, -1, 2]


def _unhashed_gallery(conn: psycopg.Connection, unit_faces: Path, broken: Path) -> list[Path]:
    """Gallery "old": faces without a photo hash, as load-dump and ingests before the
    hash stored them, of five lfw-dev photos (the first with two faces), a file gone
    and a file that is no image."""
    photos = sorted((unit_faces.parent / "lfw-dev" / "photos").glob("*.jpg"))[:5]
    broken.write_bytes(b"not an image at all" * 10)
    rows = [(str(p), 0) for p in photos] + [(str(photos[0]), 1)]
    rows += [("/nowhere/gone.jpg", 0), (str(broken), 0)]
    rng = np.random.default_rng(1)
    repo = Repository(conn)
    gallery = repo.ensure_gallery("old", EmbeddingConfig("Dlib", "dlib"), dimension=128)
    with conn.transaction():
        repo.copy_faces(
            gallery,
            (
                NewFace(s, f"h{n}", i, rng.standard_normal(128).astype(np.float32))
                for n, (s, i) in enumerate(rows)
            ),
            "faces",
        )
    return photos


def _stored_hashes(conn: psycopg.Connection) -> dict[tuple[str, int], int | None]:
    rows = conn.execute("SELECT source, face_index, phash FROM faces").fetchall()
    return {(s, i): h for s, i, h in rows}


def test_gallery_hash_fills_in_the_photo_hash_in_batches(
    conn: psycopg.Connection, unit_faces: Path, tmp_path: Path
) -> None:
    """Each face whose photo is at hand gets the hash ingest gives it, a batch at a
    time: an interrupted run keeps its batches, the next goes on; missing and
    unreadable files are counted, their faces keep none."""
    photos = _unhashed_gallery(conn, unit_faces, tmp_path / "broken.jpg")
    settings = Settings.from_env()
    batches: list[int] = []

    def stop_after_two(done: int, total: int) -> None:
        batches.append(done)
        if len(batches) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        hash_gallery(conn, "old", settings, batch=2, progress=stop_after_two)
    # Photos are taken in the order of their sources: the first four were done.
    done = sorted({s for s, _ in _stored_hashes(conn)})[:4]
    hashed = {s for (s, _), h in _stored_hashes(conn).items() if h is not None}
    assert batches == [2, 4] and hashed == {str(p) for p in photos} & set(done)
    report = hash_gallery(conn, "old", settings, batch=2)
    first = len(hashed) + (str(photos[0]) in hashed)  # faces hashed before
    assert (report.faces, report.photos) == (6 - first, 5 - len(hashed))
    assert report.missing == 1 and report.unreadable == 1
    assert report.unreadable_sources == (str(tmp_path / "broken.jpg"),)
    stored = _stored_hashes(conn)
    for photo in photos:
        expected = dhash(imaging.decode(photo.read_bytes(), photo.name).pixels)
        assert stored[(str(photo), 0)] == expected
    assert stored[(str(photos[0]), 1)] == stored[(str(photos[0]), 0)]
    assert stored[("/nowhere/gone.jpg", 0)] is None
    assert stored[(str(tmp_path / "broken.jpg"), 0)] is None


def test_gallery_hash_command_says_what_it_did(
    conn: psycopg.Connection, unit_faces: Path, tmp_path: Path
) -> None:
    _unhashed_gallery(conn, unit_faces, tmp_path / "broken.jpg")
    listed = runner.invoke(app, ["gallery", "duplicates", "old"])
    assert listed.exit_code == 0, listed.output
    said = " ".join(listed.output.split())  # as wrapped to the terminal's width
    assert "8 faces have no photo hash" in said and "doppel gallery hash old" in said
    first = runner.invoke(app, ["gallery", "hash", "old", "--json"])
    assert first.exit_code == 0, first.output
    payload = json.loads(first.stdout)
    assert payload["faces_hashed"] == 6 and payload["photos_hashed"] == 5
    assert payload["missing_files"] == 1 and payload["unreadable_files"] == 1
    again = runner.invoke(app, ["gallery", "hash", "old"])
    assert again.exit_code == 0, again.output
    lines = again.output.strip().splitlines()
    assert lines[-1] == (
        "gallery old: hashed 0 faces of 0 photos, missing files 1, unreadable 1"
    ), again.output
    listed = runner.invoke(app, ["gallery", "duplicates", "old", "--json"])
    assert json.loads(listed.stdout)["faces_without_hash"] == 2  # the missing, the broken


def test_copies_at_once_agree_with_the_rule_pair_by_pair() -> None:
    """The whole-matrix check gives is_copy's answer for every pair, and pictures()
    the groups that joining those pairs one by one gives: on faces near and far from a
    few originals, hashes near and far, some unknown."""
    from doppel.duplicates import copies, is_copy

    rng = np.random.default_rng(11)
    for _ in range(20):
        originals = rng.standard_normal((4, 32))
        spread = rng.uniform(0.01, 0.1, (40, 1))  # copies, near copies, other photos
        vectors = originals[rng.integers(0, 4, 40)] + spread * rng.standard_normal((40, 32))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        base = [int(rng.integers(-(1 << 63), 1 << 63)) for _ in range(4)]
        hashes: list[int | None] = [
            None if rng.random() < 0.2 else base[i % 4] ^ int(rng.integers(0, 1 << 30))
            for i in range(40)
        ]
        sims = vectors @ vectors.T
        joined = copies(sims, hashes)
        for i in range(40):
            for j in range(40):
                assert joined[i, j] == is_copy(hashes[i], hashes[j], float(sims[i, j]))
        parent = list(range(40))
        for i in range(40):
            for j in range(i + 1, 40):
                if joined[i, j]:
                    a, b = sorted((_root(parent, i), _root(parent, j)))
                    parent[b] = a
        faces = list(zip(hashes, vectors, strict=True))
        assert pictures(faces[5:], query=faces[:5]) == [
            -1 if _root(parent, i) < 5 else _root(parent, i) - 5 for i in range(5, 40)
        ]


def _root(parent: list[int], i: int) -> int:
    while parent[i] != i:
        i = parent[i]
    return i
