"""The smallest photo in which each detector still finds a face: where doppel's floor
on photo size (faces.imaging.MIN_FACE_SIDE) comes from.

Each lfw-dev photo is cut to its central square (the face fills most of it, as in a
tight portrait or an avatar), scaled down to SIDE x SIDE, and handed to doppel's own
detection (the pipeline each detector runs in: five-point chips for dlib and mmod,
DeepFace's eye alignment for the others). A photo of that size whose face no detector
finds cannot hold a face for doppel, so refusing it loses nothing.

    python benchmarks/bench_image_floor.py [--photos 30] [--detectors dlib,mmod,opencv,mtcnn]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from doppel.config import Settings
from doppel.faces.detect import detect_faces
from doppel.faces.imaging import Photo

LFW = Path(__file__).resolve().parents[1] / ".." / "shared" / "faces" / "lfw-dev" / "photos"
SIDES = (8, 10, 12, 13, 14, 15, 16, 20, 24, 28, 32, 40, 48, 64, 96)
CENTRE = 120  # of lfw's 250-pixel photos: the face and a little around it


def squares(count: int) -> list[Image.Image]:
    paths = sorted(LFW.glob("*.jpg"))[:count]
    out = []
    for path in paths:
        with Image.open(path) as img:
            left = (img.width - CENTRE) // 2
            top = (img.height - CENTRE) // 2
            out.append(img.convert("RGB").crop((left, top, left + CENTRE, top + CENTRE)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=30)
    parser.add_argument("--detectors", default="dlib,mmod,opencv,mtcnn")
    args = parser.parse_args()
    options = Settings.from_env().face_options
    photos = squares(args.photos)
    load = os.getloadavg()[0]
    print(f"{len(photos)} lfw-dev centre squares; load {load:.1f}")
    print("side  " + "  ".join(f"{d:>8}" for d in args.detectors.split(",")))
    for side in SIDES:
        cells = []
        for detector in args.detectors.split(","):
            found = 0
            for img in photos:
                pixels = np.asarray(img.resize((side, side), Image.Resampling.LANCZOS))
                alignment = "five-point" if detector in ("dlib", "mmod") else "eyes"
                faces = detect_faces(Photo(pixels, 1.0), detector, options, alignment=alignment)
                found += bool(faces)
            cells.append(f"{found:>3}/{len(photos):<4}")
        print(f"{side:>4}  " + "  ".join(f"{c:>8}" for c in cells), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
