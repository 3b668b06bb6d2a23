"""Weights downloads, against a local HTTP server: complete, interrupted, offline, no network."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from doppel.cli.common import error_line
from doppel.config import FaceOptions, Settings
from doppel.errors import WeightsMissing, WeightsUnreadable
from doppel.faces import catalog

PAYLOAD = os.urandom(300_000)
DOPPEL = str(Path(sys.executable).with_name("doppel"))
NAME = "age_model_weights.h5"  # the Age model's weights file: here small and no network


class _Handler(http.server.BaseHTTPRequestHandler):
    cut_after: int | None = None  # send this many bytes of the announced length, then hang up

    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        if not self.path.endswith("/" + NAME):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        body = PAYLOAD if self.cut_after is None else PAYLOAD[: self.cut_after]
        self.wfile.write(body)
        self.wfile.flush()
        if self.cut_after is not None:
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/weights", handler
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DEEPFACE_HOME", str(tmp_path / "df"))
    monkeypatch.setenv("DOPPEL_OFFLINE", "0")
    return tmp_path / "df" / ".deepface" / "weights"


def _options(url: str) -> FaceOptions:
    return dataclasses.replace(Settings.from_env().face_options, weights_url=url)


def test_a_download_arrives_whole_under_its_name(
    weights: Path, server: tuple[str, type[_Handler]]
) -> None:
    url, _ = server
    path = catalog.require("Age", "attributes", _options(url))
    assert path == weights / NAME
    assert path.read_bytes() == PAYLOAD
    assert not (weights / f"{NAME}.part").exists()
    assert catalog.model_status("Age", "attributes").present


def test_the_size_and_hash_are_checked_where_known(
    weights: Path, server: tuple[str, type[_Handler]]
) -> None:
    url, _ = server
    model = catalog.spec("Age", "attributes")
    with pytest.raises(WeightsMissing, match="300,001 were expected"):
        catalog.download(dataclasses.replace(model, size=len(PAYLOAD) + 1), _options(url), False)
    with pytest.raises(WeightsMissing, match="SHA-256"):
        catalog.download(dataclasses.replace(model, sha256="0" * 64), _options(url), False)
    assert not list(weights.iterdir())  # neither the file nor a .part
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    good = dataclasses.replace(model, size=len(PAYLOAD), sha256=digest)
    assert catalog.download(good, _options(url), False).read_bytes() == PAYLOAD


def test_an_interrupted_download_leaves_nothing_and_the_next_one_works(
    weights: Path, server: tuple[str, type[_Handler]]
) -> None:
    url, handler = server
    handler.cut_after = 1000
    with pytest.raises(WeightsMissing) as caught:
        catalog.require("Age", "attributes", _options(url))
    message = error_line(caught.value)
    assert "broke off after 1,000 of 300,000 bytes" in message
    assert NAME in message and "doppel models install Age FILE" in message
    assert not (weights / NAME).exists() and not (weights / f"{NAME}.part").exists()
    handler.cut_after = None
    assert catalog.require("Age", "attributes", _options(url)).read_bytes() == PAYLOAD  # type: ignore[union-attr]


def test_offline_the_missing_file_is_one_clear_error(
    weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOPPEL_OFFLINE", "1")
    with pytest.raises(WeightsMissing) as caught:
        catalog.require("Facenet512", "recognition", Settings.from_env().face_options)
    message = error_line(caught.value)
    assert "facenet512_weights.h5" in message and str(weights) in message
    assert "DOPPEL_OFFLINE" in message
    assert "doppel models install Facenet512 FILE" in message
    assert "\n" not in message


def test_no_network_fails_at_once_with_the_same_message(weights: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(WeightsMissing) as caught:
        catalog.require("Facenet512", "recognition", _options(f"http://127.0.0.1:{port}/w"))
    message = error_line(caught.value)
    assert "cannot reach" in message and "facenet512_weights.h5" in message
    assert str(weights) in message and "doppel models install Facenet512 FILE" in message
    assert not weights.exists() or not list(weights.iterdir())


@pytest.mark.slow  # the Age network is built (TensorFlow) to take the downloaded weights
def test_models_install_downloads_and_a_file_that_does_not_load_is_one_line(
    weights: Path, server: tuple[str, type[_Handler]]
) -> None:
    url, _ = server
    # A process of its own, as a user runs it: DeepFace keeps each network it has built
    # for the life of a process, so in this one an earlier test's Age would be reused.
    done = subprocess.run(
        [DOPPEL, "models", "install", "Age"],
        env={**os.environ, "DOPPEL_WEIGHTS_URL": url, "DOPPEL_OFFLINE": "0", "COLUMNS": "400"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    # The download lands whole; the served bytes are no network, so the conversion that
    # follows refuses them in one line that names the file and how to replace it.
    assert (weights / NAME).read_bytes() == PAYLOAD
    assert done.returncode == WeightsUnreadable.exit_code, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr
    assert f"{weights / NAME} does not load as Age's weights" in lines[0]
    assert "doppel models install Age FILE" in lines[0]
