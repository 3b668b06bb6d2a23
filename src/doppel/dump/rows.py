"""Rows of the faces table, read three ways: COPY data, one-line INSERTs, other INSERTs.

Reader walks the dump's lines and hands each faces row to a Batcher
(doppel.dump.batches), which checks it and packs it for storing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from doppel.dump.batches import Batcher
from doppel.dump.report import Ignored, LoadReport
from doppel.dump.sql import (
    CLIENT_ENCODING,
    COPY_FROM_STDIN,
    CREATE_TABLE,
    INSERT,
    ROUTINE,
    ROUTINE_META,
    Splitter,
    column_list,
    create_table_columns,
    python_encoding,
    summary,
    table_name,
)
from doppel.errors import BadDump

DEFAULT_COLUMNS = ("id", "image_key", "age", "sex", "race", "embedding")
NEEDED = ("image_key", "age", "sex", "race", "embedding")
# A dump is made of statements and rows; pg_dump writes a few blank and comment lines
# between objects. A million lines in a row holding nothing (blank lines, comments,
# lone semicolons), or one statement over a million lines, is a damaged or hostile
# file (a 4.6 MB gzip inflates to a billion newlines): it stops in a second, not hours.
MAX_IDLE_LINES = 1_000_000
MAX_STATEMENT_LINES = 1_000_000


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


_COPY_NULL = b"\\N"


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


class Reader:
    """Walks the dump's statements and data, feeding faces rows to the loader."""

    def __init__(self, loader: Batcher, report: LoadReport) -> None:
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
        splitter = Splitter()
        number = 0
        copy_into: tuple[str, ...] | None = None  # faces columns while in its COPY data
        other_copy: tuple[int, str, int] | None = None  # (line, summary, rows) of another's
        idle = 0  # lines in a row that held nothing
        for raw in lines:
            number += 1
            if number & 0x3FF == 0:
                tick()
            in_copy = copy_into is not None or other_copy is not None
            if raw.isspace() or (
                not in_copy and (raw.startswith(b"--") or (len(raw) < 8 and raw.strip() == b";"))
            ):
                idle += 1
                if idle > MAX_IDLE_LINES:
                    raise BadDump(
                        f"lines {number - idle + 1:,} to {number:,} hold nothing (empty lines or "
                        "comments): a damaged file, not a dump of faces"
                    )
            else:
                idle = 0
            if in_copy:
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
            for start, target in self._feed(splitter, raw, number):
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
                    + summary("".join(splitter.parts)),
                )
            )

    def _feed(
        self, splitter: Splitter, raw: bytes, number: int
    ) -> list[tuple[int, tuple[str, ...] | str]]:
        """Take a line of statements (outside COPY data); the COPY statements it ends, each
        with its first line and faces' columns or the other table's summary."""
        text = raw.decode(self.loader.encoding, "replace")
        if splitter.empty:
            stripped = text.strip()
            if not stripped or stripped.startswith("--"):
                return []
            if stripped.startswith("\\"):
                if not stripped.startswith(ROUTINE_META):
                    self.report.ignored.append(Ignored(number, summary(stripped)))
                return []
        done = splitter.feed(text, number)
        if len(splitter.parts) > MAX_STATEMENT_LINES:
            raise BadDump(
                f"the statement from line {splitter.start:,} runs over "
                f"{MAX_STATEMENT_LINES:,} lines: a damaged file, not a dump of faces"
            )
        copies = []
        for statement, start in done:
            target = self._statement(statement, start)
            if target is not None:
                copies.append((start, target))
        return copies

    def _statement(self, statement: str, start: int) -> tuple[str, ...] | str | None:
        """Handle one statement; return faces' columns or another table's name for COPY."""
        body = statement.lstrip()
        start += statement[: len(statement) - len(body)].count("\n")
        head = body[:12].upper()
        if head.startswith("SET"):
            match = CLIENT_ENCODING.match(body)
            if match is not None:
                self.loader.encoding = python_encoding(match.group(1))
        if head.startswith("COPY"):
            match = COPY_FROM_STDIN.match(body)
            if match is not None:
                if table_name(match.group("table")) == "faces":
                    self.found_faces = True
                    return column_list(match.group("columns")) or self.columns or DEFAULT_COLUMNS
                return f"COPY {match.group('table')} FROM stdin"
        elif head.startswith("INSERT"):
            match = INSERT.match(body)
            if match is not None and table_name(match.group("table")) == "faces":
                self.found_faces = True
                columns = column_list(match.group("columns")) or self.columns or DEFAULT_COLUMNS
                self._insert_rows(body, match.end(), start, columns)
                return None
        elif head.startswith("CREATE"):
            match = CREATE_TABLE.match(body)
            if match is not None and table_name(match.group("table")) == "faces":
                self.columns = create_table_columns(body)
        if not ROUTINE.match(body):
            self.report.ignored.append(Ignored(start, summary(body)))
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
        general path through Splitter and _insert_rows."""
        values_at = raw.find(b" VALUES (", 12, 4096)
        if values_at < 0:
            return False
        head = raw[: values_at + 8]
        known = self._insert_heads.get(head)
        if known is None:
            match = INSERT.fullmatch(head.decode(self.loader.encoding, "replace"))
            if match is None or table_name(match.group("table")) != "faces":
                known = self._insert_heads[head] = []
            else:
                columns = column_list(match.group("columns")) or self.columns or DEFAULT_COLUMNS
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
