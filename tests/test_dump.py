"""doppel load-dump: real pg_dump output in every format, hostile dumps, bad rows, resume."""

from __future__ import annotations

import http.server
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from typer.testing import CliRunner

from doppel import sources
from doppel.cli import app
from doppel.config import Settings
from doppel.dump import archive as dump_archive
from doppel.dump import batches as dump_batches
from doppel.dump import loader as dump
from doppel.dump import rows as dump_rows
from doppel.dump import streams as dump_streams
from doppel.errors import BadDump
from doppel.store.repository import Repository
from doppel.store.vectors import check_vector, read_vectors
from doppel.types import RACES, Filters
from tests.helpers import write_faces_dump

ROWS = 300


@pytest.fixture(scope="module")
def dumps(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One 300-row dump per format, written by the real pg_dump."""
    folder = tmp_path_factory.mktemp("dumps")
    made = {
        fmt: write_faces_dump(server_url, folder / f"{fmt}.out", ROWS, fmt)
        for fmt in ("plain", "inserts", "column-inserts", "custom")
    }
    made["plain-gzip"] = write_faces_dump(server_url, folder / "plain.gz", ROWS, compress=True)
    made["custom-gzip"] = write_faces_dump(
        server_url, folder / "custom.gz", ROWS, "custom", compress=True
    )
    return made


def count(conn: psycopg.Connection, gallery: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM faces f JOIN galleries g ON g.id = f.gallery_id WHERE g.name = %s",
        (gallery,),
    ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.parametrize(
    "fmt", ["plain", "inserts", "column-inserts", "custom", "plain-gzip", "custom-gzip"]
)
def test_every_pg_dump_format_loads_all_rows(
    conn: psycopg.Connection, dumps: dict[str, Path], fmt: str
) -> None:
    report = dump.load_dump(conn, dumps[fmt], "ffhq")
    assert report.format.startswith("custom" if "custom" in fmt else "plain")
    assert report.format.endswith("(gzip)") == fmt.endswith("gzip")
    assert (report.rows_read, report.rows_loaded, report.rows_present) == (ROWS, ROWS, 0)
    assert report.bad_rows == [] and report.ignored == []
    assert count(conn, "ffhq") == ROWS
    gallery = Repository(conn).gallery("ffhq")
    assert gallery.config == dump.CONFIG
    assert (gallery.config.model, gallery.config.detector, gallery.config.align) == (
        "Facenet512",
        "skip",
        False,
    )
    assert report.index_built and Repository(conn).has_index(gallery)
    row = conn.execute("SELECT source, age, sex, race FROM faces ORDER BY source LIMIT 1")
    source, age, sex, race = row.fetchone()  # type: ignore[misc]
    assert source == "/data/ffhq/images1024x1024/00000/00000.png"
    assert isinstance(age, int) and sex in ("F", "M") and race in RACES


@pytest.mark.parametrize("fmt", ["plain", "inserts"])
def test_vectors_survive_exactly(
    conn: psycopg.Connection,
    dumps: dict[str, Path],
    fmt: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.helpers import clustered_vectors

    # Small batches: many batches, each read and sent on its own.
    monkeypatch.setattr(dump_batches, "BATCH_ROWS", 64)
    report = dump.load_dump(conn, dumps[fmt], "ffhq")
    assert report.rows_loaded == ROWS
    expected = clustered_vectors(ROWS, seed=0)
    rows = conn.execute("SELECT source, embedding FROM faces").fetchall()
    by_index = {int(Path(source).stem): vector.to_numpy() for source, vector in rows}
    assert sorted(by_index) == list(range(ROWS))
    assert np.array_equal(np.stack([by_index[n] for n in range(ROWS)]), expected)
    # Rows of a 512-d vector stay inline: nothing went to TOAST.
    toast = conn.execute(
        "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE relname = 'faces'"
    ).fetchone()
    assert toast == (0,)


def test_a_user_without_superuser_rights_loads_the_same(
    conn: psycopg.Connection, database_url: str, dumps: dict[str, Path]
) -> None:
    import dataclasses

    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from doppel.store.db import connect

    # The per-row gallery check is skipped only where session_replication_role may be
    # set (a superuser, as here); an ordinary role keeps the check and loads the same.
    with conn.transaction():
        assert dump._skip_gallery_checks(
            conn, Repository(conn).ensure_gallery("su", dump.CONFIG, dimension=512)
        )
        assert conn.execute("SHOW session_replication_role").fetchone() == ("replica",)
    assert conn.execute("SHOW session_replication_role").fetchone() == ("origin",)
    conn.execute("CREATE ROLE doppel_plain LOGIN")
    try:
        conn.execute("GRANT ALL ON ALL TABLES IN SCHEMA public TO doppel_plain")
        conn.execute("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO doppel_plain")
        params = conninfo_to_dict(database_url)
        params["user"] = "doppel_plain"
        settings = dataclasses.replace(Settings.from_env(), database_url=make_conninfo(**params))
        with connect(settings) as plain:
            assert plain.execute("SHOW is_superuser").fetchone() == ("off",)
            # (Building the index would need the table's owner; the rows do not.)
            report = dump.load_dump(plain, dumps["plain"], "ffhq", build_index=False)
            assert (report.rows_loaded, report.bad_rows) == (ROWS, [])
            with plain.transaction():
                gallery = Repository(plain).gallery("ffhq")
                assert not dump._skip_gallery_checks(plain, gallery)
        assert count(conn, "ffhq") == ROWS
    finally:
        conn.execute("DROP OWNED BY doppel_plain")
        conn.execute("DROP ROLE doppel_plain")


@pytest.mark.parametrize("fmt", ["plain", "inserts"])
def test_a_latin1_dump_keeps_its_accented_paths(
    conn: psycopg.Connection, server_url: str, tmp_path: Path, fmt: str
) -> None:
    path = write_faces_dump(
        server_url, tmp_path / "latin1.sql", 20, fmt, extra_args=("--encoding=LATIN1",)
    )
    data = path.read_bytes()
    assert b"SET client_encoding = 'LATIN1'" in data
    plain_key = b"images1024x1024/00000/00001.png"
    assert data.count(plain_key) == 1
    path.write_bytes(data.replace(plain_key, "images1024x1024/café/00001.png".encode("latin-1")))
    report = dump.load_dump(conn, path, "ffhq", build_index=False)
    assert (report.rows_loaded, report.bad_rows) == (20, [])
    sources = {row[0] for row in conn.execute("SELECT source FROM faces")}
    assert "/data/ffhq/images1024x1024/café/00001.png" in sources


def test_an_unknown_encoding_is_a_clear_error(conn: psycopg.Connection, tmp_path: Path) -> None:
    path = tmp_path / "odd.sql"
    path.write_text("SET client_encoding = 'MULE_INTERNAL';\nCREATE TABLE public.faces (id int);\n")
    with pytest.raises(BadDump, match="MULE_INTERNAL encoding"):
        dump.load_dump(conn, path, "ffhq")


def test_loading_twice_adds_nothing(conn: psycopg.Connection, dumps: dict[str, Path]) -> None:
    dump.load_dump(conn, dumps["plain"], "ffhq")
    again = dump.load_dump(conn, dumps["custom"], "ffhq")
    assert (again.rows_loaded, again.rows_present) == (0, ROWS)
    assert count(conn, "ffhq") == ROWS


def test_filtered_search_matches_exact_search(
    conn: psycopg.Connection, server_url: str, tmp_path: Path
) -> None:
    path = write_faces_dump(server_url, tmp_path / "d.sql", 2000, seed=3)
    dump.load_dump(conn, path, "ffhq")
    repo = Repository(conn)
    gallery = repo.gallery("ffhq")
    filters = Filters(sex="F", races=("black",), age_min=20, age_max=60)
    share = conn.execute(
        "SELECT avg((sex = 'F' AND race = 'black' AND age BETWEEN 20 AND 60)::int) FROM faces"
    ).fetchone()
    assert share is not None and 0.01 < float(share[0]) < 0.08
    row = conn.execute("SELECT embedding FROM faces ORDER BY id LIMIT 1").fetchone()
    assert row is not None
    query = row[0].to_numpy() + 0.01
    indexed = repo.search(gallery, query, 5, filters)
    exact = repo.search(gallery, query, 5, filters, exact=True)
    assert len(indexed) == 5
    assert [m.face.id for m in indexed] == [m.face.id for m in exact]
    for match in indexed:
        assert match.face.sex == "F" and match.face.race == "black"
        assert match.face.age is not None and 20 <= match.face.age <= 60


HOSTILE_SETUP = (
    "CREATE TABLE important (x int); INSERT INTO important VALUES (1);"
    " CREATE FUNCTION evil() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;"
)


def _hostile_dump(server_url: str, folder: Path, marker: Path) -> tuple[Path, dict[int, str]]:
    """A --clean dump with other objects, hostile statements and four bad faces rows."""
    plain = write_faces_dump(
        server_url,
        folder / "clean.sql",
        200,
        setup_sql=HOSTILE_SETUP,
        extra_args=("--clean", "--if-exists"),
    )
    lines = plain.read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("COPY public.faces "))
    good = lines[start + 1].rstrip("\n").split("\t")
    numbers = good[5][1:-1].split(",")

    def row(key: str, sex: str = "F", vector: list[str] = numbers) -> str:
        return "\t".join(["9999", key, "33", sex, "white", "[" + ",".join(vector) + "]"]) + "\n"

    bad = [
        row("/bad/short.png", vector=numbers[:511]),
        row("/bad/nan.png", vector=["NaN", *numbers[1:]]),
        row("/bad/sex.png", sex="X"),
        row("/bad/truncated.png")[:40] + "\n",
    ]
    hostile = [
        "DROP TABLE public.important;\n",
        f"COPY (SELECT 1) TO PROGRAM 'touch {marker}';\n",
        f"\\! touch {marker}\n",
    ]
    text = lines[:start] + hostile + lines[start : start + 3] + bad + lines[start + 3 :]
    path = folder / "hostile.sql"
    path.write_text("".join(text))
    reasons = {
        start + len(hostile) + 4 + n: what
        for n, what in enumerate(["512", "finite", "sex", "truncated"])
    }
    return path, reasons


@pytest.fixture(params=[dump_batches.BATCH_ROWS, 7], ids=["one-batch", "batches-of-7"])
def batch_rows(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """All rows in one batch, or in many: bad rows are found within a batch and across
    batches, and the first one in the file is still the one --strict names."""
    monkeypatch.setattr(dump_batches, "BATCH_ROWS", request.param)
    return int(request.param)


def test_hostile_dump_loads_good_rows_and_runs_nothing(
    conn: psycopg.Connection, server_url: str, tmp_path: Path, batch_rows: int
) -> None:
    conn.execute("CREATE TABLE important (x int)")
    conn.commit()
    marker = tmp_path / "pwned"
    path, reasons = _hostile_dump(server_url, tmp_path, marker)
    report = dump.load_dump(conn, path, "ffhq")
    assert report.rows_loaded == 200 and count(conn, "ffhq") == 200
    assert {bad.line for bad in report.bad_rows} == set(reasons)
    for bad in report.bad_rows:
        assert reasons[bad.line] in bad.reason
    lines = path.read_text().splitlines()
    for bad in report.bad_rows:  # the reported line is the bad row itself
        assert lines[bad.line - 1].split("\t")[1].startswith("/bad/")
    ignored = " | ".join(item.what for item in report.ignored)
    for expected in (
        "DROP TABLE public.important",
        "TO PROGRAM",
        "\\! touch",
        "CREATE TABLE public.important",
        "CREATE FUNCTION public.evil",
        "COPY public.important",
        "DROP TABLE IF EXISTS public.faces",
    ):
        assert expected in ignored
    assert not marker.exists()
    assert conn.execute("SELECT to_regclass('important') IS NOT NULL").fetchone() == (True,)
    assert conn.execute("SELECT to_regproc('evil') IS NULL").fetchone() == (True,)


def test_strict_stops_at_the_first_bad_row(
    conn: psycopg.Connection, server_url: str, tmp_path: Path, batch_rows: int
) -> None:
    # The first bad row has a bad vector, found when its batch is read; a later one a bad
    # sex, found as the dump is read: the first in the file is the one named.
    path, reasons = _hostile_dump(server_url, tmp_path, tmp_path / "marker")
    with pytest.raises(BadDump, match=f"line {min(reasons)}: .*512"):
        dump.load_dump(conn, path, "ffhq", strict=True)
    assert Repository(conn).find_gallery("ffhq") is None


@pytest.mark.parametrize("fmt", ["custom", "plain-gzip", "custom-gzip"])
@pytest.mark.slow
def test_a_stopped_load_leaves_no_inflating_thread(
    conn: psycopg.Connection, server_url: str, tmp_path: Path, fmt: str
) -> None:
    """--strict stops at an empty image_key (which PostgreSQL allows and doppel does
    not) while the rest is still being inflated: the inflating threads stop with it."""
    path = write_faces_dump(
        server_url,
        tmp_path / f"{fmt}.dump",
        10_000,  # more than the inflating thread holds ahead (about 40 MB)
        fmt.removesuffix("-gzip"),
        compress=fmt.endswith("-gzip"),
        setup_sql="INSERT INTO faces (image_key, age, sex, race, embedding)"
        " VALUES ('', 30, 'F', 'white', array_fill(0.1, ARRAY[512])::vector)",
    )
    with pytest.raises(BadDump, match="image_key is empty"):
        try:
            dump.load_dump(conn, path, "ffhq", strict=True)
        finally:
            # Stopped by the time the error arrives, while its traceback still holds
            # the reading's frames (not later, when they are collected).
            running = [t.name for t in threading.enumerate() if t.name == "doppel-gunzip"]
    assert running == []


def test_dump_without_faces_is_a_clear_error(conn: psycopg.Connection, tmp_path: Path) -> None:
    path = tmp_path / "other.sql"
    path.write_text(
        "CREATE TABLE public.people (id int);\nCOPY public.people (id) FROM stdin;\n1\n\\.\n"
    )
    with pytest.raises(BadDump, match="no data for a faces table.*public.people"):
        dump.load_dump(conn, path, "ffhq")
    assert Repository(conn).find_gallery("ffhq") is None


def _load_and_read(
    conn: psycopg.Connection, path: Path, gallery: str
) -> tuple[list[tuple[Any, ...]], dump.LoadReport]:
    """Load a dump into a gallery; its faces (ordered by source) and the report."""
    report = dump.load_dump(conn, path, gallery, build_index=False)
    rows = conn.execute(
        "SELECT source, age, sex, race, embedding::text FROM faces f"
        " JOIN galleries g ON g.id = f.gallery_id WHERE g.name = %s ORDER BY source",
        (gallery,),
    ).fetchall()
    return rows, report


@pytest.mark.parametrize("damage", ["cut-in-contents", "cut-in-data", "corrupt-data"])
def test_damaged_custom_archive_is_a_clear_error(
    conn: psycopg.Connection, dumps: dict[str, Path], tmp_path: Path, damage: str
) -> None:
    data = bytearray(dumps["custom"].read_bytes())
    if damage == "cut-in-contents":
        data = data[:1000]
    elif damage == "cut-in-data":
        data = data[:50_000]
    else:
        data[50_000:50_064] = b"\xff" * 64
    path = tmp_path / "damaged.dump"
    path.write_bytes(bytes(data))
    with pytest.raises(BadDump, match="custom archive is damaged|compressed data is damaged"):
        dump.load_dump(conn, path, "ffhq")
    assert Repository(conn).find_gallery("ffhq") is None


def test_archive_the_reader_cannot_read_goes_to_pg_restore(
    conn: psycopg.Connection, dumps: dict[str, Path], tmp_path: Path
) -> None:
    """An archive from a newer pg_dump than the reader knows is left to pg_restore,
    which says what it makes of it."""
    data = bytearray(dumps["custom"].read_bytes())
    assert dump_archive.ArchiveHead.parse(bytes(data[:512])) is not None
    data[6] = 99  # archive version 1.99
    assert dump_archive.ArchiveHead.parse(bytes(data[:512])) is None
    path = tmp_path / "future.dump"
    path.write_bytes(bytes(data))
    with pytest.raises(BadDump, match="pg_restore could not read.*version"):
        dump.load_dump(conn, path, "ffhq")


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_custom_archives_read_as_pg_restore_reads_them(
    conn: psycopg.Connection,
    server_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    compression: str,
) -> None:
    """doppel's own reading of a custom archive gives the rows and bad rows that
    reading pg_restore's output gives, and reports the same objects as ignored (less
    pg_restore's ALTER ... OWNER TO and large-object writes), for an archive with
    other tables and their data, a function and a large object."""
    path = write_faces_dump(
        server_url,
        tmp_path / "hostile.dump",
        ROWS,
        "custom",
        setup_sql=HOSTILE_SETUP + " SELECT lo_from_bytea(0, 'a large object');",
        extra_args=("--compress", compression),
    )
    own_rows, own = _load_and_read(conn, path, "own")
    monkeypatch.setattr(dump_archive.ArchiveHead, "parse", classmethod(lambda *_: None))
    restored_rows, restored = _load_and_read(conn, path, "restored")
    assert own_rows == restored_rows and len(own_rows) == ROWS
    assert own.bad_rows == restored.bad_rows == []
    ignored = {item.what for item in own.ignored}
    by_restore = {item.what for item in restored.ignored}
    assert ignored <= by_restore
    assert {
        what
        for what in by_restore - ignored
        if " OWNER TO " not in what and not re.match(r"(BEGIN|COMMIT|SELECT pg_catalog\.lo)", what)
    } == set()
    for expected in (
        "CREATE FUNCTION public.evil",
        "CREATE TABLE public.important",
        "COPY public.important FROM stdin (1 rows)",
        "lo_create",
    ):
        assert any(expected in what for what in ignored), expected


def test_one_line_inserts_read_as_the_general_path_reads_them(
    conn: psycopg.Connection,
    dumps: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pg_dump's one-row INSERT lines are read straight from bytes; awkward ones (quotes,
    commas and parentheses in a key, E'' strings, two rows in one statement, NULLs,
    other tables) give the same rows, bad rows and ignored statements as the general
    statement-by-statement path."""
    lines = dumps["column-inserts"].read_text().splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if line.startswith("INSERT INTO public.faces"))
    head = lines[first][: lines[first].index("VALUES") + 7]
    vector = lines[first][lines[first].index("'[") : lines[first].rindex("]'") + 2]
    awkward = [
        f"{head}(9001, 'it''s, odd); \\ key', 30, 'F', 'asian', {vector});\n",
        f"{head}(9002, E'/e\\x41.png', 30, 'F', 'asian', {vector});\n",
        f"{head}(9003, '/a.png', 30, 'F', 'asian', {vector}), (9004, '/b.png', 31, 'M',"
        f" 'white', {vector});\n",
        f"{head}(9005, NULL, 30, 'F', 'asian', {vector});\n",
        "INSERT INTO public.other VALUES (1, 'x');\n",
        f"{head}(9006, '/neg.png', -0, 'M', 'black', {vector});\n",
        f"{head}(9007, '/short.png', 30, 'F', 'asian', '[1,2]');\n",
        f"{head}(9008, '/spaced.png' ,  30 , 'F','asian',{vector} ) ;\n",
    ]
    path = tmp_path / "awkward.sql"
    path.write_text("".join(lines[: first + 1] + awkward + lines[first + 1 :]))
    rows, fast = _load_and_read(conn, path, "fast")
    monkeypatch.setattr(dump_rows.Reader, "_one_line_insert", lambda *_: False)
    general_rows, general = _load_and_read(conn, path, "general")
    assert rows == general_rows
    assert (fast.bad_rows, fast.ignored, fast.rows_read) == (
        general.bad_rows,
        general.ignored,
        general.rows_read,
    )
    sources = {row[0] for row in rows}
    assert {"it's, odd); \\ key", "/a.png", "/b.png", "/neg.png", "/spaced.png"} <= sources
    assert [bad.line - first - 1 for bad in fast.bad_rows] == [2, 4, 7]
    assert any("public.other" in item.what for item in fast.ignored)


def test_gzip_members_and_padding_are_read_through(
    conn: psycopg.Connection, dumps: dict[str, Path], tmp_path: Path
) -> None:
    """A gzip file may hold several members, with zero bytes between them (as `cat a.gz
    b.gz` and some tape tools make): the dump is what they hold together."""
    import gzip

    text = gzip.decompress(dumps["plain-gzip"].read_bytes())
    middle = text.index(b"\n", len(text) // 2) + 1  # a cut inside the faces rows
    path = tmp_path / "members.sql.gz"
    path.write_bytes(
        gzip.compress(text[:1000])
        + gzip.compress(text[1000:middle])
        + b"\x00" * 512
        + gzip.compress(text[middle:])
    )
    report = dump.load_dump(conn, path, "ffhq", build_index=False)
    assert (report.rows_loaded, report.bad_rows) == (ROWS, [])


def test_an_endless_line_is_refused_with_bounded_memory(
    conn: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dump_streams, "MAX_LINE", 1 << 16)
    path = tmp_path / "endless.sql"
    path.write_bytes(b"SET x = 1;\n" + b"(" * (1 << 18) + b"\n")
    with pytest.raises(BadDump, match="line 2 is longer than"):
        dump.load_dump(conn, path, "ffhq")


@pytest.mark.parametrize("damage", ["cut", "corrupt"])
def test_damaged_gzip_is_a_clear_error_and_loads_nothing(
    conn: psycopg.Connection, dumps: dict[str, Path], tmp_path: Path, damage: str
) -> None:
    data = bytearray(dumps["plain-gzip"].read_bytes())
    if damage == "cut":
        data = data[: len(data) * 3 // 4]
    else:
        data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64
    path = tmp_path / "damaged.sql.gz"
    path.write_bytes(bytes(data))
    expected = "ends early" if damage == "cut" else "is damaged"
    with pytest.raises(BadDump, match=f"compressed data {expected}"):
        dump.load_dump(conn, path, "ffhq")
    assert Repository(conn).find_gallery("ffhq") is None


def test_insert_rows_report_their_own_lines(
    conn: psycopg.Connection, dumps: dict[str, Path], tmp_path: Path
) -> None:
    lines = dumps["inserts"].read_text().splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if line.startswith("INSERT INTO public.faces"))
    lines[first + 2] = lines[first + 2].replace(", 'F', ", ", 'Q', ").replace(", 'M', ", ", 'Q', ")
    path = tmp_path / "inserts.sql"
    path.write_text("".join(lines))
    report = dump.load_dump(conn, path, "ffhq")
    assert report.rows_loaded == ROWS - 1
    assert [(bad.line, "sex" in bad.reason) for bad in report.bad_rows] == [(first + 3, True)]


def test_check_vector_reasons() -> None:
    good = "[" + ",".join(["0.5"] * 512) + "]"
    assert check_vector(good, 512) is None
    assert "511" in (check_vector("[" + ",".join(["1"] * 511) + "]", 512) or "")
    assert "finite" in (check_vector(good.replace("0.5", "inf", 1), 512) or "")
    assert "range" in (check_vector(good.replace("0.5", "1e40", 1), 512) or "")
    assert check_vector("0.5", 512) is not None


def test_vectors_are_read_as_the_server_reads_them(conn: psycopg.Connection) -> None:
    """doppel's reading of vector text accepts what pgvector's own input accepts (JSON
    numbers, and the forms JSON lacks, like ".5"), with the same float4 values, and
    refuses the rest."""
    numbers = [f"{x:.9g}" for x in np.random.default_rng(1).normal(0, 2, 8)]
    accepted = [
        "[" + ",".join(numbers) + "]",
        "[" + ", ".join(numbers[:7]) + ",1]",  # spaces, and an integer
        "[.5,-.25,+1,2.,1e3,-0,3E-2,3.4028234e38]",  # not JSON, but pgvector reads them
        "[ 0.1 ,0.2,0.3,0.4,0.5,0.6,0.7,0.8 ]",
    ]
    refused = [
        "[" + ",".join(numbers[:7]) + "]",  # 7 numbers
        "[" + ",".join(numbers) + ",1]",  # 9
        "[[" + ",".join(numbers[:4]) + "]," + ",".join(numbers[4:]) + "]",  # nested
        "[NaN," + ",".join(numbers[1:]) + "]",
        "[inf," + ",".join(numbers[1:]) + "]",
        "[1e39," + ",".join(numbers[1:]) + "]",  # beyond float4
        '["1",' + ",".join(numbers[1:]) + "]",
        "[null," + ",".join(numbers[1:]) + "]",
        "[" + ",".join(numbers) + ",]",
    ]
    vectors, bad = read_vectors([text.encode() for text in accepted], 8)
    assert bad == []
    for text in refused:  # each beside good ones, and all together
        assert [n for n, _ in read_vectors([accepted[0].encode(), text.encode()], 8)[1]] == [1]
    texts = accepted + refused
    assert [n for n, _ in read_vectors([text.encode() for text in texts], 8)[1]] == list(
        range(len(accepted), len(texts))
    )
    server = []
    for text in accepted:
        row = conn.execute("SELECT %s::vector(8)::real[]", (text,)).fetchone()
        assert row is not None
        server.append(row[0])
    assert np.array_equal(vectors, np.array(server, dtype=np.float32))
    for text in refused:
        with pytest.raises(psycopg.DataError):
            conn.execute("SELECT %s::vector(8)", (text,))
        conn.rollback()


def test_cli_load_dump_then_filtered_find(
    database_url: str,
    server_url: str,
    tmp_path: Path,
    unit_faces: Path,
    facenet_weights: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from doppel.faces.catalog import install

    install("Facenet512", facenet_weights)
    path = write_faces_dump(server_url, tmp_path / "sql_dump.sql", 1500, seed=5)
    runner = CliRunner()
    loaded = runner.invoke(app, ["load-dump", str(path)])
    assert loaded.exit_code == 0, loaded.output
    assert "1,500 faces loaded into gallery sql_dump" in loaded.output
    assert "HNSW index built" in loaded.output
    monkeypatch.chdir(tmp_path)
    photo = next(unit_faces.glob("img1.jpg"), None) or sorted(unit_faces.glob("*.jpg"))[0]
    found = runner.invoke(
        app,
        [
            "find",
            str(photo),
            "--sex",
            "M",
            "--race",
            "asian",
            "--age",
            "20-50",
            "--json",
            "-o",
            str(tmp_path / "out.png"),
        ],
    )
    assert found.exit_code == 0, found.output
    import json

    payload = json.loads(found.stdout[found.stdout.index("{") :])
    matches = payload["faces"][0]["matches"]
    assert len(matches) == 5
    assert all(m["sex"] == "M" and m["race"] == "asian" and 20 <= m["age"] <= 50 for m in matches)
    # FFHQ paths of the dump are not here: the picture is still made, with placeholders.
    assert (tmp_path / "out.png").is_file()


def _file_position(pid: int, path: Path) -> int:
    """How far process pid has read into path (Linux /proc), or -1."""
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
                return int(info.split("pos:")[1].split()[0])
    except (OSError, IndexError, ValueError):
        pass
    return -1


@pytest.mark.skipif(not Path("/proc/self/fdinfo").is_dir(), reason="needs Linux /proc")
@pytest.mark.slow
def test_killed_halfway_then_rerun_gives_exact_count(
    database_url: str, server_url: str, tmp_path: Path
) -> None:
    rows = 12000
    path = write_faces_dump(server_url, tmp_path / "big.sql", rows, seed=7)
    size = path.stat().st_size
    doppel = Path(sys.executable).with_name("doppel")
    command = [str(doppel), "load-dump", str(path), "-g", "ffhq"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if _file_position(proc.pid, path) > size // 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the load finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with psycopg.connect(database_url) as conn:
        # Nothing half-loaded: no gallery, no faces.
        assert conn.execute("SELECT count(*) FROM faces").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM galleries").fetchone() == (0,)
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM faces").fetchone() == (rows,)


# Images for the composite ----------------------------------------------------------


def test_ffhq_paths_map_onto_an_image_root(tmp_path: Path, unit_faces: Path) -> None:
    settings = Settings.from_env()
    root = tmp_path / "ffhq"
    (root / "00000").mkdir(parents=True)
    photo = sorted(unit_faces.glob("*.jpg"))[0]
    from PIL import Image

    Image.open(photo).convert("RGB").resize((64, 64)).save(root / "00000" / "00042.png")
    key = "/home/someone/ffhq/images1024x1024/00000/00042.png"
    assert sources.load_source(key, settings) is None or root in sources.image_roots(settings)
    sources.add_image_root(root, settings)
    loaded = sources.load_source(key, settings)
    assert loaded is not None and loaded.pixels.shape[:2] == (64, 64)
    assert sources.load_source("/elsewhere/00000/00043.png", settings) is None


def test_unreachable_url_gives_no_photo_quickly(tmp_path: Path) -> None:
    begin = time.monotonic()
    assert sources.fetch("http://127.0.0.1:9/ffhq/00001.png", tmp_path, timeout=2) is None
    assert time.monotonic() - begin < 10
    assert not any(tmp_path.rglob("*.png"))


def test_url_image_is_fetched_once_into_the_cache(tmp_path: Path, unit_faces: Path) -> None:
    served = tmp_path / "www"
    served.mkdir()
    from PIL import Image

    Image.open(sorted(unit_faces.glob("*.jpg"))[0]).convert("RGB").resize((48, 48)).save(
        served / "face.png"
    )
    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
            hits.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/face.png"
        first = sources.fetch(url, tmp_path / "cache")
        second = sources.fetch(url, tmp_path / "cache")
    finally:
        server.shutdown()
    assert first is not None and first == second
    assert first.read_bytes() == (served / "face.png").read_bytes()
    assert len(hits) == 1
