"""Generate FFHQ-like test folders: 1024x1024 PNG faces varied from a few real ones."""

from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from benchlib import SHARED_FACES

SIDE = 1024


def _sources() -> list[Path]:
    found = sorted((SHARED_FACES / "generated").glob("*.png"))
    if not found:
        sys.exit(f"no source faces in {SHARED_FACES / 'generated'}; set DOPPEL_TEST_FACES")
    return found


def _make(args: tuple[list[str], Path, int, int]) -> None:
    from PIL import Image, ImageOps

    sources, folder, start, stop = args
    bases = [Image.open(path).convert("RGB") for path in sources]
    for number in range(start, stop):
        rng = np.random.default_rng(number)
        img = bases[number % len(bases)]
        # A random crop of 85-100% of the side, a random flip, a colour jitter: every
        # file differs (its own hash and pixels) while staying a face-sized photo.
        side = int(SIDE * rng.uniform(0.85, 1.0))
        x, y = rng.integers(0, SIDE - side + 1, size=2)
        face = img.crop((int(x), int(y), int(x) + side, int(y) + side))
        face = face.resize((SIDE, SIDE), Image.Resampling.BILINEAR)
        if rng.random() < 0.5:
            face = ImageOps.mirror(face)
        gain = rng.uniform(0.85, 1.15, size=3).astype(np.float32)
        pixels = np.clip(np.asarray(face, dtype=np.float32) * gain, 0, 255).astype(np.uint8)
        # compress_level 1 keeps generation quick; files come out about FFHQ's size
        # (1.3-1.5 MB) and decode at the same speed as the default level.
        Image.fromarray(pixels).save(folder / f"{number:05d}.png", compress_level=1)


def generate(folder: Path, count: int, workers: int | None = None) -> Path:
    """Fill folder with `count` 1024x1024 PNG faces (00000.png ...); keeps files already there."""
    folder.mkdir(parents=True, exist_ok=True)
    have = {p.name for p in folder.glob("*.png")}
    missing = [n for n in range(count) if f"{n:05d}.png" not in have]
    if not missing:
        return folder
    sources = [str(p) for p in _sources()]
    workers = workers or os.cpu_count() or 1
    chunks = np.array_split(np.array(missing), max(1, min(len(missing) // 20, 64)))
    jobs = [(sources, folder, int(c[0]), int(c[-1]) + 1) for c in chunks if len(c)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_make, jobs))
    return folder
