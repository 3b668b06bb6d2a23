"""Grouping faces into people: density over a nearest-neighbour graph, then average linkage.

Pure numpy/scipy on arrays; the store supplies vectors and neighbours, the use case
writes the result back. Nothing here touches the database.
"""

from __future__ import annotations

from collections.abc import Mapping
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


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def find(self, a: int) -> int:
        parent = self.parent
        root = a
        while parent[root] != root:
            root = parent[root]
        while parent[a] != root:
            parent[a], a = root, parent[a]
        return int(root)

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


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
    n = len(neighbours)
    linked = (sims >= edge) & (neighbours >= 0)
    core = linked.sum(axis=1) >= max(min_faces - 1, 1)
    uf = _UnionFind(n)
    rows, cols = np.nonzero(linked & core[:, None])
    for i, j in zip(rows, neighbours[rows, cols], strict=True):
        if core[j]:
            uf.union(int(i), int(j))
    comp = np.array([uf.find(i) if core[i] else UNASSIGNED for i in range(n)])
    for i in np.flatnonzero(~core):
        for j, ok in zip(neighbours[i], linked[i], strict=True):
            if ok and core[j]:
                comp[i] = comp[j]
                break
    return comp


def _shared_neighbours(members: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """Jaccard overlap of the members' nearest-neighbour sets (each set holds the face)."""
    from scipy.sparse import csr_matrix

    near = neighbours[members, :SHARED_NEIGHBOURS]
    rows = np.repeat(np.arange(len(members)), near.shape[1] + 1)
    cols = np.concatenate([members[:, None], near], axis=1).ravel()
    keep = cols >= 0
    sets = csr_matrix(
        (np.ones(int(keep.sum()), np.float32), (rows[keep], cols[keep])),
        shape=(len(members), int(max(cols.max(), members.max())) + 1),
    )
    sizes = np.asarray(sets.sum(axis=1)).ravel()
    inter = (sets @ sets.T).toarray()
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
    local = {int(face): i for i, face in enumerate(members)}
    sub_nb = np.array([[local.get(int(j), -1) for j in row] for row in neighbours[members]])
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
) -> np.ndarray:
    """A person label for each face: an existing person's id, a new label, or UNASSIGNED.

    vectors: (n, d) faces to place; neighbours: (n, k) row numbers of each face's
    nearest faces among these n (-1 for none), sims their cosine similarities.
    people: mean vectors of the people already known, by id; faces close enough
    to one join it first, and the rest are grouped among themselves. New groups
    get labels above every known id.
    """
    vectors = normalise(vectors)
    n = len(vectors)
    labels = np.full(n, UNASSIGNED, dtype=np.int64)
    if n == 0:
        return labels
    known = dict(people or {})
    if known:
        labels = _join(vectors, labels, known, params.join, candidates=None)
    free = labels == UNASSIGNED
    # Faces already placed take no part in founding new people.
    nb = np.where(free[np.maximum(neighbours, 0)] & (neighbours >= 0), neighbours, -1)
    comp = _components(nb, np.where(nb >= 0, sims, -1.0), params.edge, params.min_faces)
    comp[~free] = UNASSIGNED
    next_label = max(known, default=-1) + 1
    for component in np.unique(comp[comp != UNASSIGNED]):
        members = np.flatnonzero(comp == component)
        for group in _split(members, vectors, nb, sims, params, params.edge):
            if len(group) >= params.min_faces:
                labels[group] = next_label
                next_label += 1
    return _join_leftovers(vectors, labels, neighbours, params.join, known)


def centroids(vectors: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    """The unit mean vector of each person's faces."""
    out = {}
    for label in np.unique(labels[labels != UNASSIGNED]):
        mean = vectors[labels == label].sum(axis=0)
        out[int(label)] = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return out


def _join(
    vectors: np.ndarray,
    labels: np.ndarray,
    people: Mapping[int, np.ndarray],
    threshold: float,
    candidates: list[set[int]] | None,
) -> np.ndarray:
    """Each unassigned face joins the person whose mean face is closest, if close enough.

    A person's mean face is steadier than any one of its faces: on labelled faces
    its similarity to a face of the same person overlaps far less with other people's.
    """
    ids = np.array(list(people), dtype=np.int64)
    if len(ids) == 0:
        return labels
    means = np.vstack([people[i] for i in ids.tolist()])
    out = labels.copy()
    todo = np.flatnonzero(labels == UNASSIGNED)
    for start in range(0, len(todo), 1024):
        block = todo[start : start + 1024]
        scores = vectors[block] @ means.T
        if candidates is not None:
            allowed = np.zeros_like(scores, dtype=bool)
            position = {int(p): c for c, p in enumerate(ids)}
            for r, face in enumerate(block):
                for person in candidates[face]:
                    allowed[r, position[person]] = True
            scores = np.where(allowed, scores, -np.inf)
        best = np.argmax(scores, axis=1)
        ok = scores[np.arange(len(block)), best] >= threshold
        out[block[ok]] = ids[best[ok]]
    return out


def _join_leftovers(
    vectors: np.ndarray,
    labels: np.ndarray,
    neighbours: np.ndarray,
    threshold: float,
    known: Mapping[int, np.ndarray],
) -> np.ndarray:
    """Leftover faces join a person among their neighbours' people (two rounds)."""
    for _ in range(2):
        if not (labels == UNASSIGNED).any():
            break
        means = {**centroids(vectors, labels), **known}
        candidates = [
            {int(labels[j]) for j in row if j >= 0 and labels[j] != UNASSIGNED}
            for row in neighbours
        ]
        joined = _join(vectors, labels, means, threshold, candidates)
        if (joined == labels).all():
            break
        labels = joined
    return labels


def exact_neighbours(
    vectors: np.ndarray, k: int, block: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """Each face's k nearest other faces by cosine similarity, by blocked matrix products."""
    v = normalise(vectors)
    n = len(v)
    k = min(k, n - 1)
    idx = np.empty((n, k), dtype=np.int64)
    out = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, block):
        s = v[start : start + block] @ v.T
        rows = np.arange(len(s))
        s[rows, rows + start] = -np.inf
        part = np.argpartition(-s, k - 1, axis=1)[:, :k] if k < n else np.argsort(-s, axis=1)
        top = np.take_along_axis(s, part, 1)
        order = np.argsort(-top, axis=1)
        idx[start : start + block] = np.take_along_axis(part, order, 1)
        out[start : start + block] = np.take_along_axis(top, order, 1)
    return idx, out
