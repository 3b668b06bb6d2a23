"""Helpers for tests and benchmarks that need models or data doppel cannot download here."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def write_random_facenet512(path: Path, seed: int = 0) -> Path:
    """Write Facenet512's architecture with random weights as a legacy HDF5 weights file.

    DeepFace loads it exactly like the published `facenet512_weights.h5`; the compute
    per face is the same, the embeddings are meaningless.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import h5py
    import tensorflow as tf
    from deepface.models.facial_recognition.tf.Facenet import InceptionResNetV1

    try:
        from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group
    except ImportError:  # tf-keras layout
        from tf_keras.src.saving.legacy.hdf5_format import save_weights_to_hdf5_group

    tf.random.set_seed(seed)
    np.random.seed(seed)
    model = InceptionResNetV1(dimension=512)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        save_weights_to_hdf5_group(handle, model)
    return path


def clustered_vectors(n: int, dim: int = 512, per_identity: int = 5, noise: float = 0.35,
                      seed: int = 0) -> np.ndarray:
    """Vectors shaped like face embeddings: many identities, a few noisy samples of each.

    Each identity is a random unit direction; its samples scatter around it, so
    same-identity cosine similarity is high and different identities are far apart.
    """
    rng = np.random.default_rng(seed)
    identities = max(1, n // per_identity)
    centres = rng.standard_normal((identities, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    owner = rng.integers(0, identities, size=n)
    samples = centres[owner] + noise * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    samples /= np.linalg.norm(samples, axis=1, keepdims=True)
    return samples.astype(np.float32)
