"""`doppel find` end to end, cold (a new process) and warm (models already loaded).

The gallery: 70,000 vectors shaped like face embeddings (clustered) whose sources are
the real photos of ../shared/faces/deepface-unit, so the composite loads and crops real
files. The query: a real 1024x1024 face, detected with mtcnn and embedded with the
default model, Facenet512 (its real architecture with random weights, converted for the
runtime before the clock starts, as `doppel models install` does), or `--model Dlib`.

    python benchmarks/bench_find.py [--size 70000] [--runs 3] [--model Dlib]
        [--runtime auto|onnx|openvino|tensorflow]

Prints where the time goes (imports, model load, decode, detection, embedding,
query, composite) cold and warm, the `doppel find` command's own wall time in a new
process, and the peak memory of each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (  # noqa: E402
    SHARED_FACES,
    install_random_facenet512,
    load,
    machine_line,
    peak_rss_mib,
    prepare_models,
    private_home,
    server_memory_mib,
    table,
)

GALLERY = "bench-find"
DETECTOR = "mtcnn"
STEPS = [
    "imports",
    "connect",
    "model load",
    "decode",
    "detection",
    "embedding",
    "query",
    "composite",
]


def make_gallery(size: int, model: str) -> float:
    """Load `size` clustered vectors pointing at real photos; return seconds."""
    from doppel.config import Settings
    from doppel.faces import catalog
    from doppel.faces.imaging import iter_images
    from doppel.store.db import connect
    from doppel.store.repository import Repository
    from doppel.types import EmbeddingConfig, NewFace
    from tests.helpers import clustered_vectors

    start = time.perf_counter()
    photos = [str(p) for p in iter_images(SHARED_FACES / "deepface-unit")]
    config = EmbeddingConfig(model, DETECTOR)
    vectors = clustered_vectors(size, catalog.dimension(model), seed=1)
    with connect(Settings.from_env()) as conn:
        repo = Repository(conn)
        gallery = repo.ensure_gallery(GALLERY, config, dimension=catalog.dimension(model))
        with conn.transaction():
            repo.copy_faces(
                gallery,
                (
                    NewFace(photos[i % len(photos)], f"{i:032x}", i, v)
                    for i, v in enumerate(vectors)
                ),
                "faces",
            )
        repo.ensure_index(gallery)
    return time.perf_counter() - start


def timed_steps(photo_path: Path, out: Path, first: bool) -> dict[str, float]:
    """The steps of doppel.search.find, one by one, each timed (seconds)."""
    times: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        times[name] = times.get(name, 0.0) + now - clock
        clock = now

    import doppel.cli  # noqa: F401  what the command loads before it runs
    from doppel.composer import render
    from doppel.config import Settings
    from doppel.faces import imaging
    from doppel.faces.embed import embedder_for
    from doppel.search import query_detector
    from doppel.store.db import connect
    from doppel.store.repository import Repository
    from doppel.types import Filters

    lap("imports")
    settings = Settings.from_env()
    conn = connect(settings)
    repo = Repository(conn)
    gallery = repo.gallery(GALLERY)
    lap("connect")
    embedder = embedder_for(gallery.config, settings.face_options)
    detector = query_detector(gallery, None, DETECTOR)
    if first:
        embedder.warm_up()
    lap("model load")
    photo = imaging.load(photo_path)
    own_hash = imaging.file_hash(photo_path)
    lap("decode")
    faces = embedder.detect(photo, detector)[:1]
    lap("detection")
    vectors = embedder.embed_crops([face.crop for face in faces])
    lap("embedding")
    from doppel.types import EmbeddedFace, QueryResult

    matches = repo.search(gallery, vectors[0], 5, Filters(exclude_hashes=(own_hash,)))
    lap("query")
    face = faces[0]
    render(
        photo,
        QueryResult(EmbeddedFace(face.index, face.box, face.confidence, vectors[0]), matches),
        out,
        settings,
    )
    lap("composite")
    conn.close()
    times["total"] = sum(times.values())
    return times


def _phase(args: argparse.Namespace) -> None:
    query, out = Path(args.query), Path(args.out)
    cold = timed_steps(query, out, first=True)
    cold_rss = peak_rss_mib()
    tensorflow = "tensorflow" in sys.modules
    warm_runs = [timed_steps(query, out, first=False) for _ in range(args.runs)]
    warm = {key: statistics.median(run[key] for run in warm_runs) for key in warm_runs[0]}
    # The library's own entry point, twice in one process: the second call is warm.
    from doppel.config import Settings
    from doppel.search import SearchRequest, find
    from doppel.store.db import connect

    settings = Settings.from_env()
    with connect(settings) as conn:
        library = []
        for _ in range(args.runs):
            start = time.perf_counter()
            find(conn, query, SearchRequest(GALLERY, composite=out), settings=settings)
            library.append(time.perf_counter() - start)
    print(
        "RESULT "
        + json.dumps(
            {
                "cold": cold,
                "warm": warm,
                "cold_rss": cold_rss,
                "warm_rss": peak_rss_mib(),
                "library": library,
                "tensorflow": tensorflow,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=70_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--query", default=str(SHARED_FACES / "generated" / "example.png"))
    parser.add_argument("--out", default=None)
    parser.add_argument("--model", default="Facenet512", choices=["Facenet512", "Dlib"])
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--phase", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        _phase(args)
        return

    import tempfile

    print(machine_line())
    os.environ["DOPPEL_RUNTIME"] = args.runtime
    with private_home() as home, tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "composite.png"
        if args.model == "Facenet512":
            install_random_facenet512(home)
        prepare_models(args.model, DETECTOR)
        seconds = make_gallery(args.size, args.model)
        print(
            f"gallery: {args.size} vectors ({args.model} with {DETECTOR}) loaded and "
            f"indexed in {seconds:.1f} s; query {args.query}; runtime {args.runtime}"
        )
        env = dict(os.environ)
        # The command itself, each run a new process (the database server already runs).
        command = [
            str(Path(sys.executable).with_name("doppel")),
            "find",
            args.query,
            "--gallery",
            GALLERY,
            "--detector",
            DETECTOR,
            "--out",
            str(out),
        ]
        walls = []
        for _ in range(args.runs):
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
            walls.append(time.perf_counter() - start)
            if done.returncode:
                sys.exit(f"doppel find failed:\n{done.stderr[-2000:]}")
        # The command's own peak, from a fresh parent whose only child it is:
        # RUSAGE_CHILDREN here would also count the model conversion run by
        # prepare_models in a child of this process.
        measured = subprocess.run(
            [
                sys.executable,
                "-c",
                "import resource, subprocess, sys;"
                "subprocess.run(sys.argv[1:], capture_output=True, check=True);"
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)",
                *command,
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        cli_rss = int(measured.stdout.strip()) / 1024
        help_walls = []
        for argv in (["--help"], ["db", "status"], ["models"]):
            start = time.perf_counter()
            subprocess.run([command[0], *argv], capture_output=True, env=env, check=True)
            help_walls.append((" ".join(argv), time.perf_counter() - start))
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--phase",
                "--query",
                args.query,
                "--out",
                str(out),
                "--runs",
                str(args.runs),
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
        if done.returncode or not lines:
            sys.exit(f"timing run failed:\n{done.stderr[-3000:]}")
        result = json.loads(lines[-1][len("RESULT ") :])
        server_rss, server_peak = server_memory_mib(home / "pgdata")
    rows = [
        [step, result["cold"][step] * 1000, result["warm"][step] * 1000]
        for step in [*STEPS, "total"]
    ]
    print(table(["step", "cold ms", "warm ms"], rows))
    print()
    print(
        table(
            ["measure", "value"],
            [
                [
                    f"`doppel find` wall time, new process, median of {args.runs}",
                    f"{statistics.median(walls):.2f} s",
                ],
                ["`doppel find` peak RSS (largest run)", f"{cli_rss:.0f} MiB"],
                [
                    f"library find(), same process, calls 1..{args.runs}",
                    ", ".join(f"{s * 1000:.0f} ms" for s in result["library"]),
                ],
                ["peak RSS, cold steps", f"{result['cold_rss']:.0f} MiB"],
                ["peak RSS, after warm calls", f"{result['warm_rss']:.0f} MiB"],
                [
                    "server RSS (sum) / largest process peak",
                    f"{server_rss:.0f} / {server_peak:.0f} MiB",
                ],
                *[[f"`doppel {name}` wall time", f"{s:.2f} s"] for name, s in help_walls],
                ["TensorFlow imported by find", "yes" if result["tensorflow"] else "no"],
                ["load average after", load()],
            ],
        )
    )


if __name__ == "__main__":
    main()
