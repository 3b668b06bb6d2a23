"""`doppel load-dump`: read the original project's pg_dump of its faces table, safely.

The dump is untrusted input: none of its SQL runs. Its text is split into statements
here, only the rows of the `faces` table are read (from COPY data or INSERT values),
validated (vectors parsed here, in batches) and sent with binary COPY inside one
transaction, so the gallery appears or grows in one step. Everything else the dump
held is reported and ignored.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import queue
import re
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psycopg
from psycopg import sql

from doppel.dump.files import READ_BUFFER, ArchiveHead, Inflating, archive_lines, lines_of
from doppel.errors import BadDump, GalleryMismatch
from doppel.store.db import tool_path
from doppel.store.repository import Repository
from doppel.store.vectors import check_vector, copy_data
from doppel.types import EmbeddingConfig, Gallery, describe

CONFIG = EmbeddingConfig("Facenet512", "skip", align=False)
DIMENSION = 512
SEXES = frozenset({"F", "M"})
RACES = frozenset({"asian", "white", "middle eastern", "indian", "latino hispanic", "black"})
DEFAULT_COLUMNS = ("id", "image_key", "age", "sex", "race", "embedding")
NEEDED = ("image_key", "age", "sex", "race", "embedding")
BATCH_ROWS = 5000
# The first batches are smaller, so that the server has work sooner.
FIRST_BATCH_ROWS = 500

# (bytes read, bytes in all, rows accepted so far)
Progress = Callable[[int, int, int], None]


@dataclass(frozen=True)
class BadRow:
    """A row of the faces table that was skipped, with the dump line it came from."""

    line: int
    reason: str


@dataclass(frozen=True)
class Ignored:
    """Something in the dump other than the faces rows, which was not run."""

    line: int
    what: str


@dataclass
class LoadReport:
    """What `load_dump` did: rows loaded, already present, skipped, and what it ignored."""

    gallery: str
    path: Path
    format: str
    rows_read: int = 0
    rows_loaded: int = 0
    rows_present: int = 0
    bad_rows: list[BadRow] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)
    seconds: float = 0.0
    index_seconds: float = 0.0
    index_built: bool = False

    @property
    def rate(self) -> float:
        """Rows read per second, excluding the index build."""
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0


# Reading the file ------------------------------------------------------------------


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
class _Source:
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


def _open(path: Path) -> _Source:
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
        return _Source(kind, lines_of(stream), counter, total, close)
    archive = ArchiveHead.parse(head) if kind.startswith("custom") else None
    if archive is not None:
        lines = archive_lines(stream, path, archive)

        def close_archive() -> None:
            lines.close()  # its inflating thread first: it reads from the file
            close()

        return _Source(kind, lines, counter, total, close_archive)
    return _restore(kind, stream, counter, total, close)


def _widen_pipe(pipe: IO[bytes]) -> None:
    """Let a pipe hold 1 MiB (Linux), so that doppel and pg_restore trade fewer, larger
    reads and writes than the 64 KiB default allows."""
    with contextlib.suppress(ImportError, AttributeError, OSError):  # not Linux, or capped
        import fcntl

        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)


def _restore(
    kind: str, stream: IO[bytes], counter: _Counting, total: int, close_raw: Callable[[], None]
) -> _Source:
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

    return _Source(kind, lines(), counter, total, close)


# Splitting SQL into statements without running it -----------------------------------

_SPECIAL = re.compile(r"""[eE]'|'|"|\$(?:[A-Za-z_]\w*)?\$|--|/\*|;""")
_E_STRING = re.compile(r"\\.|''|'", re.S)
_COMMENT = re.compile(r"/\*|\*/")


class _Splitter:
    """Cuts SQL text into statements, minding quotes, dollar quotes and comments."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.start = 0
        self.mode = ""  # "", "'", "E", '"', "$tag$" or "/*"
        self.depth = 0

    @property
    def empty(self) -> bool:
        return not self.parts and not self.mode

    def feed(self, line: str, number: int) -> list[tuple[str, int]]:
        """Add one line; return the statements it completed, each with its first line."""
        done: list[tuple[str, int]] = []
        pos = 0
        begin = 0
        if not self.parts:
            self.start = number
        end = len(line)
        while pos < end:
            mode = self.mode
            if not mode:
                match = _SPECIAL.search(line, pos)
                if match is None:
                    break
                token = match.group()
                pos = match.end()
                if token == ";":
                    self.parts.append(line[begin:pos])
                    done.append(("".join(self.parts), self.start))
                    self.parts = []
                    self.start = number
                    begin = pos
                elif token == "--":
                    break
                elif token == "/*":
                    self.mode, self.depth = "/*", 1
                elif token == "'":
                    self.mode = "'"
                elif token == '"':
                    self.mode = '"'
                elif token.startswith("$"):
                    self.mode = token
                else:  # E'...' unless the E ends a longer word
                    before = line[match.start() - 1] if match.start() else " "
                    self.mode = "'" if before.isalnum() or before == "_" else "E"
            elif mode in ("'", '"'):
                close = line.find(mode, pos)
                if close < 0:
                    break
                if line.startswith(mode, close + 1):
                    pos = close + 2
                else:
                    pos, self.mode = close + 1, ""
            elif mode == "E":
                match = _E_STRING.search(line, pos)
                if match is None:
                    break
                pos = match.end()
                if match.group() == "'":
                    self.mode = ""
            elif mode == "/*":
                match = _COMMENT.search(line, pos)
                if match is None:
                    break
                pos = match.end()
                self.depth += 1 if match.group() == "/*" else -1
                if self.depth == 0:
                    self.mode = ""
            else:  # dollar quote
                close = line.find(mode, pos)
                if close < 0:
                    break
                pos, self.mode = close + len(mode), ""
        rest = line[begin:]
        if self.parts or rest.strip():
            self.parts.append(rest)
        return done


def _summary(statement: str, limit: int = 100) -> str:
    text = " ".join(re.sub(r"--[^\n]*", " ", statement).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][\w$]*)'
_QUALIFIED = rf"(?:{_IDENT}\s*\.\s*)?{_IDENT}"
_COPY_FROM_STDIN = re.compile(
    rf"COPY\s+(?P<table>{_QUALIFIED})\s*(?:\((?P<columns>[^)]*)\))?\s*FROM\s+stdin\s*;\s*$",
    re.I | re.S,
)
_INSERT = re.compile(
    rf"INSERT\s+INTO\s+(?P<table>{_QUALIFIED})\s*(?:\((?P<columns>[^)]*)\))?\s*VALUES\s*",
    re.I | re.S,
)
_CREATE_TABLE = re.compile(rf"CREATE\s+TABLE\s+(?P<table>{_QUALIFIED})\s*\(", re.I)
_FACES_OBJECT = r'(?:(?:public|"public")\s*\.\s*)?(?:faces|"faces")'
# What pg_dump writes around a faces table; anything else is reported as ignored.
_ROUTINE = re.compile(
    r"(?:SET\s|SELECT\s+pg_catalog\.set_config\s*\("
    r"|SELECT\s+pg_catalog\.setval\s*\(\s*'[^']*faces_id_seq'"
    r"|CREATE\s+EXTENSION\s+(?:IF\s+NOT\s+EXISTS\s+)?(?:vector|\"vector\")\b"
    r"|COMMENT\s+ON\s+EXTENSION\s+(?:vector|plpgsql)\b"
    rf"|CREATE\s+TABLE\s+{_FACES_OBJECT}\s*\("
    rf"|ALTER\s+TABLE\s+(?:ONLY\s+)?{_FACES_OBJECT}\s"
    r"|(?:CREATE|ALTER)\s+SEQUENCE\s+(?:(?:public|\"public\")\s*\.\s*)?faces_id_seq\b"
    rf"|CREATE\s+(?:UNIQUE\s+)?INDEX\s+\S+\s+ON\s+(?:ONLY\s+)?{_FACES_OBJECT}\s)",
    re.I,
)
_CLIENT_ENCODING = re.compile(r"SET\s+client_encoding\s*(?:=|TO)\s*'([^']*)'", re.I)
# PostgreSQL's names of encodings that Python spells otherwise.
_ENCODINGS = {
    "UTF8": "utf-8",
    "SQL_ASCII": "utf-8",  # no encoding at all; UTF-8 is the likeliest content
    "LATIN1": "iso8859-1",
    "LATIN2": "iso8859-2",
    "LATIN3": "iso8859-3",
    "LATIN4": "iso8859-4",
    "LATIN5": "iso8859-9",
    "LATIN6": "iso8859-10",
    "LATIN7": "iso8859-13",
    "LATIN8": "iso8859-14",
    "LATIN9": "iso8859-15",
    "LATIN10": "iso8859-16",
    "UHC": "cp949",
    "SJIS": "shift_jis",
    "JOHAB": "johab",
    "KOI8R": "koi8-r",
    "KOI8U": "koi8-u",
}
_ROUTINE_META = ("\\restrict", "\\unrestrict", "\\connect")


def python_encoding(name: str) -> str:
    """Python's codec for a PostgreSQL encoding name (as in SET client_encoding)."""
    import codecs

    upper = name.strip().upper()
    candidate = _ENCODINGS.get(upper)
    if candidate is None:  # WIN1252 -> cp1252, ISO_8859_5 -> iso8859-5, EUC_JP -> eucjp
        compact = upper.replace("_", "").lower()
        candidate = "cp" + upper[3:] if upper.startswith("WIN") else compact
        candidate = re.sub(r"^iso8859(\d+)$", r"iso8859-\1", candidate)
    try:
        return codecs.lookup(candidate).name
    except LookupError:
        raise BadDump(f"the dump is in the {name} encoding, which doppel cannot read") from None


def _unquote(name: str) -> str:
    name = name.strip()
    if name.startswith('"') and name.endswith('"'):
        return name[1:-1].replace('""', '"')
    return name.lower()


def _table_name(qualified: str) -> str:
    """The bare table name of `schema.table` (quotes removed)."""
    parts = re.findall(_IDENT, qualified)
    return _unquote(parts[-1]) if parts else ""


def _column_list(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(_unquote(part) for part in text.split(","))


def _create_table_columns(statement: str) -> tuple[str, ...]:
    body = statement[statement.index("(") + 1 : statement.rindex(")")]
    columns = []
    for line in body.splitlines():
        line = line.strip()
        if not line or re.match(
            r"(CONSTRAINT|PRIMARY|UNIQUE|CHECK|FOREIGN|EXCLUDE|LIKE)\b", line, re.I
        ):
            continue
        name = re.match(_IDENT, line)
        if name:
            columns.append(_unquote(name.group()))
    return tuple(columns)


# Checking rows ---------------------------------------------------------------------


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


_COPY_UNESCAPE = re.compile(rb"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|(.))", re.S)
_COPY_SIMPLE = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v"}


def copy_unescape(field: bytes) -> bytes:
    """Decode a COPY text-format field (backslash escapes) to the bytes it stands for."""
    if b"\\" not in field:
        return field

    def one(match: re.Match[bytes]) -> bytes:
        octal, hexa, other = match.groups()
        if octal:
            return bytes([int(octal, 8) & 0xFF])
        if hexa:
            return bytes([int(hexa, 16)])
        return _COPY_SIMPLE.get(other, other)

    return _COPY_UNESCAPE.sub(one, field)


# Loading ---------------------------------------------------------------------------

_SEX_FIELDS = {sex.encode(): struct.pack("!i", 1) + sex.encode() for sex in SEXES}
_RACE_FIELDS = {race.encode(): struct.pack("!i", len(race)) + race.encode() for race in RACES}
_COPY_NULL = b"\\N"


# A checked row waiting for its vector: (line, image_key).
_Row = tuple[int, str]


class _Loader:
    """Checks rows and hands them, in batches, to a _Sender that stores them.

    Each row is checked as the dump is read, and each batch's vectors are read when
    the batch is full (simdjson holds the GIL, so another thread would not overlap
    with this one, and a worker process costs more to feed than the parse itself).
    The sender thread alone uses the connection until close(), so the server stores
    one batch while the next is read.
    """

    def __init__(
        self,
        conn: psycopg.Connection,
        report: LoadReport,
        strict: bool,
        gallery: Gallery,
        known: set[str],
        grew: Callable[[int], None],
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
        self.sender = _Sender(conn, report, grew)

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
    return BadDump(
        f"line {line}: {reason}; nothing was loaded "
        "(without --strict bad rows are skipped and listed)"
    )


# A batch for the sender: its first and last line, its row count and its COPY data.
_Batch = tuple[int, int, int, bytes]


class _Sender:
    """Stores batches with binary COPY from a thread of its own, at most three waiting.

    The connection belongs to this thread until close(); a failure is raised again in
    the caller's thread at its next send() or at close().
    """

    STATEMENT = sql.SQL(
        "COPY faces (gallery_id, source, age, sex, race, embedding) FROM STDIN (FORMAT BINARY)"
    )

    def __init__(
        self, conn: psycopg.Connection, report: LoadReport, grew: Callable[[int], None]
    ) -> None:
        self.conn = conn
        self.report = report
        self.grew = grew
        self.queue: queue.Queue[_Batch | None] = queue.Queue(maxsize=3)
        self.queued = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="doppel-copy", daemon=True)
        self.thread.start()

    def send(self, first_line: int, last_line: int, count: int, data: bytes) -> None:
        """Queue a batch's COPY data: `count` rows from the dump's lines first to last."""
        self._raise()
        self.queued += count
        self.queue.put((first_line, last_line, count, data))

    def close(self) -> None:
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()
        self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def _run(self) -> None:
        while (batch := self.queue.get()) is not None:
            try:
                if self.error is None:
                    self._store(*batch)
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller
                self.error = exc
            finally:
                self.queued -= batch[2]

    def _store(self, first_line: int, last_line: int, count: int, data: bytes) -> None:
        self.grew(self.report.rows_loaded + count)
        try:
            with self.conn.cursor() as cur, cur.copy(self.STATEMENT) as copy:
                copy.write(data)
        except psycopg.DataError as exc:
            raise BadDump(
                f"the server refused rows between lines {first_line} and {last_line}: "
                f"{str(exc).splitlines()[0]}"
            ) from exc
        self.report.rows_loaded += count


_PLAIN_VALUE = re.compile(rb"\s*(NULL|[-+]?[0-9][0-9.eE+-]*)\s*")


def _row_values(line: bytes, pos: int) -> list[bytes | None] | None:
    """The values of `(v, 'text', NULL, ...);` from pos (just after the parenthesis) to
    the end of the line: quoted strings with their '' undone, numbers as written, None
    for NULL. None when the line is anything else (E'' strings, a second row, ...)."""
    values: list[bytes | None] = []
    while True:
        while line[pos : pos + 1] == b" ":
            pos += 1
        if line[pos : pos + 1] == b"'":
            close = line.find(b"'", pos + 1)
            doubled = False
            while close >= 0 and line[close + 1 : close + 2] == b"'":
                close, doubled = line.find(b"'", close + 2), True
            if close < 0:
                return None
            value = line[pos + 1 : close]
            values.append(value.replace(b"''", b"'") if doubled else value)
            pos = close + 1
        else:
            match = _PLAIN_VALUE.match(line, pos)
            if match is None:
                return None
            values.append(None if match.group(1) == b"NULL" else match.group(1))
            pos = match.end()
        while line[pos : pos + 1] == b" ":
            pos += 1
        separator = line[pos : pos + 1]
        pos += 1
        if separator == b")":
            return values if line[pos:].rstrip() == b";" else None
        if separator != b",":
            return None


_VALUE = re.compile(r"\s*(?:'([^']*(?:''[^']*)*)'|(NULL)|([-+]?[0-9][0-9.eE+-]*))\s*([,)])", re.I)


class _Reader:
    """Walks the dump's statements and data, feeding faces rows to the loader."""

    def __init__(self, loader: _Loader, report: LoadReport) -> None:
        self.loader = loader
        self.report = report
        self.columns: tuple[str, ...] | None = None  # from CREATE TABLE faces
        self._positions_of: tuple[str, ...] = ()  # the COPY columns _positions was made for
        self._positions: list[int] = []  # where each NEEDED field is in a COPY row
        self.found_faces = False
        # One-line INSERT heads seen: [value count, where each NEEDED value is], or []
        # when the INSERT is not into faces.
        self._insert_heads: dict[bytes, list[int]] = {}

    def run(self, lines: Iterator[bytes], tick: Callable[[], None]) -> None:
        splitter = _Splitter()
        number = 0
        copy_into: tuple[str, ...] | None = None  # faces columns while in its COPY data
        other_copy: tuple[int, str, int] | None = None  # (line, summary, rows) of another's
        for raw in lines:
            number += 1
            if number & 0x3FF == 0:
                tick()
            if copy_into is not None or other_copy is not None:
                if raw.startswith(b"\\.") and raw[2:].strip() == b"":
                    if other_copy is not None:
                        line, what, rows = other_copy
                        self.report.ignored.append(Ignored(line, f"{what} ({rows} rows)"))
                    copy_into = other_copy = None
                elif copy_into is not None:
                    self._copy_row(raw, number, copy_into)
                else:
                    assert other_copy is not None
                    other_copy = (other_copy[0], other_copy[1], other_copy[2] + 1)
                continue
            if (
                splitter.empty
                and raw.startswith(b"INSERT INTO ")
                and self._one_line_insert(raw, number)
            ):
                continue
            text = raw.decode(self.loader.encoding, "replace")
            if splitter.empty:
                stripped = text.strip()
                if not stripped or stripped.startswith("--"):
                    continue
                if stripped.startswith("\\"):
                    if not stripped.startswith(_ROUTINE_META):
                        self.report.ignored.append(Ignored(number, _summary(stripped)))
                    continue
            for statement, start in splitter.feed(text, number):
                target = self._statement(statement, start)
                if target is None:
                    continue
                if isinstance(target, tuple):
                    copy_into = target
                else:
                    other_copy = (start, target, 0)
        if copy_into is not None:
            self.loader.bad(number, "the dump ends inside the faces data (truncated file)")
        if not splitter.empty and splitter.parts and "".join(splitter.parts).strip():
            self.report.ignored.append(
                Ignored(
                    splitter.start,
                    "unfinished statement at the end of the file: "
                    + _summary("".join(splitter.parts)),
                )
            )

    def _statement(self, statement: str, start: int) -> tuple[str, ...] | str | None:
        """Handle one statement; return faces' columns or another table's name for COPY."""
        body = statement.lstrip()
        start += statement[: len(statement) - len(body)].count("\n")
        head = body[:12].upper()
        if head.startswith("SET"):
            match = _CLIENT_ENCODING.match(body)
            if match is not None:
                self.loader.encoding = python_encoding(match.group(1))
        if head.startswith("COPY"):
            match = _COPY_FROM_STDIN.match(body)
            if match is not None:
                if _table_name(match.group("table")) == "faces":
                    self.found_faces = True
                    return _column_list(match.group("columns")) or self.columns or DEFAULT_COLUMNS
                return f"COPY {match.group('table')} FROM stdin"
        elif head.startswith("INSERT"):
            match = _INSERT.match(body)
            if match is not None and _table_name(match.group("table")) == "faces":
                self.found_faces = True
                columns = _column_list(match.group("columns")) or self.columns or DEFAULT_COLUMNS
                self._insert_rows(body, match.end(), start, columns)
                return None
        elif head.startswith("CREATE"):
            match = _CREATE_TABLE.match(body)
            if match is not None and _table_name(match.group("table")) == "faces":
                self.columns = _create_table_columns(body)
        if not _ROUTINE.match(body):
            self.report.ignored.append(Ignored(start, _summary(body)))
        return None

    def _copy_row(self, raw: bytes, number: int, columns: tuple[str, ...]) -> None:
        # The vector is the long field: split off the others without scanning it.
        fields = raw.rstrip(b"\r\n").split(b"\t", len(columns) - 1)
        if len(fields) != len(columns):
            self.loader.report.rows_read += 1
            self.loader.bad(
                number,
                f"{len(fields)} fields, expected {len(columns)} (a truncated or damaged line)",
            )
            return
        if columns != self._positions_of:
            self._positions_of = columns
            self._positions = [columns.index(name) if name in columns else -1 for name in NEEDED]
        values = [fields[n] if n >= 0 else _COPY_NULL for n in self._positions]
        if _COPY_NULL in values:
            self.loader.report.rows_read += 1
            self.loader.bad(number, f"{NEEDED[values.index(_COPY_NULL)]} is missing or NULL")
            return
        values[0] = copy_unescape(values[0])
        self.loader.add(number, *values)

    def _one_line_insert(self, raw: bytes, number: int) -> bool:
        """Read a one-row INSERT into faces on one line, as pg_dump writes them, straight
        from its bytes. False (nothing done) for anything else, which then takes the
        general path through _Splitter and _insert_rows."""
        values_at = raw.find(b" VALUES (", 12, 4096)
        if values_at < 0:
            return False
        head = raw[: values_at + 8]
        known = self._insert_heads.get(head)
        if known is None:
            match = _INSERT.fullmatch(head.decode(self.loader.encoding, "replace"))
            if match is None or _table_name(match.group("table")) != "faces":
                known = self._insert_heads[head] = []
            else:
                columns = _column_list(match.group("columns")) or self.columns or DEFAULT_COLUMNS
                known = self._insert_heads[head] = [
                    len(columns),
                    *(columns.index(name) if name in columns else -1 for name in NEEDED),
                ]
        if not known:
            return False
        values = _row_values(raw, values_at + 9)
        if values is None or len(values) != known[0]:
            return False
        self.found_faces = True
        fields = [values[n] if n >= 0 else None for n in known[1:]]
        if None in fields:
            self.loader.report.rows_read += 1
            self.loader.bad(number, f"{NEEDED[fields.index(None)]} is missing or NULL")
        else:
            self.loader.add(number, *fields)  # type: ignore[arg-type]
        return True

    def _insert_rows(self, body: str, pos: int, start: int, columns: tuple[str, ...]) -> None:
        line = start + body.count("\n", 0, pos)
        while True:
            while pos < len(body) and body[pos] in " \t\r\n":
                if body[pos] == "\n":
                    line += 1
                pos += 1
            if pos >= len(body) or body[pos] != "(":
                break
            begin = pos
            pos += 1
            values: list[str | None] = []
            closed = False
            while True:
                match = _VALUE.match(body, pos)
                if match is None:
                    break
                quoted, null, number, end = match.groups()
                values.append(
                    None if null else quoted.replace("''", "'") if quoted is not None else number
                )
                pos = match.end()
                if end == ")":
                    closed = True
                    break
            self.loader.report.rows_read += 1
            if not closed:
                self.loader.bad(
                    line,
                    "could not read this INSERT's values; the rest of the statement is skipped",
                )
                return
            line_of_row = line
            line += body.count("\n", begin, pos)
            if len(values) != len(columns):
                self.loader.bad(line_of_row, f"{len(values)} values, expected {len(columns)}")
            else:
                row = dict(zip(columns, values, strict=True))
                missing = [name for name in NEEDED if row.get(name) is None]
                if missing:
                    self.loader.bad(line_of_row, f"{missing[0]} is missing or NULL")
                else:
                    self.loader.report.rows_read -= 1  # add() counts it
                    self.loader.add(
                        line_of_row,
                        *(
                            (row[name] or "").encode(self.loader.encoding, "replace")
                            for name in NEEDED
                        ),
                    )
            while pos < len(body) and body[pos] in " \t\r\n":
                pos += 1
            if pos < len(body) and body[pos] == ",":
                pos += 1
                continue
            break


def default_gallery_name(path: Path) -> str:
    """The dump's file name without .gz, .sql, .dump and the like."""
    name = path.name
    while True:
        stem, dot, suffix = name.rpartition(".")
        if dot and stem and suffix.lower() in ("gz", "sql", "dump", "pgdump", "backup", "tar"):
            name = stem
        else:
            return name


def load_dump(
    conn: psycopg.Connection,
    path: Path,
    gallery_name: str | None = None,
    *,
    strict: bool = False,
    build_index: bool = True,
    progress: Progress | None = None,
) -> LoadReport:
    """Load the faces of a pg_dump (plain, INSERTs, custom; gzip or not) into a gallery.

    Nothing of the dump runs. All rows go in one transaction, so the gallery appears or
    grows in one step and an interrupted load leaves no trace; faces already in the
    gallery (same image_key) are kept, so a second load of the same dump adds nothing.
    """
    start = time.perf_counter()
    name = gallery_name or default_gallery_name(path)
    repo = Repository(conn)
    existing = repo.find_gallery(name)
    conn.commit()
    if existing is not None and existing.config != CONFIG:
        raise GalleryMismatch(
            f"gallery {name!r} holds faces embedded as {describe(existing.config)}, but the dump "
            f"has {describe(CONFIG)}; choose another --gallery name"
        )
    source = _open(path)
    report = LoadReport(gallery=name, path=path, format=source.format)

    def tick() -> None:
        if progress:
            progress(
                min(source.counter.count, source.total),
                source.total,
                report.rows_loaded + loader.pending,
            )

    try:
        with conn.transaction():
            # One load per gallery at a time; the faces it finds present stay right.
            conn.execute("SELECT pg_advisory_xact_lock(4242002, hashtext(%s))", (name,))
            gallery = _gallery_in_transaction(conn, repo, name)
            _skip_gallery_checks(conn, gallery)
            known = {
                row[0]
                for row in conn.execute(
                    "SELECT source FROM faces WHERE gallery_id = %s AND face_index = 0",
                    (gallery.id,),
                )
            }
            indexed = repo.has_index(gallery)
            present = len(known)

            def grew(rows: int) -> None:
                nonlocal indexed
                # Adding many rows to a live HNSW index is far slower than building it again.
                if indexed and rows > max(2000, present // 4):
                    conn.execute(
                        sql.SQL("DROP INDEX IF EXISTS {}").format(
                            sql.Identifier(gallery.index_name)
                        )
                    )
                    indexed = False

            loader = _Loader(conn, report, strict, gallery, known, grew)
            reader = _Reader(loader, report)
            try:
                reader.run(source.lines, tick)
                loader.flush()
            finally:
                loader.close()
            report.bad_rows.sort(key=lambda bad: bad.line)
            if not reader.found_faces:
                tables = sorted({i.what for i in report.ignored if "TABLE" in i.what.upper()})
                raise BadDump(
                    f"{path} holds no data for a faces table, so it is not the faces dump "
                    "doppel expects" + (f" (it holds: {'; '.join(tables[:5])})" if tables else "")
                )
    finally:
        source.close()
    tick()
    report.seconds = time.perf_counter() - start
    if build_index and repo.face_count(gallery):
        begin = time.perf_counter()
        report.index_built = repo.ensure_index(gallery)
        report.index_seconds = time.perf_counter() - begin
    return report


def _skip_gallery_checks(conn: psycopg.Connection, gallery: Gallery) -> bool:
    """Skip, until the commit, the check of each new face's gallery_id against galleries.

    PostgreSQL checks a foreign key row by row, a third of the server's time in a
    load. The gallery is locked here instead, once, as that check would lock it, so
    it cannot be deleted before the commit. Skipping needs the right to set
    session_replication_role (a superuser, as on the embedded server); without it
    the checks run as usual.
    """
    conn.execute("SELECT 1 FROM galleries WHERE id = %s FOR KEY SHARE", (gallery.id,))
    try:
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


def _gallery_in_transaction(conn: psycopg.Connection, repo: Repository, name: str) -> Gallery:
    """The gallery, created (still uncommitted) when new."""
    conn.execute(
        "INSERT INTO galleries (name, model, detector, align, normalization, dimension)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO NOTHING",
        (name, CONFIG.model, CONFIG.detector, CONFIG.align, CONFIG.normalization, DIMENSION),
    )
    gallery = repo.gallery(name)
    if gallery.config != CONFIG:
        raise GalleryMismatch(
            f"gallery {name!r} holds faces embedded as {describe(gallery.config)}, but the dump "
            f"has {describe(CONFIG)}; choose another --gallery name"
        )
    return gallery
