"""pg_dump's custom archives (`pg_dump -Fc`), read without pg_restore.

A custom archive is read here rather than by pg_restore when it is compressed with
gzip or not at all: its table of contents becomes the SQL that pg_restore would
print (each entry's definition), and its data blocks are inflated by a thread with
ISA-L. pg_restore spends more CPU inflating, and pipes its output. Other archives
(lz4, zstd, versions this reader does not know) go to pg_restore.
"""

from __future__ import annotations

import io
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

from doppel.dump.streams import READ_BUFFER, ZLIB_WBITS, Inflating, lines_of
from doppel.errors import BadDump

OLDEST = (1, 12, 0)  # PostgreSQL 9.0
NEWEST = (1, 16, 0)  # PostgreSQL 17 and 18
CUSTOM_FORMAT = 1
NO_COMPRESSION, GZIP = 0, 1
NO_DATA = 3  # a table of contents entry's data state: it has no data block
DATA_BLOCK, LARGE_OBJECTS_BLOCK = 1, 3
MAX_STRING = 64 << 20
SKIPPED = frozenset({b"DATABASE", b"DATABASE PROPERTIES"})  # pg_restore skips them without -C
LARGE_OBJECT_LIST = b"BLOB METADATA"


@dataclass(frozen=True)
class ArchiveHead:
    """What the first bytes of a custom archive say about how it is written."""

    version: tuple[int, int, int]
    int_size: int
    offset_size: int
    compression: int  # NO_COMPRESSION or GZIP; anything else is left to pg_restore

    @classmethod
    def parse(cls, head: bytes) -> ArchiveHead | None:
        """The head of an archive doppel can read itself, or None (pg_restore's job)."""
        if len(head) < 16 or head[:5] != b"PGDMP":
            return None
        version = (head[5], head[6], head[7])
        int_size, offset_size, fmt = head[8], head[9], head[10]
        if not OLDEST <= version <= NEWEST or fmt != CUSTOM_FORMAT:
            return None
        if not 1 <= int_size <= 8 or not 1 <= offset_size <= 8:
            return None
        if version >= (1, 15, 0):
            compression = head[11]
        else:  # a compression level, an int: sign byte, then int_size bytes
            level = int.from_bytes(head[12 : 12 + int_size], "little")
            compression = NO_COMPRESSION if level == 0 else GZIP
        if compression not in (NO_COMPRESSION, GZIP):
            return None
        return cls(version, int_size, offset_size, compression)


@dataclass(frozen=True)
class _Entry:
    """One entry of the archive's table of contents."""

    dump_id: int
    desc: bytes
    definition: bytes
    copy_statement: bytes
    has_data: bool


class _Archive:
    """Reads a custom archive's fields from a stream, checking each length."""

    def __init__(self, stream: IO[bytes], path: Path, head: ArchiveHead) -> None:
        self.stream = stream
        self.path = path
        self.head = head

    def damaged(self, what: str) -> BadDump:
        return BadDump(f"{self.path}: the custom archive is damaged ({what})")

    def read(self, size: int) -> bytes:
        data = self.stream.read(size)
        if len(data) != size:
            raise self.damaged("it ends early")
        return data

    def byte(self) -> int:
        return self.read(1)[0]

    def int(self) -> int:
        sign, value = self.byte(), int.from_bytes(self.read(self.head.int_size), "little")
        return -value if sign else value

    def string(self) -> bytes | None:
        size = self.int()
        if size < 0:
            return None
        if size > MAX_STRING:
            raise self.damaged(f"a string of {size} bytes")
        return self.read(size)

    def skip_head(self) -> None:
        self.read(11)  # magic, version, int size, offset size, format
        if self.head.version >= (1, 15, 0):
            self.byte()
        else:
            self.int()
        for _ in range(7):  # the time it was made
            self.int()
        self.string()  # database name
        if self.head.version >= (1, 10, 0):
            self.string()  # server version
            self.string()  # pg_dump version

    def entry(self) -> _Entry:
        version = self.head.version
        dump_id = self.int()
        had_dumper = self.int()
        self.string()  # table oid
        self.string()  # oid
        self.string()  # tag
        desc = self.string() or b""
        self.int()  # section
        definition = self.string() or b""
        self.string()  # drop statement
        copy_statement = self.string() or b""
        self.string()  # schema
        self.string()  # tablespace
        if version >= (1, 14, 0):
            self.string()  # table access method
        if version >= (1, 16, 0):
            self.int()  # relkind
        self.string()  # owner
        self.string()  # "false": no OIDs
        while self.string() is not None:  # dependencies, up to a NULL
            pass
        state = self.byte()  # and the data's offset, set or not
        self.read(self.head.offset_size)
        has_data = bool(had_dumper) and state != NO_DATA
        return _Entry(dump_id, desc, definition, copy_statement, has_data)

    def entries(self) -> list[_Entry]:
        self.skip_head()
        count = self.int()
        if not 0 <= count <= 10_000_000:
            raise self.damaged(f"{count} table of contents entries")
        return [self.entry() for _ in range(count)]


class _Chunks(io.RawIOBase):
    """The payload of one data block: length-prefixed chunks up to an empty one."""

    def __init__(self, archive: _Archive) -> None:
        self.archive = archive
        self.left = 0
        self.done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        """Fill the buffer from as many chunks as it takes (pg_dump's are about 4 kB;
        one zlib call per chunk would cost more than the inflating)."""
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view):
            if not self.left:
                if self.done:
                    break
                self.left = self.archive.int()
                if self.left < 0:
                    raise self.archive.damaged(f"a data chunk of {self.left} bytes")
                self.done = self.left == 0
                continue
            want = min(len(view) - filled, self.left)
            n = self.archive.stream.readinto(view[filled : filled + want])  # type: ignore[attr-defined]
            if not n:
                raise self.archive.damaged("it ends early")
            self.left -= n
            filled += n
        return filled

    def skip(self) -> None:
        while self.read(READ_BUFFER):
            pass


def archive_lines(stream: IO[bytes], path: Path, head: ArchiveHead) -> Generator[bytes, None, None]:
    """The SQL that `pg_restore -f -` would print for a custom archive, as lines: each
    entry's definition, and for each table's data its COPY statement and rows.

    Nothing is run; the caller reads these lines as it reads a plain dump. Data
    blocks follow the table of contents in its order, as pg_dump writes them. Owners
    (ALTER ... OWNER TO) are left out, and large objects are listed but not read.
    Close the generator when stopping early: that stops its inflating thread.
    """
    archive = _Archive(stream, path, head)
    for entry in archive.entries():
        if entry.desc in SKIPPED:
            continue
        if entry.desc == LARGE_OBJECT_LIST:  # its definition is the objects' oids
            for oid in entry.definition.split():
                yield b"SELECT pg_catalog.lo_create('%s');\n" % oid
        elif entry.definition:
            yield from entry.definition.splitlines(keepends=True)
            yield b"\n"
        if not entry.has_data:
            continue
        kind, dump_id = archive.byte(), archive.int()
        if dump_id != entry.dump_id:
            raise archive.damaged(f"data block {dump_id} where {entry.dump_id} belongs")
        if kind == LARGE_OBJECTS_BLOCK:  # large objects: each an oid, then chunks
            while archive.int():
                _Chunks(archive).skip()
            continue
        if kind != DATA_BLOCK:
            raise archive.damaged(f"a data block of unknown type {kind}")
        yield from entry.copy_statement.splitlines(keepends=True)
        chunks = _Chunks(archive)
        if head.compression == NO_COMPRESSION:
            yield from lines_of(io.BufferedReader(chunks, READ_BUFFER))
            continue
        inflating = Inflating(cast(IO[bytes], chunks), path, ZLIB_WBITS)
        try:
            yield from lines_of(io.BufferedReader(inflating, READ_BUFFER))
        finally:
            inflating.close()
