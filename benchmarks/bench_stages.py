"""What one FFHQ face costs, stage by stage, and the ingest rate two cores allow.

Times each stage of `doppel ingest --detector skip` on its own, in one process, on
generated 1024x1024 PNG faces: reading and hashing the file, decoding the PNG
(libspng, which doppel uses, against OpenCV and Pillow), the resize to 160x160,
and Facenet512's real architecture (random weights) at several batch sizes on each
runtime: TensorFlow, ONNX Runtime and (when installed) OpenVINO. CPU
milliseconds per face hardly depend on what else the machine runs; from them it
prints the ceiling: the faces per second that all the machine's cores could give
if nothing but these stages ran and they overlapped perfectly.

    python benchmarks/bench_stages.py [--faces-dir DIR] [--files 60]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import install_random_facenet512, load, machine_line, private_home, table  # noqa: E402
from faces import generate  # noqa: E402


def per_item(run: Callable[[object], object], items: list) -> tuple[float, float]:
    """(CPU ms, wall ms) per item for run over items, the best of three passes."""
    best_cpu = best_wall = float("inf")
    for _ in range(3):
        cpu, wall = time.process_time(), time.perf_counter()
        for item in items:
            run(item)
        best_cpu = min(best_cpu, (time.process_time() - cpu) * 1000 / len(items))
        best_wall = min(best_wall, (time.perf_counter() - wall) * 1000 / len(items))
    return best_cpu, best_wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces-dir", help="generated faces (made here if missing)")
    parser.add_argument("--files", type=int, default=60)
    parser.add_argument("--threads", type=int, default=None, help="model threads (default: all)")
    args = parser.parse_args()
    print(machine_line())

    import cv2
    import numpy as np
    import pyspng
    from PIL import Image

    from doppel.faces import imaging

    folder = Path(args.faces_dir or "/tmp/doppel-bench-ffhq")
    generate(folder, args.files)
    files = sorted(folder.glob("*.png"))[: args.files]
    data = [path.read_bytes() for path in files]
    rgb = pyspng.load(data[0], format="RGB")
    rows = []

    def stage(name: str, run: Callable[[object], object], items: list, note: str = "") -> float:
        cpu, wall = per_item(run, items)
        rows.append([name, f"{cpu:.1f}", f"{wall:.1f}", note])
        print(f"{name}: {cpu:.1f} ms CPU, {wall:.1f} ms wall per face", flush=True)
        return cpu

    read = stage(
        "read + hash the file",
        lambda path: imaging.content_hash(path.read_bytes()),  # type: ignore[attr-defined]
        files,
    )
    spng = stage("PNG decode, libspng (doppel)", lambda d: pyspng.load(d, format="RGB"), data)
    stage(
        "PNG decode, OpenCV",
        lambda d: cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_COLOR),  # type: ignore[call-overload]
        data,
    )
    stage(
        "PNG decode, Pillow",
        lambda d: Image.open(io.BytesIO(d)).convert("RGB"),  # type: ignore[arg-type]
        data,
    )
    resize = stage(
        "resize 1024 -> 160 (area)",
        lambda _: cv2.resize(rgb, (160, 160), interpolation=cv2.INTER_AREA),
        data,
    )

    with private_home() as home:
        install_random_facenet512(home)
        from doppel.config import Settings
        from doppel.faces import networks, sessions
        from doppel.faces.embed import Embedder
        from doppel.types import EmbeddingConfig

        graph = networks.recognition_graph("Facenet512")
        assert graph is not None
        crops = np.random.default_rng(0).random((64, 160, 160, 3), dtype=np.float32)
        model_cpu: dict[tuple[str, int], float] = {}
        wanted = ["tensorflow", "onnx"] + (["openvino"] if sessions.openvino_installed() else [])
        for name in wanted:
            network = sessions.load(graph, name, threads=args.threads)
            label = network.candidate.label
            for batch in (1, 8, 32):
                batches = [crops[i : i + batch] for i in range(0, 64 if batch > 1 else 16, batch)]
                network(batches[0])  # the first call of a shape builds it
                cpu, wall = per_item(network, batches)
                model_cpu[name, batch] = cpu / batch
                rows.append(
                    [
                        f"Facenet512, {label}, batch {batch}",
                        f"{cpu / batch:.1f}",
                        f"{wall / batch:.1f}",
                        "",
                    ]
                )
                print(
                    f"Facenet512 {label} batch {batch}: {cpu / batch:.1f} ms CPU per face",
                    flush=True,
                )
        embedder = Embedder(
            EmbeddingConfig("Facenet512", "skip", align=False),
            threads=args.threads,
            options=Settings.from_env().face_options,
        )
        embed = per_item(lambda chunk: embedder.embed_crops(list(chunk)), [crops[:32], crops[32:]])
        rows.append(
            [
                f"embed_crops, batch 32 ({embedder.runtime_label}, default)",
                f"{embed[0] / 32:.1f}",
                f"{embed[1] / 32:.1f}",
                "what ingest calls",
            ]
        )

    cores = os.cpu_count() or 1
    total = read + spng + resize + embed[0] / 32
    print()
    print(table(["stage", "CPU ms/face", "wall ms/face", ""], rows))
    print()
    print(
        f"per face, the stages ingest runs: {total:.0f} ms of CPU; {cores} cores can give at "
        f"most {cores * 1000 / total:.1f} faces/s (the model alone: "
        f"{cores * 1000 / model_cpu['onnx', 32]:.1f} faces/s on ONNX Runtime, "
        f"{cores * 1000 / model_cpu['tensorflow', 32]:.1f} on TensorFlow); load average {load()}"
    )


if __name__ == "__main__":
    main()
