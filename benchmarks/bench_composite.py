"""The composite's cost: five large JPEG matches, as `doppel find` draws them.

Side by side in one process: the way it was (each match decoded at up to 1024 pixels,
cut, the PNG written at the default level) and the way it is now (each JPEG decoded at
the smallest draft scale that still gives the face 256 pixels, the crops cut in threads
and cached, the PNG written at level 1), the first time and with the crops cached.
CPU and wall milliseconds, the best of three (the first time: one run).

    .venv/bin/python benchmarks/bench_composite.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import SHARED_FACES, load, machine_line, table  # noqa: E402

UNIT = SHARED_FACES / "deepface-unit"
# Five of the largest photos, with boxes like the faces doppel finds there (file pixels).
MATCHES = [
    ("img1.jpg", (444, 181, 569, 817)),
    ("img2.jpg", (595, 163, 362, 521)),
    ("img7.jpg", (350, 250, 500, 650)),
    ("img6.jpg", (200, 150, 300, 400)),
    ("img5.jpg", (80, 100, 160, 220)),
]


def timed(run: Callable[[], object], repeat: int) -> tuple[float, float]:
    best_cpu = best_wall = float("inf")
    for _ in range(repeat):
        cpu, wall = time.process_time(), time.perf_counter()
        run()
        best_cpu = min(best_cpu, (time.process_time() - cpu) * 1000)
        best_wall = min(best_wall, (time.perf_counter() - wall) * 1000)
    return best_cpu, best_wall


def main() -> None:
    print(machine_line())
    os.environ["DOPPEL_HOME"] = tempfile.mkdtemp(prefix="doppel-bench-")
    import numpy as np

    from doppel import sources
    from doppel.composer import Tile, caption, compose, render
    from doppel.config import Settings
    from doppel.faces.imaging import load as load_photo
    from doppel.types import Box, EmbeddedFace, Face, Match, QueryResult

    matches = [
        Match(rank, Face(rank, str(UNIT / name), 0, Box(*box), None, None, None), 0.1)
        for rank, (name, box) in enumerate(MATCHES, 1)
    ]
    photo = load_photo(SHARED_FACES / "generated" / "example.png")
    query = QueryResult(EmbeddedFace(0, Box(150, 150, 700, 700), 1.0, np.zeros(4)), matches)
    out = Path(os.environ["DOPPEL_HOME"]) / "composite.png"
    settings = Settings.from_env()

    def before() -> None:
        tiles = [
            Tile(sources.load_source(m.face.source, settings), m.face.box, *caption(m))
            for m in matches
        ]
        canvas = compose(Tile(photo, query.face.box, "query"), tiles, None)
        canvas.save(out, format="PNG")

    rows = []
    for label, run, repeat in (
        ("before: 1024-pixel decodes, PNG level 6", before, 3),
        ("now, first time (crops cut and cached)", lambda: render(photo, query, out, settings), 1),
        ("now, crops cached", lambda: render(photo, query, out, settings), 3),
    ):
        cpu, wall = timed(run, repeat)
        rows.append([label, f"{cpu:.0f}", f"{wall:.0f}"])
    print(table(["composite of 5 matches", "CPU ms", "wall ms"], rows))
    print(f"load average {load()}")


if __name__ == "__main__":
    main()
