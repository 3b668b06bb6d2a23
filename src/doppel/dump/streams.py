"""A dump's bytes as a stream: deflate data inflated ahead by a thread, and lines.

Both the gzipped dump and the data blocks of a custom archive are inflated here, and
every form of dump is read as lines of bounded length.
"""

from __future__ import annotations

import contextlib
import io
import queue
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import IO, cast

from isal import isal_zlib

from doppel.errors import BadDump

# Large reads: each one lets the sender thread take the GIL, and getting it back costs.
READ_BUFFER = 8 << 20
# A faces row is about 6 kB of text; a longer line is refused, so memory stays bounded.
MAX_LINE = 16 << 20

GZIP_WBITS = 16 + isal_zlib.MAX_WBITS  # a gzip header and trailer around deflate data
ZLIB_WBITS = isal_zlib.MAX_WBITS  # a zlib header and trailer around deflate data
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
