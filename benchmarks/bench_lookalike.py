"""Look-alike quality, measured: consistency, rank-1 with distractors, copies of a picture.

On ../shared/faces/lfw-dev (572 photos of 100 people, 5 or 6 each), embedded the way
doppel embeds a query (the Dlib model's default pipeline, largest face), and, as
distractors, realistic vectors as benchmarks/bench_index.py makes them (a Gaussian
fitted to lfw-dev's Dlib embeddings, five faces per made-up identity).

1. Consistency: for each person, the identities of the 10 nearest strangers (one face
   per person, the person's own faces left out, as `find --strangers` does) found from
   one photo, against those found from another photo of the same person: mean Jaccard
   of the two sets. The same for templates (mean of unit vectors) of 2 and of 3
   photos against templates of as many other photos of the person. The gallery is
   lfw-dev alone, then lfw-dev with distractors.
2. Rank-1 identification as the gallery grows: the gallery holds one photo of the
   person (each photo in turn), every other person's photos, and N distractors; a
   probe (one other photo, or a template of 2 or 3 other photos) is right when that
   photo is the nearest face. Template weighting: plain mean, and weighted by face size.
3. Copies of one picture: lfw-dev photos resized, re-compressed and slightly cropped;
   the bits their dHash differs by and their vectors' similarity, against distinct
   photos of the same person; then the effect of the copy rule on top-5 answers of a
   gallery holding copies.

    python benchmarks/bench_lookalike.py [--sizes 1000 10000 70000] [--copies 150]
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import SHARED_FACES, load, machine_line  # noqa: E402

TOP = 10


def lfw_rows() -> list[tuple[str, str]]:
    rows = list(csv.reader((SHARED_FACES / "lfw-dev" / "identities.csv").read_text().splitlines()))
    return [(f, p) for f, p in rows[1:] if f]


def embedder():  # type: ignore[no-untyped-def]
    from doppel.config import Settings
    from doppel.faces.catalog import default_config
    from doppel.faces.embed import embedder_for

    return embedder_for(default_config("Dlib"), Settings.from_env().face_options)


def embed_bytes(emb, data: bytes, name: str):  # type: ignore[no-untyped-def]
    from doppel.faces import imaging

    faces = emb.embed_photo(imaging.decode(data, name))
    return faces[0] if faces else None


def lfw_embeddings(cache: Path) -> dict[str, np.ndarray]:
    """Vectors, people, files, face sizes and dHashes of lfw-dev's photos (largest face)."""
    if cache.is_file():
        return dict(np.load(cache))
    from doppel.duplicates import dhash
    from doppel.faces import imaging

    emb = embedder()
    out: dict[str, list] = {"vectors": [], "people": [], "files": [], "sizes": [], "hashes": []}
    start = time.perf_counter()
    for file, person in lfw_rows():
        data = (SHARED_FACES / "lfw-dev" / "photos" / file).read_bytes()
        face = embed_bytes(emb, data, file)
        if face is None:
            continue
        out["vectors"].append(face.embedding)
        out["people"].append(person)
        out["files"].append(file)
        out["sizes"].append(np.sqrt(face.box.w * face.box.h))
        out["hashes"].append(dhash(imaging.decode(data, file).pixels))
    print(f"embedded {len(out['files'])} lfw-dev photos in {time.perf_counter() - start:.0f} s")
    arrays = {k: np.asarray(v) for k, v in out.items()}
    arrays["vectors"] = arrays["vectors"].astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **arrays)  # type: ignore[arg-type]
    return arrays


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def distractors(n: int, cache: Path, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """n realistic vectors and their made-up identities (bench_index's Realistic)."""
    from bench_index import PER_IDENTITY, Realistic

    if n == 0:
        return np.zeros((0, 128), np.float32), np.zeros(0, np.int64)
    real = Realistic(128, cache)
    # Realistic.sample's draws, in its order, keeping each vector's identity.
    rng = np.random.default_rng(seed)
    identities = max(1, n // PER_IDENTITY)
    rank = real.between.shape[0]
    centres = real.mu + rng.standard_normal((identities, rank), np.float32) @ real.between
    owner = rng.integers(0, identities, size=n)
    out = centres[owner] + rng.standard_normal((n, rank), np.float32) @ real.noise
    return unit(out.astype(np.float32)), owner


def template(vectors: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    from doppel.templates import combine

    return combine(vectors, weights)


# 1. Consistency --------------------------------------------------------------------


def top_strangers(
    probe: np.ndarray, gallery: np.ndarray, identity: np.ndarray, own: str, k: int = TOP
) -> set[str]:
    """Identities of the k nearest strangers, one face per person."""
    sims = gallery @ probe
    # The nearest few hundred faces hold k strangers (at most 6 faces are the person's,
    # 5 per made-up identity); a full sort of 1,000,000 for every probe is what's slow.
    near = min(len(sims) - 1, 512)
    order = np.argpartition(-sims, near)[: near + 1]
    order = order[np.argsort(-sims[order])]
    found: list[str] = []
    for i in order:
        who = identity[i]
        if who == own or who in found:
            continue
        found.append(who)
        if len(found) == k:
            break
    if len(found) < k and near < len(sims) - 1:
        raise RuntimeError("fewer than k strangers among the nearest faces")
    return set(found)


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def consistency(data: dict, extra: np.ndarray, extra_ids: np.ndarray) -> dict[int, tuple]:
    """Mean Jaccard of top-10 strangers, per template size: (mean, comparisons, people)."""
    v = unit(data["vectors"].astype(np.float64))
    people = data["people"]
    gallery = np.vstack([v, extra]) if len(extra) else v
    identity = np.concatenate([people.astype(str), np.char.add("d", extra_ids.astype(str))])
    results = {}
    for size in (1, 2, 3):
        scores, persons = [], 0
        for person in np.unique(people):
            idx = np.flatnonzero(people == person)
            if len(idx) < max(4, 2 * size):
                continue
            persons += 1
            subsets = list(itertools.combinations(idx, size))
            tops = {
                s: top_strangers(template(v[list(s)]), gallery, identity, person) for s in subsets
            }
            for a, b in itertools.combinations(subsets, 2):
                if set(a) & set(b):
                    continue  # the two queries share no photo
                scores.append(jaccard(tops[a], tops[b]))
        results[size] = (float(np.mean(scores)), len(scores), persons)
    return results


# 2. Rank-1 with distractors ----------------------------------------------------------


def rank1(data: dict, extra: np.ndarray, weighting: str = "mean") -> dict[int, tuple]:
    """Rank-1 rate per probe size: (rate, probes)."""
    v = unit(data["vectors"].astype(np.float64))
    people, sizes = data["people"], data["sizes"].astype(np.float64)
    # The best distractor similarity of every probe is computed once, in blocks.
    probes: list[tuple[int, np.ndarray, str, int]] = []  # (size, vector, person, mate)
    for person in np.unique(people):
        idx = np.flatnonzero(people == person)
        if len(idx) < 4:
            continue
        for mate in idx:
            rest = [i for i in idx if i != mate]
            for size in (1, 2, 3):
                for subset in itertools.combinations(rest, size):
                    w = sizes[list(subset)] if weighting == "size" else None
                    probes.append((size, template(v[list(subset)], w), person, int(mate)))
    matrix = np.vstack([p[1] for p in probes]).astype(np.float32)
    best_extra = np.full(len(probes), -np.inf, np.float32)
    for start in range(0, len(extra), 20_000):  # 20,000 x 12,760 probes: 1 GB at a time
        block = extra[start : start + 20_000] @ matrix.T
        best_extra = np.maximum(best_extra, block.max(axis=0))
    sims = matrix @ v.T.astype(np.float32)
    hits: dict[int, list[bool]] = {1: [], 2: [], 3: []}
    for row, (size, _, person, mate) in enumerate(probes):
        others = sims[row][people != person]
        best_other = max(float(others.max()), float(best_extra[row]))
        hits[size].append(bool(sims[row, mate] > best_other))
    return {s: (float(np.mean(h)), len(h)) for s, h in hits.items()}


# 3. Copies -------------------------------------------------------------------------


def made_copies(data: bytes) -> dict[str, bytes]:
    """The same picture resized, re-compressed, slightly cropped, and all three."""
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size

    def jpeg(im: Image.Image, quality: int = 90) -> bytes:
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality)
        return buf.getvalue()

    crop = img.crop((round(w * 0.04), round(h * 0.04), round(w * 0.96), round(h * 0.96)))
    return {
        "resized 60%": jpeg(img.resize((round(w * 0.6), round(h * 0.6)), Image.Resampling.LANCZOS)),
        "resized 150%": jpeg(
            img.resize((round(w * 1.5), round(h * 1.5)), Image.Resampling.LANCZOS)
        ),
        "JPEG quality 30": jpeg(img, 30),
        "cropped 4% a side": jpeg(crop),
        "cropped 8% left and top": jpeg(img.crop((round(w * 0.08), round(h * 0.08), w, h))),
        "all three": jpeg(crop.resize((round(w * 0.7), round(h * 0.7))), 40),
    }


def embed_copies(data: dict, count: int, cache: Path) -> dict[str, np.ndarray]:
    """Each made copy's original (row of data), kind, vector and dHash; kept in cache,
    since embedding them is the slow part (about 3 minutes for 60 photos at load 5)."""
    if cache.is_file():
        return dict(np.load(cache))
    from doppel.duplicates import dhash
    from doppel.faces import imaging

    emb = embedder()
    chosen = np.random.default_rng(0).choice(len(data["files"]), count, replace=False)
    out: dict[str, list] = {"originals": [], "kinds": [], "vectors": [], "hashes": []}
    start = time.perf_counter()
    for i in chosen:
        original = (SHARED_FACES / "lfw-dev" / "photos" / data["files"][i]).read_bytes()
        for kind, copy in made_copies(original).items():
            face = embed_bytes(emb, copy, kind)
            if face is None:
                continue
            out["originals"].append(int(i))
            out["kinds"].append(kind)
            out["vectors"].append(face.embedding)
            out["hashes"].append(dhash(imaging.decode(copy, kind).pixels))
    print(f"copies embedded in {time.perf_counter() - start:.0f} s")
    arrays = {k: np.asarray(v) for k, v in out.items()}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **arrays)  # type: ignore[arg-type]
    return arrays


def copies_section(
    data: dict, count: int, cache: Path
) -> tuple[dict, list[tuple[int, np.ndarray, int]]]:
    from doppel.duplicates import bits_apart

    v = unit(data["vectors"].astype(np.float64))
    made = embed_copies(data, min(count, len(v)), cache)
    kinds: dict[str, tuple[list[int], list[float]]] = {}
    rows: list[tuple[int, np.ndarray, int]] = []  # (original, vector, hash) of each copy
    for i, kind, vec, copy_hash in zip(
        made["originals"], made["kinds"], made["vectors"], made["hashes"], strict=True
    ):
        bits = bits_apart(int(data["hashes"][i]), int(copy_hash))
        vector = unit(vec.astype(np.float64))
        rows.append((int(i), vector, int(copy_hash)))
        kinds.setdefault(str(kind), ([], []))[0].append(bits)
        kinds[str(kind)][1].append(float(vector @ v[i]))
    # Distinct photos: every same-person pair, and each photo's nearest other person.
    people, hashes = data["people"], data["hashes"]
    same_bits, same_sims, near_bits, near_sims = [], [], [], []
    sims = v @ v.T
    for i, j in itertools.combinations(range(len(v)), 2):
        if people[i] == people[j]:
            same_bits.append(bits_apart(int(hashes[i]), int(hashes[j])))
            same_sims.append(sims[i, j])
    for i in range(len(v)):
        other = np.where(people != people[i], sims[i], -1.0)
        j = int(np.argmax(other))
        near_bits.append(bits_apart(int(hashes[i]), int(hashes[j])))
        near_sims.append(sims[i, j])
    out = {k: (np.array(b), np.array(s)) for k, (b, s) in kinds.items()}
    out["distinct photos, same person"] = (np.array(same_bits), np.array(same_sims))
    out["nearest other person"] = (np.array(near_bits), np.array(near_sims))
    return out, rows


def copy_rule_effect(data: dict, copies: list[tuple[int, np.ndarray, int]]) -> tuple:
    """A gallery of lfw-dev plus the made copies: the top-5 answer of every lfw-dev photo,
    with and without the copy rule. (answers, answers showing one picture twice without
    the rule, with it, answers the rule changed on lfw-dev alone)."""
    from doppel.duplicates import pictures

    v = unit(data["vectors"].astype(np.float64))
    gallery = np.vstack([v, *[c[1][None, :] for c in copies]])
    hashes = [int(h) for h in data["hashes"]] + [c[2] for c in copies]
    picture = np.concatenate([np.arange(len(v)), [c[0] for c in copies]]).astype(int)

    def answer(q: int, rows: np.ndarray, rule: bool, k: int = 5) -> list[int]:
        order = rows[np.argsort(-(gallery[rows] @ v[q]))]
        order = order[picture[order] != q]  # the query photo and its copies, by content
        want = 2 * k + 2  # as search.find: a few more than k, wider while too few are left
        while True:
            pool = order[:want]
            if not rule:
                return [int(r) for r in pool[:k]]
            # The query photo itself is left out by its content hash, so its hash and
            # vector play no part here: the made copies of it were left out above.
            shown = pictures([(hashes[r], gallery[r]) for r in pool])
            kept = [int(r) for i, (r, p) in enumerate(zip(pool, shown, strict=True)) if p == i]
            if len(kept) >= k or want >= len(order):
                return kept[:k]
            want *= 5

    every, lfw = np.arange(len(gallery)), np.arange(len(v))
    twice = sum(len({picture[r] for r in answer(q, every, False)}) < 5 for q in lfw)
    still = sum(len({picture[r] for r in answer(q, every, True)}) < 5 for q in lfw)
    changed = sum(answer(q, lfw, True) != answer(q, lfw, False) for q in lfw)
    return len(v), twice, still, changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path("/tmp/doppel-bench-lookalike"))
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000, 70000])
    parser.add_argument("--copies", type=int, default=150, help="photos copied (0: skip)")
    parser.add_argument("--skip", nargs="*", default=[], help="consistency rank1 copies")
    parser.add_argument("--weightings", nargs="*", default=["mean", "size"])
    args = parser.parse_args()
    print(machine_line())
    data = lfw_embeddings(args.home / "lfw-dev-dlib.npz")
    people = data["people"]
    print(f"lfw-dev: {len(people)} faces of {len(np.unique(people))} people; load {load()}")
    index_cache = args.home / "lfw-dlib-bench-index.npz"
    if "consistency" not in args.skip:
        print("\n## Consistency: mean Jaccard of the top-10 strangers' identities")
        print("| gallery | 1 photo | template of 2 | template of 3 |\n|---|---|---|---|")
        for n in [0, *args.sizes]:
            extra, ids = distractors(n, index_cache)
            r = consistency(data, extra, ids)
            cells = " | ".join(
                f"{r[s][0]:.3f} ({r[s][1]} pairs, {r[s][2]} people)" for s in (1, 2, 3)
            )
            print(f"| lfw-dev + {n:,} distractors | {cells} |")
        print(f"load {load()}")
    if "rank1" not in args.skip:
        print("\n## Rank-1 identification with distractors")
        print("| distractors | weighting | 1 photo | template of 2 | template of 3 |")
        print("|---|---|---|---|---|")
        for n in args.sizes:
            extra, _ = distractors(n, index_cache)
            for weighting in args.weightings:
                r = rank1(data, extra.astype(np.float32), weighting)
                cells = " | ".join(f"{r[s][0]:.2%} ({r[s][1]})" for s in (1, 2, 3))
                print(f"| {n:,} | {weighting} | {cells} |")
        print(f"load {load()}")
    if args.copies:
        print(f"\n## Copies of one picture ({args.copies} lfw-dev photos)")
        print("| pair | dHash bits apart: min / median / max | similarity: min / median / max |")
        print("|---|---|---|")
        copies_cache = args.home / f"copies-{args.copies}.npz"
        stats, made = copies_section(data, args.copies, copies_cache)
        for kind, (bits, sims) in stats.items():
            print(
                f"| {kind} | {bits.min()} / {np.median(bits):.0f} / {bits.max()} | "
                f"{sims.min():.4f} / {np.median(sims):.4f} / {sims.max():.4f} |"
            )
        copy_kinds = [k for k in stats if k not in ("distinct photos, same person",)]
        copy_kinds = [k for k in copy_kinds if k != "nearest other person"]
        bits_c = np.concatenate([stats[k][0] for k in copy_kinds])
        sims_c = np.concatenate([stats[k][1] for k in copy_kinds])
        bits_d, sims_d = stats["distinct photos, same person"]
        print("\n| rule: bits <= B and similarity >= S | copies caught | distinct pairs taken |")
        print("|---|---|---|")
        for b in (8, 12, 16, 20, 24):
            for sim in (0.97, 0.98, 0.985):
                caught = float(((bits_c <= b) & (sims_c >= sim)).mean())
                wrong = int(((bits_d <= b) & (sims_d >= sim)).sum())
                print(f"| B {b}, S {sim} | {caught:.1%} | {wrong} of {len(bits_d)} |")
        # The second tier: nearly one vector is a copy whatever the hash says (a crop
        # moves the whole photo's hash past any bits bound distinct photos allow).
        for b, sim, alone in ((20, 0.985, 0.995), (20, 0.985, 0.993), (16, 0.985, 0.995)):
            caught = float((((bits_c <= b) & (sims_c >= sim)) | (sims_c >= alone)).mean())
            wrong = int((((bits_d <= b) & (sims_d >= sim)) | (sims_d >= alone)).sum())
            rule = f"B {b}, S {sim}, or S {alone} alone"
            print(f"| {rule} | {caught:.1%} | {wrong} of {len(bits_d)} |")
        answers, twice, still, changed = copy_rule_effect(data, made)
        print(
            f"\ncopy rule: top-5 answers of {answers} lfw-dev photos over lfw-dev + "
            f"{len(made)} made copies: {twice} showed one picture twice without the rule, "
            f"{still} with it; on lfw-dev alone (no copies) the rule changed {changed} answers"
        )
        print(f"load {load()}")


if __name__ == "__main__":
    main()
