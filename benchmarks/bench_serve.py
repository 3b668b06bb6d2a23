"""Latency of `doppel serve` once warm: a new photo end to end, and repeat searches.

Starts the real app under uvicorn (loopback, free port) over a private embedded
database holding 10 photos of deepface-unit (mtcnn detector; Facenet512, its real
architecture with random weights, converted beforehand, or `--model Dlib`), then sends
each of 10 other photos through the JSON API and prints medians. The query photos are
the deepface-unit JPEGs, up to several thousand pixels wide.

    .venv/bin/python benchmarks/bench_serve.py [--model Dlib] [--runtime onnx]
"""

from __future__ import annotations

import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (  # noqa: E402
    SHARED_FACES,
    install_random_facenet512,
    load,
    machine_line,
    prepare_models,
    private_home,
)

UNIT = SHARED_FACES / "deepface-unit"
GALLERY = [
    "img2.jpg",
    "img4.jpg",
    "img5.jpg",
    "img3.jpg",
    "img12.jpg",
    "img8.jpg",
    "img9.jpg",
    "img50.jpg",
    "img11.jpg",
    "img20.jpg",
]
QUERIES = [
    "img1.jpg",
    "img6.jpg",
    "img7.jpg",
    "img10.jpg",
    "img28.jpg",
    "img42.jpg",
    "img47.jpg",
    "img53.jpg",
    "img14.jpg",
    "img29.jpg",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    import argparse
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="Facenet512", choices=["Facenet512", "Dlib"])
    parser.add_argument("--runtime", default="auto")
    args = parser.parse_args()
    os.environ["DOPPEL_RUNTIME"] = args.runtime
    import httpx
    import uvicorn

    from doppel.config import Settings
    from doppel.faces.embed import Embedder
    from doppel.ingest import ingest
    from doppel.store.db import connect
    from doppel.types import EmbeddingConfig
    from doppel.web.app import create_app

    print(machine_line())
    with private_home() as home:
        folder = Path(tempfile.mkdtemp(dir=home))
        for name in GALLERY:
            (folder / name).symlink_to(UNIT / name)
        if args.model == "Facenet512":
            install_random_facenet512(home)
        prepare_models(args.model, "mtcnn")
        settings = Settings.from_env()
        with connect(settings) as conn:
            embedder = Embedder(EmbeddingConfig(args.model, "mtcnn"), options=settings.face_options)
            ingest(conn, folder, "bench", embedder)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.1)
        timings: dict[str, list[float]] = {"find": [], "upload": [], "first": [], "again": []}
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
                for name in QUERIES:
                    data = (UNIT / name).read_bytes()
                    start = time.perf_counter()
                    found = client.post("/api/find", files={"file": (name, data)})
                    timings["find"].append(time.perf_counter() - start)
                    assert found.status_code == 200, found.text
                    start = time.perf_counter()
                    sent = client.post("/api/uploads", files={"file": (name, data)})
                    timings["upload"].append(time.perf_counter() - start)
                    upload = sent.json()["upload_id"]
                    start = time.perf_counter()
                    client.post("/api/search", json={"upload_id": upload, "k": 5})
                    timings["first"].append(time.perf_counter() - start)
                    for k in (5, 10, 20):
                        start = time.perf_counter()
                        client.post("/api/search", json={"upload_id": upload, "k": k})
                        timings["again"].append(time.perf_counter() - start)
        finally:
            server.should_exit = True
            thread.join(timeout=30)
    labels = {
        "find": "POST /api/find, new photo (decode, detect, embed, search)",
        "upload": "POST /api/uploads (decode, detect)",
        "first": "POST /api/search, first for a photo (embed, search)",
        "again": "POST /api/search again (k changed)",
    }
    for key, label in labels.items():
        xs = timings[key]
        print(
            f"{label:<60} median {statistics.median(xs) * 1000:6.0f} ms"
            f"  min {min(xs) * 1000:5.0f}  max {max(xs) * 1000:5.0f}  (n={len(xs)})"
        )
    print(f"model {args.model}, runtime {args.runtime}; load average after {load()}")


if __name__ == "__main__":
    main()
