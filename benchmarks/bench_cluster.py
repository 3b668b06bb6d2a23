"""Ingest on Ray (`doppel ingest --cluster`, a local Ray here) against the plain ingest.

The same photos into two galleries in one run, plain first, each in a fresh process
with its model already loaded, so the Ray side pays Ray's start, its actors' model
loads and the hand-offs, nothing else. From the Ray side's own accounting (CPU per
face in the workers, CPU per face in the driver that writes) it prints the expected
rate on N worker machines:

    python benchmarks/bench_cluster.py                      # 120 photos of lfw-dev
    python benchmarks/bench_cluster.py --photos 572 --cores-per-machine 16
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (  # noqa: E402
    SHARED_FACES,
    cpu_seconds,
    load,
    machine_line,
    phase_command,
    private_home,
    server_cpu_seconds,
    table,
)


def _phase(args: argparse.Namespace) -> None:
    """One side, in this (fresh) process; prints a JSON line."""
    from doppel.config import Settings
    from doppel.faces.embed import Embedder
    from doppel.ingest import IngestJob
    from doppel.store.db import connect
    from doppel.types import EmbeddingConfig

    config = EmbeddingConfig(args.model, args.detector, align=args.detector != "skip")
    settings = Settings.from_env()
    conn = connect(settings)
    folder = Path(args.folder)
    result: dict[str, float] = {}
    marks: list[tuple[float, int]] = []  # (when, files) at the first finished batch
    if args.phase == "plain":
        from doppel.ingest.local import ingest

        embedder = Embedder(config, options=settings.face_options)
        embedder.warm_up()
        cpu, server, start = cpu_seconds(), server_cpu_seconds(settings.pgdata), time.perf_counter()
        report = ingest(
            conn,
            IngestJob(folder, "plain", config, batch_size=args.batch),
            embedder=embedder,
            progress=lambda done, total, report: (
                marks.append((time.perf_counter(), done))
                if done % args.batch == 0 and not marks
                else None
            ),
        )
    else:
        from doppel.ingest import ray as cluster

        start_ray = time.perf_counter()
        import ray

        ray.init(include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        result["ray start s"] = time.perf_counter() - start_ray
        # The actors load their models before the clock starts, as the plain side's does.
        pool = cluster.EmbedPool(config, batch_size=args.batch, options=settings.face_options)
        pool.ready()
        result["actors ready s"] = time.perf_counter() - start_ray - result["ray start s"]
        worker_cpu: list[float] = []

        def batch_done(batch: cluster.BatchResult) -> None:
            worker_cpu.append(batch.cpu_seconds)
            if not marks:
                marks.append((time.perf_counter(), batch.files))

        cpu, server, start = cpu_seconds(), server_cpu_seconds(settings.pgdata), time.perf_counter()
        report = cluster.ingest_on_cluster(
            conn,
            IngestJob(folder, "spread", config, cluster="", files_per_task=args.batch),
            on_batch=batch_done,
            pool=pool,
        )
        result["worker cpu s"] = sum(worker_cpu)
    end = time.perf_counter()
    files = report.images_added + len(report.no_face) + len(report.unreadable)
    # Steady rate: files after the first batch over the time after it, which leaves
    # out the start (on Ray: its workers loading their models).
    result["steady"] = (files - marks[0][1]) / (end - marks[0][0]) if marks else 0.0
    result.update(
        seconds=end - start,
        faces=report.faces_added,
        files=files,
        driver_cpu=cpu_seconds() - cpu,
        server_cpu=server_cpu_seconds(settings.pgdata) - server,
    )
    print(json.dumps(result))


def _run(phase: str, args: argparse.Namespace, folder: Path) -> dict:
    command = phase_command(
        __file__, phase, folder, args.model, args.detector, "--batch", str(args.batch)
    )
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the {phase} side failed:\n{done.stderr[-3000:]}")
    # Ray may print after the result; the result is the last JSON line.
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"the {phase} side printed no result:\n{done.stdout[-3000:]}")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=120)
    parser.add_argument("--model", default="Dlib")
    parser.add_argument("--detector", default="mtcnn")
    parser.add_argument("--cores-per-machine", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16, help="files per batch (and Ray task)")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        _phase(args)
        return
    print(machine_line(), flush=True)
    source = SHARED_FACES / "lfw-dev" / "photos"
    if not source.is_dir():
        raise SystemExit(f"{source} not found (set DOPPEL_TEST_FACES to the shared faces folder)")
    with tempfile.TemporaryDirectory(prefix="doppel-photos-") as scratch, private_home():
        folder = Path(scratch)
        for path in sorted(source.glob("*.jpg"))[: args.photos]:
            (folder / path.name).symlink_to(path)  # read in place, never copied
        plain = _run("plain", args, folder)
        spread = _run("ray", args, folder)
    rows = []
    for name, r in (("plain ingest", plain), ("ingest --cluster (local Ray)", spread)):
        rows.append(
            [
                name,
                int(r["files"]),
                int(r["faces"]),
                f"{r['seconds']:.1f}",
                f"{r['faces'] / r['seconds']:.2f}",
                f"{r['steady']:.2f}",
                f"{1000 * r['driver_cpu'] / r['faces']:.0f}",
                f"{1000 * r.get('worker cpu s', 0) / r['faces']:.0f}"
                if "worker cpu s" in r
                else "-",
                f"{1000 * r['server_cpu'] / r['faces']:.1f}",
                load(),
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
                "files/s after 1st batch",
                "driver CPU ms/face",
                "worker CPU ms/face",
                "server CPU ms/face",
                "load after",
            ],
            rows,
        )
    )
    ratio = (spread["faces"] / spread["seconds"]) / (plain["faces"] / plain["seconds"])
    steady = spread["steady"] / plain["steady"] if plain["steady"] else 0.0
    print(
        f"Ray start {spread['ray start s']:.1f} s, actors' models loaded "
        f"{spread['actors ready s']:.1f} s later (neither in the Ray side's seconds)"
    )
    print(f"--cluster / plain: {ratio:.2f} in faces/s overall, {steady:.2f} after the first batch")
    worker_ms = 1000 * spread["worker cpu s"] / spread["faces"]
    driver_ms = 1000 * (spread["driver_cpu"] + spread["server_cpu"]) / spread["faces"]
    ceiling = 1000 / driver_ms
    print(
        f"per face: {worker_ms:.0f} ms of worker CPU (decode, detect, embed), "
        f"{driver_ms:.1f} ms on the driver's machine (driver + database): the driver caps "
        f"the rate near {ceiling:,.0f} faces/s"
    )
    plan = []
    for machines in (1, 2, 4, 8, 16, 32):
        cores = machines * args.cores_per_machine
        plan.append([machines, cores, f"{min(cores * 1000 / worker_ms, ceiling):,.0f}"])
    print(table(["worker machines", "cores", "expected faces/s"], plan))


if __name__ == "__main__":
    main()
