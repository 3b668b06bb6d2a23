"""Errors: the library's messages are neutral; the CLI adds its own words for what to do."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from doppel.cli.common import HINTS, error_line
from doppel.errors import GalleryMismatch, Remedy, UsageError
from doppel.store.repository import check_config
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
