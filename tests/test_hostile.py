"""Hostile but fair input: odd files, bad names, bad URLs, impossible filters, concurrent
runs, huge images and damaged dumps. Each test makes its own special file and checks
what a user sees: one clear line, a listed skip, nothing lost."""

from __future__ import annotations

import gzip
import io
import os
import re
import struct
import subprocess
import sys
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import psycopg
import pytest
from PIL import Image
from typer.testing import CliRunner

from doppel.cli import app

runner = CliRunner()
DOPPEL = str(Path(sys.executable).with_name("doppel"))
# Dlib embeds any picture whole with detector skip: cheap, offline, no face needed.
FAST = ["-m", "Dlib", "-d", "skip"]
BAD_NAME = os.fsdecode(b"bad\xff\xfebytes.png")
COPY_FACES = b"COPY public.faces (id, image_key, age, sex, race, embedding) FROM stdin;\n"


def one_line(text: str) -> str:
    """Rich wraps long lines at the terminal width; join them back."""
    return " ".join(text.split())


def crops(folder: Path, count: int, seed: int = 0, side: int = 160) -> list[Path]:
    """Small random pictures, each a distinct 'face' for detector skip."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"c{seed}_{i:03d}.png"
        Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header says width x height, followed by a few bytes of data:
    decoding it would need gigabytes (or fail), reading its header costs nothing."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width * 3 + 1) * 4)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose frame header is rewritten to say width x height."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (120, 90, 60)).save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def ingest(folder: Path, gallery: str, *extra: str) -> object:
    return runner.invoke(
        app, ["ingest", str(folder), "-g", gallery, *FAST, "--workers", "0", *extra]
    )


def faces_in(url: str, gallery: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT f.source FROM faces f JOIN galleries g ON g.id = f.gallery_id"
            " WHERE g.name = %s ORDER BY f.source",
            (gallery,),
        ).fetchall()
    return [row[0] for row in rows]


def doppel(*args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed command in a subprocess; a hang fails the test instead of CI."""
    environment = {**os.environ, "COLUMNS": "300", **env}
    return subprocess.run(
        [DOPPEL, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        check=False,
    )


def problems_file(output: str) -> Path:
    match = re.search(r"listed in (\S+\.txt)", one_line(output))
    assert match, output
    return Path(match.group(1))


# 1. File names that are not UTF-8 ----------------------------------------------------


@pytest.mark.slow
def test_non_utf8_file_name_is_ingested_and_rerun_adds_nothing(
    database_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    crops(folder, 2)
    Image.fromarray(np.full((160, 160, 3), 90, dtype=np.uint8)).save(folder / BAD_NAME)
    first = ingest(folder, "odd")
    assert first.exit_code == 0, first.output
    assert "3 faces added" in one_line(first.output)
    sources = faces_in(database_url, "odd")
    assert len(sources) == 3
    stored = next(s for s in sources if "bytes.png" in s)
    assert stored.isprintable()
    again = ingest(folder, "odd")
    assert again.exit_code == 0, again.output
    assert "0 faces added" in one_line(again.output)
    assert "3 already present" in one_line(again.output)


@pytest.mark.slow
def test_web_serves_the_photo_of_a_non_utf8_file_name(database_url: str, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from doppel.config import Settings
    from doppel.web.app import create_app

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.full((160, 160, 3), 90, dtype=np.uint8)).save(folder / BAD_NAME)
    assert ingest(folder, "odd").exit_code == 0
    with psycopg.connect(database_url) as conn:
        (face_id,) = conn.execute("SELECT id FROM faces").fetchone()  # type: ignore[misc]
    settings = replace(Settings.from_env(), database_url=database_url)
    with TestClient(create_app(settings, warm_up=False)) as client:
        image = client.get(f"/api/faces/{face_id}/image")
    assert image.status_code == 200, image.text
    assert image.content[:2] == b"\xff\xd8"


# 2. Gallery management ----------------------------------------------------------------


@pytest.mark.slow
def test_gallery_list_rename_and_delete(database_url: str, tmp_path: Path) -> None:
    crops(tmp_path / "photos", 2)
    assert ingest(tmp_path / "photos", "first").exit_code == 0
    listed = runner.invoke(app, ["gallery", "list"])
    assert listed.exit_code == 0, listed.output
    assert "first" in listed.stdout and "Dlib" in listed.stdout
    renamed = runner.invoke(app, ["gallery", "rename", "first", "second"])
    assert renamed.exit_code == 0, renamed.output
    assert faces_in(database_url, "second") and not faces_in(database_url, "first")
    taken = runner.invoke(app, ["gallery", "rename", "nosuch", "other"])
    assert taken.exit_code != 0 and "nosuch" in taken.output
    kept = runner.invoke(app, ["gallery", "delete", "second"], input="n\n")
    assert kept.exit_code != 0
    assert len(faces_in(database_url, "second")) == 2
    deleted = runner.invoke(app, ["gallery", "delete", "second"], input="y\n")
    assert deleted.exit_code == 0, deleted.output
    assert faces_in(database_url, "second") == []
    assert ingest(tmp_path / "photos", "third").exit_code == 0
    forced = runner.invoke(app, ["gallery", "delete", "third", "--yes"])
    assert forced.exit_code == 0, forced.output
    assert "no galleries" in runner.invoke(app, ["gallery", "list"]).output
    with psycopg.connect(database_url) as conn:
        leftovers = conn.execute(
            "SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'faces_hnsw_g%'"
        ).fetchone()
    assert leftovers == (0,)


@pytest.mark.slow
def test_empty_gallery_takes_the_model_of_its_first_successful_ingest(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOPPEL_OFFLINE", "1")
    crops(tmp_path / "photos", 2)
    failed = runner.invoke(
        app, ["ingest", str(tmp_path / "photos"), "-g", "fresh", "-m", "ArcFace", "-d", "skip"]
    )
    assert failed.exit_code == 1
    assert "ArcFace" in failed.output
    retried = ingest(tmp_path / "photos", "fresh")
    assert retried.exit_code == 0, retried.output
    assert len(faces_in(database_url, "fresh")) == 2
    listed = runner.invoke(app, ["gallery", "list"])
    assert "Dlib" in listed.stdout and "ArcFace" not in listed.stdout


@pytest.mark.slow
def test_serve_starts_when_a_gallery_model_cannot_load(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from doppel.config import Settings
    from doppel.web.app import create_app

    monkeypatch.setenv("DOPPEL_OFFLINE", "1")
    crops(tmp_path / "photos", 2)
    assert ingest(tmp_path / "photos", "good").exit_code == 0
    assert (
        runner.invoke(
            app, ["ingest", str(tmp_path / "photos"), "-g", "broken", "-m", "ArcFace", "-d", "skip"]
        ).exit_code
        == 1
    )
    settings = replace(Settings.from_env(), database_url=database_url)
    with TestClient(create_app(settings, warm_up=True)) as client:
        listed = client.get("/api/galleries")
        assert listed.status_code == 200
        by_name = {g["name"]: g for g in listed.json()["galleries"]}
        assert by_name["good"]["available"] is True
        assert by_name["broken"]["available"] is False
        assert "ArcFace" in by_name["broken"]["unavailable"]
        photo = tmp_path / "photos" / "c0_000.png"
        found = client.post(
            "/api/find",
            files={"file": (photo.name, photo.read_bytes(), "image/png")},
            data={"gallery": "broken"},
        )
        assert found.status_code == 503
        assert "ArcFace" in found.json()["detail"]


# 3. One pixel limit -------------------------------------------------------------------


@pytest.fixture
def small_gallery(database_url: str, tmp_path: Path) -> str:
    crops(tmp_path / "gallery", 3)
    assert ingest(tmp_path / "gallery", "small").exit_code == 0
    return "small"


@pytest.mark.slow
def test_find_refuses_a_huge_png_from_its_header(small_gallery: str, tmp_path: Path) -> None:
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_claiming(20000, 20000))
    result = runner.invoke(app, ["find", str(huge), "-g", small_gallery, "-d", "skip"])
    assert result.exit_code == 1, result.output
    text = one_line(result.output)
    assert "20000x20000" in text and "megapixels" in text
    assert "Traceback" not in text


@pytest.mark.slow
def test_find_refuses_a_huge_jpeg_without_pillows_warning(
    small_gallery: str, tmp_path: Path
) -> None:
    huge = tmp_path / "huge.jpg"
    huge.write_bytes(jpeg_claiming(12000, 12000))
    result = doppel("find", str(huge), "-g", small_gallery, "-d", "skip", "--no-picture")
    assert result.returncode == 1, result.stderr
    assert "12000x12000" in result.stderr
    assert "DecompressionBomb" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_ingest_workers_apply_the_configured_pixel_limit(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "photos"
    crops(folder, 16, side=150)  # 22,500 pixels each
    crops(folder, 1, seed=9, side=300)  # 90,000 pixels
    (folder / "huge.png").write_bytes(png_claiming(20000, 20000))
    monkeypatch.setenv("DOPPEL_MAX_PIXELS", "40000")
    result = runner.invoke(app, ["ingest", str(folder), "-g", "limited", *FAST, "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "16 faces added" in one_line(result.output)
    listed = problems_file(result.output).read_text()
    assert "huge.png" in listed and "c9_000.png" in listed
    assert "megapixels" in listed


def test_same_attributes_applies_the_configured_pixel_limit(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photo = crops(tmp_path, 1, side=300)[0]  # 90,000 pixels
    monkeypatch.setenv("DOPPEL_MAX_PIXELS", "40000")
    result = runner.invoke(app, ["find", str(photo), "-g", "none", "--same-attributes"])
    assert result.exit_code != 0
    assert "megapixels" in one_line(result.output)


@pytest.mark.slow
def test_cluster_ingest_applies_the_pixel_limit_and_lists_special_files(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("ray")
    folder = tmp_path / "photos"
    crops(folder, 3, side=150)  # 22,500 pixels each
    crops(folder, 1, seed=9, side=300)  # 90,000 pixels
    os.mkfifo(folder / "x.jpg")
    monkeypatch.setenv("DOPPEL_MAX_PIXELS", "40000")
    result = doppel("ingest", str(folder), "-g", "ray", *FAST, "--cluster", timeout=600)
    assert result.returncode == 0, result.stderr
    assert "3 faces added" in one_line(result.stderr)
    listed = problems_file(result.stderr).read_text()
    assert "c9_000.png" in listed and "megapixels" in listed
    assert "x.jpg" in listed


def test_web_calls_an_oversized_png_too_large(database_url: str) -> None:
    from fastapi.testclient import TestClient

    from doppel.config import Settings
    from doppel.web.app import create_app

    settings = replace(Settings.from_env(), database_url=database_url)
    with TestClient(create_app(settings, warm_up=False)) as client:
        answer = client.post(
            "/api/uploads",
            files={"file": ("huge.png", png_claiming(20000, 20000), "image/png")},
        )
    assert answer.status_code == 413, answer.text
    detail = answer.json()["detail"]
    assert "too large" in detail and "not an image" not in detail


@pytest.mark.slow
def test_resemble_lists_an_oversized_photo(database_url: str, tmp_path: Path) -> None:
    people = tmp_path / "people"
    crops(people / "mum", 3, seed=1)
    crops(people / "dad", 3, seed=2)
    target = tmp_path / "baby"
    crops(target, 2, seed=3)
    (target / "huge.png").write_bytes(png_claiming(20000, 20000))
    os.mkfifo(target / "pipe.jpg")  # a special file: passed over and listed, never opened
    Image.fromarray(np.full((160, 160, 3), 90, dtype=np.uint8)).save(target / BAD_NAME)
    result = runner.invoke(
        app,
        [
            "resemble",
            str(people),
            str(target),
            *FAST,
            "--bootstrap",
            "20",
            "-o",
            str(tmp_path / "report"),
        ],
    )
    assert result.exit_code == 0, result.output
    text = one_line(result.output)
    assert "huge.png" in text and "megapixels" in text
    assert "pipe.jpg" in text
    report = (tmp_path / "report" / "report.json").read_text(encoding="utf-8")
    assert "bad\\\\xff\\\\xfebytes.png" in report  # the name as doppel writes it, in JSON


# 4. Special files ---------------------------------------------------------------------


@pytest.mark.slow
def test_fifo_is_skipped_and_listed_never_opened(database_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    crops(folder, 2)
    os.mkfifo(folder / "x.jpg")
    result = doppel("ingest", str(folder), "-g", "fifo", *FAST, "--workers", "0", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "2 faces added" in result.stderr
    assert "x.jpg" in result.stderr
    assert "x.jpg" in problems_file(result.stderr).read_text()


@pytest.mark.slow
def test_symlink_loop_is_listed_and_the_rest_ingested(database_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    crops(folder, 2)
    (folder / "a.jpg").symlink_to("b.jpg")
    (folder / "b.jpg").symlink_to("a.jpg")
    result = ingest(folder, "loop")
    assert result.exit_code == 0, result.output
    assert "2 faces added" in one_line(result.output)
    listed = problems_file(result.output).read_text()
    assert "a.jpg" in listed and "b.jpg" in listed


def _deep_folder(root: Path) -> None:
    """A folder nested past PATH_MAX: listing it fails (name too long), even for root."""
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(20):
            os.mkdir("d" * 250, dir_fd=fd)
            inner = os.open("d" * 250, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
    finally:
        os.close(fd)


@pytest.mark.slow
def test_unlistable_subfolder_is_listed_in_the_summary(database_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    crops(folder, 2)
    _deep_folder(folder)
    result = ingest(folder, "deep")
    assert result.exit_code == 0, result.output
    text = one_line(result.output)
    assert "2 faces added" in text and "1 skipped" in text
    listed = problems_file(result.output).read_text()
    assert "folder cannot be read" in listed and "too long" in listed


def _without_file_permission_override() -> None:
    """In the child, before exec: drop the capabilities that let root read any folder
    (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) from the bounding set, so the program run
    as root reads a folder only as its permissions allow."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            os._exit(77)


def test_unreadable_subfolder_is_listed(tmp_path: Path) -> None:
    """chmod 000 keeps everyone out but root; as root the scan runs without the
    capabilities that override file permissions."""
    folder = tmp_path / "photos"
    crops(folder, 1)
    locked = folder / "locked"
    crops(locked, 1)
    locked.chmod(0)
    script = (
        "import sys; from pathlib import Path; from doppel.faces.imaging import scan_images\n"
        "scan = scan_images(Path(sys.argv[1]))\n"
        "print(len(scan.images)); [print(s.path, s.reason, sep='|') for s in scan.skipped]"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script, str(folder)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            preexec_fn=_without_file_permission_override if os.geteuid() == 0 else None,
        )
    finally:
        locked.chmod(0o755)
    if done.returncode == 77:
        pytest.skip("running as root without CAP_SETPCAP: root reads every folder here")
    assert done.returncode == 0, done.stderr
    count, *skipped = done.stdout.splitlines()
    assert count == "1"
    assert skipped == [f"{locked}|folder cannot be read: Permission denied"]


# 5. A malformed database URL ----------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql//alice:S3cretPW@host/x",
        "postgresql://alice:S3cretPW@host:notaport/x",
        "postgresql://alice:S3cretPW@host/x?nosuchoption=1",
        "host=h user=alice password=S3cretPW port=",
    ],
)
def test_malformed_database_url_is_one_line_without_password(url: str) -> None:
    result = doppel("db", "status", DOPPEL_DATABASE_URL=url, timeout=60)
    assert result.returncode == 1
    assert "S3cretPW" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "DOPPEL_DATABASE_URL" in result.stderr


# 6. Filters that cannot match ---------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("option", "word"), [(["--age", "50-20"], "--age"), (["--race", "martian"], "martian")]
)
def test_impossible_filters_are_usage_errors(
    small_gallery: str, tmp_path: Path, option: list[str], word: str
) -> None:
    photo = crops(tmp_path / "query", 1, seed=5)[0]
    result = runner.invoke(app, ["find", str(photo), "-g", small_gallery, "-d", "skip", *option])
    assert result.exit_code == 2, result.output
    assert word in one_line(result.output)


@pytest.mark.slow
def test_sex_filter_on_a_gallery_without_attributes_says_why(
    small_gallery: str, tmp_path: Path
) -> None:
    photo = crops(tmp_path / "query", 1, seed=5)[0]
    result = runner.invoke(
        app, ["find", str(photo), "-g", small_gallery, "-d", "skip", "--sex", "F"]
    )
    assert result.exit_code == 2, result.output
    assert "attributes" in one_line(result.output)


@pytest.mark.slow
def test_api_refuses_impossible_filters(
    small_gallery: str, tmp_path: Path, database_url: str
) -> None:
    from fastapi.testclient import TestClient

    from doppel.config import Settings
    from doppel.web.app import create_app

    photo = crops(tmp_path / "query", 1, seed=5)[0].read_bytes()
    settings = replace(Settings.from_env(), database_url=database_url)
    with TestClient(create_app(settings, warm_up=False)) as client:
        for data, word in (
            ({"age_min": "50", "age_max": "20"}, "age"),
            ({"race": "martian"}, "martian"),
            ({"sex": "F"}, "no age, sex or race"),
        ):
            answer = client.post(
                "/api/find",
                files={"file": ("q.png", photo, "image/png")},
                data={"gallery": small_gallery, **data},
            )
            assert answer.status_code in (400, 422), answer.text
            assert word in str(answer.json()["detail"])


# 7. One writer per gallery ------------------------------------------------------------


@pytest.mark.slow
def test_two_concurrent_ingests_of_one_folder_count_only_their_own(
    database_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    crops(folder, 24)
    args = ["ingest", str(folder), "-g", "both", *FAST, "--workers", "0", "--batch-size", "4"]
    env = {**os.environ, "COLUMNS": "300"}
    runs = [
        subprocess.Popen(
            [DOPPEL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=600) for run in runs]
    added = 0
    for run, (_, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err
        assert "violates" not in err and "duplicate key" not in err
        added += int(re.search(r"(\d+) faces added", err).group(1))  # type: ignore[union-attr]
    assert added == 24
    assert len(faces_in(database_url, "both")) == 24


@pytest.mark.slow
def test_a_second_writer_waits_with_a_message(database_url: str, tmp_path: Path) -> None:
    """While another session holds the gallery's writer lock, an ingest says it waits,
    and goes on when the lock is released; delete and rename refuse meanwhile."""
    import queue
    import threading

    from doppel.store.galleries import WRITER_LOCK

    folder = tmp_path / "photos"
    crops(folder, 3)
    assert ingest(folder, "busy").exit_code == 0
    crops(folder, 2, seed=7)
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (WRITER_LOCK, "busy"))
        refused = runner.invoke(app, ["gallery", "delete", "busy", "--yes"])
        assert refused.exit_code == 1 and "being written" in one_line(refused.output)
        run = subprocess.Popen(
            [DOPPEL, "ingest", str(folder), "-g", "busy", *FAST, "--workers", "0"],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "COLUMNS": "300"},
        )
        assert run.stderr is not None
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(
            target=lambda: [lines.put(line) for line in run.stderr], daemon=True
        )
        reader.start()
        said = []
        try:
            while not any("waiting" in line for line in said):
                said.append(lines.get(timeout=300))  # the ingest cannot finish meanwhile
        finally:
            holder.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (WRITER_LOCK, "busy"))
    assert "being written by another doppel run; waiting" in said[-1]
    assert run.wait(timeout=300) == 0
    reader.join(timeout=60)
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    assert "2 faces added" in " ".join(rest) and "3 already present" in " ".join(rest)


def test_a_load_dump_waits_for_the_gallery_writer(
    server_url: str, database_url: str, tmp_path: Path
) -> None:
    """load-dump takes the same lock as ingest: it says it waits, then loads."""
    import queue
    import threading

    from doppel.store.galleries import WRITER_LOCK
    from tests.helpers import write_faces_dump

    dump = write_faces_dump(server_url, tmp_path / "faces.sql", 20)
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (WRITER_LOCK, "ffhq"))
        run = subprocess.Popen(
            [DOPPEL, "load-dump", str(dump), "-g", "ffhq"],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "COLUMNS": "300"},
        )
        assert run.stderr is not None
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(
            target=lambda: [lines.put(line) for line in run.stderr], daemon=True
        )
        reader.start()
        said: list[str] = []
        try:
            while not any("waiting" in line for line in said):
                said.append(lines.get(timeout=300))
            assert faces_in(database_url, "ffhq") == []  # nothing loaded while it waits
        finally:
            holder.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (WRITER_LOCK, "ffhq"))
    assert run.wait(timeout=300) == 0
    assert len(faces_in(database_url, "ffhq")) == 20


# 8. Hostile dumps ---------------------------------------------------------------------


def _gzip_of(path: Path, head: bytes, line: bytes, count: int) -> Path:
    with gzip.open(path, "wb", compresslevel=1) as handle:
        handle.write(head)
        chunk = line * 100_000
        for _ in range(count // 100_000):
            handle.write(chunk)
    return path


@pytest.mark.parametrize(
    ("head", "line", "says"),
    [
        (b"", b"\n", "hold nothing"),
        (b"SET client_encoding = 'UTF8';\n", b"--\n", "hold nothing"),
        (COPY_FACES, b"\n", "hold nothing"),
        (b"INSERT INTO public.faces VALUES (1, '", b"x\n", "runs over"),
    ],
    ids=["newlines", "comments", "newlines-in-copy-data", "newlines-in-a-string"],
)
def test_gzip_of_endless_nothing_ends_with_one_line(
    database_url: str, tmp_path: Path, head: bytes, line: bytes, says: str
) -> None:
    """A small gzip that inflates to millions of empty lines (the hostile case is a
    billion) stops at the limit, with one line that says so, and loads nothing."""
    path = _gzip_of(tmp_path / "nothing.sql.gz", head, line, 1_200_000)
    result = runner.invoke(app, ["load-dump", str(path), "-g", "nl"])
    assert result.exit_code == 1, result.output
    assert says in one_line(result.output)
    assert faces_in(database_url, "nl") == []


# 9. Smaller faults --------------------------------------------------------------------


@pytest.mark.slow
def test_messages_never_show_python_object_reprs(small_gallery: str, tmp_path: Path) -> None:
    fake = tmp_path / "fake.jpg"
    fake.write_text("hello, not a photo\n")
    result = runner.invoke(app, ["find", str(fake), "-g", small_gallery])
    assert result.exit_code == 1
    assert "object at 0x" not in result.output and "<_io" not in result.output
    assert "fake.jpg" in one_line(result.output)


def test_find_on_a_folder_says_it_is_a_folder(tmp_path: Path) -> None:
    result = runner.invoke(app, ["find", str(tmp_path)])
    assert result.exit_code == 2
    assert "is a folder" in one_line(result.output)


def test_ingest_of_a_file_errors_before_any_progress_bar(database_url: str, tmp_path: Path) -> None:
    photo = crops(tmp_path, 1)[0]
    result = ingest(photo, "g")
    assert result.exit_code == 2
    assert "is not a folder" in one_line(result.output)
    assert "━" not in result.output and "0/?" not in result.output


@pytest.mark.slow
def test_animated_gif_and_webp_of_one_stem_keep_both_composites(
    small_gallery: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(4)
    frames = [
        Image.fromarray(rng.integers(0, 255, (160, 160, 3), dtype=np.uint8)) for _ in range(3)
    ]
    for suffix in ("gif", "webp"):
        frames[0].save(tmp_path / f"anim.{suffix}", save_all=True, append_images=frames[1:])
    monkeypatch.chdir(tmp_path)
    written = set()
    for suffix in ("gif", "webp"):
        result = runner.invoke(app, ["find", f"anim.{suffix}", "-g", small_gallery, "-d", "skip"])
        assert result.exit_code == 0, result.output
        written.add(re.search(r"composite written to (\S+)", one_line(result.output)).group(1))  # type: ignore[union-attr]
    assert len(written) == 2
    assert all((tmp_path / name).is_file() for name in written)


def test_no_platformdirs_warning(scratch_home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env["DOPPEL_HOME"] = str(scratch_home)
    result = subprocess.run(
        [DOPPEL, "db", "stop"], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "XDG_RUNTIME_DIR" not in result.stderr


def test_version() -> None:
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"doppel {version('doppel')}"
