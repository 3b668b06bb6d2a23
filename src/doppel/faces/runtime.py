"""The inference runtime: DeepFace on TensorFlow, imported quietly and once."""

from __future__ import annotations

import os
import sys


def quiet_tensorflow() -> None:
    """Import DeepFace (and so TensorFlow) without its start-up chatter on stderr.

    TensorFlow's C++ side reports CUDA probing through absl before it reads
    TF_CPP_MIN_LOG_LEVEL, so the file descriptor is muted for the import itself.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    if "deepface.DeepFace" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import deepface.DeepFace  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
