"""The people's quality gate, measured: which floor keeps bad faces out of people.

Two galleries, each embedded once (with --home a rerun reuses them), the default
Dlib pipeline on dlib's detector, as `doppel ingest` stores them (quality measures
included):

1. lfw-dev: its 572 photos, the largest face of each.
2. scenes: lfw-dev's photos pasted into 640x480 scenes (a seeded random gradient with
   noise), one at full size in front and two scaled down (60 to 150 pixels a side,
   half of them blurred) behind, every face ingested (`--all-faces`). Each face is
   labelled with the person of the photo its box centre lies in.

For each floor (one measure at a time, then combinations), `doppel people --recluster`
with that floor runs on both; B-cubed precision and recall are scored on the labelled
faces (a face in no person, gated or not, counts as a person alone), with the faces
below the floor and the people made.

    python benchmarks/bench_quality.py [--home DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psycopg

from doppel.types import QualityFloor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_people import labelled, pipeline  # noqa: E402
from benchlib import SHARED_FACES, load, machine_line, private_home  # noqa: E402

SCENE = (640, 480)  # within the detector's 640-pixel copy: small faces are not shrunk more
SEED = 7


def make_scenes(folder: Path, files: list[str], labels: list[str], out: Path) -> dict:
    """The scene photos and, for each, the pasted rectangles with their people."""
    from PIL import Image, ImageFilter

    layout_file = out / "layout.json"
    if layout_file.is_file():
        return json.loads(layout_file.read_text())
    rng = np.random.default_rng(SEED)
    order = rng.permutation(len(files))
    layout: dict[str, list] = {}
    width, height = SCENE
    for n in range(len(order) // 3):
        front, *back = (int(i) for i in order[3 * n : 3 * n + 3])
        # A smooth random background: two colours blended across, with noise.
        a, b = rng.integers(40, 215, 3), rng.integers(40, 215, 3)
        ramp = np.linspace(0, 1, width)[None, :, None]
        pixels = a * (1 - ramp) + b * ramp + rng.normal(0, 6, (height, width, 3))
        canvas = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        x, y = int(rng.integers(0, 140)), int(rng.integers(0, 230))
        canvas.paste(Image.open(folder / files[front]).convert("RGB"), (x, y))
        rects = [[x, y, 250, labels[front], 0.0]]
        for slot, i in enumerate(back):
            side = int(rng.integers(60, 151))
            blur = float(rng.uniform(1.0, 2.5)) if rng.random() < 0.5 else 0.0
            photo = Image.open(folder / files[i]).convert("RGB").resize((side, side), Image.LANCZOS)
            if blur:
                photo = photo.filter(ImageFilter.GaussianBlur(blur))
            bx = int(rng.integers(400, width - side + 1))
            by = int(rng.integers(240 * slot, 240 * slot + 240 - side + 1))
            canvas.paste(photo, (bx, by))
            rects.append([bx, by, side, labels[i], blur])
        name = f"scene-{n:03d}.jpg"
        canvas.save(out / name, quality=92)
        layout[name] = rects
    layout_file.write_text(json.dumps(layout))
    return layout


def ingest_once(conn: psycopg.Connection, folder: Path, gallery: str, all_faces: bool) -> None:
    from doppel.config import Settings
    from doppel.ingest.batches import IngestJob
    from doppel.ingest.local import ingest

    options = Settings.from_env().face_options
    job = IngestJob(folder, gallery, pipeline("Dlib", "dlib"), all_faces=all_faces, options=options)
    report = ingest(conn, job)
    print(
        f"  ingest {gallery}: {report.faces_added} faces added, {report.seconds:.0f} s "
        f"(load {load()})"
    )


def truth_of(
    conn: psycopg.Connection, gallery: str, label: Callable[..., str | None]
) -> dict[int, str]:
    """Face id -> person, for the faces the benchmark can label."""
    from doppel.store.repository import Repository

    g = Repository(conn).gallery(gallery)
    rows = conn.execute(
        "SELECT id, source, face_index, box_x, box_y, box_w, box_h FROM faces"
        " WHERE gallery_id = %s",
        (g.id,),
    ).fetchall()
    out = {}
    for row in rows:
        person = label(*row[1:])
        if person:
            out[int(row[0])] = person
    return out


def quality_table(conn: psycopg.Connection, gallery: str) -> None:
    from doppel.people.quality import gallery_quality

    stats = gallery_quality(conn, gallery)
    for m in stats.measures:
        q = " / ".join(f"{v:.3g}" for v in m.quantiles)
        print(f"  {gallery} {m.name}: {m.known} known; min/10/25/50/75/90/max {q}")


def run_floor(
    conn: psycopg.Connection, gallery: str, truth: dict[int, str], floor: QualityFloor
) -> tuple:
    from doppel.people.groups import cluster_gallery, list_people
    from doppel.people.scores import score
    from doppel.store.quality import QualityStore

    report = cluster_gallery(conn, gallery, recluster=True, floor=floor)
    listing = list_people(conn, gallery)
    person_of = {f.id: p.id for p in listing.people for f in listing.members[p.id]}
    ids = sorted(truth)
    s = score([person_of.get(i, -1) for i in ids], [truth[i] for i in ids])
    # The same on the faces above the floor alone: what the gate leaves to cluster.
    low = set(QualityStore(conn).below_floor(report.gallery, floor))
    kept = [i for i in ids if i not in low]
    above = score([person_of.get(i, -1) for i in kept], [truth[i] for i in kept])
    return s, above, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="keep the database and scenes here")
    args = parser.parse_args()

    from doppel.config import Settings
    from doppel.store.db import connect

    print(machine_line())
    folder, files, labels = labelled(SHARED_FACES / "lfw-dev")
    label_of = dict(zip(files, labels, strict=True))
    with private_home(args.home) as home:
        scenes = home / "scenes"
        scenes.mkdir(exist_ok=True)
        layout = make_scenes(folder, files, labels, scenes)
        conn = connect(Settings.from_env())
        ingest_once(conn, folder, "lfw-dev", all_faces=False)
        ingest_once(conn, scenes, "scenes", all_faces=True)

        def lfw_label(source: str, *_: object) -> str | None:
            return label_of.get(Path(source).name)

        def scene_label(source: str, index: int, x: int, y: int, w: int, h: int) -> str | None:
            cx, cy = x + w / 2, y + h / 2
            for rx, ry, side, person, _ in layout.get(Path(source).name, []):
                if rx <= cx < rx + side and ry <= cy < ry + side:
                    return person
            return None

        truths = {
            "lfw-dev": truth_of(conn, "lfw-dev", lfw_label),
            "scenes": truth_of(conn, "scenes", scene_label),
        }
        for gallery in truths:
            quality_table(conn, gallery)
        floors = [QualityFloor()]
        floors += [QualityFloor(size=s) for s in (40, 50, 60)]
        floors += [QualityFloor(sharpness=s) for s in (4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 15.0, 20.0)]
        floors += [QualityFloor(frontalness=f) for f in (0.2, 0.4)]
        floors += [QualityFloor(confidence=c) for c in (0.2, 0.5)]
        floors += [
            QualityFloor(size=40, sharpness=6.0),
            QualityFloor(sharpness=6.0, frontalness=0.2),
            QualityFloor(sharpness=6.0, confidence=0.2),
        ]
        print(
            "\n| floor | gallery | below | people | B-cubed P | B-cubed R | F1 | in a person "
            "| above the floor: P | R |\n|---|---|---|---|---|---|---|---|---|---|"
        )
        for floor in floors:
            text = (
                ", ".join(f"{k} {v:g}" for k, v in vars(floor).items() if v is not None) or "none"
            )
            for gallery, truth in truths.items():
                s, above, report = run_floor(conn, gallery, truth, floor)
                print(
                    f"| {text} | {gallery} | {report.low_quality} | {report.people} "
                    f"| {s.bcubed_precision:.3f} | {s.bcubed_recall:.3f} | {s.bcubed_f1:.3f} "
                    f"| {s.assigned:.1%} | {above.bcubed_precision:.3f} "
                    f"| {above.bcubed_recall:.3f} |",
                    flush=True,
                )
        print(
            f"load {load()}; faces labelled: "
            + ", ".join(f"{g} {len(t)}" for g, t in truths.items())
        )
        conn.close()


if __name__ == "__main__":
    main()
