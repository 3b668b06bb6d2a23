"""Same-person thresholds, verify against DeepFace.verify, and people clustering, measured.

On ../shared/faces/lfw-dev (572 photos of 100 people) and deepface-unit (61 labelled
photos, 300 labelled pairs), for one embedding pipeline (model + detector):

1. Embeds both sets the way `doppel ingest` does (into a gallery of a private
   database) and with DeepFace's own `represent` (same model, same detector).
2. Thresholds: every same-person and different-person pair of lfw-dev; the cut
   with the best balanced accuracy, its false-accept and false-reject rates, and a
   logistic fit of P(same | similarity).
3. Verify accuracy on balanced lfw-dev pairs (every same-person pair and as many
   different-person pairs, drawn with a fixed seed): doppel's threshold
   cross-validated over 10 folds of people, against DeepFace.verify's own threshold
   on DeepFace's embeddings of the same photos (DeepFace.verify itself is run on a
   sample of pairs to show it gives the same verdicts); and on deepface-unit's 300 pairs.
4. Clustering: plain average linkage at one threshold (over a range) against
   doppel's clustering (neighbour graph, core faces, average linkage inside
   components, mean-face joins), whose cut points are chosen on half of the people
   and scored on the other half, both ways; then `doppel people` itself (neighbours
   from the HNSW index) on the lfw-dev gallery with the chosen cut points.
5. With --scale N: a synthetic gallery of N faces shaped like Dlib's (128-d), timed
   through `doppel people` (index neighbours) and `doppel twins` (exact blocked
   products and index queries).

    python benchmarks/bench_people.py [--model Dlib] [--detector dlib] [--write-calibration]
    python benchmarks/bench_people.py --scale 70000 --skip-faces

--write-calibration stores the measured thresholds in doppel's shipped
src/doppel/people/thresholds.json (or the file given), which `verify`, `people`,
`find --strangers` and `twins` read.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg

from doppel.people import calibration
from doppel.types import EmbeddingConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import SHARED_FACES, load, machine_line, private_home  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "src" / "doppel" / "people" / "thresholds.json"


@dataclass
class FaceSet:
    name: str
    files: list[str]
    labels: np.ndarray
    doppel: np.ndarray  # (n, d); rows of NaN where doppel found no face
    deepface: np.ndarray  # the same from DeepFace.represent


def labelled(folder: Path) -> tuple[Path, list[str], list[str]]:
    rows = list(csv.reader((folder / "identities.csv").read_text().splitlines()))[1:]
    photos = folder / "photos" if (folder / "photos").is_dir() else folder
    return photos, [r[0] for r in rows if r], [r[1] for r in rows if r]


def embed_doppel(
    conn: psycopg.Connection, folder: Path, name: str, files: list[str], config: EmbeddingConfig
) -> np.ndarray:
    """Ingest the labelled photos (largest face each) and read their stored vectors back."""
    from doppel.config import Settings
    from doppel.faces.embed import Embedder
    from doppel.store.people import PeopleStore
    from doppel.store.repository import Repository
    from tests.helpers import ingest_folder

    start = time.perf_counter()
    embedder = Embedder(config, options=Settings.from_env().face_options)
    report = ingest_folder(conn, folder, name, config, embedder=embedder)
    print(
        f"  doppel ingest {name}: {report.faces_added} faces added "
        f"({time.perf_counter() - start:.0f} s)"
    )
    gallery = Repository(conn).gallery(name)
    stored = PeopleStore(conn).faces(gallery)
    sources = dict(
        conn.execute("SELECT id, source FROM faces WHERE gallery_id = %s", (gallery.id,)).fetchall()
    )
    by_file = {
        Path(sources[int(i)]).name: v for i, v in zip(stored.ids, stored.vectors, strict=True)
    }
    dim = stored.vectors.shape[1]
    return np.vstack([by_file.get(f, np.full(dim, np.nan, np.float32)) for f in files])


def embed_deepface(
    folder: Path, files: list[str], model: str, detector: str, cache: Path
) -> np.ndarray:
    """DeepFace.represent on each file, largest face (cached: about as slow as ingest)."""
    if cache.is_file():
        return np.load(cache)
    from deepface import DeepFace

    start = time.perf_counter()
    rows = []
    for name in files:
        try:
            faces = DeepFace.represent(
                img_path=str(folder / name), model_name=model, detector_backend=detector
            )
            largest = max(faces, key=lambda f: f["facial_area"]["w"] * f["facial_area"]["h"])
            rows.append(np.asarray(largest["embedding"], dtype=np.float32))
        except ValueError:  # no face
            rows.append(None)
    dim = next(len(r) for r in rows if r is not None)
    out = np.vstack([r if r is not None else np.full(dim, np.nan, np.float32) for r in rows])
    np.save(cache, out)
    print(
        f"  DeepFace.represent {cache.stem}: {len(files)} photos "
        f"({time.perf_counter() - start:.0f} s)"
    )
    return out


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def balanced_pairs(labels: np.ndarray, ok: np.ndarray, seed: int = 0) -> np.ndarray:
    """Every same-person pair of faces found, and as many different-person pairs, drawn."""
    idx = np.flatnonzero(ok)
    i, j = np.triu_indices(len(idx), 1)
    a, b = idx[i], idx[j]
    same = labels[a] == labels[b]
    rng = np.random.default_rng(seed)
    diff = rng.choice(np.flatnonzero(~same), int(same.sum()), replace=False)
    chosen = np.concatenate([np.flatnonzero(same), diff])
    return np.stack([a[chosen], b[chosen]], axis=1)


def thresholds_section(faces: FaceSet, model: str) -> tuple[float, float, float, float, float]:
    from doppel.people import calibration

    ok = ~np.isnan(faces.doppel[:, 0])
    same, different = calibration.labelled_pairs(faces.doppel[ok], faces.labels[ok])
    point = calibration.best_threshold(same, different)
    a, b = calibration.fit_logistic(same, different, point.threshold)
    print(f"\n## Same-person threshold ({model}, lfw-dev, {ok.sum()} faces)")
    print(f"pairs: {len(same)} same-person, {len(different)} different-person")
    print(
        f"same-person similarity: median {np.median(same):.4f}, 1st percentile "
        f"{np.percentile(same, 1):.4f}; different-person: 99th {np.percentile(different, 99):.4f},"
        f" 99.9th {np.percentile(different, 99.9):.4f}"
    )
    print("| threshold | false accepts | false rejects |\n|---|---|---|")
    for cut in sorted(
        {
            point.threshold,
            *np.round(np.arange(point.threshold - 0.02, point.threshold + 0.0301, 0.01), 3),
        }
    ):
        far, frr = calibration.rates(same, different, cut)
        mark = " (chosen: best balanced accuracy)" if cut == point.threshold else ""
        print(f"| {cut:.4f}{mark} | {far:.4%} | {frr:.2%} |")
    print(f"logistic fit: P(same) = 1 / (1 + exp(-({a:.2f} * similarity {b:+.2f})))")
    return point.threshold, point.false_accept, point.false_reject, a, b


def deepface_threshold(model: str) -> float:
    from deepface.modules.verification import find_threshold

    return 1.0 - float(find_threshold(model, "cosine"))


def verify_section(
    faces: FaceSet, unit_set: FaceSet, model: str, detector: str, check: int
) -> None:
    from doppel.people import calibration

    ok = ~np.isnan(faces.doppel[:, 0]) & ~np.isnan(faces.deepface[:, 0])
    pairs = balanced_pairs(faces.labels, ok)
    truth = faces.labels[pairs[:, 0]] == faces.labels[pairs[:, 1]]
    d, f = unit(np.nan_to_num(faces.doppel)), unit(np.nan_to_num(faces.deepface))
    ours = np.einsum("ij,ij->i", d[pairs[:, 0]], d[pairs[:, 1]])
    theirs = np.einsum("ij,ij->i", f[pairs[:, 0]], f[pairs[:, 1]])
    # doppel: the threshold chosen on the other nine folds of people.
    people = np.unique(faces.labels)
    rng = np.random.default_rng(1)
    fold_of = dict(zip(rng.permutation(people), itertools.cycle(range(10)), strict=False))
    folds = np.array([fold_of[p] for p in faces.labels[pairs[:, 0]]])
    correct = 0
    for fold in range(10):
        train, test = folds != fold, folds == fold
        point = calibration.best_threshold(ours[train & truth], ours[train & ~truth])
        correct += int(((ours[test] >= point.threshold) == truth[test]).sum())
    dt = deepface_threshold(model)
    print(
        f"\n## verify on lfw-dev pairs ({len(pairs)} pairs, half same person; {model}, {detector})"
    )
    print("| pipeline | threshold (similarity) | accuracy |\n|---|---|---|")
    print(
        "| doppel verify (threshold chosen on the other 9 folds of people) "
        f"| per fold | {correct / len(pairs):.2%} |"
    )
    print(
        f"| DeepFace.verify (its own threshold, its own embeddings) | {dt:.3f} "
        f"| {((theirs >= dt) == truth).mean():.2%} |"
    )
    print(
        "| DeepFace's embeddings at a threshold chosen like doppel's (10 "
        f"folds) | per fold | {_cv(theirs, truth, folds):.2%} |"
    )
    if check:
        _check_deepface_verify(faces, pairs[:check], theirs[:check], model, detector)
    # deepface-unit's own 300 pairs, at the shipped-to-be threshold.
    same, different = calibration.labelled_pairs(
        faces.doppel[~np.isnan(faces.doppel[:, 0])], faces.labels[~np.isnan(faces.doppel[:, 0])]
    )
    cut = calibration.best_threshold(same, different).threshold
    position = {name: i for i, name in enumerate(unit_set.files)}
    rows = list(
        csv.reader((SHARED_FACES / "deepface-unit" / "master.csv").read_text().splitlines())
    )[1:]
    du, fu = unit(np.nan_to_num(unit_set.doppel)), unit(np.nan_to_num(unit_set.deepface))
    hit_d = hit_f = n = 0
    for x, y, decision in rows:
        if x not in position or y not in position:
            continue
        i, j = position[x], position[y]
        n += 1
        hit_d += int((du[i] @ du[j] >= cut) == (decision == "Yes"))
        hit_f += int((fu[i] @ fu[j] >= dt) == (decision == "Yes"))
    theirs_unit = "not run" if np.isnan(unit_set.deepface).all() else f"{hit_f / n:.2%}"
    print(
        f"deepface-unit master.csv ({n} pairs): doppel at {cut:.4f}: {hit_d / n:.2%}; "
        f"DeepFace.verify's threshold on its embeddings: {theirs_unit}"
    )


def _cv(sims: np.ndarray, truth: np.ndarray, folds: np.ndarray) -> float:
    from doppel.people import calibration

    correct = 0
    for fold in range(10):
        train, test = folds != fold, folds == fold
        point = calibration.best_threshold(sims[train & truth], sims[train & ~truth])
        correct += int(((sims[test] >= point.threshold) == truth[test]).sum())
    return correct / len(sims)


def _check_deepface_verify(
    faces: FaceSet, pairs: np.ndarray, sims: np.ndarray, model: str, detector: str
) -> None:
    """DeepFace.verify itself on a sample: same verdicts as its embeddings at its threshold?"""
    from deepface import DeepFace

    folder, _, _ = labelled(SHARED_FACES / faces.name)
    agree, worst = 0, 0.0
    for (i, j), sim in zip(pairs, sims, strict=True):
        result = DeepFace.verify(
            str(folder / faces.files[i]),
            str(folder / faces.files[j]),
            model_name=model,
            detector_backend=detector,
            distance_metric="cosine",
        )
        worst = max(worst, abs((1 - result["distance"]) - sim))
        agree += int(result["verified"] == (sim >= deepface_threshold(model)))
    print(
        f"DeepFace.verify run on {len(pairs)} of these pairs: {agree} verdicts "
        "equal to the embeddings' at its threshold; largest similarity "
        f"difference {worst:.2e}"
    )


# Shared-neighbour weights tried; the grid of cut points and the choice among them are
# the library's, which `doppel calibrate` uses too.
SHARED = (0.0, 0.05)
PRECISION = calibration.PRECISION
cluster_grid = calibration.cluster_grid
choose = calibration.choose_cluster_params


def clustering_section(faces: FaceSet, unit_set: FaceSet, threshold: float) -> object:
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    from doppel.people.clustering import cluster, exact_neighbours
    from doppel.people.scores import score

    ok = ~np.isnan(faces.doppel[:, 0])
    v, y = unit(faces.doppel[ok]), faces.labels[ok]
    print(f"\n## Clustering lfw-dev ({len(y)} faces, {len(np.unique(y))} people)")
    print("Plain average linkage at one threshold (every face in some group):")
    print("| threshold | pair precision | pair recall | B-cubed F1 |\n|---|---|---|---|")
    dist = np.clip(1 - v.astype(np.float64) @ v.T, 0, 2)
    np.fill_diagonal(dist, 0)
    tree = linkage(squareform(dist, checks=False), "average")
    for cut in np.round(np.arange(0.90, 0.9501, 0.0025), 4):
        s = score(fcluster(tree, 1 - cut, "distance"), y)
        print(f"| {cut:.4f} | {s.pair_precision:.3f} | {s.pair_recall:.3f} | {s.bcubed_f1:.3f} |")
    people = np.unique(y)
    order = np.random.default_rng(2).permutation(people)
    half = np.isin(y, order[: len(people) // 2])
    print(
        "\ndoppel's clustering (min 3 faces), cut points chosen on one half of the people "
        f"(best B-cubed F1 at pair precision >= {PRECISION}), scored on the other half:"
    )
    print(
        "| shared | chosen on | edge / link / join | held-out pair P | pair R | "
        "B-cubed P | B-cubed R | B-cubed F1 | in a person |\n|---|---|---|---|---|---|---|---|---|"
    )
    every = []
    for shared in SHARED:
        grid = cluster_grid(threshold, shared)
        every.extend(grid)
        for name, train in (("half A", half), ("half B", ~half)):
            params, _ = choose(v[train], y[train], grid)
            graph, sims = exact_neighbours(v[~train], 20)
            s = score(cluster(v[~train], graph, sims, params), y[~train])
            print(
                f"| {shared} | {name} | {params.edge} / {params.link} / {params.join} "
                f"| {s.pair_precision:.3f} | {s.pair_recall:.3f} | {s.bcubed_precision:.3f} "
                f"| {s.bcubed_recall:.3f} | {s.bcubed_f1:.3f} | {s.assigned:.1%} |"
            )
    print("\nAll of lfw-dev, every cut point tried (pair P >= 0.95 shown):")
    print("| shared | edge / link / join | pair P | pair R | B-cubed F1 | in a person |")
    print("|---|---|---|---|---|---|")
    graph, sims = exact_neighbours(v, 20)
    for params in every:
        s = score(cluster(v, graph, sims, params), y)
        if s.pair_precision >= 0.95:
            print(
                f"| {params.shared} | {params.edge} / {params.link} / {params.join} "
                f"| {s.pair_precision:.3f} | {s.pair_recall:.3f} | {s.bcubed_f1:.3f} "
                f"| {s.assigned:.1%} |"
            )
    params, s = choose(v, y, every)
    print(
        f"chosen on all of lfw-dev (shipped): edge {params.edge}, link "
        f"{params.link}, join {params.join}, shared {params.shared}, min faces "
        f"{params.min_faces}: pair P {s.pair_precision:.3f} R {s.pair_recall:.3f}, B-cubed "
        f"F1 {s.bcubed_f1:.3f}, {s.assigned:.1%} of faces in a person"
    )
    uok = ~np.isnan(unit_set.doppel[:, 0])
    uv, uy = unit(unit_set.doppel[uok]), unit_set.labels[uok]
    graph, sims = exact_neighbours(uv, 20)
    s = score(cluster(uv, graph, sims, params), uy)
    print(
        f"deepface-unit ({len(uy)} faces, 13 people) with those cut points: "
        f"pair P {s.pair_precision:.3f} R {s.pair_recall:.3f}, B-cubed "
        f"F1 {s.bcubed_f1:.3f}, {s.people} people, {s.assigned:.1%} in "
        "a person"
    )
    return params


def people_command_section(
    conn: psycopg.Connection, faces: FaceSet, gallery: str, calibration_file: Path
) -> None:
    """`doppel people` itself on the ingested lfw-dev gallery: HNSW neighbours, the database."""
    from doppel.people.groups import cluster_gallery, list_people
    from doppel.people.scores import score

    report = cluster_gallery(
        conn, gallery, recluster=True, calibration_file=calibration_file, exact_below=0
    )
    listing = list_people(conn, gallery)
    person_of = {Path(f.source).name: p.id for p in listing.people for f in listing.members[p.id]}
    ok = ~np.isnan(faces.doppel[:, 0])
    labels = [person_of.get(f, -1) for f, good in zip(faces.files, ok, strict=True) if good]
    s = score(labels, faces.labels[ok])
    print(
        f"`doppel people {gallery} --recluster`: {report.people} "
        f"people, pair P {s.pair_precision:.3f} R {s.pair_recall:.3f}, "
        f"B-cubed P {s.bcubed_precision:.3f} R {s.bcubed_recall:.3f} F1 "
        f"{s.bcubed_f1:.3f}, {s.assigned:.1%} in a person, {report.seconds:.1f} "
        f"s (load {load()})"
    )


def group_photos_section(
    conn: psycopg.Connection, faces: FaceSet, calibration_file: Path, pairs: int = 60
) -> None:
    """Faces of one photo are different people, on real group photos.

    deepface-unit's multi-face photos (a couple, a crowd, a face beside its
    reflection) and lfw-dev photos of two people set side by side (one 500x250
    photo each), ingested with every face (`ingest --all-faces`), with lfw-dev's own
    photos (some have faces in the background) in one gallery.
    The same faces and neighbours are grouped with the rule (what `doppel people`
    does) and without it (what it did before); lfw-dev's labelled faces are scored.
    """
    from PIL import Image

    from doppel.people import calibration, clustering
    from doppel.people.scores import score
    from doppel.store.people import PeopleStore
    from doppel.store.repository import Repository

    folder, files, labels = labelled(SHARED_FACES / "lfw-dev")
    rng = np.random.default_rng(3)
    label_of = dict(zip(files, labels, strict=True))
    # A folder that lasts with --home: a rerun finds the same photos and skips them.
    tmp = Path(os.environ["DOPPEL_HOME"]) / "lfw-groups"
    tmp.mkdir(exist_ok=True)
    made = 0
    while made < pairs:
        a, b = rng.choice(len(files), 2, replace=False)
        if labels[a] == labels[b]:
            continue
        canvas = Image.new("RGB", (500, 250))
        canvas.paste(Image.open(folder / files[a]).convert("RGB"), (0, 0))
        canvas.paste(Image.open(folder / files[b]).convert("RGB"), (250, 0))
        canvas.save(Path(tmp) / f"pair-{made:03d}.jpg", quality=95)
        made += 1
    for name in files:
        if not (tmp / name).exists():
            (tmp / name).symlink_to(folder / name)
    from doppel.config import Settings
    from doppel.faces.embed import Embedder
    from tests.helpers import ingest_folder

    embedder = Embedder(
        Repository(conn).gallery("lfw-dev").config, options=Settings.from_env().face_options
    )
    # Every face of each photo (ingest keeps the largest alone unless asked).
    every = {"lfw-groups-all": Path(tmp), "deepface-unit-all": SHARED_FACES / "deepface-unit"}
    for name, photos in every.items():
        ingest_folder(conn, photos, name, embedder.config, embedder=embedder, all_faces=True)
    repo = Repository(conn)
    cal = calibration.for_config(repo.gallery("lfw-groups-all").config, calibration_file)
    print("\n## Faces of one photo are different people")
    print(
        "| gallery | faces | photos with 2+ faces | rule | same-photo faces in one person "
        "| people | B-cubed P | B-cubed R | B-cubed F1 |\n|---|---|---|---|---|---|---|---|---|"
    )
    for name in ("lfw-groups-all", "deepface-unit-all"):
        stored = PeopleStore(conn).faces(repo.gallery(name))
        photos = clustering.photo_codes(stored.photos)
        graph, sims = clustering.exact_neighbours(stored.vectors, 20)
        # An lfw-dev photo's label is its largest face's (face 0); faces behind it are
        # other people, left unscored.
        index = dict(
            conn.execute(
                "SELECT id, face_index FROM faces WHERE gallery_id = %s",
                (repo.gallery(name).id,),
            ).fetchall()
        )
        labelled_faces = np.array(
            [
                Path(p).name in label_of and index[int(i)] == 0
                for i, p in zip(stored.ids, stored.photos, strict=True)
            ]
        )
        truth = [label_of.get(Path(p).name, "") for p in stored.photos]
        for rule in ("without", "with"):
            found = clustering.cluster(
                stored.vectors, graph, sims, cal.cluster, photos=photos if rule == "with" else None
            )
            kept = labelled_faces if name == "lfw-groups-all" else np.zeros(len(found), bool)
            s = score(found[kept], np.asarray(truth, dtype=object)[kept]) if kept.any() else None
            figures = (
                f"{s.bcubed_precision:.3f} | {s.bcubed_recall:.3f} | {s.bcubed_f1:.3f}"
                if s
                else "- | - | -"
            )
            print(
                f"| {name} | {len(found)} | {len(np.unique(photos[photos >= 0]))} | {rule} "
                f"| {clustering.same_photo_violations(found, photos)} "
                f"| {len(np.unique(found[found >= 0]))} | {figures} |"
            )


def face_like(n: int, dim: int = 128, per: int = 5, seed: int = 0) -> np.ndarray:
    """Vectors with Dlib-like statistics: people about 0.89 alike, a person's faces about 0.96."""
    rng = np.random.default_rng(seed)
    ids = max(1, n // per)
    common = rng.standard_normal(dim)
    common /= np.linalg.norm(common)
    spread = rng.standard_normal((ids, dim))
    spread /= np.linalg.norm(spread, axis=1, keepdims=True)
    centres = unit(common * np.sqrt(0.89) + spread * np.sqrt(0.11))
    owner = np.repeat(np.arange(ids), per)[:n]
    noise = unit(rng.standard_normal((n, dim)))
    v = centres[owner] + 0.2 * noise * rng.uniform(0.6, 1.4, (n, 1))
    return unit(v).astype(np.float32)


def scale_section(
    conn: psycopg.Connection,
    n: int,
    calibration_file: Path | None,
    config: EmbeddingConfig,
    added: int = 1000,
    with_twins: bool = True,
) -> None:
    """A synthetic gallery of n faces: a full recluster, then `added` faces more.

    One face in twenty shares its photo with another face (two people side by side),
    so that the rule of one photo's faces is measured at scale too.
    """
    from doppel.faces import catalog
    from doppel.people import clustering
    from doppel.people.groups import cluster_gallery
    from doppel.people.twins import twins
    from doppel.store.people import PeopleStore
    from doppel.store.repository import Repository
    from doppel.types import NewFace

    repo = Repository(conn)
    name = f"synthetic-{n}"
    vectors = face_like(n + added)
    rng = np.random.default_rng(4)
    later = np.zeros(n + added, dtype=bool)
    later[rng.choice(n + added, added, replace=False)] = True
    position = np.argsort(rng.permutation(n + added))

    def rows(chosen: np.ndarray) -> list:
        # Two faces at neighbouring places of a random order share a photo, once in
        # forty places: one face in twenty is in a photo with someone else.
        out = []
        for i in chosen:
            at = int(position[i])
            if at % 40 in (0, 1):
                out.append(NewFace(f"synthetic/group-{at // 40}.png", None, at % 40, vectors[i]))
            else:
                out.append(NewFace(f"synthetic/{i}.png", None, 0, vectors[i]))
        return out

    gallery = repo.find_gallery(name)
    if gallery is None:
        gallery = repo.ensure_gallery(name, config, dimension=catalog.dimension(config.model))
        with conn.transaction():
            repo.copy_faces(gallery, rows(np.flatnonzero(~later)), "faces")
        start = time.perf_counter()
        repo.ensure_index(gallery)
        print(
            f"\n## {n:,} synthetic faces (128-d, Dlib-like)\nHNSW index built "
            f"in {time.perf_counter() - start:.0f} s (load {load()})"
        )
    newcomers = rows(np.flatnonzero(later))
    conn.execute(  # a rerun starts from the n faces again
        "DELETE FROM faces f USING unnest(%s::text[], %s::int[]) AS v(source, face_index)"
        " WHERE f.gallery_id = %s AND f.source = v.source AND f.face_index = v.face_index",
        ([f.source for f in newcomers], [f.face_index for f in newcomers], gallery.id),
    )
    # From no people at all, so that every person is made (a rerun's recluster keeps
    # most ids and writes less).
    conn.execute("DELETE FROM face_people WHERE gallery_id = %s", (gallery.id,))
    conn.execute("DELETE FROM people WHERE gallery_id = %s", (gallery.id,))
    conn.commit()
    report = cluster_gallery(conn, name, recluster=True, calibration_file=calibration_file)
    print(
        f"`doppel people {name} --recluster` ({n:,} faces: exact neighbours by blocked "
        f"products, clustering, writing): {report.seconds:.0f} s, {report.people:,} people, "
        f"{report.unassigned:,} faces in none (load {load()})"
    )
    store = PeopleStore(conn)
    before = store.faces(gallery)
    with conn.transaction():
        repo.copy_faces(gallery, rows(np.flatnonzero(later)), "faces")
    report = cluster_gallery(conn, name, calibration_file=calibration_file)
    after = store.faces(gallery)
    old = np.isin(after.ids, before.ids)
    had = before.person >= 0
    changed = int((after.person[old][had] != before.person[had]).sum())
    placed = int((after.person[old][~had] >= 0).sum())
    photos = clustering.photo_codes(after.photos)
    print(
        f"{added:,} faces added, then `doppel people {name}`: {report.seconds:.1f} s; "
        f"{report.joined:,} joined known people, {report.new_people:,} new people; "
        f"old faces whose person changed: {changed} (old faces in none that joined "
        f"someone now: {placed}); same-photo faces in one person: "
        f"{clustering.same_photo_violations(after.person, photos)} (load {load()})"
    )
    # Again over everything, now that every face has a person: most keep theirs.
    report = cluster_gallery(conn, name, recluster=True, calibration_file=calibration_file)
    again = store.faces(gallery)
    print(
        f"`doppel people {name} --recluster` again ({n + added:,} faces, people known): "
        f"{report.seconds:.0f} s, {report.people:,} people; faces whose person changed: "
        f"{int((again.person != after.person).sum())}; same-photo faces in one person: "
        f"{clustering.same_photo_violations(again.person, photos)} (load {load()})"
    )
    if not with_twins:
        return
    for method in ("exact", "index"):
        result = twins(conn, name, 10, method=method, calibration_file=calibration_file)
        print(
            f"`doppel twins -k 10 --method {method}`: {result.seconds:.0f} "
            f"s, best pair {result.pairs[0].similarity:.4f} (load {load()})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="Dlib")
    parser.add_argument("--detector", default=None, help="default: the model's default")
    parser.add_argument(
        "--home", type=Path, help="keep the database and caches here (reruns reuse them)"
    )
    parser.add_argument("--write-calibration", nargs="?", const=SHIPPED, type=Path, default=None)
    parser.add_argument(
        "--check-deepface", type=int, default=20, help="pairs to run DeepFace.verify on"
    )
    parser.add_argument(
        "--no-deepface", action="store_true", help="thresholds and clustering only (faster)"
    )
    parser.add_argument(
        "--deepface-lfw-only",
        action="store_true",
        help="DeepFace's pipeline on lfw-dev only: on deepface-unit's large photos its "
        "full-size detection takes most of an hour on two busy cores",
    )
    parser.add_argument(
        "--scale", type=int, default=0, help="also time a synthetic gallery of N faces"
    )
    parser.add_argument("--skip-faces", action="store_true", help="only the synthetic timing")
    parser.add_argument(
        "--skip-twins", action="store_true", help="no `doppel twins` timing at --scale"
    )
    args = parser.parse_args()

    from doppel.config import Settings
    from doppel.people import calibration
    from doppel.store.db import connect

    config = pipeline(args.model, args.detector)
    detector = config.detector
    print(machine_line())
    print(f"pipeline: {config.key}")
    with private_home(args.home) as home:
        conn = connect(Settings.from_env())
        measured = home / "calibration.json"
        if not args.skip_faces:
            sets = {}
            for name in ("lfw-dev", "deepface-unit"):
                folder, files, labels = labelled(SHARED_FACES / name)
                doppel = embed_doppel(conn, folder, name, files, config)
                theirs = (
                    np.full_like(doppel, np.nan)
                    if args.no_deepface or (name == "deepface-unit" and args.deepface_lfw_only)
                    else embed_deepface(
                        folder,
                        files,
                        args.model,
                        detector,
                        home / f"deepface-{name}-{config.key.replace('|', '-')}.npy",
                    )
                )
                sets[name] = FaceSet(name, files, np.asarray(labels), doppel, theirs)
                missing = int(np.isnan(doppel[:, 0]).sum())
                print(
                    f"  {name}: doppel found no face in {missing} of {len(files)} photos; "
                    f"DeepFace in {int(np.isnan(theirs[:, 0]).sum())}"
                )
            lfw, unit_set = sets["lfw-dev"], sets["deepface-unit"]
            threshold, far, frr, a, b = thresholds_section(lfw, args.model)
            if not args.no_deepface:
                verify_section(lfw, unit_set, args.model, detector, args.check_deepface)
            params = clustering_section(lfw, unit_set, threshold)
            found = int((~np.isnan(lfw.doppel[:, 0])).sum())
            cal = calibration.Calibration(
                config.key,
                args.model,
                threshold,
                round(far, 5),
                round(frr, 5),
                round(a, 3),
                round(b, 3),
                params,
                f"lfw-dev: {found} faces of 100 people (every pair), benchmarks/bench_people.py",
            )
            calibration.save(cal, measured)
            people_command_section(conn, lfw, "lfw-dev", measured)
            group_photos_section(conn, lfw, measured)
            if args.write_calibration:
                calibration.save(cal, args.write_calibration)
                print(f"\ncalibration written to {args.write_calibration}")
        if args.scale:
            # A fresh measurement if this run made one, else the shipped calibrations.
            scale_section(
                conn,
                args.scale,
                measured if measured.is_file() else None,
                config,
                with_twins=not args.skip_twins,
            )
        conn.close()


def pipeline(model: str, detector: str | None) -> EmbeddingConfig:
    """The embedding configuration a new gallery of this model gets (with this detector):
    the model's measured pipeline (alignment, mirror averaging) is what gets calibrated."""
    from doppel.faces import catalog

    return catalog.default_config(model, detector)


if __name__ == "__main__":
    main()
