"""doppel resemble: the statistics on seeded vectors, and whole runs on real faces."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar

import numpy as np
import psycopg
import pytest
from typer.testing import CliRunner

from doppel.errors import NoFaceFound, UsageError
from doppel.faces.catalog import default_config
from doppel.resemble import analysis as rs
from doppel.resemble import dates, methods, trust
from doppel.resemble.report import write_report

# The pipeline `doppel resemble -m Dlib -d mtcnn` uses, so the CLI test finds its cache.
CONFIG = default_config("Dlib", "mtcnn")


# --------------------------------------------------------------------------- seeded vectors


def people_and_target(
    seed: int = 0,
    spread: float = 0.5,
    sizes: tuple[int, ...] = (6, 5, 7),
    target_of: int = 0,
    n_target: int = 4,
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Each person a random direction, photos scattered around it; the target is one of them."""
    rng = np.random.default_rng(seed)
    dim = 64
    centres = rng.standard_normal((len(sizes), dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    people = np.vstack(
        [
            c + spread * rng.standard_normal((n, dim)) / np.sqrt(dim)
            for c, n in zip(centres, sizes, strict=True)
        ]
    )
    labels = np.repeat(np.arange(len(sizes)), sizes)
    target = centres[target_of] + spread * rng.standard_normal((n_target, dim)) / np.sqrt(dim)
    return [f"p{i}" for i in range(len(sizes))], people, labels, target


def test_every_method_puts_the_right_person_first() -> None:
    names, people, labels, target = people_and_target(target_of=1)
    result = rs.analyse(names, people, labels, target, [f"t{i}" for i in range(4)], CONFIG)
    assert {m.name for m in result.methods} >= {"cosine", "centroid", "knn", "logistic"}
    for method in result.methods:
        assert method.winner == "p1", method.name
        assert method.ranking[0] == "p1"
        assert method.support >= 0.95
        assert method.loo_accuracy == 1.0
        assert method.loo_photos == len(labels)
        low, high = method.intervals["p1"].low, method.intervals["p1"].high
        assert low <= method.scores["p1"] <= high
    assert result.verdict.startswith(f"All {len(result.methods)} methods put p1 first")
    assert all(t.closest == "p1" and not t.outlier for t in result.targets)


def test_probabilities_sum_to_one() -> None:
    names, people, labels, target = people_and_target(seed=3)
    for method in methods.build_methods(["knn", "logistic"]):
        scores = method.scores(people, labels, len(names), target)
        np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-9)


def test_bootstrap_is_seeded_and_narrows_with_more_photos() -> None:
    rng = np.random.default_rng(1)
    few = rng.normal(0.5, 0.1, size=(5, 2))
    many = rng.normal(0.5, 0.1, size=(200, 2))
    first = trust.bootstrap(few, rounds=500, seed=7)
    again = trust.bootstrap(few, rounds=500, seed=7)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    width_few = first[1] - first[0]
    low, high, _ = trust.bootstrap(many, rounds=500, seed=7)
    assert np.all(high - low < width_few)


def test_indistinguishable_people_show_in_leave_one_out_and_verdict() -> None:
    rng = np.random.default_rng(5)
    centre = rng.standard_normal(64)
    centre /= np.linalg.norm(centre)
    people = centre + 0.5 * rng.standard_normal((16, 64)) / 8
    labels = np.repeat([0, 1], 8)
    target = centre + 0.5 * rng.standard_normal((6, 64)) / 8
    result = rs.analyse(["a", "b"], people, labels, target, [str(i) for i in range(6)], CONFIG)
    accuracies = [m.loo_accuracy for m in result.methods]
    assert all(a is not None and a < 0.8 for a in accuracies), accuracies
    assert (
        "split" in result.verdict
        or "take it lightly" in result.verdict
        or "weakly" in result.verdict
    )


def _method_result(name: str, winner: str, support: float, loo: float = 1.0) -> trust.MethodResult:
    other = "b" if winner == "a" else "a"
    return trust.MethodResult(
        name,
        name,
        "probability",
        {winner: 0.8, other: 0.2},
        {winner: trust.Interval(0.7, 0.9), other: trust.Interval(0.1, 0.3)},
        winner,
        support,
        loo,
        10,
        np.zeros((3, 2)),
    )


def test_verdict_sentences() -> None:
    agree = [_method_result(n, "a", 1.0) for n in ("m1", "m2", "m3")]
    assert trust.verdict(agree, 3) == (
        "All 3 methods put a first, each strongly: a stays first "
        "in at least 95% of resamples of the 3 target photos."
    )
    mostly = [*agree[:2], _method_result("m3", "b", 0.6)]
    text = trust.verdict(mostly, 3)
    assert text.startswith("2 of 3 methods put a first") and "m3 favours b" in text
    split = [_method_result("m1", "a", 0.9), _method_result("m2", "b", 0.9)]
    assert trust.verdict(split, 3) == "The evidence is split: m1 favours a; m2 favours b."
    weak = [_method_result(n, "a", 0.6, loo=0.5) for n in ("m1", "m2")]
    text = trust.verdict(weak, 3)
    assert "weakly" in text and "60%" in text and "take it lightly" in text


def test_knn_default_k_fits_small_sets() -> None:
    knn = methods.KNearest()
    assert knn.effective_k(np.repeat([0, 1], [2, 9])) == 2
    assert knn.effective_k(np.repeat([0, 1], [8, 9])) == 5
    assert methods.KNearest(k=3).effective_k(np.repeat([0, 1], [2, 9])) == 3
    [built] = methods.build_methods(["knn"], k=4)
    assert isinstance(built, methods.KNearest) and built.k == 4


def test_a_new_method_joins_without_touching_the_others() -> None:
    @dataclass
    class Nearest(methods.Method):
        """Cosine similarity to each person's single closest photo."""

        name: ClassVar[str] = "nearest"
        title: ClassVar[str] = "nearest photo"
        unit: ClassVar[str] = "cosine similarity"

        def scores(
            self, people: np.ndarray, labels: np.ndarray, n_people: int, targets: np.ndarray
        ) -> np.ndarray:
            sims = methods.normalized(targets) @ methods.normalized(people).T
            return np.stack([sims[:, labels == p].max(axis=1) for p in range(n_people)], 1)

    methods.register(Nearest)
    try:
        names, people, labels, target = people_and_target(target_of=2)
        result = rs.analyse(names, people, labels, target, ["t"] * 4, CONFIG)
        added = next(m for m in result.methods if m.name == "nearest")
        assert added.winner == "p2" and added.loo_accuracy == 1.0
        assert f"All {len(methods.METHODS)} methods" in result.verdict
    finally:
        del methods.METHODS["nearest"]
    with pytest.raises(UsageError, match="unknown method nearest"):
        methods.build_methods(["nearest"])


def test_periods_group_by_capture_date() -> None:
    names, people, labels, target = people_and_target(n_target=4)
    moments = [
        datetime(2010, 5, 1),
        datetime(2010, 7, 1),
        datetime(2019, 1, 1),
        datetime(2024, 3, 3),
    ]
    result = rs.analyse(
        names, people, labels, target, ["a", "b", "c", "d"], CONFIG, moments=moments
    )
    assert result.periods is not None
    assert [p.label for p in result.periods] == ["2010", "2019", "2024"]
    assert result.periods[0].photos == ["a", "b"]
    cosine = next(m for m in result.methods if m.name == "cosine")
    assert result.periods[0].scores["cosine"]["p0"] == pytest.approx(cosine.per_photo[:2, 0].mean())
    months = dates.by_period(moments[:2], result.methods, names, ["a", "b"], "month")
    assert [p.label for p in months] == ["2010-05", "2010-07"]
    with pytest.raises(UsageError):
        dates.by_period(moments, result.methods, names, ["a"] * 4, "fortnight")


def test_capture_time_reads_exif_else_file_time(tmp_path: Path) -> None:
    from PIL import Image

    tagged = tmp_path / "tagged.jpg"
    exif = Image.Exif()
    exif.get_ifd(0x8769)[36867] = "2015:06:07 08:09:10"
    Image.new("RGB", (8, 8), "grey").save(tagged, exif=exif)
    assert dates.capture_time(tagged) == datetime(2015, 6, 7, 8, 9, 10)
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8), "grey").save(plain)
    stamp = datetime(2001, 2, 3, 4, 5, 6).timestamp()
    os.utime(plain, (stamp, stamp))
    assert dates.capture_time(plain) == datetime(2001, 2, 3, 4, 5, 6)


def test_report_from_seeded_vectors(tmp_path: Path) -> None:
    names, people, labels, target = people_and_target()
    moments = [
        datetime(2020, 1, 1),
        datetime(2020, 1, 1),
        datetime(2021, 6, 1),
        datetime(2023, 1, 1),
    ]
    result = rs.analyse(
        names, people, labels, target, [f"t{i}.jpg" for i in range(4)], CONFIG, moments=moments
    )
    files = write_report(result, tmp_path / "report")
    page = files.html.read_text()
    for path in files.pictures.values():
        assert path.stat().st_size > 10_000
        assert f'src="{path.name}"' in page
    assert set(files.pictures) >= {"Embeddings in 2-D (PCA)", "Over time"}
    assert result.verdict in page
    data = json.loads(files.json.read_text())
    assert data["leader"] == "p0"
    assert {m["name"] for m in data["methods"]} == {m.name for m in result.methods}
    assert all(m["loo_accuracy"] == 1.0 for m in data["methods"])


def test_report_shows_a_thumbnail_of_each_target_photo(tmp_path: Path) -> None:
    from PIL import Image

    names, people, labels, target = people_and_target()
    photos = []
    for i, colour in enumerate(("red", "green", "blue")):
        photos.append(tmp_path / f"t{i}.png")
        Image.new("RGB", (300, 200), colour).save(photos[-1])
    photos.append(tmp_path / "gone.jpg")  # read once, gone by the time of the report
    result = rs.analyse(names, people, labels, target, [str(p) for p in photos], CONFIG)
    files = write_report(result, tmp_path / "report")
    page = files.html.read_text()
    thumbs = sorted((files.folder / "thumbs").iterdir())
    assert len(thumbs) == 3
    for thumb in thumbs:
        assert f'src="thumbs/{thumb.name}"' in page
        with Image.open(thumb) as img:
            assert max(img.size) == 96
    rows = page.split("<h2>Per photo</h2>")[1].split("</table>")[0].split("<tr")[2:]
    assert len(rows) == 4
    assert ["thumb" in row for row in rows] == [True, True, True, False]


def test_report_html_shows_names_with_markup_as_text(tmp_path: Path) -> None:
    _, people, labels, target = people_and_target()
    names = ["<b>mum</b>", "dad & <i>co</i>", "<script>alert(1)</script>"]
    photos = [f"<img src=x onerror=alert({i})>.jpg" for i in range(4)]
    result = rs.analyse(names, people, labels, target, photos, CONFIG)
    page = write_report(result, tmp_path / "report").html.read_text()
    assert "&lt;b&gt;mum&lt;/b&gt;" in page and "dad &amp; &lt;i&gt;co&lt;/i&gt;" in page
    assert "<script>" not in page and "<b>mum" not in page and "<i>co" not in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(0)&gt;.jpg" in page


def test_fewer_than_two_people_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "people" / "mum").mkdir(parents=True)
    with pytest.raises(UsageError, match="two or more"):
        rs.person_folders(tmp_path / "people")


# --------------------------------------------------------------------------- real faces


@dataclass(frozen=True)
class Folders:
    people: Path  # person01 (5 photos), person03 (7)
    own: Path  # person01's 3 other photos
    other: Path  # person04's photos and a picture without a face
    lone: Path  # a single person
    faceless_people: Path  # person01 and a person whose only picture has no face


def _link(folder: Path, files: list[Path]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for file in files:
        (folder / file.name).symlink_to(file)
    return folder


def _blank(path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    gradient = np.tile(np.linspace(0, 255, 200, dtype=np.uint8), (200, 1))
    Image.fromarray(np.dstack([gradient] * 3)).save(path)
    return path


@pytest.fixture(scope="session")
def folders(
    unit_faces: Path, identities: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Folders:
    """People and target folders as symlinks into the shared photos (never copies)."""
    root = tmp_path_factory.mktemp("resemble")

    def photos(person: str) -> list[Path]:
        names = sorted(
            (f for f, who in identities.items() if who == person),
            key=lambda f: int("".join(filter(str.isdigit, f))),
        )
        return [unit_faces / f for f in names]

    p01, p03, p04 = photos("person01"), photos("person03"), photos("person04")
    _link(root / "people" / "person01", p01[:5])
    _link(root / "people" / "person03", p03)
    _link(root / "own", p01[5:])
    _link(root / "other", p04[:4])
    _blank(root / "other" / "zz-no-face.png")
    _link(root / "lone" / "person01", p01[:2])
    _link(root / "faceless" / "person01", p01[:2])
    _blank(root / "faceless" / "nobody" / "blank.png")
    return Folders(root / "people", root / "own", root / "other", root / "lone", root / "faceless")


@pytest.fixture(scope="session")
def cache_url(server_url: str) -> Iterator[str]:
    """One database for the whole session, so its embedding cache is shared between tests."""
    name = f"doppel_resemble_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield psycopg.conninfo.make_conninfo(server_url, dbname=name)
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run(url: str, people: Path, target: Path, **options: object) -> rs.ResembleResult:
    from doppel.config import Settings
    from doppel.faces.embed import embedder_for
    from doppel.store.db import connect

    settings = Settings.from_env()
    settings = Settings(settings.home, url, settings.model, settings.detector, settings.debug)
    with connect(settings) as conn:
        return rs.resemble(conn, people, target, embedder_for(CONFIG), **options)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def own_result(cache_url: str, folders: Folders) -> rs.ResembleResult:
    """person01's held-back photos against person01 and person03: the first, slow run."""
    return _run(cache_url, folders.people, folders.own)


@pytest.fixture(scope="session")
def other_result(
    cache_url: str, folders: Folders, own_result: rs.ResembleResult
) -> rs.ResembleResult:
    """person04 as the target, after own_result: only the target's photos are new."""
    return _run(cache_url, folders.people, folders.other, by_date=True)


@pytest.mark.slow
def test_own_photos_rank_person01_first_by_every_method(own_result: rs.ResembleResult) -> None:
    assert own_result.people == ["person01", "person03"]
    assert len(own_result.methods) >= 4
    for method in own_result.methods:
        assert method.winner == "person01", (method.name, method.scores)
        assert method.support >= 0.95, (method.name, method.support)
        assert method.loo_accuracy is not None and method.loo_accuracy >= 0.9
        assert method.loo_photos == 12
    assert own_result.verdict.startswith(f"All {len(own_result.methods)} methods put person01")
    assert [t.closest for t in own_result.targets] == ["person01"] * 3
    assert own_result.embedded == 15 and own_result.from_cache == 0


@pytest.mark.slow
def test_third_person_gets_a_verdict_and_faceless_photo_is_skipped(
    other_result: rs.ResembleResult,
) -> None:
    assert len(other_result.targets) == 4
    assert [Path(p).name for p in other_result.no_face] == ["zz-no-face.png"]
    assert other_result.verdict and (
        "person01" in other_result.verdict or "person03" in other_result.verdict
    )
    assert other_result.periods and sum(len(p.photos) for p in other_result.periods) == 4
    # Only the target's five files were new; the people's twelve came from the cache.
    assert other_result.embedded == 5 and other_result.from_cache == 12


@pytest.mark.slow
def test_second_run_embeds_only_what_is_new(
    cache_url: str, folders: Folders, own_result: rs.ResembleResult, tmp_path: Path
) -> None:
    again = _run(cache_url, folders.people, folders.own)
    assert again.embedded == 0 and again.from_cache == 15
    assert again.verdict == own_result.verdict
    for before, after in zip(own_result.methods, again.methods, strict=True):
        assert before.scores == pytest.approx(after.scores)
    # A renamed copy of a known photo is found by content, not by name.
    target = tmp_path / "target"
    target.mkdir()
    first = sorted(folders.own.iterdir())[0]
    (target / "renamed.jpg").symlink_to(first.resolve())
    renamed = _run(cache_url, folders.people, target)
    assert renamed.embedded == 0


@pytest.mark.slow
def test_several_faces_use_the_largest_and_say_so(other_result: rs.ResembleResult) -> None:
    crowded = [t for t in other_result.targets if t.face_count > 1]
    for target in crowded:
        assert any(
            target.path in note and "used the largest" in note for note in other_result.notes
        )
    assert all(f"{t.face_count} faces" in " ".join(other_result.notes) for t in crowded)


@pytest.mark.slow
def test_person_without_a_face_is_named(cache_url: str, folders: Folders) -> None:
    with pytest.raises(NoFaceFound, match="person nobody"):
        _run(cache_url, folders.faceless_people, folders.own)


@pytest.mark.slow
def test_cli_prints_table_verdict_and_writes_report(
    cache_url: str,
    folders: Folders,
    own_result: rs.ResembleResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from doppel.cli import app

    monkeypatch.setenv("DOPPEL_DATABASE_URL", cache_url)
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        [
            "resemble",
            str(folders.people),
            str(folders.own),
            "-m",
            "Dlib",
            "-d",
            "mtcnn",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "LOO" in result.output and "person01" in result.output
    assert "All 4 methods put person01 first" in " ".join(result.output.split())
    assert "0 photos embedded, 15 from the cache" in " ".join(result.output.split())
    page = (out / "index.html").read_text()
    for name in ("pca.png", "scores.png", "per-photo.png"):
        assert (out / name).is_file() and f'src="{name}"' in page
    data = json.loads((out / "report.json").read_text())
    assert data["leader"] == "person01"
    assert all(m["loo_accuracy"] >= 0.9 for m in data["methods"])


def test_cli_json_is_the_report_on_stdout(
    cache_url: str,
    folders: Folders,
    own_result: rs.ResembleResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from doppel.cli import app

    monkeypatch.setenv("DOPPEL_DATABASE_URL", cache_url)
    out = tmp_path / "report"
    args = ["resemble", str(folders.people), str(folders.own), "-m", "Dlib", "-d", "mtcnn"]
    result = CliRunner().invoke(app, [*args, "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["leader"] == "person01"
    assert payload["report"] == str((out / "index.html").resolve())
    saved = json.loads((out / "report.json").read_text())
    assert {k: v for k, v in payload.items() if k != "report"} == {
        k: v for k, v in saved.items() if k != "pictures"
    }


def test_cli_fewer_than_two_people_exits_2(folders: Folders, database_url: str) -> None:
    import subprocess
    import sys

    doppel = Path(sys.executable).parent / "doppel"
    done = subprocess.run(
        [str(doppel), "resemble", str(folders.lone), str(folders.own)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "two or more" in done.stderr and "only person01" in done.stderr
