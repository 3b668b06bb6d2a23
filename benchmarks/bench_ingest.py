"""Ingest rate: doppel's pipeline against the original one-file-at-a-time loop, same run.

FFHQ-like (the default): generate 1024x1024 PNG faces, embed them with Facenet512's
real architecture (random weights: the same compute, meaningless vectors) and
detector skip. Real photos with a real detector:

    python benchmarks/bench_ingest.py --model Dlib --detector mtcnn \
        --folder ../shared/faces/deepface-unit --loop-files 20

Each side runs in its own fresh process (model already loaded before the clock
starts) so its peak memory is its own. Prints one table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (  # noqa: E402
    ChildPeak,
    cpu_seconds,
    install_random_facenet512,
    load,
    machine_line,
    peak_rss_mib,
    phase_command,
    prepare_models,
    private_home,
    process_cpu_seconds,
    server_memory_mib,
    table,
)


def original_loop(files: list[Path], model: str, detector: str) -> dict:
    """The original project's loop: DeepFace.represent on a file, one INSERT, one commit."""
    import numpy as np
    from deepface import DeepFace
    from deepface.modules import modeling

    from doppel.config import Settings
    from doppel.faces import catalog
    from doppel.store.db import connect

    settings = Settings.from_env()
    catalog.require(model, "recognition", settings.face_options)
    catalog.require(detector, "detector", settings.face_options)
    modeling.build_model(task="facial_recognition", model_name=model)
    conn = connect(settings)
    conn.execute("DROP TABLE IF EXISTS original_loop")
    conn.execute(
        "CREATE TABLE original_loop (id bigserial PRIMARY KEY, file text, embedding vector)"
    )
    conn.commit()
    faces = 0
    backend = conn.info.backend_pid
    cpu = cpu_seconds(), process_cpu_seconds(backend)
    start = time.perf_counter()
    for path in files:
        try:
            found = DeepFace.represent(
                img_path=str(path), model_name=model, detector_backend=detector
            )
        except ValueError:  # no face
            continue
        conn.execute(
            "INSERT INTO original_loop (file, embedding) VALUES (%s, %s)",
            (str(path), np.asarray(found[0]["embedding"], dtype=np.float32)),
        )
        conn.commit()
        faces += 1
    seconds = time.perf_counter() - start
    cpu_client = cpu_seconds() - cpu[0]
    cpu_server = process_cpu_seconds(backend) - cpu[1]
    server_rss, server_peak = server_memory_mib(settings.pgdata)
    conn.close()
    return {
        "files": len(files),
        "faces": faces,
        "seconds": seconds,
        "cpu_client": cpu_client,
        "cpu_server": cpu_server,
        "server_rss": server_rss,
        "server_peak": server_peak,
    }


def doppel_ingest(
    folder: Path,
    model: str,
    detector: str,
    batch_size: int,
    workers: int | None,
    threads: int | None = None,
) -> dict:
    """doppel.ingest over the folder into a new gallery, then the index rebuilt alone."""
    from doppel.config import Settings
    from doppel.faces.embed import Embedder
    from doppel.store.db import connect
    from doppel.store.repository import Repository
    from doppel.types import EmbeddingConfig
    from tests.helpers import ingest_folder

    cores = os.cpu_count() or 1
    if threads is None and (cores if workers is None else workers) >= cores:
        threads = 1  # what ingest() gives the model when the decoders take the cores
    embedder = Embedder(
        EmbeddingConfig(model, detector, align=detector != "skip"),
        batch_size=batch_size,
        threads=threads,
        options=Settings.from_env().face_options,  # DOPPEL_RUNTIME: --runtime
    )
    embedder.warm_up()  # loaded before the clock, with ingest's thread count
    settings = Settings.from_env()
    conn = connect(settings)
    name = f"bench-{int(time.time() * 1000)}"
    backend = conn.info.backend_pid
    cpu = (cpu_seconds(), cpu_seconds(resource.RUSAGE_CHILDREN), process_cpu_seconds(backend))
    with ChildPeak() as workers_peak:
        report = ingest_folder(
            conn,
            folder,
            name,
            embedder.config,
            embedder=embedder,
            batch_size=batch_size,
            workers=workers,
        )
    # Decoding workers have exited and been waited for: RUSAGE_CHILDREN holds them.
    cpu_client = cpu_seconds() - cpu[0] + cpu_seconds(resource.RUSAGE_CHILDREN) - cpu[1]
    cpu_server = process_cpu_seconds(backend) - cpu[2]
    repo = Repository(conn)
    gallery = repo.gallery(name)
    repo.drop_index(gallery)
    start = time.perf_counter()
    repo.ensure_index(gallery)
    index_seconds = time.perf_counter() - start
    server_rss, server_peak = server_memory_mib(settings.pgdata)
    conn.close()
    return {
        "files": report.files,
        "faces": report.faces_added,
        "seconds": report.seconds,
        "no_face": len(report.no_face),
        "index_seconds": index_seconds,
        "peak_worker": workers_peak.mib,
        "cpu_client": cpu_client,
        "cpu_server": cpu_server,
        "server_rss": server_rss,
        "server_peak": server_peak,
    }


def _phase(args: argparse.Namespace) -> None:
    folder = Path(args.folder)
    if args.phase == "loop":
        from doppel.faces.imaging import iter_images

        files = list(iter_images(folder))
        step = max(1, len(files) // args.loop_files)
        result = original_loop(files[::step][: args.loop_files], args.model, args.detector)
    else:
        result = doppel_ingest(
            folder, args.model, args.detector, args.batch_size, args.workers, args.threads
        )
        result["runtime"] = args.runtime
    result["peak_self"] = peak_rss_mib()
    result["load_after"] = load()
    print("RESULT " + json.dumps(result))


def _run_phase(phase: str, args: argparse.Namespace, folder: Path) -> dict:
    command = phase_command(
        __file__,
        phase,
        folder,
        args.model,
        args.detector,
        "--batch-size",
        str(args.batch_size),
        "--loop-files",
        str(args.loop_files),
    )
    if args.workers is not None:
        command += ["--workers", str(args.workers)]
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        sys.exit(f"{phase} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--count", type=int, default=2000, help="generated 1024x1024 faces (without --folder)"
    )
    parser.add_argument("--folder", help="ingest this folder instead of generated faces")
    parser.add_argument("--faces-dir", help="keep generated faces here for the next run")
    parser.add_argument("--model", default="Facenet512")
    parser.add_argument("--detector", default="skip")
    parser.add_argument(
        "--loop-files",
        type=int,
        default=200,
        help="files the one-at-a-time loop embeds (evenly spread)",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="model threads (default: all)")
    parser.add_argument(
        "--runtime", default="auto", help="doppel's runtime: auto, onnx, openvino, tensorflow"
    )
    parser.add_argument("--phase", choices=["loop", "ingest"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        _phase(args)
        return

    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="doppel-faces-") as scratch, private_home() as home:
        if args.folder:
            folder = Path(args.folder).resolve()
        else:
            from faces import generate

            folder = Path(args.faces_dir) if args.faces_dir else Path(scratch)
            start = time.perf_counter()
            generate(folder, args.count)
            print(
                f"faces: {args.count} generated 1024x1024 PNGs in {folder} "
                f"({time.perf_counter() - start:.0f} s)"
            )
        os.environ["DOPPEL_RUNTIME"] = args.runtime
        if args.model == "Facenet512":
            install_random_facenet512(home)
            print("model: Facenet512 architecture with random weights (same compute)")
        prepare_models(args.model, args.detector)
        print(
            f"model {args.model}, detector {args.detector}, batch {args.batch_size}, "
            f"workers {args.workers or os.cpu_count()}, "
            f"model threads {args.threads or 'as ingest'}, runtime {args.runtime}"
        )
        loop = _run_phase("loop", args, folder)
        pipe = _run_phase("ingest", args, folder)
    loop_rate = loop["faces"] / loop["seconds"]
    pipe_rate = pipe["faces"] / pipe["seconds"]
    rows = []
    for label, run, rate, index_s, workers_mib in (
        ("one at a time (original)", loop, loop_rate, "-", "-"),
        ("doppel ingest", pipe, pipe_rate, pipe["index_seconds"], pipe["peak_worker"]),
    ):
        cpu_ms = (run["cpu_client"] + run["cpu_server"]) / run["faces"] * 1000
        rows.append(
            [
                label,
                run["files"],
                run["faces"],
                run["seconds"],
                rate,
                cpu_ms,
                index_s,
                run["peak_self"],
                workers_mib,
                run["server_peak"],
                run["load_after"],
            ]
        )
    print(
        table(
            [
                "method",
                "files",
                "faces",
                "seconds",
                "faces/s",
                "CPU ms/face",
                "index s",
                "peak MiB",
                "per worker MiB",
                "server MiB",
                "load after",
            ],
            rows,
        )
    )
    print(
        f"speed-up: {pipe_rate / loop_rate:.1f}x in faces/s; "
        f"{rows[0][5] / rows[1][5]:.1f}x less CPU per face"
    )
    print(
        "CPU ms/face: client process, its decoding workers and its database backend, "
        "user + system; unlike faces/s it hardly depends on what else the machine runs"
    )


if __name__ == "__main__":
    main()
