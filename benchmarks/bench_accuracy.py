"""Top-1 identification on deepface-unit: doppel find against DeepFace's own pipeline.

For each of the 61 labelled photos, is the best match (the photo itself left out)
the same person? doppel: the photos ingested into a gallery, then `find` for each
photo through the HNSW index. DeepFace: DeepFace.represent on each full-size file
(largest face), then cosine similarity against every other labelled photo.

    .venv/bin/python benchmarks/bench_accuracy.py [--model Dlib] [--detector mtcnn]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT.parent / "shared" / "faces" / "deepface-unit"


def labelled(folder: Path) -> dict[str, str]:
    lines = (folder / "identities.csv").read_text().splitlines()[1:]
    return dict(line.split(",") for line in lines if line)


def doppel_accuracy(
    folder: Path, ids: dict[str, str], model: str, detector: str
) -> tuple[int, float]:
    from doppel.config import Settings
    from doppel.faces.embed import Embedder
    from doppel.ingest import ingest
    from doppel.search import find
    from doppel.store.db import connect
    from doppel.types import EmbeddingConfig

    with connect(Settings.from_env()) as conn:
        start = time.perf_counter()
        ingest(conn, folder, "unit", Embedder(EmbeddingConfig(model, detector)))
        correct = 0
        for name, person in sorted(ids.items()):
            # Ask for enough matches to reach a labelled photo past unlabelled ones.
            result = find(conn, folder / name, "unit", k=10)
            top = next(m for m in result.results[0].matches if Path(m.face.source).name in ids)
            correct += ids[Path(top.face.source).name] == person
        return correct, time.perf_counter() - start


def deepface_accuracy(
    folder: Path, ids: dict[str, str], model: str, detector: str
) -> tuple[int, float]:
    from deepface import DeepFace

    from doppel.faces.catalog import require

    require(model, "recognition")
    require(detector, "detector")
    start = time.perf_counter()
    names = sorted(ids)
    vectors = []
    for name in names:
        faces = DeepFace.represent(
            img_path=str(folder / name), model_name=model, detector_backend=detector
        )
        largest = max(faces, key=lambda f: f["facial_area"]["w"] * f["facial_area"]["h"])
        vectors.append(np.asarray(largest["embedding"], dtype=np.float64))
    matrix = np.vstack(vectors)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    similarity = matrix @ matrix.T
    np.fill_diagonal(similarity, -np.inf)
    best = similarity.argmax(axis=1)
    correct = sum(ids[names[i]] == ids[names[j]] for i, j in enumerate(best))
    return int(correct), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="Dlib")
    parser.add_argument("--detector", default="mtcnn")
    parser.add_argument("--faces", type=Path, default=UNIT)
    parser.add_argument(
        "--doppel-only", action="store_true", help="skip DeepFace's pipeline (about 10 minutes)"
    )
    args = parser.parse_args()
    ids = labelled(args.faces)
    home = Path(tempfile.mkdtemp(prefix="doppel-bench-"))
    os.environ["DOPPEL_HOME"] = str(home)
    os.environ.pop("DOPPEL_DATABASE_URL", None)
    try:
        ours, our_time = doppel_accuracy(args.faces, ids, args.model, args.detector)
        theirs, their_time = (
            (0, 0.0)
            if args.doppel_only
            else deepface_accuracy(args.faces, ids, args.model, args.detector)
        )
    finally:
        from doppel.config import Settings
        from doppel.store.db import stop_embedded

        stop_embedded(Settings.from_env())
        shutil.rmtree(home, ignore_errors=True)
    print(f"model {args.model}, detector {args.detector}, {len(ids)} labelled photos")
    print(f"{'pipeline':<34}{'top-1 correct':>14}{'seconds':>10}")
    print(f"{'doppel (ingest + find, HNSW)':<34}{ours:>10}/{len(ids):<3}{our_time:>10.1f}")
    if not args.doppel_only:
        print(f"{'DeepFace.represent, full size':<34}{theirs:>10}/{len(ids):<3}{their_time:>10.1f}")


if __name__ == "__main__":
    main()
