"""Faces rows checked and packed, in batches, as binary COPY data for the sender.

The reader (doppel.dump.rows.Reader) hands each row's fields here as the dump's
bytes; Batcher checks them and passes full batches to the sender
(doppel.dump.loader.Sender), which stores them.
"""

from __future__ import annotations

import struct
from typing import Protocol

from doppel.dump.report import BadRow, LoadReport
from doppel.errors import BadDump, Remedy
from doppel.store.vectors import check_vector, copy_data
from doppel.types import RACES, SEXES, Gallery

DIMENSION = 512
BATCH_ROWS = 5000
# The first batches are smaller, so that the server has work sooner.
FIRST_BATCH_ROWS = 500


def check_row(source: str | None, age: str | None, sex: str | None, race: str | None) -> str | None:
    """Why a row's non-vector fields are unusable, or None."""
    if not source:
        return "image_key is empty"
    if "\x00" in source:
        return "image_key holds a NUL character"
    if age is None:
        return "age is missing"
    try:
        years = int(age)
    except ValueError:
        return f"age {age[:20]!r} is not an integer"
    if not -(2**31) <= years < 2**31:
        return f"age {age[:20]!r} is out of range"
    if sex not in SEXES:
        return f"sex {str(sex)[:20]!r} is not F or M"
    if race not in RACES:
        return f"race {str(race)[:30]!r} is not one of {', '.join(sorted(RACES))}"
    return None


_SEX_FIELDS = {sex.encode(): struct.pack("!i", 1) + sex.encode() for sex in SEXES}
_RACE_FIELDS = {race.encode(): struct.pack("!i", len(race)) + race.encode() for race in RACES}


class Sender(Protocol):
    """What stores the batches (doppel.dump.loader.Sender, on a thread of its own)."""

    queued: int  # rows handed over and not yet stored

    def send(self, first_line: int, last_line: int, count: int, data: bytes) -> None: ...

    def close(self) -> None: ...


# A checked row waiting for its vector: (line, image_key).
_Row = tuple[int, str]


class Batcher:
    """Checks rows and hands them, in batches, to a Sender that stores them.

    Each row is checked as the dump is read, and each batch's vectors are read when
    the batch is full (simdjson holds the GIL, so another thread would not overlap
    with this one, and a worker process costs more to feed than the parse itself).
    The sender thread alone uses the connection until close(), so the server stores
    one batch while the next is read.
    """

    def __init__(
        self,
        sender: Sender,
        report: LoadReport,
        strict: bool,
        gallery: Gallery,
        known: set[str],
    ) -> None:
        self.report = report
        self.strict = strict
        self.known = known  # image_keys in the gallery or already taken from this dump
        self.encoding = "utf-8"  # the dump's, from its SET client_encoding
        self.rows: list[_Row] = []
        self.heads: list[bytes] = []  # each row's binary COPY fields before the vector
        self.texts: list[bytes] = []
        self.row_head = struct.pack("!hii", 6, 4, gallery.id)
        self.batch_rows = min(FIRST_BATCH_ROWS, BATCH_ROWS)  # doubles up to BATCH_ROWS
        self.sender = sender

    def bad(self, line: int, reason: str) -> None:
        if self.strict:
            # Rows before this one may have bad vectors: the first bad row is the one named.
            self.flush()
            self.close()
            raise _strict_error(line, reason)
        self.report.bad_rows.append(BadRow(line, reason))

    def add(
        self, line: int, raw_key: bytes, age: bytes, sex: bytes, race: bytes, vector: bytes
    ) -> None:
        """One row, each field as the dump's bytes (the key with no escapes left)."""
        self.report.rows_read += 1
        try:
            key = raw_key.decode(self.encoding)
        except UnicodeDecodeError:
            self.bad(line, f"image_key is not valid {self.encoding}")
            return
        if self.encoding != "utf-8":
            raw_key = key.encode("utf-8")  # the connection speaks UTF-8
        sex_field = _SEX_FIELDS.get(sex)
        race_field = _RACE_FIELDS.get(race)
        years = int(age) if age.isdigit() and len(age) < 10 else None
        if sex_field is None or race_field is None or years is None or not key or "\x00" in key:
            if not age.isdigit():
                try:
                    age = str(int(age)).encode()
                except ValueError:
                    age = b"?" + age
            reason = check_row(
                key,
                age.decode("utf-8", "replace"),
                sex.decode("utf-8", "replace"),
                race.decode("utf-8", "replace"),
            )
            if reason is not None:
                self.bad(line, reason)
                return
            years, sex_field, race_field = int(age), _SEX_FIELDS[sex], _RACE_FIELDS[race]
        if vector[:1] != b"[" or vector[-1:] != b"]":
            reason = check_vector(vector.decode("utf-8", "replace"), DIMENSION)
            self.bad(line, reason or "embedding is not a [..] vector")
            return
        if key in self.known:
            self.report.rows_present += 1
            return
        self.known.add(key)
        head = b"".join(
            (
                self.row_head,
                struct.pack("!i", len(raw_key)),
                raw_key,
                struct.pack("!ii", 4, years),
                sex_field,
                race_field,
            )
        )
        self.rows.append((line, key))
        self.heads.append(head)
        self.texts.append(vector)
        if len(self.rows) >= self.batch_rows:
            self.flush()
            self.batch_rows = min(2 * self.batch_rows, BATCH_ROWS)

    @property
    def pending(self) -> int:
        """Rows accepted here but not yet stored."""
        return len(self.rows) + self.sender.queued

    def flush(self) -> None:
        """Read the batch's vectors and hand its COPY data to the sender."""
        if not self.rows:
            return
        rows, heads, texts = self.rows, self.heads, self.texts
        self.rows, self.heads, self.texts = [], [], []
        data, bad = copy_data(heads, texts, DIMENSION)
        for n, reason in bad:
            self.bad(rows[n][0], reason)
            self.known.discard(rows[n][1])  # a later row with this key may load
        if len(rows) > len(bad):
            self.sender.send(rows[0][0], rows[-1][0], len(rows) - len(bad), data)

    def close(self) -> None:
        """Wait for the sender to store what it has (the connection is the caller's again)."""
        self.sender.close()


def _strict_error(line: int, reason: str) -> BadDump:
    return BadDump(f"line {line}: {reason}; nothing was loaded", remedy=Remedy.SKIP_BAD_ROWS)
