"""Reading a dump's SQL without running it: statements, and what pg_dump writes around them.

The dump is untrusted text. It is split into statements here (quotes, dollar quotes
and comments respected) and matched against the few statement shapes pg_dump writes
for a table; nothing is ever sent to the server as SQL.
"""

from __future__ import annotations

import codecs
import re

from doppel.errors import BadDump

_SPECIAL = re.compile(r"""[eE]'|'|"|\$(?:[A-Za-z_]\w*)?\$|--|/\*|;""")
_E_STRING = re.compile(r"\\.|''|'", re.S)
_COMMENT = re.compile(r"/\*|\*/")


class Splitter:
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
            if self.mode:
                pos = self._inside(line, pos)
                if pos < 0:
                    break
                continue
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
        rest = line[begin:]
        if self.parts or rest.strip():
            self.parts.append(rest)
        return done

    def _inside(self, line: str, pos: int) -> int:
        """Where the quote or comment that pos is in ends (its mode left), or -1 when it
        goes on past this line."""
        mode = self.mode
        if mode in ("'", '"'):
            close = line.find(mode, pos)
            if close < 0:
                return -1
            if line.startswith(mode, close + 1):  # a doubled quote stands for itself
                return close + 2
            self.mode = ""
            return close + 1
        if mode == "E":
            match = _E_STRING.search(line, pos)
            if match is None:
                return -1
            if match.group() == "'":
                self.mode = ""
            return match.end()
        if mode == "/*":
            match = _COMMENT.search(line, pos)
            if match is None:
                return -1
            self.depth += 1 if match.group() == "/*" else -1
            if self.depth == 0:
                self.mode = ""
            return match.end()
        close = line.find(mode, pos)  # a dollar quote
        if close < 0:
            return -1
        self.mode = ""
        return close + len(mode)


def summary(statement: str, limit: int = 100) -> str:
    text = " ".join(re.sub(r"--[^\n]*", " ", statement).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][\w$]*)'
_QUALIFIED = rf"(?:{_IDENT}\s*\.\s*)?{_IDENT}"
COPY_FROM_STDIN = re.compile(
    rf"COPY\s+(?P<table>{_QUALIFIED})\s*(?:\((?P<columns>[^)]*)\))?\s*FROM\s+stdin\s*;\s*$",
    re.I | re.S,
)
INSERT = re.compile(
    rf"INSERT\s+INTO\s+(?P<table>{_QUALIFIED})\s*(?:\((?P<columns>[^)]*)\))?\s*VALUES\s*",
    re.I | re.S,
)
CREATE_TABLE = re.compile(rf"CREATE\s+TABLE\s+(?P<table>{_QUALIFIED})\s*\(", re.I)
_FACES_OBJECT = r'(?:(?:public|"public")\s*\.\s*)?(?:faces|"faces")'
# What pg_dump writes around a faces table; anything else is reported as ignored.
ROUTINE = re.compile(
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
CLIENT_ENCODING = re.compile(r"SET\s+client_encoding\s*(?:=|TO)\s*'([^']*)'", re.I)
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
ROUTINE_META = ("\\restrict", "\\unrestrict", "\\connect")


def python_encoding(name: str) -> str:
    """Python's codec for a PostgreSQL encoding name (as in SET client_encoding)."""

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


def table_name(qualified: str) -> str:
    """The bare table name of `schema.table` (quotes removed)."""
    parts = re.findall(_IDENT, qualified)
    return _unquote(parts[-1]) if parts else ""


def column_list(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(_unquote(part) for part in text.split(","))


def create_table_columns(statement: str) -> tuple[str, ...]:
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
