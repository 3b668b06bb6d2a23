"""Errors: the library's messages are neutral; the CLI adds its own words for what to do."""

from __future__ import annotations

import ast
from pathlib import Path

import psycopg
import pytest

from doppel.cli.common import HINTS, error_line
from doppel.errors import GalleryMismatch, Remedy, UsageError
from doppel.store.gallery_rows import check_config
from doppel.types import EmbeddingConfig, Gallery

SRC = Path(__file__).resolve().parents[1] / "src" / "doppel"


def test_every_remedy_has_the_clis_words() -> None:
    assert set(HINTS) == set(Remedy)


def test_error_line_adds_the_remedy_to_the_message() -> None:
    plain = UsageError("two or more people are needed")
    assert error_line(plain) == "two or more people are needed"
    gallery = Gallery(1, "ffhq", EmbeddingConfig("Facenet512", "skip", False), 512, "vector", None)  # type: ignore[arg-type]
    with pytest.raises(GalleryMismatch) as caught:
        check_config(gallery, EmbeddingConfig("Dlib", "mtcnn"))
    message = str(caught.value)
    assert "holds faces embedded as Facenet512" in message and "--" not in message
    assert error_line(caught.value) == f"{message}; {HINTS[Remedy.OTHER_GALLERY]}"


def _raised_texts(tree: ast.AST) -> list[str]:
    texts = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            for part in ast.walk(node.exc):
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    texts.append(part.value)
    return texts


def test_library_errors_name_no_command_line_flag_or_command() -> None:
    """CLI words belong in doppel.cli (HINTS); the web API returns the messages as they are."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if "cli" in path.relative_to(SRC).parts:
            continue
        for text in _raised_texts(ast.parse(path.read_text())):
            if "--" in text or "`doppel" in text:
                found.append(f"{path.relative_to(SRC)}: {text!r}")
    assert found == []


def test_square_brackets_in_a_message_are_printed_as_written(tmp_path: Path) -> None:
    """The CLI prints messages as plain text: "[draft]" in a path is not a style tag."""
    from typer.testing import CliRunner

    from doppel.cli import app

    missing = tmp_path / "[draft] photos"
    result = CliRunner().invoke(app, ["ingest", str(missing)])
    assert result.exit_code != 0
    assert f"{missing} is not a folder" in result.output


@pytest.mark.parametrize(
    ("args", "folder"),
    [
        (["--cluster", "{dir}"], "{dir}"),  # the folder, not an address
        (["{dir}", "--cluster"], "{dir}"),
        (["{dir}", "--cluster", "ray://head:10001"], "{dir}"),
        (["--cluster", "head:10001", "{dir}"], "{dir}"),
        (["--cluster", "local", "{dir}", "--workers", "1"], "{dir}"),
    ],
)
def test_cluster_takes_an_address_or_none(tmp_path: Path, args: list[str], folder: str) -> None:
    """`--cluster` alone or with an address; whatever follows that is not an address is
    the folder (here a missing one, so the command stops before starting Ray)."""
    from typer.testing import CliRunner

    from doppel.cli import app

    where = str(tmp_path / "nowhere")
    result = CliRunner().invoke(app, ["ingest", *(a.format(dir=where) for a in args)])
    assert f"{folder.format(dir=where)} is not a folder" in result.output, result.output


def test_what_cluster_asks_for() -> None:
    from doppel.cli.ingest import ray_address
    from doppel.config import Settings

    plain = Settings(Path("/tmp/x"), None)
    with_env = Settings(Path("/tmp/x"), None, ray_address="ray://env:10001")
    assert ray_address(None, with_env) is None  # no --cluster
    assert ray_address("", plain) == ""  # bare: a local Ray
    assert ray_address("", with_env) == "ray://env:10001"  # bare: $RAY_ADDRESS
    assert ray_address("local", with_env) == ""  # local wins over $RAY_ADDRESS
    assert ray_address("auto", with_env) == "auto"


def test_an_unknown_person_says_what_to_do_next_only_in_the_clis_words(
    conn: psycopg.Connection,
) -> None:
    """The store names the missing person; `doppel people` is the CLI's to say, and an id
    past PostgreSQL's bigint is no person either."""
    from doppel.errors import UnknownPerson
    from doppel.store.people import PeopleStore
    from doppel.store.repository import Repository

    gallery = Repository(conn).ensure_gallery("g", EmbeddingConfig("Dlib", "mtcnn"), dimension=4)
    for person_id in (7, 2**63):
        with pytest.raises(UnknownPerson) as caught:
            PeopleStore(conn).person(gallery, person_id)
        assert str(caught.value) == f"gallery 'g' has no person {person_id}"
        hint = "it has no people yet: run `doppel people g` first"
        assert error_line(caught.value) == f"{caught.value}; {hint}"
