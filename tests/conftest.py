"""Shared fixtures: a real embedded PostgreSQL, a clean database per test, real faces."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.helpers import create_database, drop_database

ROOT = Path(__file__).resolve().parents[1]

# The Ctrl-C tests send SIGINT to a doppel command, as a terminal does. A suite started
# as a background job of a non-interactive shell inherits SIGINT ignored, and so would
# every command it starts (an ignored signal stays ignored across exec; a handler does
# not), which would then never see the interrupt. Python's own handler here gives the
# commands SIGINT as a terminal gives it.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
FACES = Path(os.environ.get("DOPPEL_TEST_FACES", ROOT.parent / "shared" / "faces"))
UNIT = FACES / "deepface-unit"


# `make test-fast` runs `pytest -m "not slow"`: no face model loads, no large data is made.
# A test that uses one of these fixtures (each loads a model, or builds a gallery with
# one, for many tests) is marked slow here, so that no such test can be missed.
SLOW_FIXTURES = frozenset(
    {
        "unit_gallery",
        "facenet_weights",
        "attribute_home",
        "facenet",
        "gallery_url",
        "own_result",
        "other_result",
    }
)
# Modules that only loading a face model imports; a test that imports one while not
# marked slow fails (see _slow_tests_are_marked).
MODEL_MODULES = ("tensorflow", "deepface.DeepFace", "dlib", "mtcnn")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _slow_tests_are_marked(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that loads a face model without @pytest.mark.slow.

    Seen when the model was not loaded before the test, as in `make test-fast`, where
    no slow test runs first.
    """
    if request.node.get_closest_marker("slow") is not None:
        yield
        return
    before = {name for name in MODEL_MODULES if name in sys.modules}
    built = _models_built()
    yield
    loaded = [name for name in MODEL_MODULES if name in sys.modules and name not in before]
    if loaded or _models_built() > built:
        pytest.fail(
            f"loads a face model ({', '.join(loaded) or 'DeepFace'}) but is not marked slow"
        )


def _models_built() -> int:
    """How many models DeepFace holds built (it keeps each one once built)."""
    modeling = sys.modules.get("deepface.modules.modeling")
    cached = getattr(modeling, "cached_models", None) or {}
    return sum(len(models) for models in cached.values())


def _require_faces() -> Path:
    if not UNIT.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{UNIT} is missing; CI must run the tests that need real faces")
        pytest.skip(f"real faces not found at {UNIT} (clone the project beside shared/)")
    return UNIT


@pytest.fixture(scope="session")
def unit_faces() -> Path:
    """deepface's 61 labelled photos of 13 people (read in place, never copied)."""
    return _require_faces()


@pytest.fixture(scope="session")
def identities(unit_faces: Path) -> dict[str, str]:
    lines = (unit_faces / "identities.csv").read_text().splitlines()[1:]
    return dict(line.split(",") for line in lines if line)


@pytest.fixture(scope="session", autouse=True)
def doppel_home() -> Iterator[Path]:
    """A private DOPPEL_HOME and DeepFace weights folder for the whole test session.

    Made with mkdtemp rather than pytest's tmp_path_factory: pytest prunes old
    numbered folders, which would pull the data directory from under a server
    that another pytest session on the machine still runs.
    """
    home = Path(tempfile.mkdtemp(prefix="doppel-test-"))
    saved = {
        k: os.environ.get(k)
        for k in (
            "DOPPEL_HOME",
            "DEEPFACE_HOME",
            "DOPPEL_DATABASE_URL",
            "DOPPEL_MODEL",
            "DOPPEL_DETECTOR",
            "DOPPEL_GALLERY",
            "DOPPEL_OFFLINE",
        )
    }
    os.environ["DOPPEL_HOME"] = str(home)
    os.environ["DEEPFACE_HOME"] = str(home / "deepface")
    # Tests never reach the internet: a missing weights file is an error at once (the
    # download tests use a local server).
    os.environ["DOPPEL_OFFLINE"] = "1"
    for key in ("DOPPEL_DATABASE_URL", "DOPPEL_MODEL", "DOPPEL_DETECTOR", "DOPPEL_GALLERY"):
        os.environ.pop(key, None)
    yield home
    from doppel.config import Settings
    from doppel.store.db import stop_embedded

    if not os.environ.get("DOPPEL_TEST_DATABASE_URL"):
        stop_embedded(Settings.from_env())
    shutil.rmtree(home, ignore_errors=True)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def scratch_home() -> Iterator[Path]:
    """A DOPPEL_HOME for a second embedded server, outside pytest's pruned folders
    (the server runs as its own system user, which must be able to reach it)."""
    home = Path(tempfile.mkdtemp(prefix="doppel-scratch-"))
    yield home
    from doppel.config import Settings
    from doppel.store.db import stop_embedded

    stop_embedded(Settings(home, None, "Dlib", "mtcnn", False))
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def server_url(doppel_home: Path) -> str:
    """The server tests run against: DOPPEL_TEST_DATABASE_URL, or doppel's embedded one."""
    url = os.environ.get("DOPPEL_TEST_DATABASE_URL")
    if url:
        return url
    from doppel.config import Settings
    from doppel.store.db import embedded_uri

    return embedded_uri(Settings.from_env())


@pytest.fixture
def database_url(server_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, empty database for one test; DOPPEL_DATABASE_URL points at it."""
    url = create_database(server_url)
    monkeypatch.setenv("DOPPEL_DATABASE_URL", url)
    yield url
    drop_database(server_url, url)


@pytest.fixture(scope="session")
def unit_gallery(server_url: str, unit_faces: Path) -> Iterator[str]:
    """A database whose gallery "deepface-unit" holds every photo of deepface-unit,
    embedded once per session with the Dlib model and the mtcnn detector.
    Tests must not change it; they get its URL."""
    from doppel.config import Settings
    from doppel.store.db import connect
    from doppel.types import EmbeddingConfig
    from tests.helpers import ingest_folder

    url = create_database(server_url)
    settings = Settings.from_env()
    with connect(Settings(settings.home, url, "Dlib", "mtcnn", False)) as connection:
        ingest_folder(connection, unit_faces, "deepface-unit", EmbeddingConfig("Dlib", "mtcnn"))
    yield url
    drop_database(server_url, url)


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    """A connection to the fresh test database, schema applied, pgvector registered."""
    from doppel.config import Settings
    from doppel.store.db import connect

    connection = connect(Settings.from_env())
    yield connection
    connection.close()


@pytest.fixture(scope="session")
def facenet_weights(doppel_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Facenet512's real architecture with random weights, in DeepFace's published layout.

    The real weights cannot be downloaded here; random ones exercise the same code path
    and cost the same compute. Never use them for accuracy claims.
    """
    from tests.helpers import write_random_facenet512

    path = tmp_path_factory.mktemp("weights") / "facenet512_weights.h5"
    write_random_facenet512(path)
    return path


@pytest.fixture(scope="session")
def attribute_home(doppel_home: Path) -> Iterator[Path]:
    """A DEEPFACE_HOME holding DeepFace's Age, Gender and Race architectures with random
    weights, and each network converted for ONNX Runtime and checked against TensorFlow,
    and mtcnn converted too. Tests point DEEPFACE_HOME at it; they must not change it.

    `doppel models install Age` converts Age with tf2onnx, as a user would. The three
    share their random trunk, so Gender's and Race's graphs are Age's with their own last
    layer (tests.helpers.install_attributes_like; the rest of their install is doppel's,
    and its check fails a wrong layer): a VGG conversion costs a minute or more, and
    benchmarks/bench_attributes.py still converts all three. Each step runs in its own
    process: a VGG-sized conversion peaks at about 6 GB, which goes back to the system
    when the process ends.
    """
    import subprocess

    home = Path(tempfile.mkdtemp(prefix="doppel-attributes-"))
    env = {
        **os.environ,
        "DEEPFACE_HOME": str(home),
        "DOPPEL_RUNTIME": "onnx",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    weights = home / ".deepface" / "weights"
    write = (
        "import sys, pathlib; from tests.helpers import write_random_attribute_weights as w; "
        "w(pathlib.Path(sys.argv[1]))"
    )
    derive = (
        "from tests.helpers import install_attributes_like as i; "
        "print(''.join(i('Age', ('Gender', 'Race'))))"
    )
    steps = [
        [sys.executable, "-c", write, str(weights)],
        [sys.executable, "-m", "doppel", "models", "install", "mtcnn"],
        [sys.executable, "-m", "doppel", "models", "install", "Age"],
        [sys.executable, "-c", derive],
    ]
    said = ""
    for step in steps:
        done = subprocess.run(step, env=env, cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        said += done.stdout
    for name in ("Age", "Gender", "Race"):
        assert f"{name}: runs on ONNX Runtime" in said, said
    yield home
    shutil.rmtree(home, ignore_errors=True)
