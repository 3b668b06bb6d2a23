"""Look-alikes a person can trust: calibration of one's own, strengths in words,
one face per stranger, several photos as one query, no copies of one picture."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from typer.testing import CliRunner

from doppel.cli import app
from doppel.config import Settings
from doppel.errors import NotCalibrated
from doppel.people import calibration
from doppel.people.groups import cluster_gallery, list_people, name_person
from doppel.search import SearchRequest, find
from doppel.store.db import connect
from doppel.store.marks import FaceMarks
from doppel.store.repository import Repository
from doppel.types import Box, EmbeddedFace, EmbeddingConfig, NewFace
from tests.helpers import create_database, drop_database, ingest_folder

runner = CliRunner()


def _lfw_rows(unit_faces: Path) -> list[tuple[str, str]]:
    lfw = unit_faces.parent / "lfw-dev"
    rows = list(csv.reader((lfw / "identities.csv").read_text().splitlines()))[1:]
    return [(file, person) for file, person in rows if file]


def _people_folder(unit_faces: Path, root: Path, people: int, photos: int) -> Path:
    """lfw-dev's first `people` people with `photos` photos or more, one subfolder each."""
    lfw = unit_faces.parent / "lfw-dev" / "photos"
    by_person: dict[str, list[str]] = {}
    for file, person in _lfw_rows(unit_faces):
        by_person.setdefault(person, []).append(file)
    chosen = [p for p in sorted(by_person) if len(by_person[p]) >= photos][:people]
    for person in chosen:
        (root / person).mkdir(parents=True)
        for file in by_person[person][:photos]:
            (root / person / file).symlink_to(lfw / file)
    return root


@pytest.mark.slow
def test_calibrate_measures_and_saves_a_pipeline(
    unit_faces: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`doppel calibrate` on labelled photos writes the user's file, which the
    commands then read; the saved curve crosses one half at the saved threshold."""
    home = tmp_path / "home"
    monkeypatch.setenv("DOPPEL_HOME", str(home))
    folder = _people_folder(unit_faces, tmp_path / "people", people=6, photos=4)
    result = runner.invoke(app, ["calibrate", str(folder), "-m", "Dlib", "-d", "dlib", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["people"] == 6 and report["faces"] >= 20
    assert 0.85 < report["threshold"] < 0.97
    saved = calibration.known(home / "calibration.json")[report["pipeline"]]
    assert saved.threshold == report["threshold"]
    assert "doppel calibrate" in saved.measured_on
    assert saved.probability(saved.threshold) == pytest.approx(0.5)
    assert saved.logistic_a > 0


def test_calibrate_refuses_a_folder_without_people(tmp_path: Path) -> None:
    (tmp_path / "only").mkdir()
    result = runner.invoke(app, ["calibrate", str(tmp_path), "-m", "Dlib", "-d", "dlib"])
    assert result.exit_code != 0
    assert "one subfolder per person" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


# A gallery of lfw-dev people for the searches below -----------------------------------

PIPELINE = EmbeddingConfig("Dlib", "dlib")  # calibrated ("Dlib|dlib|1|base")
PEOPLE = 12


@pytest.fixture(scope="module")
def lfw_db(
    server_url: str, unit_faces: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """lfw-dev's first 12 people (5 or 6 photos each) in gallery "lfw", embedded once,
    and a copy "lfwp" grouped into people."""
    url = create_database(server_url, "doppel_lookalike")
    folder = tmp_path_factory.mktemp("lfw12")
    lfw = unit_faces.parent / "lfw-dev" / "photos"
    chosen = sorted({p for _, p in _lfw_rows(unit_faces)})[:PEOPLE]
    for file, person in _lfw_rows(unit_faces):
        if person in chosen:
            (folder / file).symlink_to(lfw / file)
    home = Settings.from_env().home
    with connect(Settings(home, url, "Dlib", "dlib", False)) as conn:
        ingest_folder(conn, folder, "lfw", PIPELINE)
        repo = Repository(conn)
        source = repo.gallery("lfw")
        rows = conn.execute(
            "SELECT source, content_hash, face_index, embedding FROM faces WHERE gallery_id = %s",
            (source.id,),
        ).fetchall()
        target = repo.ensure_gallery("lfwp", PIPELINE, dimension=source.dimension)
        with conn.transaction():
            repo.copy_faces(
                target,
                (NewFace(s, h, i, np.asarray(v.to_numpy())) for s, h, i, v in rows),
                "faces",
            )
        cluster_gallery(conn, "lfwp")
    yield url
    drop_database(server_url, url)


@pytest.fixture
def lfw_env(lfw_db: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DOPPEL_DATABASE_URL", lfw_db)
    return lfw_db


def _photos_of(unit_faces: Path) -> dict[str, list[Path]]:
    lfw = unit_faces.parent / "lfw-dev" / "photos"
    chosen = sorted({p for _, p in _lfw_rows(unit_faces)})[:PEOPLE]
    out: dict[str, list[Path]] = {}
    for file, person in _lfw_rows(unit_faces):
        if person in chosen:
            out.setdefault(person, []).append(lfw / file)
    return out


def _person(source: str) -> str:
    return Path(source).stem.rsplit("_", 1)[0]


def _find_json(*args: str) -> dict:
    result = runner.invoke(app, ["find", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow
def test_each_match_carries_a_strength_a_person_can_read(lfw_env: str, unit_faces: Path) -> None:
    """The query person's other photos come first, marked "probably you"; the
    probability is 50% or more exactly where the similarity reaches the threshold."""
    person, photos = next(iter(_photos_of(unit_faces).items()))
    cal = calibration.for_config(PIPELINE)
    payload = _find_json(str(photos[0]), "-g", "lfw", "-k", "8")
    assert payload["calibration"]["threshold"] == cal.threshold
    matches = payload["faces"][0]["matches"]
    for m in matches:
        assert (
            (m["probability"] >= 0.5)
            == (m["similarity"] >= cal.threshold)
            == m["probably_query_person"]
        )
        assert m["strength"].startswith(calibration.percent(m["probability"]) + " — ")
        assert ("probably you" in m["strength"]) == m["probably_query_person"]
    own = [m for m in matches if _person(m["source"]) == person]
    assert own and own[0]["rank"] == 1 and "probably you" in own[0]["strength"]
    # The table shows the words; --threshold moves the verdicts for this run only.
    table = runner.invoke(app, ["find", str(photos[0]), "-g", "lfw", "--no-picture"])
    assert table.exit_code == 0 and "probably" in table.stdout, table.output
    strict = _find_json(str(photos[0]), "-g", "lfw", "-k", "8", "--threshold", "0.99")
    assert strict["calibration"]["threshold"] == 0.99
    assert not any(m["probably_query_person"] for m in strict["faces"][0]["matches"])


def test_an_uncalibrated_pipeline_shows_similarity_only(
    conn: psycopg.Connection, unit_faces: Path
) -> None:
    """No calibration: similarity, no strength, and the result says so; strangers mode
    (which needs the threshold) is refused before anything is embedded."""
    from doppel.faces.query import Query

    config = EmbeddingConfig("Dlib", "mtcnn", flip=True)  # measured by nobody
    rng = np.random.default_rng(3)
    repo = Repository(conn)
    gallery = repo.ensure_gallery("odd", config, dimension=128)
    vectors = rng.standard_normal((20, 128)).astype(np.float32)
    with conn.transaction():
        repo.copy_faces(
            gallery, (NewFace(f"f{i}.jpg", f"h{i}", 0, v) for i, v in enumerate(vectors)), "faces"
        )
    query = Query.from_path(unit_faces / "img1.jpg")
    near = vectors[0] + 0.3 * rng.standard_normal(128).astype(np.float32)  # not a copy
    face = EmbeddedFace(0, Box(0, 0, 10, 10), 1.0, near)
    result = find(conn, query, SearchRequest("odd"), faces=lambda g, d: [face])
    assert result.calibration is None and "no same-person calibration" in result.not_calibrated
    assert result.results[0].matches[0].face.source == "f0.jpg"
    assert all(m.strength is None for m in result.results[0].matches)
    with pytest.raises(NotCalibrated):
        find(conn, query, SearchRequest("odd", strangers=True), faces=lambda g, d: [face])


@pytest.mark.slow
def test_strangers_show_one_face_per_person_and_name_the_query_person(
    lfw_env: str, unit_faces: Path
) -> None:
    photos = _photos_of(unit_faces)
    person, own = next(iter(photos.items()))
    settings = Settings.from_env()
    with connect(settings) as conn:
        listing = list_people(conn, "lfwp")
        mine = next(
            p.id for p in listing.people if _person(listing.members[p.id][0].source) == person
        )
        name_person(conn, "lfwp", mine, "Our Query")
    repeats = 0
    for query in [own[0], *(p[0] for p in list(photos.values())[1:4])]:
        one = _find_json(str(query), "-g", "lfwp", "--strangers", "-k", "5")
        people = [m["person_id"] for m in one["faces"][0]["matches"]]
        assert len(people) == 5 and len(set(people)) == 5, one
        assert one["strangers"]["one_per_person"] is True
        every = _find_json(str(query), "-g", "lfwp", "--strangers", "-k", "5", "--all-photos")
        repeats += len({m["person_id"] for m in every["faces"][0]["matches"]}) < 5
        if query == own[0]:
            assert "Our Query" in one["strangers"]["left_out"]
            assert all(_person(m["source"]) != person for m in one["faces"][0]["matches"])
    assert repeats, "without the rule, some answer shows one stranger twice"
    # Where no people are known, the matches are no two of one person by the threshold.
    cal = calibration.for_config(PIPELINE)
    with connect(settings) as conn:
        result = find(conn, own[0], SearchRequest("lfw", k=5, strangers=True), settings=settings)
        matches = result.results[0].matches
        vectors = FaceMarks(conn).vectors([m.face.id for m in matches])
    unit = np.vstack([vectors[m.face.id] / np.linalg.norm(vectors[m.face.id]) for m in matches])
    sims = unit @ unit.T
    assert len(matches) == 5 and (sims[np.triu_indices(5, 1)] < cal.threshold).all()


@pytest.mark.slow
def test_several_photos_of_one_person_make_one_query(
    lfw_env: str, unit_faces: Path, tmp_path: Path
) -> None:
    photos = _photos_of(unit_faces)
    people = list(photos)
    person, own = people[0], photos[people[0]]
    three = [str(p) for p in own[:3]]
    payload = _find_json(*three, "-g", "lfw", "-k", str(len(own) - 3))
    assert payload["photos"] == three and payload["template"]["photos"] == 3
    matches = payload["faces"][0]["matches"]
    assert all(Path(m["source"]).name not in {Path(p).name for p in three} for m in matches)
    assert all(_person(m["source"]) == person for m in matches)  # the other 2 or 3 photos
    # A folder of the person's photos is the same query.
    folder = tmp_path / "me"
    folder.mkdir()
    for p in own[:3]:
        (folder / p.name).symlink_to(p)
    same = _find_json(str(folder), "-g", "lfw", "-k", str(len(own) - 3))
    assert [m["face_id"] for m in same["faces"][0]["matches"]] == [m["face_id"] for m in matches]
    # Strangers from a template: none of the person's faces.
    strangers = _find_json(*three, "-g", "lfw", "--strangers")
    assert all(_person(m["source"]) != person for m in strangers["faces"][0]["matches"])
    # Someone else among the photos: one line naming that photo.
    odd = photos[people[1]][0]
    result = runner.invoke(app, ["find", *three[:2], str(odd), "-g", "lfw", "--no-picture"])
    assert result.exit_code != 0
    assert odd.name in result.output and "does not look like the same person" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def _copies(photo: Path, folder: Path) -> list[Path]:
    """A resized, a re-compressed and a slightly cropped copy of one photo."""
    from PIL import Image

    img = Image.open(photo).convert("RGB")
    w, h = img.size
    made = {
        "resized.jpg": img.resize((round(w * 0.6), round(h * 0.6)), Image.Resampling.LANCZOS),
        "recompressed.jpg": img,
        "cropped.jpg": img.crop(
            (round(w * 0.04), round(h * 0.04), round(w * 0.96), round(h * 0.96))
        ),
    }
    out = []
    for name, picture in made.items():
        path = folder / f"{photo.stem}-{name}"
        picture.save(path, quality=35 if name == "recompressed.jpg" else 90)
        out.append(path)
    return out


# A photo whose crop of 8% on the left and top moves the photo's hash past COPY_BITS
# (27 bits), and another photo of the same person to search with.
CROPPED, CROPPED_QUERY = "Ari_Fleischer_0005.jpg", "Ari_Fleischer_0001.jpg"


def _crop_left_top(photo: Path, folder: Path) -> Path:
    from PIL import Image

    img = Image.open(photo).convert("RGB")
    w, h = img.size
    path = folder / f"{photo.stem}-cropped8.jpg"
    img.crop((round(w * 0.08), round(h * 0.08), w, h)).save(path, quality=90)
    return path


@pytest.fixture(scope="module")
def copies_db(
    server_url: str, unit_faces: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Gallery "copies": lfw-dev's first two people, three copies (resized,
    re-compressed, cropped 4% a side) of the first person's second photo, and CROPPED
    with its 8% crop; embedded once with the pipeline the copy rule's thresholds were
    measured on, the Dlib model's default."""
    from doppel.faces.catalog import default_config

    url = create_database(server_url, "doppel_copies")
    photos = _photos_of(unit_faces)
    own, other = list(photos.values())[:2]
    folder = tmp_path_factory.mktemp("copies")
    cropped = unit_faces.parent / "lfw-dev" / "photos" / CROPPED
    for p in [*own, *other, cropped]:
        (folder / p.name).symlink_to(p)
    _copies(own[1], folder)
    _crop_left_top(cropped, folder)
    home = Settings.from_env().home
    with connect(Settings(home, url, "Dlib", "dlib", False)) as conn:
        ingest_folder(conn, folder, "copies", default_config("Dlib"))
    yield url
    drop_database(server_url, url)


@pytest.mark.slow
def test_copies_of_one_picture_are_shown_once(
    copies_db: str, unit_faces: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Copies (resized, re-compressed, cropped) are one picture: `gallery duplicates`
    groups them, an answer shows one of them, and a copy of the query photo is no
    match at all."""
    monkeypatch.setenv("DOPPEL_DATABASE_URL", copies_db)
    photos = _photos_of(unit_faces)
    person, own = next(iter(photos.items()))
    listed = runner.invoke(app, ["gallery", "duplicates", "copies", "--json"])
    assert listed.exit_code == 0, listed.output
    groups = [
        sorted(Path(f["source"]).name for f in g) for g in json.loads(listed.stdout)["groups"]
    ]
    copied = [f"{own[1].stem}-{n}" for n in ("resized.jpg", "recompressed.jpg", "cropped.jpg")]
    cropped = Path(CROPPED).stem
    assert sorted(groups) == sorted(
        [sorted([own[1].name, *copied]), sorted([CROPPED, f"{cropped}-cropped8.jpg"])]
    )
    # The other photos of the person, each picture once.
    answer = _find_json(str(own[0]), "-g", "copies", "-k", str(len(own) - 1))
    names = [Path(m["source"]).name for m in answer["faces"][0]["matches"]]
    pictures = [n.split("-")[0].removesuffix(".jpg") for n in names]
    assert len(set(pictures)) == len(pictures) == len(own) - 1, names
    assert all(_person(n.split("-")[0]) == person for n in names)
    # A further copy of the query photo finds none of its copies.
    query = _copies(own[1], tmp_path)[1]
    answer = _find_json(str(query), "-g", "copies", "-k", "3")
    names = [Path(m["source"]).name for m in answer["faces"][0]["matches"]]
    assert not any(n.startswith(own[1].stem) for n in names), names


@pytest.mark.slow
def test_a_crop_past_the_hash_bound_is_not_shown_beside_its_original(
    copies_db: str, unit_faces: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crop of 8% on the left and top moves the whole photo's hash further than
    COPY_BITS; its face is still nearly the original's, and an answer shows one of them."""
    from doppel.duplicates import COPY_BITS, bits_apart

    monkeypatch.setenv("DOPPEL_DATABASE_URL", copies_db)
    cropped = Path(CROPPED).stem
    names = {CROPPED, f"{cropped}-cropped8.jpg"}
    with connect(Settings.from_env()) as conn:
        rows = conn.execute(
            "SELECT source, phash FROM faces WHERE source LIKE %s", (f"%{cropped}%",)
        ).fetchall()
    hashes = {Path(source).name: phash for source, phash in rows}
    assert set(hashes) == names
    assert bits_apart(*hashes.values()) > COPY_BITS  # the hash alone would not tell
    query = unit_faces.parent / "lfw-dev" / "photos" / CROPPED_QUERY
    answer = _find_json(str(query), "-g", "copies", "-k", "3")
    shown = [Path(m["source"]).name for m in answer["faces"][0]["matches"]]
    assert shown[0] in names and not names <= set(shown), shown


def test_caption_reads_the_strength_and_moves_the_person_beneath() -> None:
    from doppel.composer import caption
    from doppel.types import Face, Match, Strength

    face = Face(1, "photos/ann.jpg", 0, None, None, None, None, 3, "Ann")
    title, subtitle = caption(Match(2, face, 0.09, Strength(0.31, False, "31% — could pass")))
    assert title == "#2  31% - could pass"  # the picture's font has no em dash
    assert subtitle.startswith("Ann  0.910  ann.jpg")
    plain = caption(Match(2, face, 0.09))
    assert plain[0] == "#2  0.910  Ann"
