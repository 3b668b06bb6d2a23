"""What age, sex and race prediction costs per face: TensorFlow against ONNX Runtime.

DeepFace's Age, Gender and Race models (VGG-Face networks, random weights: the same
compute as the published ones) predict on face crops cut from a real photo, at batch
1 (a query, `doppel find --same-attributes`) and batch 16 (`doppel ingest
--attributes`), three ways in one process: DeepFace's own clients (`.predict`, what
doppel ran before), doppel's predictor on TensorFlow (its fallback) and on ONNX
Runtime (its default). Prints wall and CPU milliseconds per face for all three models
together, the best of two passes after a warm-up.

    python benchmarks/bench_attributes.py [--faces 16] [--home DIR]

--home reuses a DEEPFACE_HOME that already holds the attribute weights and their
converted files (made there otherwise: three conversions of about a minute and
6 GB each, one at a time).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import ROOT, machine_line, prepare_models, private_home, table  # noqa: E402


def per_face(run: Callable[[list], object], faces: list) -> tuple[float, float]:
    """(wall ms, CPU ms) per face, the best of two passes after a warm-up on two faces."""
    run(faces[:2])
    best_wall = best_cpu = float("inf")
    for _ in range(2):
        wall, cpu = time.perf_counter(), time.process_time()
        run(faces)
        best_wall = min(best_wall, (time.perf_counter() - wall) * 1000 / len(faces))
        best_cpu = min(best_cpu, (time.process_time() - cpu) * 1000 / len(faces))
    return best_wall, best_cpu


def crops(count: int) -> list:
    """Face crops of several sizes from the runtime's check photo, BGR, 0..1."""
    import numpy as np

    from doppel.faces.conversion import CHECK_CROPS, check_photo

    bgr = check_photo()[:, :, ::-1].astype(np.float32) / 255
    boxes = [CHECK_CROPS[i % len(CHECK_CROPS)] for i in range(count)]
    return [np.ascontiguousarray(bgr[y1:y2, x1:x2]) for x1, y1, x2, y2 in boxes]


def install_weights(home: Path) -> None:
    """Random-weight attribute models into DEEPFACE_HOME, converted, in child processes."""
    weights = home / ".deepface" / "weights"
    if not (weights / "race_model_single_batch.h5").is_file():
        code = (
            "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[2]);"
            "from tests.helpers import write_random_attribute_weights as write;"
            "write(Path(sys.argv[1]))"
        )
        subprocess.run([sys.executable, "-c", code, str(weights), str(ROOT)], check=True)
    for name in ("Age", "Gender", "Race"):
        prepare_models(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=16)
    parser.add_argument("--home", type=Path, help="DEEPFACE_HOME to reuse")
    args = parser.parse_args()
    with private_home():
        if args.home:
            os.environ["DEEPFACE_HOME"] = str(args.home)
        install_weights(Path(os.environ["DEEPFACE_HOME"]))
        print(machine_line())
        run(args.faces)
        print(machine_line())


def run(faces: int) -> None:
    import numpy as np

    from doppel.config import FaceOptions
    from doppel.faces.attributes import ATTRIBUTE_MODELS, AttributePredictor, _square
    from doppel.faces.conversion import quiet_tensorflow

    sample = crops(faces)
    quiet_tensorflow()
    from deepface.modules import modeling

    clients = {
        name: modeling.build_model(task="facial_attribute", model_name=name)
        for name in ATTRIBUTE_MODELS
    }

    def deepface(batch: int) -> Callable[[list], object]:
        def go(faces: list) -> None:
            for start in range(0, len(faces), batch):
                squares = np.stack([_square(c) for c in faces[start : start + batch]])
                for client in clients.values():
                    client.predict(squares)

        return go

    rows = []
    for batch in (1, 16):
        # Batch 1 costs the same per face on any number of faces: a few suffice.
        faces = sample[: min(len(sample), 4)] if batch == 1 else sample
        rows.append(["DeepFace clients (TensorFlow)", batch, *per_face(deepface(batch), faces)])
        for runtime in ("tensorflow", "onnx"):
            predictor = AttributePredictor(batch_size=batch, options=FaceOptions(runtime=runtime))
            predictor.warm_up()
            label = "doppel on " + set(predictor.runtime_labels.values()).pop()
            rows.append([label, batch, *per_face(predictor.predict_crops, faces)])
    print(f"Age + Gender + Race, ms per face (all three models), batch 16 on {len(sample)} faces:")
    print(table(["runs", "batch", "wall ms", "CPU ms"], rows))


if __name__ == "__main__":
    main()
