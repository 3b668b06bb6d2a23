"""pgvector's text form ("[0.1,-2.5e-05,...]"): checked one at a time, read many at
once, and turned into binary COPY data.

Kept apart from dump.py so that the worker process reading vectors for a dump load
imports numpy and pandas only.
"""

from __future__ import annotations

import io
import math
import re
import struct

import numpy as np

FLOAT32_MAX = float(np.finfo(np.float32).max)
COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)  # flags, no extension
COPY_TRAILER = struct.pack("!h", -1)
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def check_vector(text: str, dimension: int) -> str | None:
    """Why a vector's text is unusable (not `dimension` finite float4 numbers), or None."""
    if text.startswith("[") and not text.endswith("]"):
        return "embedding has no closing ] (a truncated line)"
    if not text.startswith("[") or not text.endswith("]"):
        return "embedding is not a [..] vector"
    inner = text[1:-1]
    count = inner.count(",") + 1 if inner else 0
    if count != dimension:
        return f"embedding has {count} numbers, not {dimension}"
    for number in inner.split(","):
        if not _NUMBER.fullmatch(number.strip()):
            try:
                value = float(number)
            except ValueError:
                return f"embedding holds {number.strip()[:20]!r}, not a number"
            if not math.isfinite(value):
                return f"embedding holds {number.strip()!r}, not a finite number"
            return f"embedding holds {number.strip()[:20]!r}, not a plain number"
        if abs(float(number)) > FLOAT32_MAX:
            return f"embedding holds {number.strip()[:20]!r}, out of float4 range"
    return None


def parse_vectors(texts: list[bytes], dimension: int) -> np.ndarray | None:
    """Many vectors' texts, each without its brackets, as one (n, dimension) float32 array.

    pandas' C parser reads all the numbers in one call, several times faster than
    PostgreSQL's own vector input. The texts are joined with an "inf" between them, so
    a text with too few or too many numbers moves the separators and shows. None means
    some text is not `dimension` finite float4 numbers; check_vector tells which and why.
    """
    import pandas as pd

    try:
        column = pd.read_csv(
            io.BytesIO(b",inf,".join(texts)),
            header=None,
            lineterminator=",",
            dtype=np.float64,
            na_filter=False,
            quoting=3,  # csv.QUOTE_NONE: a quote is just a bad number
            engine="c",
        )
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None
    values = column[0].to_numpy()
    if values.size != len(texts) * (dimension + 1) - 1:
        return None
    rows = np.append(values, np.inf).reshape(len(texts), dimension + 1)
    vectors = rows[:, :dimension]
    if not np.isinf(rows[:, dimension]).all() or not (np.abs(vectors) <= FLOAT32_MAX).all():
        return None  # a separator out of place, or a number that is NaN, inf or too big
    return vectors.astype(np.float32)


def read_vectors(texts: list[bytes], dimension: int) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """The good vectors of a batch (texts without brackets), in order, and (index,
    reason) for each bad one."""
    vectors = parse_vectors(texts, dimension)
    if vectors is not None:
        return vectors, []
    bad = []
    for n, text in enumerate(texts):
        reason = check_vector("[" + text.decode("utf-8", "replace") + "]", dimension)
        if reason is not None:
            bad.append((n, reason))
    skip = {n for n, _ in bad}
    good = [text for n, text in enumerate(texts) if n not in skip]
    vectors = parse_vectors(good, dimension) if good else np.empty((0, dimension), np.float32)
    if vectors is None:  # check_vector passed each text: only a parser quirk lands here
        vectors = np.array([text.split(b",") for text in good], dtype=np.float32)
    return vectors, bad


def copy_data(
    heads: list[bytes], texts: list[bytes], dimension: int
) -> tuple[bytes, list[tuple[int, str]]]:
    """Binary COPY data for a batch of rows, and (index, reason) for rows left out.

    Each row is its other fields, already encoded (`heads`, field count first), then
    its vector, read from its text (without brackets) and sent as pgvector's binary
    form: dimension, a reserved zero, and big-endian float4s. Rows whose vector is bad
    are left out.
    """
    vectors, bad = read_vectors(texts, dimension)
    skip = {n for n, _ in bad}
    size = 4 * dimension
    stored = vectors.astype(">f4").tobytes()
    header = struct.pack("!ihh", 4 + size, dimension, 0)
    parts = [COPY_SIGNATURE]
    good = 0
    for n, head in enumerate(heads):
        if n not in skip:
            parts += (head, header, stored[good * size : (good + 1) * size])
            good += 1
    parts.append(COPY_TRAILER)
    return b"".join(parts), bad
