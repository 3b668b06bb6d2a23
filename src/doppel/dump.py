"""`doppel load-dump`: read the original project's pg_dump of its faces table, safely.

The dump is untrusted input: none of its SQL runs. Its text is split into statements
here, only the rows of the `faces` table are read (from COPY data or INSERT values),
validated, and streamed into a temporary staging table; the gallery then appears or
grows in one transaction. Everything else the dump held is reported and ignored.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import math
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import psycopg
from psycopg import sql

from doppel.db import tool_path
from doppel.embedder import EmbeddingConfig
from doppel.errors import BadDump, GalleryMismatch
from doppel.repository import Gallery, Repository, describe

CONFIG = EmbeddingConfig("Facenet512", "skip", align=False)
DIMENSION = 512
SEXES = frozenset({"F", "M"})
RACES = frozenset({"asian", "white", "middle eastern", "indian", "latino hispanic", "black"})
DEFAULT_COLUMNS = ("id", "image_key", "age", "sex", "race", "embedding")
NEEDED = ("image_key", "age", "sex", "race", "embedding")
BATCH_ROWS = 5000

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


def detect_format(path: Path) -> str:
    """plain, custom or tar, with a " (gzip)" suffix when compressed: judged by content."""
    with path.open("rb") as handle:
        head = handle.read(512)
        gzipped = head[:2] == b"\x1f\x8b"
        if gzipped:
            handle.seek(0)
            try:
                head = gzip.GzipFile(fileobj=handle).read(512)
            except (OSError, EOFError) as exc:
                raise BadDump(f"{path}: gzip data is damaged ({exc})") from exc
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
    kind = detect_format(path)
    raw = path.open("rb")
    counter = _Counting(raw)
    stream: IO[bytes] = io.BufferedReader(counter, 1 << 20)
    if kind.endswith("(gzip)"):
        stream = gzip.GzipFile(fileobj=stream)  # type: ignore[assignment]
    total = path.stat().st_size
    if kind.startswith("plain"):
        return _Source(kind, iter(stream), counter, total, raw.close)
    return _restore(kind, stream, counter, total, raw.close)


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
    )
    assert proc.stdin and proc.stdout and proc.stderr

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
        yield from proc.stdout  # type: ignore[misc]
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
_ROUTINE_META = ("\\restrict", "\\unrestrict", "\\connect")


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

_VECTOR_CHARS = re.compile(r"\[[-+0-9.eE,]*\]")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_vector(text: str) -> str | None:
    """Why a vector's text is unusable (not 512 finite float4 numbers), or None."""
    if text.startswith("[") and not text.endswith("]"):
        return "embedding has no closing ] (a truncated line)"
    if not text.startswith("[") or not text.endswith("]"):
        return "embedding is not a [..] vector"
    inner = text[1:-1]
    count = inner.count(",") + 1 if inner else 0
    if count != DIMENSION:
        return f"embedding has {count} numbers, not {DIMENSION}"
    numbers = inner.split(",")
    for number in numbers:
        if not _NUMBER.fullmatch(number.strip()):
            try:
                value = float(number)
            except ValueError:
                return f"embedding holds {number.strip()[:20]!r}, not a number"
            if not math.isfinite(value):
                return f"embedding holds {number.strip()!r}, not a finite number"
            return f"embedding holds {number.strip()[:20]!r}, not a plain number"
        if abs(float(number)) > _FLOAT32_MAX:
            return f"embedding holds {number.strip()[:20]!r}, out of float4 range"
    return None


def _quick_vector_ok(text: str) -> bool:
    """A cheap test that passes every good vector; rows it fails get check_vector's reason."""
    inner_commas = text.count(",")
    return (
        inner_commas == DIMENSION - 1
        and _VECTOR_CHARS.fullmatch(text) is not None
        and ",," not in text
        and "[," not in text
        and ",]" not in text
    )


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


def copy_escape(text: str) -> bytes:
    """Encode a value as a COPY text-format field."""
    data = text.encode("utf-8", "surrogateescape")
    if not any(c in data for c in b"\\\t\n\r"):
        return data
    return (
        data.replace(b"\\", b"\\\\")
        .replace(b"\t", b"\\t")
        .replace(b"\n", b"\\n")
        .replace(b"\r", b"\\r")
    )


# Loading ---------------------------------------------------------------------------


class _Loader:
    """Sends good rows straight to the faces table in COPY batches, each under a savepoint.

    All batches belong to the caller's one transaction, so the rows become visible
    together at its commit; a batch the server refuses is checked row by row and sent
    again without its bad rows.
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
        self.conn = conn
        self.report = report
        self.strict = strict
        self.known = known  # image_keys in the gallery or already taken from this dump
        self.grew = grew
        self.prefix = str(gallery.id).encode()
        self.batch: list[tuple[int, str, bytes]] = []  # (line, image_key, COPY row)
        self.statement = sql.SQL(
            "COPY faces (gallery_id, source, age, sex, race, embedding) FROM STDIN"
        )

    def bad(self, line: int, reason: str) -> None:
        if self.strict:
            raise BadDump(
                f"line {line}: {reason}; nothing was loaded "
                "(without --strict bad rows are skipped and listed)"
            )
        self.report.bad_rows.append(BadRow(line, reason))

    def add(
        self, line: int, source: bytes, age: bytes, sex: bytes, race: bytes, vector: bytes
    ) -> None:
        """One row, each field in COPY text form (source escaped as COPY escapes it)."""
        self.report.rows_read += 1
        try:
            key = copy_unescape(source).decode("utf-8")
        except UnicodeDecodeError:
            self.bad(line, "image_key is not valid UTF-8")
            return
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
        if reason is None and not (
            vector[:1] == b"[" and vector[-1:] == b"]" and vector.count(b",") == DIMENSION - 1
        ):
            reason = check_vector(vector.decode("utf-8", "replace")) or "embedding is malformed"
        if reason is not None:
            self.bad(line, reason)
            return
        if key in self.known:
            self.report.rows_present += 1
            return
        self.known.add(key)
        self.batch.append((line, key, b"\t".join((self.prefix, source, age, sex, race, vector))))
        if len(self.batch) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        """COPY the batch; when the server refuses it, find the bad rows and send the rest."""
        if not self.batch:
            return
        batch, self.batch = self.batch, []
        try:
            with self.conn.transaction():
                self._copy([row for _, _, row in batch])
        except psycopg.DataError:
            good = []
            for line, key, row in batch:
                vector = row.rsplit(b"\t", 1)[1]
                reason = check_vector(vector.decode("utf-8", "replace"))
                if reason is None:
                    good.append(row)
                else:
                    self.known.discard(key)
                    self.bad(line, reason)
            try:
                with self.conn.transaction():
                    self._copy(good)
            except psycopg.DataError as exc:
                raise BadDump(
                    f"the server refused rows between lines {batch[0][0]} and "
                    f"{batch[-1][0]}: {str(exc).splitlines()[0]}"
                ) from exc
            kept = set(good)
            batch = [item for item in batch if item[2] in kept]
        self.report.rows_loaded += len(batch)
        self.grew(self.report.rows_loaded)

    def _copy(self, rows: list[bytes]) -> None:
        with self.conn.cursor() as cur, cur.copy(self.statement) as copy:
            for start in range(0, len(rows), 256):
                copy.write(b"\n".join(rows[start : start + 256]) + b"\n")


_VALUE = re.compile(r"\s*(?:'([^']*(?:''[^']*)*)'|(NULL)|([-+]?[0-9][0-9.eE+-]*))\s*([,)])", re.I)


class _Reader:
    """Walks the dump's statements and data, feeding faces rows to the loader."""

    def __init__(self, loader: _Loader, report: LoadReport) -> None:
        self.loader = loader
        self.report = report
        self.columns: tuple[str, ...] | None = None  # from CREATE TABLE faces
        self.found_faces = False

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
            text = raw.decode("utf-8", "replace")
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
        fields = raw.rstrip(b"\r\n").split(b"\t")
        if len(fields) != len(columns):
            self.loader.report.rows_read += 1
            self.loader.bad(
                number,
                f"{len(fields)} fields, expected {len(columns)} (a truncated or damaged line)",
            )
            return
        values = dict(zip(columns, fields, strict=True))
        for name in NEEDED:
            value = values.get(name)
            if value is None or value == b"\\N":
                self.loader.report.rows_read += 1
                self.loader.bad(number, f"{name} is missing or NULL")
                return
        self.loader.add(
            number,
            values["image_key"],
            values["age"],
            values["sex"],
            values["race"],
            values["embedding"],
        )

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
                    self.loader.add(line_of_row, *(copy_escape(row[name] or "") for name in NEEDED))
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
                report.rows_loaded + len(loader.batch),
            )

    try:
        with conn.transaction():
            # One load per gallery at a time; the faces it finds present stay right.
            conn.execute("SELECT pg_advisory_xact_lock(4242002, hashtext(%s))", (name,))
            gallery = _gallery_in_transaction(conn, repo, name)
            known = {
                row[0]
                for row in conn.execute(
                    "SELECT source FROM faces WHERE gallery_id = %s AND face_index = 0",
                    (gallery.id,),
                )
            }
            indexed = repo.has_index(gallery)

            def grew(rows: int) -> None:
                nonlocal indexed
                # Adding many rows to a live HNSW index is far slower than building it again.
                if indexed and rows > max(2000, len(known) // 4):
                    conn.execute(
                        sql.SQL("DROP INDEX IF EXISTS {}").format(
                            sql.Identifier(gallery.index_name)
                        )
                    )
                    indexed = False

            loader = _Loader(conn, report, strict, gallery, known, grew)
            reader = _Reader(loader, report)
            reader.run(source.lines, tick)
            loader.flush()
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
