"""People, verify, doppelganger mode and twins, on real faces in the real database."""

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
from doppel.cli.common import error_line
from doppel.config import Settings
from doppel.errors import EmptyGallery, NotCalibrated, SamePhoto, UnknownPerson, UsageError
from doppel.people import calibration, clustering
from doppel.people.groups import (
    cluster_gallery,
    hide_person,
    list_people,
    merge_people,
    move_faces,
    name_person,
    restore,
    set_cover,
    take_out,
)
from doppel.people.scores import score
from doppel.people.strangers import own_people
from doppel.people.twins import twins
from doppel.search import SearchRequest, find
from doppel.store.db import connect
from doppel.store.repository import Repository
from doppel.types import EmbeddingConfig, Filters, NewFace
from tests.helpers import create_database, drop_database, ingest_folder

runner = CliRunner()
# The pipeline people are calibrated for: the Dlib model on dlib's own detector.
PIPELINE = EmbeddingConfig("Dlib", "dlib")
LFW_PEOPLE = 20  # an lfw-dev subset: the first 20 people, 5 or 6 photos each


def _ingest(url: str, folder: Path, gallery: str, files: list[str] | None = None) -> None:

    settings = Settings.from_env()
    with connect(Settings(settings.home, url, "Dlib", "dlib", False)) as conn:
        if files is None:
            ingest_folder(conn, folder, gallery, PIPELINE)
            return
        # Only some photos: ingest a folder of links to them.
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            for name in files:
                (Path(tmp) / name).symlink_to(folder / name)
            ingest_folder(conn, Path(tmp), gallery, PIPELINE)


@pytest.fixture(scope="module")
def faces_db(server_url: str, unit_faces: Path) -> Iterator[str]:
    """A database holding deepface-unit and an lfw-dev subset, embedded once per module.

    Tests copy its galleries into a database of their own (`people_conn`), so each
    starts without people.
    """
    url = create_database(server_url, "doppel_people")
    _ingest(url, unit_faces, "unit")
    lfw = unit_faces.parent / "lfw-dev"
    rows = list(csv.reader((lfw / "identities.csv").read_text().splitlines()))[1:]
    chosen = sorted({person for _, person in rows})[:LFW_PEOPLE]
    _ingest(url, lfw / "photos", "lfw", [f for f, person in rows if person in chosen])
    yield url
    drop_database(server_url, url)


@pytest.fixture
def people_conn(faces_db: str, database_url: str) -> Iterator[psycopg.Connection]:
    """A fresh database with copies of the module's galleries (no people yet)."""
    settings = Settings.from_env()
    with connect(Settings(settings.home, faces_db, "Dlib", "dlib", False)) as source:
        galleries = Repository(source).galleries()
        rows = {
            g.name: source.execute(
                "SELECT source, content_hash, face_index, embedding FROM faces"
                " WHERE gallery_id = %s ORDER BY id",
                (g.id,),
            ).fetchall()
            for g in galleries
        }
    conn = connect(Settings.from_env())
    repo = Repository(conn)
    for g in galleries:
        target = repo.ensure_gallery(g.name, g.config, dimension=g.dimension)
        with conn.transaction():
            repo.copy_faces(
                target,
                (NewFace(s, h, i, np.asarray(v.to_numpy())) for s, h, i, v in rows[g.name]),
                "faces",
            )
    yield conn
    conn.close()


def _truth(folder: Path) -> dict[str, str]:
    rows = list(csv.reader((folder / "identities.csv").read_text().splitlines()))[1:]
    return {name: person for name, person in rows}


def _labels(conn: psycopg.Connection, gallery: str, truth: dict[str, str]) -> tuple[list, list]:
    listing = list_people(conn, gallery)
    person_of = {f.id: p.id for p in listing.people for f in listing.members[p.id]}
    faces = [f for fs in listing.members.values() for f in fs] + listing.unassigned
    faces = [f for f in faces if Path(f.source).name in truth]
    return [person_of.get(f.id, -1) for f in faces], [truth[Path(f.source).name] for f in faces]


def _snapshot(conn: psycopg.Connection) -> list:
    faces = conn.execute(
        "SELECT f.id, fp.person_id, coalesce(fp.excluded, false), coalesce(fp.pinned, false)"
        " FROM faces f LEFT JOIN face_people fp ON fp.face_id = f.id ORDER BY f.id"
    ).fetchall()
    people = conn.execute("SELECT id, name, cover_face_id FROM people ORDER BY id").fetchall()
    return [faces, people]


def test_shipped_calibration_covers_the_dlib_pipeline() -> None:
    cal = calibration.for_config(PIPELINE)
    assert 0.85 < cal.threshold < 0.97
    assert cal.false_accept < 0.05 and cal.false_reject < 0.05
    # The probability rises through one half near the threshold.
    assert cal.probability(cal.threshold + 0.03) > 0.9 > 0.1 > cal.probability(cal.threshold - 0.03)
    with pytest.raises(NotCalibrated, match="no same-person threshold") as caught:
        calibration.for_config(EmbeddingConfig("Facenet512", "mtcnn"))
    assert "doppel calibrate PEOPLE_DIR -m Facenet512 -d mtcnn" in error_line(caught.value)


def test_probability_and_verdict_agree_for_every_shipped_pipeline() -> None:
    """verify once said "different people" beside 57.6%: the fit crossed 50% below the
    threshold. Now each curve crosses one half at its threshold, also when overridden."""
    for cal in calibration.known().values():
        for shift in (-0.004, -1e-4, 0.0, 1e-4, 0.004):
            similarity = cal.threshold + shift
            assert (cal.probability(similarity) >= 0.5) == cal.same(similarity), (cal, shift)
        moved = cal.with_threshold(cal.threshold - 0.01)
        assert moved.probability(moved.threshold) == pytest.approx(0.5)
        assert moved.same(cal.threshold - 0.005) and moved.probability(cal.threshold - 0.005) > 0.5


def test_best_threshold_separates_labelled_pairs() -> None:
    rng = np.random.default_rng(0)
    same, different = rng.normal(0.95, 0.01, 500), rng.normal(0.85, 0.02, 5000)
    point = calibration.best_threshold(same, different)
    assert 0.9 < point.threshold < 0.93
    far, frr = calibration.rates(same, different, point.threshold)
    assert far < 0.01 and frr < 0.01
    a, b = calibration.fit_logistic(same, different, point.threshold)
    assert a > 0 and -b / a == pytest.approx(point.threshold)


@pytest.mark.slow
def test_people_on_lfw_subset_meet_the_targets(
    people_conn: psycopg.Connection, unit_faces: Path
) -> None:
    report = cluster_gallery(people_conn, "lfw")
    labels, truth = _labels(people_conn, "lfw", _truth(unit_faces.parent / "lfw-dev"))
    s = score(labels, truth)
    assert s.pair_precision >= 0.95, s
    assert s.pair_recall >= 0.80, s
    assert report.people == len({p for p in labels if p >= 0})
    assert LFW_PEOPLE - 3 <= report.people <= LFW_PEOPLE + 3


@pytest.mark.slow
def test_people_on_deepface_unit_and_cli_outputs(
    people_conn: psycopg.Connection, unit_faces: Path, tmp_path: Path
) -> None:
    picture = tmp_path / "overview.html"
    result = runner.invoke(app, ["people", "unit", "--json", "-o", str(picture)])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert picture.is_file() and payload["overview"] == str(picture)
    # The overview is a page of thumbnails, each face named by its id.
    page = picture.read_text()
    thumbs = sorted((tmp_path / "overview-faces").glob("face-*.jpg"))
    assert len(thumbs) >= 3 * len(payload["people"])
    assert all(f"overview-faces/{t.name}" in page for t in thumbs)
    assert f"face {payload['people'][0]['cover']['face_id']}" in page
    people = payload["people"]
    assert len(people) >= 8
    every = [s for p in people for s in p["sources"]] + [u["source"] for u in payload["unassigned"]]
    assert len(every) == len(set(every)) == 64
    labels, truth = _labels(people_conn, "unit", _truth(unit_faces))
    s = score(labels, truth)
    assert s.pair_precision >= 0.95 and s.pair_recall >= 0.8, s
    table = runner.invoke(app, ["people", "unit", "--no-picture"])
    assert table.exit_code == 0
    assert "sample source" in table.stdout and str(people[0]["id"]) in table.stdout


@pytest.mark.slow
def test_incremental_new_faces_join_existing_people(
    people_conn: psycopg.Connection,
) -> None:
    repo = Repository(people_conn)
    gallery = repo.gallery("unit")
    # Hold back a third of the faces: cluster the rest, then let them arrive.
    held = people_conn.execute(
        "DELETE FROM faces WHERE gallery_id = %s AND id %% 3 = 0"
        " RETURNING source, content_hash, face_index, embedding",
        (gallery.id,),
    ).fetchall()
    first = cluster_gallery(people_conn, "unit")
    before = {p.id: set(f.id for f in fs) for p, fs in _members(people_conn, "unit")}
    with people_conn.transaction():
        repo.copy_faces(
            gallery,
            (NewFace(s, h, i, np.asarray(v.to_numpy())) for s, h, i, v in held),
            "faces",
        )
    second = cluster_gallery(people_conn, "unit")
    assert second.considered == len(held) + first.unassigned
    assert second.joined >= len(held) // 2
    after = {p.id: set(f.id for f in fs) for p, fs in _members(people_conn, "unit")}
    for pid, faces in before.items():  # nobody lost a face, ids stayed
        assert faces <= after[pid]


def _members(conn: psycopg.Connection, gallery: str) -> list:
    listing = list_people(conn, gallery)
    return [(p, listing.members[p.id]) for p in listing.people]


@pytest.mark.slow
def test_name_merge_take_out_persist_across_reclustering(
    people_conn: psycopg.Connection,
) -> None:
    cluster_gallery(people_conn, "unit")
    (big, big_faces), (second, _) = _members(people_conn, "unit")[:2]
    name_person(people_conn, "unit", big.id, "Angelina")
    removed = big_faces[-1]
    assert take_out(people_conn, "unit", big.id, [str(removed.id)]) == 1
    merged = merge_people(people_conn, "unit", second.id, big.id)
    assert merged.name == "Angelina"  # the second had none: it takes the merged one's
    assert merged.faces == second.faces + big.faces - 1
    cluster_gallery(people_conn, "unit", recluster=True)
    listing = list_people(people_conn, "unit")
    assert removed.id in {f.id for f in listing.unassigned}
    assert "Angelina" in {p.name for p in listing.people}
    # find shows the person's name. (The recluster split the merged person in two
    # halves of eight faces; the one holding its cover kept its id and name.)
    angelina = next(p for p in listing.people if p.name == "Angelina")
    assert angelina.cover is not None
    result = find(people_conn, Path(angelina.cover.source), SearchRequest("unit", k=5, exact=True))
    assert any(m.face.person == "Angelina" for m in result.results[0].matches)
    cluster_gallery(people_conn, "unit")
    assert removed.id in {f.id for f in list_people(people_conn, "unit").unassigned}


@pytest.mark.slow
def test_bad_people_input_changes_nothing(people_conn: psycopg.Connection) -> None:
    cluster_gallery(people_conn, "unit")
    person = list_people(people_conn, "unit").people[0]
    before = _snapshot(people_conn)
    with pytest.raises(UnknownPerson, match="no person 999999"):
        name_person(people_conn, "unit", 999999, "x")
    with pytest.raises(UsageError, match="itself"):
        merge_people(people_conn, "unit", person.id, person.id)
    with pytest.raises(UnknownPerson):
        merge_people(people_conn, "unit", person.id, 999999)
    with pytest.raises(UnknownPerson):
        take_out(people_conn, "unit", 999999, ["1"])
    with pytest.raises(UsageError, match="no face"):
        take_out(people_conn, "unit", person.id, ["no/such/photo.jpg"])
    with pytest.raises(UsageError, match="not in"):
        unassigned = list_people(people_conn, "unit").unassigned
        take_out(people_conn, "unit", person.id, [str(unassigned[0].id)])
    assert _snapshot(people_conn) == before
    for args in (
        ["people", "name", "unit", "999999", "x"],
        ["people", "merge", "unit", str(person.id), str(person.id)],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code != 0
        assert len(result.output.strip().splitlines()) == 1, result.output
    assert _snapshot(people_conn) == before


@pytest.mark.slow
def test_empty_and_one_face_galleries(people_conn: psycopg.Connection) -> None:
    repo = Repository(people_conn)
    repo.ensure_gallery("empty", PIPELINE, dimension=128)
    before = _snapshot(people_conn)
    with pytest.raises(EmptyGallery):
        cluster_gallery(people_conn, "empty")
    with pytest.raises(EmptyGallery):
        twins(people_conn, "empty")
    one = repo.ensure_gallery("one", PIPELINE, dimension=128)
    vector = people_conn.execute("SELECT embedding FROM faces LIMIT 1").fetchone()[0]
    with people_conn.transaction():
        repo.copy_faces(one, [NewFace("one.jpg", None, 0, np.asarray(vector.to_numpy()))], "faces")
    before = _snapshot(people_conn)
    report = cluster_gallery(people_conn, "one")
    assert (report.people, report.unassigned) == (0, 1)
    assert _snapshot(people_conn) == before
    result = runner.invoke(app, ["twins", "one"])
    assert result.exit_code == 1 and "at least two" in result.output


@pytest.mark.slow
def test_strangers_leave_out_the_query_person(
    people_conn: psycopg.Connection, identities: dict[str, str], unit_faces: Path
) -> None:
    """All 61 labelled photos, with and without people: k faces, none of the query's identity."""
    repo = Repository(people_conn)
    gallery = repo.gallery("unit")
    rows = people_conn.execute(
        "SELECT source, content_hash, embedding FROM faces WHERE gallery_id = %s",
        (gallery.id,),
    ).fetchall()
    for with_people in (False, True):
        if with_people:
            cluster_gallery(people_conn, "unit")
        checked = 0
        for source, digest, vector in rows:
            name = Path(source).name
            if name not in identities:
                continue
            threshold, own = own_people(people_conn, gallery, vector.to_numpy(), digest)
            filters = Filters(
                exclude_hashes=(digest,), exclude_people=own, below_similarity=threshold
            )
            matches = repo.search(gallery, vector.to_numpy(), 5, filters)
            assert len(matches) == 5
            found = [identities.get(Path(m.face.source).name) for m in matches]
            assert identities[name] not in found, (with_people, name, found)
            checked += 1
        assert checked == 61
    # The command says the mode was on, in the table, the JSON and the picture's caption.
    picture = unit_faces / "img1.jpg"
    result = runner.invoke(
        app, ["find", str(picture), "-g", "unit", "--strangers", "--json", "--no-picture"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["strangers"]["on"] is True
    assert len(payload["faces"][0]["matches"]) == 5
    plain = runner.invoke(app, ["find", str(picture), "-g", "unit", "--json", "--no-picture"])
    assert json.loads(plain.stdout)["strangers"] == {"on": False}


@pytest.mark.slow
def test_twins_pairs_are_of_different_people(
    people_conn: psycopg.Connection, tmp_path: Path
) -> None:
    cal = calibration.for_config(PIPELINE)
    plain = twins(people_conn, "unit", 5, out_dir=tmp_path, settings=Settings.from_env())
    assert not plain.by_people and len(plain.pairs) == 5
    assert all(p.similarity < cal.threshold for p in plain.pairs)
    assert [p.similarity for p in plain.pairs] == sorted(
        (p.similarity for p in plain.pairs), reverse=True
    )
    assert all(path.is_file() for path in plain.pictures)
    by_index = twins(people_conn, "unit", 5, method="index")
    assert [p.similarity for p in by_index.pairs] == pytest.approx(
        [p.similarity for p in plain.pairs], abs=1e-4
    )
    cluster_gallery(people_conn, "unit")
    grouped = twins(people_conn, "unit", 5)
    assert grouped.by_people
    pairs = {(p.first.person_id, p.second.person_id) for p in grouped.pairs}
    assert all(a != b or a is None for a, b in pairs)
    assert len(pairs) == 5  # one pair per two people


@pytest.mark.slow
def test_verify_cli(database_url: str, unit_faces: Path, identities: dict[str, str]) -> None:
    same = runner.invoke(
        app,
        [
            "verify",
            str(unit_faces / "img1.jpg"),
            str(unit_faces / "img2.jpg"),
            "-m",
            "Dlib",
            "-d",
            "dlib",
            "--json",
        ],
    )
    assert same.exit_code == 0, same.output
    verdict = json.loads(same.stdout)
    assert identities["img1.jpg"] == identities["img2.jpg"]
    assert verdict["same_person"] is True and verdict["probability"] > 0.5
    other = next(n for n, p in identities.items() if p != identities["img1.jpg"])
    differ = runner.invoke(
        app,
        [
            "verify",
            str(unit_faces / "img1.jpg"),
            str(unit_faces / other),
            "-m",
            "Dlib",
            "-d",
            "dlib",
        ],
    )
    assert differ.exit_code == 0 and "different people" in differ.stdout


def test_verify_bad_input(unit_faces: Path) -> None:
    photo = str(unit_faces / "img1.jpg")
    for args, message in (
        (["verify", photo], "two photos"),
        (["verify", photo, photo, "-m", "Dlib", "-d", "dlib"], "same file"),
        (["verify", photo, str(unit_faces / "img2.jpg"), "-m", "Facenet512"], "doppel calibrate"),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code != 0
        assert message in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output


def _two_close_people(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ten faces each of two people so alike that plain linkage runs them together."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(16)
    b = a + 0.35 * rng.standard_normal(16)
    faces = np.vstack(
        [a + 0.15 * rng.standard_normal((10, 16)), b + 0.15 * rng.standard_normal((10, 16))]
    )
    truth = np.repeat([0, 1], 10)
    # Two group photos, each with one face of either person.
    photos = np.full(20, -1)
    photos[[0, 10]], photos[[1, 11]] = 0, 1
    return clustering.normalise(faces), truth, photos


def test_clustering_never_puts_two_faces_of_one_photo_in_one_person() -> None:
    vectors, truth, photos = _two_close_people()
    graph, sims = clustering.exact_neighbours(vectors, 10)
    params = clustering.ClusterParams(0.80, 0.82, 0.83, 3, 0.0)
    plain = clustering.cluster(vectors, graph, sims, params)
    assert clustering.same_photo_violations(plain, photos) == 2  # one person swallowed both
    labels = clustering.cluster(vectors, graph, sims, params, photos=photos)
    assert clustering.same_photo_violations(labels, photos) == 0
    assert score(labels, truth).pair_precision == 1.0  # the two came apart along their faces
    # Joining: a new face does not join a person holding a face of its photo.
    known = clustering.centroids(vectors[:10], np.zeros(10, dtype=np.int64))
    newcomer = vectors[2:3]
    nb = np.full((1, 1), -1)
    assert clustering.cluster(newcomer, nb, nb.astype(float), params, known)[0] == 0
    held = clustering.cluster(
        newcomer, nb, nb.astype(float), params, known, photos=np.array([7]), taken={0: {7}}
    )
    assert held[0] == clustering.UNASSIGNED


def _same_photo_faces(conn: psycopg.Connection, gallery: str) -> list:
    """(source, person) of each face in a person that holds another face of its photo."""
    return conn.execute(
        "SELECT f.source, f.person_id FROM face_people f JOIN galleries g ON g.id = f.gallery_id"
        " WHERE g.name = %s AND f.person_id IS NOT NULL"
        " GROUP BY f.source, f.person_id HAVING count(*) > 1",
        (gallery,),
    ).fetchall()


@pytest.mark.slow
def test_faces_of_one_photo_are_different_people(
    people_conn: psycopg.Connection, unit_faces: Path
) -> None:
    """deepface-unit's group photos (a couple, a crowd, a face and its reflection), and
    lfw faces of two people set side by side in one photo, as the embedder gives them."""
    repo = Repository(people_conn)
    lfw = repo.gallery("lfw")
    cluster_gallery(people_conn, "lfw")
    people = _members(people_conn, "lfw")
    pairs = []
    for n, ((first, a), (second, b)) in enumerate(zip(people[0::2], people[1::2], strict=False)):
        pairs.append((f"side-by-side/{n}.jpg", first.id, second.id, a[0].id, b[0].id))
    vector = {
        int(i): np.asarray(v.to_numpy())
        for i, v in people_conn.execute(
            "SELECT id, embedding FROM faces WHERE gallery_id = %s", (lfw.id,)
        ).fetchall()
    }
    with people_conn.transaction():
        repo.copy_faces(
            lfw,
            (
                NewFace(source, None, index, vector[face])
                for source, _, _, x, y in pairs
                for index, face in enumerate((x, y))
            ),
            "faces",
        )
    added = cluster_gallery(people_conn, "lfw")
    assert added.joined >= len(pairs)  # most side-by-side faces found their person
    for gallery in ("lfw", "unit"):
        cluster_gallery(people_conn, gallery, recluster=True)
        assert _same_photo_faces(people_conn, gallery) == []
    # A merge that would join them is refused, with the photo named.
    placed = dict(
        people_conn.execute(
            "SELECT f.source || '#' || f.face_index, fp.person_id FROM faces f"
            " LEFT JOIN face_people fp ON fp.face_id = f.id"
            " WHERE f.gallery_id = %s AND f.source LIKE 'side-by-side/%%'",
            (lfw.id,),
        ).fetchall()
    )
    source = next(s for s, _, _, _, _ in pairs if placed.get(f"{s}#0") and placed.get(f"{s}#1"))
    before = _snapshot(people_conn)
    with pytest.raises(SamePhoto, match=source):
        merge_people(people_conn, "lfw", placed[f"{source}#0"], placed[f"{source}#1"])
    result = runner.invoke(
        app, ["people", "merge", "lfw", str(placed[f"{source}#0"]), str(placed[f"{source}#1"])]
    )
    assert result.exit_code != 0 and source in result.output
    assert _snapshot(people_conn) == before


@pytest.mark.slow
def test_recluster_keeps_person_ids_and_names(people_conn: psycopg.Connection) -> None:
    cluster_gallery(people_conn, "unit")
    before = {p.id: {f.id for f in fs} for p, fs in _members(people_conn, "unit")}
    first = min(before)
    name_person(people_conn, "unit", first, "Ada")
    cluster_gallery(people_conn, "unit", recluster=True)
    after = {p.id: {f.id for f in fs} for p, fs in _members(people_conn, "unit")}
    assert after == before  # nothing changed: every person keeps its id and faces
    assert {p.id: p.name for p in list_people(people_conn, "unit").people}[first] == "Ada"


def _copy_quality(source_url: str, conn: psycopg.Connection) -> None:
    """people_conn's copies carry no quality: bring each face's measures over."""
    settings = Settings.from_env()
    with connect(Settings(settings.home, source_url, "Dlib", "dlib", False)) as source:
        rows = source.execute(
            "SELECT source, face_index, face_size, sharpness, frontalness, confidence FROM faces"
        ).fetchall()
    columns = list(zip(*rows, strict=True))
    conn.execute(
        "UPDATE faces f SET face_size = v.size, sharpness = v.sharp, frontalness = v.front,"
        " confidence = v.conf FROM unnest(%s::text[], %s::int[], %s::int[], %s::real[],"
        " %s::real[], %s::real[]) AS v(source, idx, size, sharp, front, conf)"
        " WHERE f.source = v.source AND f.face_index = v.idx",
        [list(c) for c in columns],
    )


def test_frontalness_and_sharpness_formulas() -> None:
    """Frontalness: 1 with the nose under the eyes' midpoint, 0 with it in front of an
    eye, the same turned either way and at any scale or tilt; sharpness falls with blur."""
    from doppel.faces.quality import frontalness, sharpness

    assert frontalness((0, 0), (10, 0), (5, 6)) == 1.0
    assert frontalness((0, 0), (10, 0), (10, 6)) == 0.0
    assert frontalness((0, 0), (10, 0), (7.5, 6)) == pytest.approx(0.5)
    assert frontalness((0, 0), (10, 0), (2.5, 6)) == pytest.approx(0.5)
    assert frontalness((0, 0), (0, 20), (3, 15)) == pytest.approx(0.5)  # tilted, larger
    assert frontalness((4, 4), (4, 4), (5, 6)) is None
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (150, 150, 3)).astype(np.uint8)
    smooth = np.repeat(np.repeat(noise[::10, ::10], 10, axis=0), 10, axis=1)
    assert sharpness(smooth) < sharpness(noise) / 5
    assert sharpness(noise.astype(np.float32) / 255) == pytest.approx(sharpness(noise), rel=1e-3)


@pytest.mark.slow
def test_ingest_records_each_faces_quality(faces_db: str, unit_faces: Path) -> None:
    """A real ingest fills the quality columns; the five-point pipeline's landmarks give
    frontalness too, and a blurred copy of a face is far less sharp than the face."""
    from PIL import Image, ImageFilter

    from doppel.faces import catalog, imaging
    from doppel.faces.embed import Embedder

    settings = Settings.from_env()
    with connect(Settings(settings.home, faces_db, "Dlib", "dlib", False)) as conn:
        rows = conn.execute("SELECT face_size, sharpness, confidence FROM faces").fetchall()
    assert len(rows) > 100
    assert all(size and size >= 20 for size, _, _ in rows)
    assert all(sharp is not None and sharp > 0 for _, sharp, _ in rows)
    assert all(conf is not None for _, _, conf in rows)

    photo = unit_faces.parent / "lfw-dev" / "photos" / "Ahmed_Chalabi_0001.jpg"
    five_point = Embedder(catalog.default_config("Dlib", "dlib"))

    def measured(image: Image.Image) -> object:
        import io

        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        faces = five_point.detect(imaging.decode(buffer.getvalue(), photo.name))
        assert faces and faces[0].quality is not None
        return faces[0].quality

    sharp = measured(Image.open(photo).convert("RGB"))
    blurred = measured(Image.open(photo).convert("RGB").filter(ImageFilter.GaussianBlur(3)))
    assert sharp.frontalness is not None and 0.5 < sharp.frontalness <= 1  # type: ignore[attr-defined]
    assert 60 < sharp.size < 250  # type: ignore[attr-defined]
    assert blurred.sharpness < sharp.sharpness / 5  # type: ignore[attr-defined]


@pytest.mark.slow
def test_low_quality_faces_stay_out_of_people(
    people_conn: psycopg.Connection, faces_db: str, unit_faces: Path, tmp_path: Path
) -> None:
    """A blurred face of a known person is stored searchable but joins no person; it is
    listed as "unassigned: low quality" (list, --json, API, stats). A face already in a
    person whose measures fall below the floor leaves it at the next recluster."""
    from PIL import Image, ImageFilter

    from doppel.faces import imaging
    from doppel.faces.embed import Embedder
    from doppel.people.quality import QUALITY_FLOOR
    from doppel.store.quality import QualityStore

    _copy_quality(faces_db, people_conn)
    cluster_gallery(people_conn, "lfw")
    gallery = Repository(people_conn).gallery("lfw")
    low = set(QualityStore(people_conn).below_floor(gallery, QUALITY_FLOOR))
    (person, faces), *_ = _members(people_conn, "lfw")
    face = next(f for f in faces if f.id not in low)

    # The person's photo, blurred as a face far behind the camera's focus.
    blurred = tmp_path / "blurred.png"
    original = unit_faces.parent / "lfw-dev" / "photos" / Path(face.source).name
    Image.open(original).convert("RGB").filter(ImageFilter.GaussianBlur(4)).save(blurred)
    embedder = Embedder(PIPELINE)
    found = embedder.detect(imaging.decode(blurred.read_bytes(), str(blurred)))
    assert found and found[0].quality is not None
    vector = embedder.embed_crops([found[0].crop])[0]
    repo = Repository(people_conn)
    with people_conn.transaction():
        repo.copy_faces(
            gallery,
            [
                NewFace(
                    str(blurred),
                    "blurred",
                    0,
                    vector,
                    found[0].box,
                    found[0].confidence,
                    quality=found[0].quality,
                )
            ],
            "faces",
        )
    report = cluster_gallery(people_conn, "lfw")
    new_id = people_conn.execute(
        "SELECT f.id, fp.person_id FROM faces f LEFT JOIN face_people fp ON fp.face_id = f.id"
        " WHERE f.source = %s",
        (str(blurred),),
    ).fetchone()
    assert new_id is not None and new_id[1] is None
    assert report.low_quality == len(low) + 1
    listing = list_people(people_conn, "lfw")
    assert {f.id for f in listing.low_quality} == low | {new_id[0]}
    assert new_id[0] not in {f.id for f in listing.unassigned}
    # Still searchable: the blurred face is found by its own vector.
    hits = people_conn.execute(
        "SELECT id FROM faces ORDER BY embedding <=> %s LIMIT 1", (vector,)
    ).fetchone()
    assert hits == (new_id[0],)

    # A placed face whose sharpness falls below the floor leaves its person at a recluster.
    people_conn.execute("UPDATE faces SET sharpness = 1 WHERE id = %s", (face.id,))
    report = cluster_gallery(people_conn, "lfw", recluster=True)
    assert report.low_quality == len(low) + 2
    listing = list_people(people_conn, "lfw")
    assert {f.id for f in listing.low_quality} == low | {face.id, new_id[0]}
    assert all(face.id not in {f.id for f in fs} for fs in listing.members.values())

    text = runner.invoke(app, ["people", "list", "lfw"])
    assert text.exit_code == 0, text.output
    gated = len(low) + 2
    assert f"unassigned: low quality: {gated} faces" in text.output
    listed = json.loads(runner.invoke(app, ["people", "list", "lfw", "--json"]).output)
    assert listed["unassigned_low_quality"]["faces"] == gated
    assert listed["unassigned_low_quality"]["floor"] == {
        k: v for k, v in vars(QUALITY_FLOOR).items() if v is not None
    }

    stats = runner.invoke(app, ["gallery", "stats", "lfw"], terminal_width=80)
    assert stats.exit_code == 0, stats.output
    assert "sharpness" in stats.output and f"{gated} of " in stats.output
    assert max(len(line) for line in stats.output.splitlines()) <= 80
    payload = json.loads(runner.invoke(app, ["gallery", "stats", "lfw", "--json"]).output)
    assert payload["below_floor"] == payload["below_floor_unassigned"] == gated
    assert payload["measures"]["size"]["known"] == payload["faces"]
    assert payload["measures"]["sharpness"]["quantiles"]["0"] == 1
    assert payload["measures"]["sharpness"]["below"] == gated
    # The people page's API shows the count too.
    from fastapi.testclient import TestClient

    from doppel.web.app import create_app

    people_conn.commit()
    with TestClient(create_app(Settings.from_env(), warm_up=False, workers=0)) as http:
        assert http.get("/api/people/lfw").json()["low_quality"] == gated


def test_a_gallerys_own_quality_floor(people_conn: psycopg.Connection, faces_db: str) -> None:
    """`people floor` keeps a floor with the gallery: clustering, the listing and `gallery
    stats` gate by it; a measure given replaces that measure only; --off lets every face
    be grouped; --default brings the shipped floor back; nonsense is one line."""
    from doppel.people.quality import QUALITY_FLOOR
    from doppel.store.quality import QualityStore

    _copy_quality(faces_db, people_conn)
    gallery = Repository(people_conn).gallery("lfw")
    sizes = sorted(
        r[0]
        for r in people_conn.execute(
            "SELECT face_size FROM faces WHERE gallery_id = %s", (gallery.id,)
        ).fetchall()
    )
    size = sizes[len(sizes) // 4]  # a size floor a quarter of the faces are under
    shipped = set(QualityStore(people_conn).below_floor(gallery, QUALITY_FLOOR))
    result = runner.invoke(app, ["people", "floor", "lfw", "--size", str(size), "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["floor"] == {"size": size, "sharpness": QUALITY_FLOOR.sharpness}
    under = shipped | {
        f
        for (f,) in people_conn.execute(
            "SELECT id FROM faces WHERE gallery_id = %s AND face_size < %s", (gallery.id, size)
        )
    }
    assert shown["below_floor"] == len(under) > len(shipped)
    report = cluster_gallery(people_conn, "lfw")
    assert report.low_quality == len(under)
    listing = list_people(people_conn, "lfw")
    assert {f.id for f in listing.low_quality} == under
    assert not under & {f.id for fs in listing.members.values() for f in fs}
    text = runner.invoke(app, ["people", "floor", "lfw"], terminal_width=80).output
    assert f"size < {size} px" in text and f"{len(under)} of " in text
    stats = json.loads(runner.invoke(app, ["gallery", "stats", "lfw", "--json"]).stdout)
    assert stats["below_floor"] == len(under) and stats["floor"]["size"] == size

    # No floor: the gated faces may be grouped, at the next recluster.
    off = json.loads(runner.invoke(app, ["people", "floor", "lfw", "--off", "--json"]).stdout)
    assert off["floor"] == {} and off["below_floor"] == 0
    assert cluster_gallery(people_conn, "lfw", recluster=True).low_quality == 0
    back = runner.invoke(app, ["people", "floor", "lfw", "--default", "--json"])
    assert json.loads(back.stdout)["below_floor"] == len(shipped)
    for wrong in (["--frontalness", "2"], ["--off", "--size", "3"], ["--off", "--default"]):
        refused = runner.invoke(app, ["people", "floor", "lfw", *wrong])
        assert refused.exit_code != 0 and len(refused.output.strip().splitlines()) == 1, (
            refused.output
        )


@pytest.mark.slow
def test_edits_of_people_are_undone_by_restore(people_conn: psycopg.Connection) -> None:
    cluster_gallery(people_conn, "unit")
    start = _snapshot(people_conn)[0]
    (first, first_faces), (second, second_faces), (third, _) = _members(people_conn, "unit")[:3]
    name_person(people_conn, "unit", second.id, "Grace")
    named = _snapshot(people_conn)
    # A merge, undone: the merged person is back with its id, name and faces.
    merge_people(people_conn, "unit", first.id, second.id)
    result = runner.invoke(app, ["people", "restore", "unit", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["kind"] == "merge"
    assert _snapshot(people_conn) == named
    # A face taken out, then put back.
    take_out(people_conn, "unit", first.id, [str(first_faces[0].id)])
    restore(people_conn, "unit", None)
    assert _snapshot(people_conn)[0] == start
    # Moves: into another person and into a new one, undone latest first.
    moved = move_faces(people_conn, "unit", [str(first_faces[1].id)], third.id)
    assert moved.id == third.id and moved.faces == third.faces + 1
    fresh = move_faces(people_conn, "unit", [str(first_faces[2].id)], None)
    assert fresh.faces == 1 and fresh.id not in {first.id, second.id, third.id}
    restore(people_conn, "unit", None)
    restore(people_conn, "unit", None)
    assert _snapshot(people_conn)[0] == start
    with pytest.raises(UsageError, match="no edit"):
        restore(people_conn, "unit", None)
    # Hide and cover; list --json reads without clustering.
    hide_person(people_conn, "unit", third.id)
    assert set_cover(people_conn, "unit", second.id, str(second_faces[-1].id)).cover.id == (
        second_faces[-1].id
    )
    listed = runner.invoke(app, ["people", "list", "unit", "--json"])
    assert listed.exit_code == 0, listed.output
    people = {p["id"]: p for p in json.loads(listed.stdout)["people"]}
    assert third.id not in people and people[second.id]["name"] == "Grace"
    assert people[second.id]["cover"]["face_id"] == second_faces[-1].id
    every = runner.invoke(app, ["people", "list", "unit", "--hidden", "--json"])
    assert {p["id"]: p["hidden"] for p in json.loads(every.stdout)["people"]}[third.id] is True
    # A move that would put two faces of one photo in one person is refused.
    bad = runner.invoke(app, ["people", "move", "unit", "1", "--to", "nobody"])
    assert bad.exit_code == 2 and "person id" in bad.output


@pytest.mark.slow
def test_faces_moved_by_hand_stay_across_a_recluster(people_conn: psycopg.Connection) -> None:
    """A face moved by hand is pinned: a recluster leaves it (and a person made for it)
    where the user put it; `restore` unpins it, and clustering places it again."""
    cluster_gallery(people_conn, "unit")
    (first, first_faces), _, (third, _) = _members(people_conn, "unit")[:3]
    face, alone, mate = (f.id for f in first_faces[:3])
    result = runner.invoke(app, ["people", "move", "unit", str(face), "--to", str(third.id)])
    assert result.exit_code == 0, result.output
    fresh = move_faces(people_conn, "unit", [str(alone)], None)
    cluster_gallery(people_conn, "unit", recluster=True)
    person_of = {f.id: p.id for p, fs in _members(people_conn, "unit") for f in fs}
    assert person_of[face] == third.id and person_of[alone] == fresh.id
    assert _same_photo_faces(people_conn, "unit") == []
    restore(people_conn, "unit", None)
    restore(people_conn, "unit", None)
    assert people_conn.execute("SELECT count(*) FROM face_people WHERE pinned").fetchone() == (0,)
    cluster_gallery(people_conn, "unit", recluster=True)
    person_of = {f.id: p.id for p, fs in _members(people_conn, "unit") for f in fs}
    assert person_of[face] == person_of[alone] == person_of[mate]


@pytest.mark.slow
def test_split_suggest_apart(people_conn: psycopg.Connection, tmp_path: Path) -> None:
    from doppel.people.suggest import split, suggest

    cluster_gallery(people_conn, "unit")
    (big, faces), *_ = _members(people_conn, "unit")
    kept, part = split(people_conn, "unit", big.id, [str(f.id) for f in faces[:3]])
    assert (kept.id, kept.faces, part.faces) == (big.id, big.faces - 3, 3)
    # The two halves of one person are the likeliest pair, with a picture.
    found = suggest(people_conn, "unit", 3, out_dir=tmp_path, settings=Settings.from_env())
    assert {found[0].first.id, found[0].second.id} == {big.id, part.id}
    assert found[0].probability > 0.5 and found[0].picture and found[0].picture.is_file()
    assert [s.probability for s in found] == sorted((s.probability for s in found), reverse=True)
    result = runner.invoke(app, ["people", "apart", "unit", str(big.id), str(part.id), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"apart": sorted((big.id, part.id))}
    listed = runner.invoke(app, ["people", "suggest", "unit", "--json", "--no-picture"])
    assert listed.exit_code == 0, listed.output
    pairs = [{s["first"]["id"], s["second"]["id"]} for s in json.loads(listed.stdout)]
    assert pairs and {big.id, part.id} not in pairs
    # A recluster would make them one again, but they were said to differ.
    cluster_gallery(people_conn, "unit", recluster=True)
    after = {p.id: {f.id for f in fs} for p, fs in _members(people_conn, "unit")}
    assert not any(
        {f.id for f in faces[:3]} & group and {faces[-1].id} & group for group in after.values()
    )
    # The split is undone like a move; a split by a stricter cut keeps every face.
    restore(people_conn, "unit", None)
    assert list_people(people_conn, "unit").members[big.id] == faces
    parts = split(people_conn, "unit", big.id, stricter=0.06)
    assert sum(p.faces for p in parts) == big.faces
    with pytest.raises(UsageError, match="not in"):
        split(people_conn, "unit", big.id, [str(_members(people_conn, "unit")[-1][1][0].id)])


@pytest.mark.slow
def test_people_api(people_conn: psycopg.Connection) -> None:
    from fastapi.testclient import TestClient

    from doppel.web.app import create_app

    cluster_gallery(people_conn, "unit")
    (big, faces), (second, _) = _members(people_conn, "unit")[:2]
    people_conn.commit()
    with TestClient(create_app(Settings.from_env(), warm_up=False, workers=0)) as http:
        spec = http.get("/api/openapi.json").json()["paths"]
        assert {"/api/people/{gallery}", "/api/people/{gallery}/merge"} <= set(spec)
        listed = http.get("/api/people/unit").json()
        assert listed["people"][0] == {
            "id": big.id,
            "name": None,
            "faces": big.faces,
            "hidden": False,
            "cover_face_id": big.cover.id if big.cover else None,
        }
        grid = http.get(f"/api/people/unit/{big.id}").json()
        assert [f["face_id"] for f in grid["faces"]] == [f.id for f in faces]
        assert (
            http.post(f"/api/people/unit/{big.id}/name", json={"name": "Ada"}).json()["name"]
            == "Ada"
        )
        split = http.post(f"/api/people/unit/{big.id}/split", json={"faces": [faces[0].id]})
        assert split.status_code == 200, split.text
        part = split.json()[1]["id"]
        pairs = http.get("/api/people/unit/suggestions?k=3").json()
        assert {pairs[0]["first"]["id"], pairs[0]["second"]["id"]} == {big.id, part}
        merged = http.post("/api/people/unit/merge", json={"keep": big.id, "other": part})
        assert merged.json()["faces"] == big.faces
        undone = http.post("/api/people/unit/restore", json={})
        assert undone.json()["kind"] == "merge"
        assert http.post(f"/api/people/unit/{part}/hide", json={}).json()["hidden"] is True
        assert part not in [p["id"] for p in http.get("/api/people/unit").json()["people"]]
        moved = http.post("/api/people/unit/move", json={"faces": [faces[1].id], "to": second.id})
        assert moved.json()["faces"] == second.faces + 1
        cover = http.post(f"/api/people/unit/{big.id}/cover", json={"face_id": faces[2].id})
        assert cover.json()["cover_face_id"] == faces[2].id
        removed = http.post(f"/api/people/unit/{big.id}/remove", json={"faces": [faces[3].id]})
        assert removed.json()["faces"] == big.faces - 3
        missing = http.get("/api/people/unit/999999")
        assert missing.status_code == 404 and "no person 999999" in missing.json()["detail"]


@pytest.mark.slow
def test_hidden_people_are_left_out_of_strangers(
    people_conn: psycopg.Connection, unit_faces: Path
) -> None:
    cluster_gallery(people_conn, "unit")
    photo = Path(_members(people_conn, "unit")[0][1][0].source)

    def answered() -> set:
        result = find(people_conn, photo, SearchRequest("unit", k=5, exact=True, strangers=True))
        return {m.face.person_id for m in result.results[0].matches} - {None}

    shown = answered()
    assert shown
    for person in shown:
        hide_person(people_conn, "unit", person)
    assert not answered() & shown


def _page_people(driver: object) -> dict[int, tuple[str, int, bool]]:
    """The people cards the page shows: id -> (label, faces, hidden), read in one go
    (the list is drawn anew after each edit)."""
    cards = driver.execute_script(  # type: ignore[attr-defined]
        "return [...document.querySelectorAll('#people-list .person-card:not(.loose)')].map((c) =>"
        " [Number(c.dataset.person), c.querySelector('.name').textContent,"
        " c.querySelector('.count').textContent])"
    )
    return {
        person: (label, int(count.split(" face")[0]), "hidden" in count)
        for person, label, count in cards
    }


def _db_people(conn: psycopg.Connection, hidden: bool = False) -> dict[int, tuple[str, int, bool]]:
    listing = list_people(conn, "unit", hidden=hidden)
    return {p.id: (p.label, p.faces, p.hidden) for p in listing.people}


@pytest.mark.slow
def test_people_page_in_chromium(people_conn: psycopg.Connection, tmp_path: Path) -> None:
    """A real `doppel serve` on a clustered gallery, driven in Chromium: rename, merge
    from a suggestion and undo it, move a face to a new person, make a cover, hide;
    after each, the page and the database agree."""
    import os
    import signal
    import subprocess
    import sys

    import httpx

    from tests.test_server import _chromium, _free_port, _serving

    browser, driver_path = _chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    cluster_gallery(people_conn, "unit")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    doppel = str(Path(sys.executable).with_name("doppel"))
    command = [doppel, "serve", "--port", str(port), "--workers", "0", "--gallery", "unit"]
    process = subprocess.Popen(command, env=dict(os.environ), stderr=subprocess.PIPE, text=True)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,1000")
    driver = None
    try:
        _serving(process, url)
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        wait = WebDriverWait(driver, 60)

        def done(words: str) -> None:
            wait.until(
                lambda d: (
                    words in d.find_element(By.ID, "people-status").text
                    or d.find_element(By.ID, "people-error").is_displayed()
                )
            )
            assert not driver.find_element(By.ID, "people-error").is_displayed(), (
                driver.find_element(By.ID, "people-error").text
            )

        def agree() -> None:
            wait.until(lambda d: _page_people(d) == _db_people(people_conn))

        def open_person(person: int) -> None:
            card = f'#people-list .person-card[data-person="{person}"]'
            driver.find_element(By.CSS_SELECTOR, card).click()
            wait.until(lambda d: d.find_element(By.ID, "person").is_displayed())
            wait.until(lambda d: f"id {person} ·" in d.find_element(By.ID, "person-info").text)

        driver.get(url + "/#people")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#people-list .person-card"))
        agree()
        unassigned = len(list_people(people_conn, "unit").unassigned)
        assert f"{unassigned} unassigned" in driver.find_element(By.ID, "people-summary").text
        images = driver.find_elements(By.CSS_SELECTOR, "#people-list img")
        assert images and all(i.get_attribute("alt").startswith("cover face of") for i in images)
        wait.until(
            lambda d: d.execute_script(
                "return [...document.images].filter(i => i.offsetParent)"
                ".every(i => i.complete && i.naturalWidth > 0)"
            )
        )
        driver.save_screenshot(str(tmp_path / "people-list.png"))

        # Rename the largest person, from the keyboard (Enter submits the name).
        big = next(iter(_db_people(people_conn)))
        open_person(big)
        name = driver.find_element(By.ID, "person-name")
        name.clear()
        name.send_keys("Ada", Keys.ENTER)
        done("is now called Ada")
        assert _db_people(people_conn)[big][0] == "Ada"
        assert driver.find_element(By.ID, "person-title").text == "Ada"
        # A refused edit is one readable line, and changes nothing.
        name.clear()
        name.send_keys("   ", Keys.ENTER)
        wait.until(lambda d: d.find_element(By.ID, "people-error").is_displayed())
        assert driver.find_element(By.ID, "people-error").text == "a person's name cannot be empty"
        assert _db_people(people_conn)[big][0] == "Ada"
        driver.find_element(By.ID, "person-back").click()
        agree()

        # Merge the likeliest suggested pair from its card, then undo it.
        pairs = httpx.get(f"{url}/api/people/unit/suggestions?k=6").json()
        assert pairs, "no merge suggestion on the page's gallery"
        first, second = pairs[0]["first"], pairs[0]["second"]
        keep, other = (second, first) if second["faces"] > first["faces"] else (first, second)
        before = _db_people(people_conn)
        driver.find_element(By.CSS_SELECTOR, "#suggestion-list .pair button").click()
        done("merged into")
        after = _db_people(people_conn)
        assert other["id"] not in after
        assert after[keep["id"]][1] == before[keep["id"]][1] + before[other["id"]][1]
        agree()
        # In a closed <details>: its text, not what is on screen.
        journal = driver.find_element(By.ID, "edit-list").get_attribute("textContent")
        assert f"person {other['id']} merged into person {keep['id']}" in journal
        spec = httpx.get(f"{url}/api/openapi.json").json()["paths"]
        assert "/api/people/{gallery}/edits" in spec
        driver.find_element(By.ID, "people-undo").click()
        done("Undone: person")
        assert _db_people(people_conn) == before
        agree()

        # Move a face of Ada's to a new person: the face chosen by its checkbox (Space).
        open_person(big)
        faces = list_people(people_conn, "unit").members[big]
        moved = faces[-1].id
        box = driver.find_element(By.CSS_SELECTOR, f'.face[data-face="{moved}"] input')
        box.send_keys(Keys.SPACE)
        wait.until(lambda d: "1 face selected" in d.find_element(By.ID, "selection-count").text)
        Select(driver.find_element(By.ID, "move-to")).select_by_value("new")
        driver.find_element(By.ID, "move-faces").click()
        done("moved to")
        members = list_people(people_conn, "unit").members
        fresh = next(p for p, fs in members.items() if [f.id for f in fs] == [moved])
        assert moved not in [f.id for f in members[big]]
        shown = [
            int(t.get_attribute("data-face"))
            for t in driver.find_elements(By.CSS_SELECTOR, "#person-faces .face")
        ]
        assert shown == [f.id for f in members[big]]

        # A cover chosen by clicking a face's button.
        cover = members[big][1].id
        driver.find_element(By.CSS_SELECTOR, f'.face[data-face="{cover}"] .make-cover').click()
        done(f"Face {cover} now shows Ada")
        covers = {
            p.id: p.cover.id if p.cover else None for p in list_people(people_conn, "unit").people
        }
        assert covers[big] == cover
        src = driver.find_element(By.ID, "person-cover").get_attribute("src")
        assert src.endswith(f"/api/faces/{cover}/image?crop=true")
        wait.until(
            lambda d: d.execute_script(
                "return [...document.images].filter(i => i.offsetParent)"
                ".every(i => i.complete && i.naturalWidth > 0)"
            )
        )
        driver.save_screenshot(str(tmp_path / "people-person.png"))

        def select(face: int) -> None:
            driver.find_element(By.CSS_SELECTOR, f'.face[data-face="{face}"] input').click()
            wait.until(lambda d: "1 face selected" in d.find_element(By.ID, "selection-count").text)

        def person_of(face: int) -> tuple[int | None, bool]:
            row = people_conn.execute(
                "SELECT fp.person_id, coalesce(fp.excluded, false) FROM faces f"
                " LEFT JOIN face_people fp ON fp.face_id = f.id WHERE f.id = %s",
                (face,),
            ).fetchone()
            assert row is not None
            return row[0], row[1]

        # Take a face out, then undo that edit from the list of edits.
        out = members[big][2].id
        select(out)
        driver.find_element(By.ID, "remove-faces").click()
        done("taken out of Ada")
        assert person_of(out) == (None, True)
        assert str(out) not in [
            t.get_attribute("data-face")
            for t in driver.find_elements(By.CSS_SELECTOR, "#person-faces .face")
        ]
        driver.find_element(By.ID, "person-back").click()
        driver.find_element(By.CSS_SELECTOR, "#people-edits summary").click()
        undo = driver.find_element(By.CSS_SELECTOR, "#edit-list button")
        assert "taken out of person" in undo.get_attribute("aria-label")
        undo.click()
        done("Undone: 1 face taken out")
        assert person_of(out) == (big, False)

        # Split one face off as a new person.
        open_person(big)
        select(out)
        driver.find_element(By.ID, "split-faces").click()
        done("split off Ada")
        part = person_of(out)[0]
        assert part not in (None, big) and _db_people(people_conn)[part][1] == 1
        driver.find_element(By.ID, "person-back").click()
        agree()

        # The faces in no person open from their own card, and one is moved into Ada.
        loose = list_people(people_conn, "unit").unassigned
        assert loose, "the page's gallery has no unassigned face"
        card = '#people-list .person-card[data-person="unassigned"]'
        assert f"{len(loose)} face" in driver.find_element(By.CSS_SELECTOR, card).text
        driver.find_element(By.CSS_SELECTOR, card).click()
        wait.until(lambda d: "in no person" in d.find_element(By.ID, "person-info").text)
        assert not driver.find_element(By.ID, "person-tools").is_displayed()
        assert not driver.find_element(By.ID, "remove-faces").is_displayed()
        shown = [
            int(t.get_attribute("data-face"))
            for t in driver.find_elements(By.CSS_SELECTOR, "#person-faces .face")
        ]
        assert shown == [f.id for f in loose]
        select(loose[0].id)
        Select(driver.find_element(By.ID, "move-to")).select_by_value(str(big))
        driver.find_element(By.ID, "move-faces").click()
        done("moved to Ada")
        assert person_of(loose[0].id)[0] == big
        driver.find_element(By.ID, "person-back").click()
        agree()

        # Decline the likeliest suggestion: kept apart, not suggested again.
        pair = httpx.get(f"{url}/api/people/unit/suggestions?k=6").json()[0]
        apart = {pair["first"]["id"], pair["second"]["id"]}
        driver.find_element(By.CSS_SELECTOR, "#suggestion-list .pair button.secondary").click()
        done("kept apart")
        from doppel.people.suggest import suggest

        assert apart not in [{s.first.id, s.second.id} for s in suggest(people_conn, "unit", 50)]
        shown_pairs = driver.execute_script(
            "return [...document.querySelectorAll('#suggestion-list .pair button.secondary')]"
            ".map((b) => b.getAttribute('aria-label'))"
        )
        first_label = pair["first"]["name"] or f"person {pair['first']['id']}"
        second_label = pair["second"]["name"] or f"person {pair['second']['id']}"
        assert f"{first_label} and {second_label} are different people" not in shown_pairs

        # Hide the new person: gone from the list, back with "Show hidden people".
        open_person(fresh)
        driver.find_element(By.ID, "person-hide").click()
        done("is hidden")
        assert _db_people(people_conn, hidden=True)[fresh][2] is True
        driver.find_element(By.ID, "person-back").click()
        agree()
        assert fresh not in _page_people(driver)
        driver.find_element(By.ID, "people-hidden").click()
        wait.until(lambda d: _page_people(d) == _db_people(people_conn, hidden=True))
        assert _page_people(driver)[fresh][2] is True

        # A phone's screen (emulated, as in test_page_at_390_pixels_in_chromium): the
        # list and a person fit without sideways scrolling.
        screen = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", screen)
        fits = "return document.documentElement.scrollWidth <= window.innerWidth"
        driver.get("about:blank")  # a new page: "Show hidden people" starts unticked
        driver.get(url + "/#people")
        wait.until(lambda d: _page_people(d) == _db_people(people_conn))
        assert driver.execute_script(fits), "the people list is wider than 390 px"
        open_person(big)
        driver.save_screenshot(str(tmp_path / "people-person-390.png"))
        assert driver.execute_script(fits), "a person's faces are wider than 390 px"
        print(f"screenshots: {tmp_path}")
    finally:
        if driver is not None:
            driver.quit()
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
