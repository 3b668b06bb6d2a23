"""Reading a dump file: its lines, gzip inflated ahead, and pg_dump's custom archives.

A custom archive (`pg_dump -Fc`) is read here rather than by pg_restore when it is
compressed with gzip or not at all: its table of contents becomes the SQL that
pg_restore would print (each entry's definition), and its data blocks are inflated
by a thread with ISA-L. pg_restore spends more CPU inflating, and pipes its output.
Other archives (lz4, zstd, versions this reader does not know) go to pg_restore.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import queue
import subprocess
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, cast

from isal import isal_zlib

from doppel.errors import BadDump
from doppel.store.db import tool_path

# Large reads: each one lets the sender thread take the GIL, and getting it back costs.
READ_BUFFER = 8 << 20
# A faces row is about 6 kB of text; a longer line is refused, so memory stays bounded.
MAX_LINE = 16 << 20

GZIP_WBITS = 16 + isal_zlib.MAX_WBITS  # a gzip header and trailer around deflate data
_INFLATE_ERROR = cast(type[Exception], isal_zlib.IsalError)  # the stub says otherwise


class Inflating(io.RawIOBase):
    """Deflated data (gzip members, or one zlib stream), inflated ahead by a thread.

    ISA-L inflates about 1.4 times as fast as zlib and lets go of the GIL while it
    works, so the dump is inflated on one core while it is read on the other
    (GzipFile would do both in turn, in small steps). Each call yields at most
    OUT_MAX bytes, so memory stays flat even for a gzip bomb. Damaged or cut-off
    data is a BadDump at the point where it is read.
    """

    IN_CHUNK = 1 << 20
    OUT_MAX = 4 << 20

    def __init__(self, compressed: IO[bytes], path: Path, wbits: int = GZIP_WBITS) -> None:
        self.compressed = compressed
        self.path = path
        self.wbits = wbits
        self.chunks: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=8)
        self.pending = memoryview(b"")
        self.finished = False
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._inflate, name="doppel-gunzip", daemon=True)
        self.thread.start()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self.pending:
            if self.finished:
                return 0
            item = self.chunks.get()
            if isinstance(item, BaseException):
                self.finished = True
                raise item
            if not item:
                self.finished = True
                return 0
            self.pending = memoryview(item)
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n

    def close(self) -> None:
        self.stopping.set()
        while self.thread.is_alive():  # unblock a put() so that the thread sees the stop
            with contextlib.suppress(queue.Empty):
                self.chunks.get(timeout=0.05)
        super().close()

    def _put(self, item: bytes | BaseException) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(queue.Full):
                self.chunks.put(item, timeout=0.05)
                return

    def _inflate(self) -> None:
        inflater = isal_zlib.decompressobj(self.wbits)
        fresh = True  # no byte of the current gzip member seen yet
        try:
            while not self.stopping.is_set() and (data := self.compressed.read(self.IN_CHUNK)):
                while data or not fresh:
                    if fresh:
                        data = data.lstrip(b"\x00")  # zero padding between members is allowed
                        if not data:
                            break
                        fresh = False
                    out = inflater.decompress(data, self.OUT_MAX)
                    if out:
                        self._put(out)
                    data = inflater.unconsumed_tail
                    if inflater.eof:  # a member ended; another may follow
                        data = inflater.unused_data
                        inflater, fresh = isal_zlib.decompressobj(self.wbits), True
                    elif not data and len(out) < self.OUT_MAX:
                        break  # all input taken and no output held back: read more
            if not fresh:
                raise BadDump(f"{self.path}: the compressed data ends early (a cut-off file?)")
            self._put(b"")
        except _INFLATE_ERROR as exc:
            self._put(BadDump(f"{self.path}: compressed data is damaged ({exc})"))
        except BaseException as exc:  # noqa: BLE001 - raised again where the data is read
            self._put(exc)


def lines_of(stream: IO[bytes]) -> Iterator[bytes]:
    """The stream's lines, each with its newline; one over MAX_LINE is a BadDump."""
    for number, line in enumerate(iter(partial(stream.readline, MAX_LINE), b""), 1):
        if len(line) == MAX_LINE and not line.endswith(b"\n"):
            raise BadDump(
                f"line {number} is longer than {MAX_LINE >> 20} MiB: this is not a dump of faces"
            )
        yield line


# pg_dump's custom archive ---------------------------------------------------------

ZLIB_WBITS = isal_zlib.MAX_WBITS  # a zlib header and trailer around deflate data
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


# Opening a dump: plain, gzipped, custom or tar ------------------------------------


class _Counting(io.RawIOBase):
    """A read-only file wrapper that counts the bytes read, for progress."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = self.raw.readinto(buffer)  # type: ignore[attr-defined]
        self.count += n or 0
        return n or 0


@dataclass
class DumpSource:
    """The dump as plain SQL lines (bytes), however it was stored."""

    format: str
    lines: Iterator[bytes]
    counter: _Counting
    total: int
    close: Callable[[], None]


def _head(path: Path) -> tuple[bytes, bool]:
    """The first 512 bytes of the dump (inflated if gzipped), and whether it was."""
    with path.open("rb") as handle:
        head = handle.read(512)
        gzipped = head[:2] == b"\x1f\x8b"
        if gzipped:
            handle.seek(0)
            try:
                head = gzip.GzipFile(fileobj=handle).read(512)
            except (OSError, EOFError) as exc:
                raise BadDump(f"{path}: gzip data is damaged ({exc})") from exc
    return head, gzipped


def _format(head: bytes, gzipped: bool) -> str:
    if head[:5] == b"PGDMP":
        kind = "custom"
    elif head[257:262] == b"ustar":
        kind = "tar"
    else:
        kind = "plain"
    return kind + (" (gzip)" if gzipped else "")


def open_dump(path: Path) -> DumpSource:
    if not path.is_file():
        raise BadDump(f"{path}: no such file")
    head, gzipped = _head(path)
    kind = _format(head, gzipped)
    raw = path.open("rb", buffering=0)
    counter = _Counting(raw)
    stream: IO[bytes] = io.BufferedReader(counter, READ_BUFFER)
    close = raw.close
    if kind.endswith("(gzip)"):
        inflating = Inflating(stream, path)
        stream = io.BufferedReader(inflating, READ_BUFFER)

        def close() -> None:
            inflating.close()
            raw.close()

    total = path.stat().st_size
    if kind.startswith("plain"):
        return DumpSource(kind, lines_of(stream), counter, total, close)
    archive = ArchiveHead.parse(head) if kind.startswith("custom") else None
    if archive is not None:
        lines = archive_lines(stream, path, archive)

        def close_archive() -> None:
            lines.close()  # its inflating thread first: it reads from the file
            close()

        return DumpSource(kind, lines, counter, total, close_archive)
    return _restore(kind, stream, counter, total, close)


def _widen_pipe(pipe: IO[bytes]) -> None:
    """Let a pipe hold 1 MiB (Linux), so that doppel and pg_restore trade fewer, larger
    reads and writes than the 64 KiB default allows."""
    with contextlib.suppress(ImportError, AttributeError, OSError):  # not Linux, or capped
        import fcntl

        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)


def _restore(
    kind: str, stream: IO[bytes], counter: _Counting, total: int, close_raw: Callable[[], None]
) -> DumpSource:
    """Turn a custom or tar archive into plain SQL with pg_restore (it connects nowhere)."""
    stderr = io.BytesIO()
    proc = subprocess.Popen(
        [str(tool_path("pg_restore")), "-f", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=READ_BUFFER,
    )
    assert proc.stdin and proc.stdout and proc.stderr
    _widen_pipe(proc.stdin)
    _widen_pipe(proc.stdout)

    def feed() -> None:
        try:
            while chunk := stream.read(1 << 20):
                proc.stdin.write(chunk)  # type: ignore[union-attr]
        except (BrokenPipeError, OSError, EOFError):
            pass
        finally:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # type: ignore[union-attr]

    def drain() -> None:
        stderr.write(proc.stderr.read())  # type: ignore[union-attr]

    threads = [
        threading.Thread(target=feed, daemon=True),
        threading.Thread(target=drain, daemon=True),
    ]
    for thread in threads:
        thread.start()

    def lines() -> Iterator[bytes]:
        yield from lines_of(proc.stdout)  # type: ignore[arg-type]
        code = proc.wait()
        for thread in threads:
            thread.join()
        if code != 0:
            message = stderr.getvalue().decode("utf-8", "replace").strip().splitlines()
            reason = message[-1] if message else f"exit status {code}"
            raise BadDump(f"pg_restore could not read the {kind} archive: {reason}")

    def close() -> None:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        close_raw()

    return DumpSource(kind, lines(), counter, total, close)
