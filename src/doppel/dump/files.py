"""Opening a dump, plain, gzipped, a custom archive or a tar archive, as lines of SQL.

Plain and gzipped dumps and the custom archives doppel.dump.archive reads are read in
this process; other archives are turned into SQL by pg_restore, fed by a thread.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from doppel.dump.archive import ArchiveHead, archive_lines
from doppel.dump.streams import READ_BUFFER, Inflating, lines_of
from doppel.errors import BadDump
from doppel.store.db import tool_path


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
