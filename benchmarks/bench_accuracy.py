"""Identification and verification accuracy: doppel's face pipelines against DeepFace's own.

For every labelled photo of a set, the largest face is embedded; then
- rank-1: leave-one-out, does the nearest other photo (cosine) show the same person?
  A photo without a face counts as a miss.
- verification: pairs judged "same person" when their cosine distance is at most the
  model's threshold (DeepFace's, 0.07 for Dlib); a pair with a faceless photo is
  judged "different". lfw-dev: every same-person pair and as many different-person
  pairs drawn with a fixed seed; deepface-unit: its master.csv.
  "best" is the accuracy at the best threshold for that pipeline, for reference.
- s/photo: wall seconds a photo in that run (doppel: detection and embedding, decoding
  excluded; DeepFace: its whole call), on a shared machine: compare within one run.

Pipelines per detector: DeepFace.represent on the file (DeepFace's own), doppel as
galleries made before per-model pipelines embed (DeepFace's eye-level crop, "eyes"),
doppel's five-point chip alone, and doppel's default for the model (five-point chip
and mirror averaging for Dlib). doppel's embeddings are those `doppel ingest` stores:
the same decoding, detection and embedding calls.

    .venv/bin/python benchmarks/bench_accuracy.py                     # everything (~1 h on 2 cores)
    .venv/bin/python benchmarks/bench_accuracy.py --sets lfw-dev --detectors dlib
    .venv/bin/python benchmarks/bench_accuracy.py --pipelines doppel  # skip DeepFace's side
    .venv/bin/python benchmarks/bench_accuracy.py --sets lfw-dev-sample --detectors dlib

lfw-dev-sample is the part of lfw-dev the test suite measures (tests/helpers.py:
lfw_dev_sample); its `deepface` row gives the figures the suite's test must reach.

Embeddings are kept in --cache (one file per set, pipeline and detector), so a run
that is stopped resumes and a second run only prints the table.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(1, str(ROOT))

from tests.helpers import labelled_pairs, lfw_dev_sample  # noqa: E402

FACES = Path(os.environ.get("DOPPEL_TEST_FACES", ROOT.parent / "shared" / "faces"))
DETECTORS = ("dlib", "mtcnn", "mmod")
PIPELINES = ("deepface", "doppel-eyes", "doppel-five-point", "doppel")


@dataclass(frozen=True)
class LabelledSet:
    name: str
    folder: Path
    files: list[str]
    people: list[str]
    pairs: list[tuple[int, int, bool]]


def load_set(name: str, seed: int = 0) -> LabelledSet:
    if name in ("lfw-dev", "lfw-dev-sample"):
        root = FACES / "lfw-dev"
        rows = list(csv.DictReader((root / "identities.csv").open()))
        if name == "lfw-dev-sample":  # the test suite's part of lfw-dev
            chosen = lfw_dev_sample([r["person"] for r in rows])
            rows = [r for r in rows if r["person"] in chosen]
        files, people = [r["file"] for r in rows], [r["person"] for r in rows]
        folder = root / "photos"
        pairs = labelled_pairs(people, seed)
    elif name == "deepface-unit":
        folder = FACES / "deepface-unit"
        rows = list(csv.DictReader((folder / "identities.csv").open()))
        files, people = [r["file"] for r in rows], [r["identity"] for r in rows]
        index = {f: i for i, f in enumerate(files)}
        pairs = [
            (index[r["file_x"]], index[r["file_y"]], r["Decision"] == "Yes")
            for r in csv.DictReader((folder / "master.csv").open())
            if r["file_x"] in index and r["file_y"] in index
        ]
    else:
        raise SystemExit(f"unknown set {name}")
    return LabelledSet(name, folder, files, people, pairs)


def embed_doppel(
    data: LabelledSet, model: str, detector: str, pipeline: str
) -> dict[str, tuple[np.ndarray, float]]:
    """doppel's vectors per photo for the pipeline; for the five-point chip, the default
    (mirror averaged, where the model's default averages) comes from the same pass."""
    import dataclasses

    from doppel.config import Settings
    from doppel.faces import catalog, imaging
    from doppel.faces.embed import Embedder
    from doppel.types import EmbeddingConfig

    if pipeline == "doppel-eyes":
        config = EmbeddingConfig(model, detector)
    else:
        config = dataclasses.replace(catalog.default_config(model, detector), flip=False)
    embedder = Embedder(config, options=Settings.from_env().face_options)
    plain, averaged = [], []
    detect_s = plain_s = mirror_s = 0.0
    missing = np.full(embedder.dimension, np.nan)
    for name in data.files:
        start = time.perf_counter()
        faces = embedder.detect(imaging.load(data.folder / name))[:1]
        detect_s += time.perf_counter() - start
        if not faces:
            plain.append(missing)
            averaged.append(missing)
            continue
        start = time.perf_counter()
        vector = embedder.embed_crops([faces[0].crop])[0]
        plain_s += time.perf_counter() - start
        start = time.perf_counter()
        mirrored = embedder.embed_crops([np.ascontiguousarray(faces[0].crop[:, ::-1])])[0]
        mirror_s += time.perf_counter() - start
        plain.append(vector)
        averaged.append((vector + mirrored) / 2)
    out = {pipeline: (np.vstack(plain).astype(np.float64), detect_s + plain_s)}
    if pipeline == "doppel-five-point":
        seconds = detect_s + plain_s + mirror_s
        default = catalog.default_config(model, detector)
        out["doppel"] = (np.vstack(averaged if default.flip else plain).astype(np.float64), seconds)
    return out


def embed_deepface(data: LabelledSet, model: str, detector: str) -> np.ndarray:
    from doppel.config import Settings
    from doppel.faces import catalog
    from doppel.faces.conversion import quiet_tensorflow

    options = Settings.from_env().face_options
    catalog.require(model, "recognition", options)
    catalog.require(detector, "detector", options)
    quiet_tensorflow()
    from deepface import DeepFace

    rows = []
    for name in data.files:
        try:
            faces = DeepFace.represent(
                img_path=str(data.folder / name), model_name=model, detector_backend=detector
            )
        except ValueError:  # DeepFace's "Face could not be detected"
            rows.append(np.full(catalog.spec(model).dimension or 0, np.nan))
            continue
        largest = max(faces, key=lambda f: f["facial_area"]["w"] * f["facial_area"]["h"])
        rows.append(np.asarray(largest["embedding"], dtype=np.float64))
    return np.vstack(rows)


@dataclass(frozen=True)
class Scores:
    rank1: int
    photos: int
    no_face: int
    verification: float
    best: float
    best_threshold: float
    seconds: float
    misses: list[str]


def score(data: LabelledSet, vectors: np.ndarray, threshold: float, seconds: float) -> Scores:
    faceless = np.isnan(vectors[:, 0])
    unit = np.where(faceless[:, None], 0.0, vectors)
    norms = np.linalg.norm(unit, axis=1, keepdims=True)
    unit = unit / np.where(norms == 0, 1, norms)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    similarity[faceless, :] = -np.inf
    similarity[:, faceless] = -np.inf
    nearest = similarity.argmax(axis=1)
    hits = [
        not faceless[i] and data.people[i] == data.people[nearest[i]]
        for i in range(len(data.files))
    ]
    distances = np.array(
        [np.inf if faceless[i] or faceless[j] else 1 - similarity[i, j] for i, j, _ in data.pairs]
    )
    truth = np.array([same for _, _, same in data.pairs])

    def accuracy(t: float) -> float:
        return float(((distances <= t) == truth).mean())

    grid = np.arange(0.01, 0.5, 0.0025)
    best = max(grid, key=accuracy)
    return Scores(
        rank1=int(sum(hits)),
        photos=len(data.files),
        no_face=int(faceless.sum()),
        verification=accuracy(threshold),
        best=accuracy(float(best)),
        best_threshold=float(best),
        seconds=seconds,
        misses=[data.files[i] for i, hit in enumerate(hits) if not hit],
    )


def cached(cache: Path, prefix: str, pipeline: str, compute) -> tuple[np.ndarray, float]:  # type: ignore[no-untyped-def]
    """The pipeline's vectors and seconds, computed once (with any pipeline computed along)."""
    path = cache / f"{prefix}-{pipeline}.npz"
    if not path.is_file():
        for name, (vectors, seconds) in compute().items():
            np.savez(cache / f"{prefix}-{name}.npz", vectors=vectors, seconds=seconds)
    saved = np.load(path)
    return saved["vectors"], float(saved["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="Dlib")
    parser.add_argument("--sets", default="lfw-dev,deepface-unit")
    parser.add_argument("--detectors", default=",".join(DETECTORS))
    parser.add_argument(
        "--pipelines", default="deepface,doppel", help="deepface and/or doppel (all its variants)"
    )
    parser.add_argument("--cache", type=Path, default=Path("bench-accuracy-cache"))
    parser.add_argument("--misses", action="store_true", help="list each pipeline's misses")
    args = parser.parse_args()
    from deepface.modules.verification import find_threshold  # no TensorFlow behind it

    threshold = float(find_threshold(args.model, "cosine"))
    args.cache.mkdir(parents=True, exist_ok=True)
    wanted = args.pipelines.split(",")
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"model {args.model}, cosine threshold {threshold}; load at start: {load}")
    print()
    print("| set | detector | pipeline | rank-1 | no face | verification | best (at) | s/photo |")
    print("|---|---|---|---|---|---|---|---|")
    for set_name in args.sets.split(","):
        data = load_set(set_name)
        for detector in args.detectors.split(","):
            for pipeline in PIPELINES:
                if pipeline == "deepface" and ("deepface" not in wanted or detector == "mmod"):
                    continue  # DeepFace has no mmod detector
                if pipeline != "deepface" and "doppel" not in wanted:
                    continue
                if pipeline == "doppel-eyes" and detector == "mmod":
                    continue  # mmod gives no eye points: five-point only
                prefix = f"{set_name}-{args.model}-{detector}"

                def compute(
                    p: str = pipeline, d: str = detector, s: LabelledSet = data
                ) -> dict[str, tuple[np.ndarray, float]]:
                    if p == "deepface":
                        start = time.perf_counter()
                        vectors = embed_deepface(s, args.model, d)
                        return {p: (vectors, time.perf_counter() - start)}
                    return embed_doppel(s, args.model, d, p)

                vectors, seconds = cached(args.cache, prefix, pipeline, compute)
                s = score(data, vectors, threshold, seconds)
                print(
                    f"| {set_name} | {detector} | {pipeline} | {s.rank1}/{s.photos} "
                    f"{100 * s.rank1 / s.photos:.1f}% | {s.no_face} | "
                    f"{100 * s.verification:.1f}% ({len(data.pairs)} pairs) | "
                    f"{100 * s.best:.1f}% ({s.best_threshold:.3f}) | {s.seconds / s.photos:.2f} |",
                    flush=True,
                )
                if args.misses:
                    print(f"  misses: {' '.join(s.misses)}", file=sys.stderr)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"\nload at end: {load}")


if __name__ == "__main__":
    main()
