"""One access line per request: method, path, status, milliseconds.

Only the path is logged: no query string (it may name an upload), no headers, no body
(a photo). Control characters in a path are escaped, so a request cannot write a line
of its own into the log.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("doppel.access")

MAX_PATH = 200  # characters of a path kept in its line


def printable(path: str) -> str:
    text = "".join(c if c.isprintable() and c != "\\" else f"\\x{ord(c):02x}" for c in path)
    return text if len(text) <= MAX_PATH else text[:MAX_PATH] + "…"


class AccessLog:
    """ASGI middleware: logs each HTTP request when its answer has been sent."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets when the app fails before answering

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            ms = (time.perf_counter() - start) * 1000
            log.info("%s %s %d %.0f ms", scope["method"], printable(scope["path"]), status, ms)


def log_to_stderr() -> None:
    """Send the access lines to stderr, one plain line each (`doppel serve`)."""
    if log.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
