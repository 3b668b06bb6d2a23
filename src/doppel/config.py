"""Where doppel keeps its things, read from the environment and a `.env` file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL = "Facenet512"
DEFAULT_DETECTOR = "mtcnn"
RUNTIMES = ("auto", "onnx", "openvino", "tensorflow")


def load_dotenv_once() -> None:
    """Read `.env` from the working directory; real environment variables win."""
    from dotenv import load_dotenv

    load_dotenv(Path.cwd() / ".env", override=False)


def _xdg_data_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME")
    return Path(base) if base else Path.home() / ".local" / "share"


@dataclass(frozen=True)
class Settings:
    """Resolved configuration; every field has an environment variable."""

    home: Path
    database_url: str | None
    model: str
    detector: str
    debug: bool
    # Inference runtime for the face networks: auto, openvino, onnx or tensorflow.
    runtime: str = "auto"
    # Never download model weights (DOPPEL_OFFLINE=1); missing ones are then an error.
    offline: bool = False
    # Where weights are downloaded from instead of each model's published address:
    # BASE/FILE_NAME (a mirror, or a local server in tests).
    weights_url: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        home = os.environ.get("DOPPEL_HOME")
        return cls(
            home=Path(home).expanduser() if home else _xdg_data_home() / "doppel",
            database_url=os.environ.get("DOPPEL_DATABASE_URL") or None,
            model=os.environ.get("DOPPEL_MODEL", DEFAULT_MODEL),
            detector=os.environ.get("DOPPEL_DETECTOR", DEFAULT_DETECTOR),
            debug=os.environ.get("DOPPEL_DEBUG", "") not in ("", "0"),
            runtime=os.environ.get("DOPPEL_RUNTIME", "auto").strip().lower() or "auto",
            offline=os.environ.get("DOPPEL_OFFLINE", "") not in ("", "0"),
            weights_url=os.environ.get("DOPPEL_WEIGHTS_URL") or None,
        )

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"
