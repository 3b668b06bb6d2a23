"""doppel's configuration: every environment variable and every default, in one place.

The CLI (and `doppel serve`) reads the environment once, with Settings.from_env() (the
command line's own choices over it), and passes the Settings down; library code takes
what it needs as arguments and never reads the environment itself. The face pipeline
takes its part as a FaceOptions, which travels with an Embedder into worker processes.
Each variable is described in `.env.example`.

One value is process-wide by nature and is read here, not passed: DeepFace finds its
weights under DEEPFACE_HOME by itself, so doppel's weights catalogue must look in the
same place (deepface_home()).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from doppel.errors import UsageError

DEFAULT_MODEL = "Facenet512"
# No single default detector: each model has its own (faces/catalog.py), chosen by
# measurement; DOPPEL_DETECTOR overrides it for every model.
RUNTIMES = ("auto", "onnx", "openvino", "tensorflow")
# The largest image doppel decodes, in pixels (DOPPEL_MAX_PIXELS). A camera's photo is
# 12 to 50 megapixels; a PNG of a few megabytes can claim 400, and decoding it would
# take gigabytes of memory.
DEFAULT_MAX_PIXELS = 80_000_000
DEFAULT_BATCH_SIZE = 32  # faces per model call: 2.7 times one-at-a-time (docs/benchmarks.md)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_MAX_UPLOAD_MIB = 20
# How long a search may wait for a face worker before `doppel serve` answers 503 with
# Retry-After instead (DOPPEL_QUEUE_WAIT_S): latency stays bounded under overload.
DEFAULT_QUEUE_WAIT_S = 5

# Every environment variable doppel reads, and the Settings field (or function) it sets.
ENVIRONMENT = {
    "DOPPEL_HOME": "home",
    "XDG_DATA_HOME": "home (when DOPPEL_HOME is unset)",
    "DOPPEL_DATABASE_URL": "database_url",
    "DOPPEL_MODEL": "model",
    "DOPPEL_DETECTOR": "detector",
    "DOPPEL_DEBUG": "debug",
    "DOPPEL_GALLERY": "gallery",
    "DOPPEL_IMAGE_ROOT": "image_roots",
    "DOPPEL_EF_SEARCH": "ef_search",
    "DOPPEL_BATCH_SIZE": "batch_size",
    "DOPPEL_HOST": "host",
    "DOPPEL_PORT": "port",
    "DOPPEL_MAX_UPLOAD_MIB": "max_upload_mib",
    "DOPPEL_WORKERS": "workers",
    "DOPPEL_QUEUE_WAIT_S": "queue_wait_s",
    "DOPPEL_REPORTS": "reports",
    "RAY_ADDRESS": "ray_address",
    "DEEPFACE_HOME": "deepface_home()",
    "DOPPEL_RUNTIME": "runtime",
    "DOPPEL_OFFLINE": "offline",
    "DOPPEL_WEIGHTS_URL": "weights_url",
    "DOPPEL_MAX_PIXELS": "max_pixels",
    "DOPPEL_SHARED_BUFFERS_MIB": "shared_buffers_mib",
    "DOPPEL_CITUS_SHARDS": "citus_shards",
    "DOPPEL_CITUS_SOURCE": "citus_source",
    "DOPPEL_CITUS_CACHE": "citus_cache",
    "XDG_CACHE_HOME": "citus_cache (when DOPPEL_CITUS_CACHE is unset)",
}


def load_dotenv_once() -> None:
    """Read `.env` from the working directory; real environment variables win."""
    from dotenv import load_dotenv

    load_dotenv(Path.cwd() / ".env", override=False)


def _xdg_data_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME")
    return Path(base) if base else Path.home() / ".local" / "share"


def default_citus_cache() -> Path:
    """Where Citus is built when DOPPEL_CITUS_CACHE is unset: one place per machine."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "doppel" / "citus"


def _path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def _int(name: str, default: int | None, low: int, high: int) -> int | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{name} must be a whole number, not {text!r}") from None
    if not low <= value <= high:
        raise UsageError(f"{name} must be between {low} and {high}, not {value}")
    return value


def deepface_home() -> Path:
    """The folder DeepFace keeps `.deepface/weights` in (it reads DEEPFACE_HOME itself)."""
    return Path(os.environ.get("DEEPFACE_HOME") or str(Path.home()))


def debug_enabled() -> bool:
    """DOPPEL_DEBUG: let tracebacks through instead of one-line errors."""
    return _flag("DOPPEL_DEBUG")


def _runtime() -> str:
    text = os.environ.get("DOPPEL_RUNTIME", "").strip().lower() or "auto"
    if text not in RUNTIMES:
        raise UsageError(f"DOPPEL_RUNTIME must be one of {', '.join(RUNTIMES)}, not {text!r}")
    return text


@dataclass(frozen=True)
class FaceOptions:
    """What the face pipeline takes from the Settings: the inference runtime and where
    missing weights come from. Small and picklable, so that it travels with an Embedder
    to the processes that embed (Ray actors) rather than through their environment.
    The defaults are the Settings' own with no variable set."""

    runtime: str = "auto"  # auto, onnx, openvino or tensorflow (RUNTIMES)
    offline: bool = False  # never download weights; a missing file is then an error
    weights_url: str | None = None  # BASE: weights from BASE/FILE_NAME, not their address


@dataclass(frozen=True)
class Settings:
    """Resolved configuration; every field has an environment variable (ENVIRONMENT)."""

    home: Path
    database_url: str | None
    model: str = DEFAULT_MODEL
    detector: str | None = None  # None: each model's own default
    debug: bool = False
    # Inference runtime for the face networks: auto, openvino, onnx or tensorflow.
    runtime: str = "auto"
    # Never download model weights (DOPPEL_OFFLINE=1); missing ones are then an error.
    offline: bool = False
    # Where weights are downloaded from instead of each model's published address:
    # BASE/FILE_NAME (a mirror, or a local server in tests).
    weights_url: str | None = None
    gallery: str | None = None  # searched when a command names none and there are several
    image_roots: tuple[Path, ...] = ()  # local copies of FFHQ, before the recorded ones
    ef_search: int | None = None  # None: the store's default
    batch_size: int = DEFAULT_BATCH_SIZE
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_upload_mib: int = DEFAULT_MAX_UPLOAD_MIB
    # `doppel serve`'s face worker processes; None: one per core (face_workers).
    workers: int | None = None
    queue_wait_s: int = DEFAULT_QUEUE_WAIT_S
    reports: Path | None = None  # None: home/reports
    ray_address: str | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    # The embedded server's shared_buffers in MiB; None: sized to the machine
    # (store/memory.buffers_mib). A server of the user's own keeps its own setting.
    shared_buffers_mib: int | None = None
    # Shards of faces when doppel lays its schema out on Citus; None: 2 per worker
    # (store/citus_layout.shard_count).
    citus_shards: int | None = None
    # Citus's release tarball; None: the project's vendored copy (store/citus_build.py).
    citus_source: Path | None = None
    # Where Citus is built, once per machine; None: default_citus_cache().
    citus_cache: Path | None = None

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """The Settings the environment gives; overrides (fields chosen on the command
        line, such as `doppel --runtime`) win over it."""
        home = os.environ.get("DOPPEL_HOME")
        reports = os.environ.get("DOPPEL_REPORTS")
        roots = os.environ.get("DOPPEL_IMAGE_ROOT", "")
        settings = cls(
            home=Path(home).expanduser() if home else _xdg_data_home() / "doppel",
            database_url=os.environ.get("DOPPEL_DATABASE_URL") or None,
            model=os.environ.get("DOPPEL_MODEL") or DEFAULT_MODEL,
            detector=os.environ.get("DOPPEL_DETECTOR") or None,
            debug=_flag("DOPPEL_DEBUG"),
            # A runtime chosen on the command line stands in for DOPPEL_RUNTIME, unread.
            runtime=overrides.get("runtime") or _runtime(),
            offline=_flag("DOPPEL_OFFLINE"),
            weights_url=os.environ.get("DOPPEL_WEIGHTS_URL") or None,
            gallery=os.environ.get("DOPPEL_GALLERY") or None,
            image_roots=tuple(Path(p).expanduser() for p in roots.split(os.pathsep) if p),
            ef_search=_int("DOPPEL_EF_SEARCH", None, 1, 1000),
            batch_size=_int("DOPPEL_BATCH_SIZE", DEFAULT_BATCH_SIZE, 1, 4096) or 1,
            host=os.environ.get("DOPPEL_HOST") or DEFAULT_HOST,
            port=_int("DOPPEL_PORT", DEFAULT_PORT, 1, 65535) or DEFAULT_PORT,
            max_upload_mib=_int("DOPPEL_MAX_UPLOAD_MIB", DEFAULT_MAX_UPLOAD_MIB, 1, 1024)
            or DEFAULT_MAX_UPLOAD_MIB,
            workers=_int("DOPPEL_WORKERS", None, 0, 1024),
            queue_wait_s=_int("DOPPEL_QUEUE_WAIT_S", DEFAULT_QUEUE_WAIT_S, 0, 3600) or 0,
            reports=Path(reports).expanduser() if reports else None,
            ray_address=os.environ.get("RAY_ADDRESS") or None,
            max_pixels=_int("DOPPEL_MAX_PIXELS", DEFAULT_MAX_PIXELS, 1, 10**12)
            or DEFAULT_MAX_PIXELS,
            shared_buffers_mib=_int("DOPPEL_SHARED_BUFFERS_MIB", None, 16, 2**20),
            citus_shards=_int("DOPPEL_CITUS_SHARDS", None, 1, 1024),
            citus_source=_path("DOPPEL_CITUS_SOURCE"),
            citus_cache=_path("DOPPEL_CITUS_CACHE") or default_citus_cache(),
        )
        return dataclasses.replace(settings, **overrides) if overrides else settings

    @property
    def face_options(self) -> FaceOptions:
        """The face pipeline's part, for Embedders and the weights catalogue."""
        return FaceOptions(self.runtime, self.offline, self.weights_url)

    @property
    def face_workers(self) -> int:
        """`doppel serve`'s face worker processes: DOPPEL_WORKERS, else one per core."""
        if self.workers is not None:
            return self.workers
        if hasattr(os, "sched_getaffinity"):
            return len(os.sched_getaffinity(0))
        return os.cpu_count() or 1

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def reports_dir(self) -> Path:
        """Where `doppel serve` lists resemblance reports from."""
        return self.reports or self.home / "reports"

    @property
    def calibration_file(self) -> Path:
        """Same-person thresholds measured by the user; they override the shipped ones."""
        return self.home / "calibration.json"
