"""Where the database is, what it holds, and clear errors when it is not there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from doppel.cli import app
from doppel.config import Settings
from doppel.store.db import connect, embedded_uri, parse_version, redact

runner = CliRunner()


def test_schema_is_applied_once_and_is_idempotent(database_url: str) -> None:
    with connect(Settings.from_env()) as first:
        tables = {
            r[0]
            for r in first.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
    assert {"galleries", "images", "faces", "embedding_cache", "schema_steps"} <= tables
    with connect(Settings.from_env()) as second:
        version = second.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()
    assert version is not None and parse_version(version[0]) >= (0, 5, 0)


def test_setup_sql_works_by_hand_with_psql(server_url: str, database_url: str) -> None:
    from doppel.store.db import tool_path

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [
            str(tool_path("psql")),
            database_url,
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-f",
            str(root / "setup.sql"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    with connect(Settings.from_env()) as conn:
        assert conn.execute("SELECT count(*) FROM galleries").fetchone() == (0,)


def test_db_status_lists_versions_and_galleries(database_url: str) -> None:
    result = runner.invoke(app, ["db", "status"])
    assert result.exit_code == 0, result.output
    assert "pgvector 0.8" in result.stdout
    assert "galleries: none yet" in result.stdout
    assert "***" in result.stdout or "password" not in database_url


def test_dead_database_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOPPEL_DATABASE_URL", "postgresql://doppel:secret@127.0.0.1:1/nowhere")
    result = runner.invoke(app, ["db", "status"])
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert line.startswith("error: cannot connect to")
    assert "secret" not in line and "***" in line
    assert len(line.splitlines()) == 1


def test_redact_hides_the_password() -> None:
    assert "hunter2" not in redact("postgresql://me:hunter2@db.example/doppel")


@pytest.mark.slow
def test_second_embedded_server_through_database_url(
    tmp_path: Path, scratch_home: Path, unit_faces: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second, separate PostgreSQL (its own data directory and socket) reached only
    through DOPPEL_DATABASE_URL: ingest, find and status work the same."""
    url = embedded_uri(Settings(scratch_home, None, "Dlib", "mtcnn", False))
    folder = tmp_path / "pair"
    folder.mkdir()
    for name in ("img1.jpg", "img2.jpg", "img4.jpg"):
        (folder / name).symlink_to(unit_faces / name)
    monkeypatch.setenv("DOPPEL_DATABASE_URL", url)
    found = runner.invoke(
        app,
        [
            "find",
            str(unit_faces / "img5.jpg"),
            "--in",
            str(folder),
            "-m",
            "Dlib",
            "--json",
            "--no-picture",
        ],
    )
    assert found.exit_code == 0, found.output
    assert '"gallery": "pair"' in found.stdout
    status = runner.invoke(app, ["db", "status"])
    assert "pair" in status.stdout
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM faces").fetchone() == (3,)


def test_db_stop_then_next_command_restarts(
    scratch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOPPEL_HOME", str(scratch_home))
    monkeypatch.delenv("DOPPEL_DATABASE_URL", raising=False)
    assert runner.invoke(app, ["db", "status"]).exit_code == 0
    stopped = runner.invoke(app, ["db", "stop"])
    assert "stopped" in stopped.stdout
    again = runner.invoke(app, ["db", "status"])
    assert again.exit_code == 0, again.output


def test_embedded_server_gets_its_buffers_when_it_starts_never_while_running(
    scratch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """shared_buffers is set when doppel starts the embedded server (one restart), and a
    server already running is left alone: a restart would cut off other commands."""
    monkeypatch.setenv("DOPPEL_HOME", str(scratch_home))
    monkeypatch.delenv("DOPPEL_DATABASE_URL", raising=False)
    monkeypatch.setenv("DOPPEL_SHARED_BUFFERS_MIB", "48")
    first = runner.invoke(app, ["db", "status"])
    assert first.exit_code == 0, first.output
    assert "buffers:   48 MiB" in first.stdout
    monkeypatch.setenv("DOPPEL_SHARED_BUFFERS_MIB", "64")
    with psycopg.connect(embedded_uri(Settings.from_env())) as other:
        running = runner.invoke(app, ["db", "status"])
        assert "buffers:   48 MiB" in running.stdout
        assert other.execute("SELECT 1").fetchone() == (1,)  # not cut off
    assert "stopped" in runner.invoke(app, ["db", "stop"]).stdout
    restarted = runner.invoke(app, ["db", "status"])
    assert "buffers:   64 MiB" in restarted.stdout


def test_installed_command_runs(database_url: str) -> None:
    """The console script itself, in a new process."""
    doppel = Path(sys.executable).with_name("doppel")
    done = subprocess.run(
        [str(doppel), "db", "status"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "PostgreSQL 1" in done.stdout
