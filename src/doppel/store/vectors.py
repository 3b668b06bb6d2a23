"""pgvector's text form ("[0.1,-2.5e-05,...]"): checked one at a time, read many at
once, and turned into binary COPY data.
"""

from __future__ import annotations

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
    """Many vectors' texts as one (n, dimension) float32 array; None if any is unusable.

    pgvector's text form is a JSON array, so simdjson reads each one, several times
    faster than PostgreSQL's own vector input. A text must hold exactly `dimension`
    numbers at its top level (a nested array would be flattened by as_buffer, so the
    top-level count is checked too). None means some text is not `dimension` finite
    float4 numbers, or is written in a way JSON does not allow (".5", "+1"):
    check_vector tells which and why.
    """
    import simdjson

    parse = simdjson.Parser().parse
    numbers = bytearray()
    try:
        for text in texts:
            array = parse(text)
            if not isinstance(array, simdjson.Array) or len(array) != dimension:
                return None
            numbers += array.as_buffer(of_type="d")
            del array  # the parser is reused only once nothing refers to its last document
    except (ValueError, TypeError, RuntimeError):
        return None
    if len(numbers) != len(texts) * dimension * 8:
        return None
    vectors = np.frombuffer(numbers, np.float64).reshape(len(texts), dimension)
    if vectors.size and not -FLOAT32_MAX <= vectors.min() <= vectors.max() <= FLOAT32_MAX:
        return None  # too big for a float4
    return vectors.astype(np.float32)


def read_vectors(texts: list[bytes], dimension: int) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """The good vectors of a batch of texts ("[..]"), in order, and (index, reason) for
    each bad one."""
    vectors = parse_vectors(texts, dimension)
    if vectors is not None:
        return vectors, []
    bad = []
    for n, text in enumerate(texts):
        reason = check_vector(text.decode("utf-8", "replace"), dimension)
        if reason is not None:
            bad.append((n, reason))
    skip = {n for n, _ in bad}
    good = [text for n, text in enumerate(texts) if n not in skip]
    vectors = parse_vectors(good, dimension) if good else np.empty((0, dimension), np.float32)
    if vectors is None:  # check_vector passed each text: only a parser quirk lands here
        vectors = np.array([text[1:-1].split(b",") for text in good], dtype=np.float32)
    return vectors, bad


# pgvector's binary element types: float4 for vector, float2 for halfvec, big-endian.
BINARY_ELEMENTS = {"vector": ">f4", "halfvec": ">f2"}


def binary_values(vectors: np.ndarray, storage: str = "vector") -> tuple[bytes, memoryview, int]:
    """pgvector's binary form of each row of `vectors`, as pgvector's own send functions write it.

    A value is a header (the dimension and a reserved zero, two big-endian uint16s)
    then the elements. All rows share the header, so this returns it once, with the
    elements of all rows in one buffer and the byte size of one row's elements: row n
    is header + data[n * size : (n + 1) * size].
    """
    element = BINARY_ELEMENTS[storage]
    dimension = vectors.shape[1]
    size = np.dtype(element).itemsize * dimension
    return struct.pack("!HH", dimension, 0), memoryview(vectors.astype(element).tobytes()), size


def copy_data(
    heads: list[bytes], texts: list[bytes], dimension: int
) -> tuple[bytes, list[tuple[int, str]]]:
    """Binary COPY data for a batch of rows, and (index, reason) for rows left out.

    Each row is its other fields, already encoded (`heads`, field count first), then
    its vector, read from its text ("[..]") and sent in pgvector's binary form (see
    binary_values) after its length. Rows whose vector is bad are left out.
    """
    vectors, bad = read_vectors(texts, dimension)
    if bad:
        skip = {n for n, _ in bad}
        heads = [head for n, head in enumerate(heads) if n not in skip]
    value_header, stored, size = binary_values(vectors)
    header = struct.pack("!i", len(value_header) + size) + value_header
    parts: list[bytes | memoryview] = [COPY_SIGNATURE]
    for n, head in enumerate(heads):
        parts += (head, header, stored[n * size : (n + 1) * size])
    parts.append(COPY_TRAILER)
    return b"".join(parts), bad
