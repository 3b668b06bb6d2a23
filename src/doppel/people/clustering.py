"""Grouping faces into people: density over a nearest-neighbour graph, then average linkage.

Pure numpy/scipy on arrays; the store supplies vectors and neighbours, the use case
writes the result back. Nothing here touches the database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

UNASSIGNED = -1
# Average linkage holds a component's pairwise distances in memory: n(n-1)/2
# doubles, 32 MB at this size. Bigger components are cut at stricter edges first.
MAX_COMPONENT = 2000


# Nearest neighbours whose overlap counts for ClusterParams.shared (with the face itself).
SHARED_NEIGHBOURS = 5


@dataclass(frozen=True)
class ClusterParams:
    """Cosine-similarity cut points of the clustering, measured per model.

    edge: two faces are linked in the neighbour graph at this similarity or more.
    link: the average-linkage cut inside a linked component.
    join: a leftover face joins the person whose mean face is this close or closer.
    min_faces: the faces a group needs to become a person.
    shared: average linkage compares similarity + shared * (Jaccard overlap of the two
    faces' nearest neighbours): two faces with the same neighbours are likelier one
    person than their similarity alone says, which one threshold cannot capture.
    """

    edge: float
    link: float
    join: float
    min_faces: int = 3
    shared: float = 0.0  # weight of shared neighbours in the linkage similarity


def normalise(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norms == 0, 1, norms)


def _components(
    neighbours: np.ndarray, sims: np.ndarray, edge: float, min_faces: int
) -> np.ndarray:
    """Component of each face in the graph of core faces (UNASSIGNED: noise).

    A face is a core face when at least min_faces - 1 of its neighbours are linked
    to it, as in DBSCAN; a lone face with one close neighbour cannot chain two
    people together. Faces that are not core join the component of their
    closest linked core neighbour.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(neighbours)
    linked = (sims >= edge) & (neighbours >= 0)
    core = linked.sum(axis=1) >= max(min_faces - 1, 1)
    rows, cols = np.nonzero(linked & core[:, None])
    targets = neighbours[rows, cols]
    keep = core[targets]
    graph = coo_matrix(
        (np.ones(int(keep.sum()), np.int8), (rows[keep], targets[keep])), shape=(n, n)
    )
    _, found = connected_components(graph, directed=True, connection="weak")
    comp = np.where(core, found, UNASSIGNED).astype(np.int64)
    # A face that is not core takes its closest linked core neighbour's component
    # (neighbours are nearest first, so the first such column).
    reach = linked & core[np.maximum(neighbours, 0)] & (neighbours >= 0)
    loose = np.flatnonzero(~core & reach.any(axis=1))
    first = np.argmax(reach[loose], axis=1)
    comp[loose] = comp[neighbours[loose, first]]
    return comp


def _shared_neighbours(members: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """Jaccard overlap of the members' nearest-neighbour sets (each set holds the face)."""
    near = np.concatenate([members[:, None], neighbours[members, :SHARED_NEIGHBOURS]], axis=1)
    # Columns: the faces that occur in any set, numbered locally (-1, "none", is dropped).
    faces, local = np.unique(near, return_inverse=True)
    local = local.reshape(near.shape)
    sets = np.zeros((len(members), len(faces)), dtype=np.float32)
    np.put_along_axis(sets, local, 1.0, axis=1)
    if faces[0] < 0:
        sets[:, 0] = 0
    sizes = sets.sum(axis=1)
    inter = sets @ sets.T
    return inter / np.maximum(sizes[:, None] + sizes[None, :] - inter, 1)


def _average_linkage(
    vectors: np.ndarray, cut: float, shared: np.ndarray | None = None, weight: float = 0.0
) -> np.ndarray:
    # scipy loads on first use: `find --strangers` reads the thresholds without it.
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    if len(vectors) == 1:
        return np.zeros(1, dtype=np.int64)
    similarity = vectors.astype(np.float64) @ vectors.T.astype(np.float64)
    if shared is not None and weight:
        similarity += weight * shared
    # Every pair at the cut or closer: average linkage would join them all. Most
    # components are one clean person, and this spares them scipy's fixed cost.
    if similarity.min() >= cut:
        return np.ones(len(vectors), dtype=np.int64)
    dist = np.clip(1.0 - similarity, 0, 2)
    np.fill_diagonal(dist, 0)
    tree = linkage(squareform(dist, checks=False), "average")
    return fcluster(tree, 1.0 - cut, "distance")


def _split(
    members: np.ndarray,
    vectors: np.ndarray,
    neighbours: np.ndarray,
    sims: np.ndarray,
    params: ClusterParams,
    edge: float,
) -> list[np.ndarray]:
    """Average-linkage groups of one component; oversized ones are cut at stricter edges."""
    if len(members) <= MAX_COMPONENT or edge >= params.link:
        shared = _shared_neighbours(members, neighbours) if params.shared else None
        labels = _average_linkage(vectors[members], params.link, shared, params.shared)
        return [members[labels == label] for label in np.unique(labels)]
    # Restrict the graph to the component and relink it at a stricter edge.
    local = np.full(len(neighbours), -1, dtype=np.int64)
    local[members] = np.arange(len(members))
    rows = neighbours[members]
    sub_nb = np.where(rows >= 0, local[np.maximum(rows, 0)], -1)
    sub_sims = np.where(sub_nb >= 0, sims[members], -1.0)
    stricter = min(edge + 0.005, params.link)
    comp = _components(sub_nb, sub_sims, stricter, 1)
    groups: list[np.ndarray] = []
    for label in np.unique(comp):
        part = members[comp == label]
        groups.extend(_split(part, vectors, neighbours, sims, params, stricter))
    return groups


def cluster(
    vectors: np.ndarray,
    neighbours: np.ndarray,
    sims: np.ndarray,
    params: ClusterParams,
    people: Mapping[int, np.ndarray] | None = None,
    photos: np.ndarray | None = None,
    taken: Mapping[int, set[int]] | None = None,
) -> np.ndarray:
    """A person label for each face: an existing person's id, a new label, or UNASSIGNED.

    vectors: (n, d) faces to place; neighbours: (n, k) row numbers of each face's
    nearest faces among these n (-1 for none), sims their cosine similarities.
    people: mean vectors of the people already known, by id; faces close enough
    to one join it first, and the rest are grouped among themselves. New groups
    get labels above every known id.
    photos: a code per face, shared by the faces of one photo (-1: alone in its
    photo); taken: the codes of photos that each known person already holds. Two
    faces of one photo are two people, so no person ever gets two of them.
    """
    vectors = normalise(vectors)
    n = len(vectors)
    labels = np.full(n, UNASSIGNED, dtype=np.int64)
    if n == 0:
        return labels
    photos = np.full(n, -1, dtype=np.int64) if photos is None else np.asarray(photos)
    taken = dict(taken or {})
    known = dict(people or {})
    if known:
        labels = _join(vectors, labels, known, params.join, None, photos, taken)
    free = labels == UNASSIGNED
    # Faces already placed take no part in founding new people.
    nb = np.where(free[np.maximum(neighbours, 0)] & (neighbours >= 0), neighbours, -1)
    comp = _components(nb, np.where(nb >= 0, sims, -1.0), params.edge, params.min_faces)
    comp[~free] = UNASSIGNED
    next_label = max(known, default=-1) + 1
    order = np.argsort(comp, kind="stable")
    bounds = np.flatnonzero(np.diff(comp[order])) + 1
    for members in np.split(order, bounds):
        if comp[members[0]] == UNASSIGNED or len(members) < params.min_faces:
            continue
        for group in _split(members, vectors, nb, sims, params, params.edge):
            for part in _apart(group, vectors, photos, params.link):
                if len(part) >= params.min_faces:
                    labels[part] = next_label
                    next_label += 1
    return _join_leftovers(vectors, labels, neighbours, params.join, known, photos, taken)


def photo_codes(keys: Sequence[str] | np.ndarray) -> np.ndarray:
    """A code per face from its photo's key: shared by the faces of one photo, -1 for a
    face alone in its photo (most are, and they need no checking)."""
    if len(keys) == 0:
        return np.empty(0, dtype=np.int64)
    _, inverse, counts = np.unique(
        np.asarray(keys, dtype=object), return_inverse=True, return_counts=True
    )
    return np.where(counts[inverse] > 1, inverse, -1).astype(np.int64)


def _apart(members: np.ndarray, vectors: np.ndarray, photos: np.ndarray, cut: float) -> list:
    """A group as parts that hold no two faces of one photo.

    Most groups have none and stay whole. A group that does is grouped again by
    average linkage at the same cut that never joins two parts holding faces of one
    photo: two people that plain linkage ran together come apart along their faces.
    """
    codes = photos[members]
    multi = codes[codes >= 0]
    if len(multi) == len(np.unique(multi)):
        return [members]
    labels = constrained_linkage(vectors[members], codes, cut)
    return [members[labels == label] for label in np.unique(labels)]


def constrained_linkage(
    vectors: np.ndarray, photos: np.ndarray, cut: float, apart: np.ndarray | None = None
) -> np.ndarray:
    """Average linkage down to the cut, never joining two groups that share a photo code
    (or that hold two faces marked apart: an (m, m) bool matrix).

    O(m^3) in the worst case: meant for one person's faces (tens to hundreds).
    """
    m = len(vectors)
    sim = vectors.astype(np.float64) @ vectors.T.astype(np.float64)
    same = (photos[:, None] == photos[None, :]) & (photos[:, None] >= 0)
    apart = same | (apart if apart is not None else False)
    size = np.ones(m)
    alive = np.ones(m, dtype=bool)
    label = np.arange(m)
    while True:
        score = np.where(apart | ~alive[:, None] | ~alive[None, :], -np.inf, sim)
        np.fill_diagonal(score, -np.inf)
        flat = int(np.argmax(score))
        i, j = divmod(flat, m)
        if not score[i, j] >= cut:
            break
        sim[i, :] = (size[i] * sim[i, :] + size[j] * sim[j, :]) / (size[i] + size[j])
        sim[:, i] = sim[i, :]
        apart[i, :] |= apart[j, :]
        apart[:, i] = apart[i, :]
        size[i] += size[j]
        alive[j] = False
        label[label == j] = i
    return label


def centroids(vectors: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    """The unit mean vector of each person's faces."""
    placed = np.flatnonzero(labels != UNASSIGNED)
    if len(placed) == 0:
        return {}
    order = placed[np.argsort(labels[placed], kind="stable")]
    sorted_labels = labels[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_labels)) + 1])
    sums = np.add.reduceat(vectors[order], starts, axis=0)
    norms = np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    means = sums / norms
    return {int(label): means[k] for k, label in enumerate(sorted_labels[starts])}


def _holders(
    labels: np.ndarray, photos: np.ndarray, taken: Mapping[int, set[int]]
) -> dict[int, set[int]]:
    """Photo code -> the people holding one of its faces (known people and this run's)."""
    out: dict[int, set[int]] = {}
    for person, codes in taken.items():
        for code in codes:
            out.setdefault(code, set()).add(person)
    placed = np.flatnonzero((photos >= 0) & (labels != UNASSIGNED))
    for face in placed:
        out.setdefault(int(photos[face]), set()).add(int(labels[face]))
    return out


def _join(
    vectors: np.ndarray,
    labels: np.ndarray,
    people: Mapping[int, np.ndarray],
    threshold: float,
    candidates: list[set[int]] | None,
    photos: np.ndarray,
    taken: Mapping[int, set[int]],
) -> np.ndarray:
    """Each unassigned face joins the person whose mean face is closest, if close enough.

    A person's mean face is steadier than any one of its faces: on labelled faces
    its similarity to a face of the same person overlaps far less with other people's.
    A face never joins a person that holds a face of its photo; when two faces of one
    photo would join the same person, the closer one does.
    """
    ids = np.array(list(people), dtype=np.int64)
    if len(ids) == 0:
        return labels
    means = np.vstack([people[i] for i in ids.tolist()])
    position = {int(p): c for c, p in enumerate(ids)}
    holders = _holders(labels, photos, taken)
    out = labels.copy()
    todo = np.flatnonzero(labels == UNASSIGNED)
    for start in range(0, len(todo), 1024):
        block = todo[start : start + 1024]
        scores = vectors[block] @ means.T
        if candidates is not None:
            allowed = np.zeros_like(scores, dtype=bool)
            for r, face in enumerate(block):
                for person in candidates[face]:
                    allowed[r, position[person]] = True
            scores = np.where(allowed, scores, -np.inf)
        multi = [(r, int(photos[face])) for r, face in enumerate(block) if photos[face] >= 0]
        for r, code in multi:
            for person in holders.get(code, ()):
                if person in position:
                    scores[r, position[person]] = -np.inf
        best = np.argmax(scores, axis=1)
        ok = scores[np.arange(len(block)), best] >= threshold
        claims = sorted(((scores[r, best[r]], r, code) for r, code in multi if ok[r]), reverse=True)
        for _, r, code in claims:
            held = holders.setdefault(code, set())
            person = int(ids[best[r]])
            if person in held:
                ok[r] = False
            else:
                held.add(person)
        out[block[ok]] = ids[best[ok]]
    return out


def _join_leftovers(
    vectors: np.ndarray,
    labels: np.ndarray,
    neighbours: np.ndarray,
    threshold: float,
    known: Mapping[int, np.ndarray],
    photos: np.ndarray,
    taken: Mapping[int, set[int]],
) -> np.ndarray:
    """Leftover faces join a person among their neighbours' people (two rounds)."""
    for _ in range(2):
        left = labels == UNASSIGNED
        if not left.any():
            break
        means = {**centroids(vectors, labels), **known}
        near = np.where(neighbours >= 0, labels[np.maximum(neighbours, 0)], UNASSIGNED)
        candidates: list[set[int]] = [set() for _ in range(len(labels))]
        for face in np.flatnonzero(left):
            candidates[face] = {int(p) for p in near[face] if p != UNASSIGNED}
        joined = _join(vectors, labels, means, threshold, candidates, photos, taken)
        if (joined == labels).all():
            break
        labels = joined
    return labels


def same_photo_violations(labels: np.ndarray, photos: np.ndarray) -> int:
    """Faces in a person that already holds another face of their photo (0 is right)."""
    placed = (labels != UNASSIGNED) & (photos >= 0)
    pairs = np.stack([labels[placed], photos[placed]], axis=1)
    if len(pairs) == 0:
        return 0
    return int(len(pairs) - len(np.unique(pairs, axis=0)))


# Large galleries: the k-th largest similarity of a row among this many sampled
# columns bounds the row's true k-th largest from below, so only the few pairs at or
# above the bound are kept and sorted.
SAMPLED_COLUMNS = 4096


def exact_neighbours(
    vectors: np.ndarray, k: int, block: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Each face's k nearest other faces by cosine similarity, by blocked matrix products.

    A block of 512 rows against 70,000 faces is 143 MB of similarities: the products
    run at the BLAS's full speed while the memory stays small. Large galleries go
    through `_bounded_neighbours`, which gives the same neighbours for half the work.
    """
    v = normalise(vectors)
    n = len(v)
    k = min(k, n - 1)
    if n > 4 * SAMPLED_COLUMNS and k < SAMPLED_COLUMNS // 4:
        return _bounded_neighbours(v, k)
    idx = np.empty((n, k), dtype=np.int64)
    out = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, block):
        s = v[start : start + block] @ v.T
        rows = np.arange(len(s))
        s[rows, rows + start] = -np.inf
        part = np.argpartition(s, n - k, axis=1)[:, n - k :]
        top = np.take_along_axis(s, part, 1)
        order = np.argsort(-top, axis=1)
        idx[start : start + block] = np.take_along_axis(part, order, 1)
        out[start : start + block] = np.take_along_axis(top, order, 1)
    return idx, out


def _bounded_neighbours(v: np.ndarray, k: int, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of unit vectors, each pair's product computed once.

    Selecting the top k of 70,000 columns (np.argpartition) costs more than the
    products themselves. Instead each row's k-th similarity is bounded from below on
    a sample of columns; the blocks of the upper triangle are then computed once,
    and each product kept for its row and its column where it reaches their bounds
    (a few hundred per row), to be sorted when the row's block is complete.
    """
    n = len(v)
    sample = np.sort(np.random.default_rng(0).choice(n, SAMPLED_COLUMNS, replace=False))
    bound = np.empty(n, dtype=np.float32)
    for start in range(0, n, block):
        s = v[start : start + block] @ v[sample].T
        own = np.flatnonzero((sample >= start) & (sample < start + len(s)))
        s[sample[own] - start, own] = -np.inf
        bound[start : start + len(s)] = np.partition(s, SAMPLED_COLUMNS - k, axis=1)[
            :, SAMPLED_COLUMNS - k
        ]
    idx = np.empty((n, k), dtype=np.int64)
    out = np.empty((n, k), dtype=np.float32)
    starts = list(range(0, n, block))
    pending: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {s: [] for s in starts}
    for i in starts:
        rows_i = slice(i, min(i + block, n))
        for j in starts[starts.index(i) :]:
            rows_j = slice(j, min(j + block, n))
            s = v[rows_i] @ v[rows_j].T
            if i == j:
                np.fill_diagonal(s, -np.inf)
            # flatnonzero and divmod: several times faster than a 2-d nonzero.
            r, c = np.divmod(np.flatnonzero(s >= bound[rows_i, None]), s.shape[1])
            pending[i].append((r + i, c + j, s[r, c]))
            if i != j:
                c, r = np.divmod(np.flatnonzero(s >= bound[None, rows_j]), s.shape[1])
                pending[j].append((r + j, c + i, s[c, r]))
        rows, cols, values = (np.concatenate(part) for part in zip(*pending.pop(i), strict=True))
        order = np.lexsort((-values, rows))
        rows, cols, values = rows[order], cols[order], values[order]
        rank = np.arange(len(rows)) - np.searchsorted(rows, rows)
        keep = rank < k
        idx[rows[keep], rank[keep]] = cols[keep]
        out[rows[keep], rank[keep]] = values[keep]
    return idx, out
