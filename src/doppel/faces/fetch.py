"""One file fetched over HTTP, checked before it counts: the weights download's transport.

It knows nothing of models: the catalogue (doppel.faces.catalog) says what to fetch,
from where and what it must look like, and turns a failure into its own one-line error.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

# Seconds to wait for a connection or for the next bytes: where there is no network the
# attempt ends within this, not after the system's minutes-long TCP timeout.
NETWORK_TIMEOUT = 5.0


class FetchFailed(Exception):
    """Why the file did not arrive whole; nothing is left at the target."""


def fetch(
    url: str,
    target: Path,
    *,
    size: int | None = None,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = NETWORK_TIMEOUT,
) -> None:
    """Download url to target through a `.part` file that is renamed only when complete:
    as long as announced, the known size, the known hash."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.part")
    digest = hashlib.sha256()
    received = 0
    announced: int | None = None
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "doppel"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            announced = int(length) if length and length.isdigit() else None
            with (
                partial.open("wb") as handle,
                _progress(target.name, announced or size, progress) as advance,
            ):
                while chunk := response.read(1 << 20):
                    handle.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    advance(len(chunk))
    except urllib.error.HTTPError as exc:
        partial.unlink(missing_ok=True)
        raise FetchFailed(f"{url} answered {exc.code} {exc.reason}") from None
    except (TimeoutError, urllib.error.URLError, OSError) as exc:
        partial.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        if received:
            raise FetchFailed(
                f"the download broke off after {received:,} bytes: {reason}"
            ) from None
        raise FetchFailed(f"cannot reach {url}: {reason}") from None
    problem = None
    if announced is not None and received != announced:
        problem = f"the download broke off after {received:,} of {announced:,} bytes"
    elif size is not None and received != size:
        problem = f"got {received:,} bytes where {size:,} were expected"
    elif sha256 is not None and digest.hexdigest() != sha256:
        problem = "the file's SHA-256 is not the published one"
    if problem:
        partial.unlink(missing_ok=True)
        raise FetchFailed(problem)
    partial.replace(target)


@contextlib.contextmanager
def _progress(name: str, total: int | None, show: bool) -> Iterator[Callable[[int], None]]:
    """A download progress bar on stderr (bytes, speed, time left)."""
    if not show:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(file=sys.stderr),
    ) as bar:
        task = bar.add_task(f"downloading {name}", total=total)
        yield lambda n: bar.advance(task, n)
