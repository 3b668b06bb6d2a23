"""Turning a face's recorded source (a path or a URL) back into pixels for pictures.

Sources are what a gallery recorded: a local path (ingest), or the original project's
`image_key`, a path into *its* copy of FFHQ (`.../00000/00042.png`) or a URL. FFHQ
paths are found again under the image roots: `DOPPEL_IMAGE_ROOT` (one or more folders,
separated like PATH) and the folders `doppel load-dump --image-root DIR` recorded in
`$DOPPEL_HOME/image-roots.txt`. URLs are fetched once into `$DOPPEL_HOME/cache/images`.
Whatever cannot be had yields None, and the composite shows a placeholder instead.
"""

from __future__ import annotations

import hashlib
import re
import urllib.error
import urllib.request
from pathlib import Path

from doppel.config import Settings
from doppel.errors import DoppelError, UsageError
from doppel.faces import imaging
from doppel.faces.imaging import Photo

FETCH_TIMEOUT = 4.0
MAX_DOWNLOAD = 32 * 2**20
_FFHQ_TAIL = re.compile(r"(\d{5})[/\\](\d{5}\.png)$", re.I)
_failed_urls: set[str] = set()  # per process, so one find does not wait on a URL twice


def roots_file(settings: Settings) -> Path:
    return settings.home / "image-roots.txt"


def image_roots(settings: Settings) -> list[Path]:
    """Folders to look for FFHQ images in: DOPPEL_IMAGE_ROOT first, then recorded ones."""
    roots = list(settings.image_roots)
    try:
        recorded = roots_file(settings).read_text(encoding="utf-8").splitlines()
    except OSError:
        recorded = []
    roots += [Path(line) for line in recorded if line.strip()]
    return list(dict.fromkeys(roots))


def add_image_root(root: Path, settings: Settings) -> Path:
    """Record a local copy of FFHQ so later finds show its images; returns it resolved."""
    root = root.expanduser().resolve()
    if not root.is_dir():
        raise UsageError(f"the image root {root} is not a folder")
    if root not in image_roots(settings):
        path = roots_file(settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(f"{root}\n")
    return root


def ffhq_relative(source: str) -> Path | None:
    """`NNNNN/NNNNN.png`, the part of an FFHQ path that is the same in every copy."""
    match = _FFHQ_TAIL.search(source)
    return Path(match.group(1), match.group(2)) if match else None


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def under_roots(source: str, roots: list[Path]) -> Path | None:
    """The local file for an FFHQ path: ROOT/NNNNN/NNNNN.png, or ROOT/NNNNN.png."""
    relative = ffhq_relative(source)
    if relative is None:
        return None
    for root in roots:
        for candidate in (root / relative, root / relative.name):
            if candidate.is_file():
                return candidate
    return None


def fetch(url: str, cache_dir: Path, timeout: float = FETCH_TIMEOUT) -> Path | None:
    """The URL's content in the cache, downloaded once; None when it cannot be had."""
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:32]
    suffix = Path(url.split("?", 1)[0]).suffix.lower()
    target = cache_dir / "images" / (digest + (suffix if len(suffix) <= 5 else ""))
    if target.is_file():
        return target
    if url in _failed_urls:
        return None
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "doppel"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read(MAX_DOWNLOAD + 1)
    except (urllib.error.URLError, OSError, ValueError):
        _failed_urls.add(url)
        return None
    if len(data) > MAX_DOWNLOAD:
        _failed_urls.add(url)
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    partial.write_bytes(data)
    partial.replace(target)
    return target


def resolve(source: str, settings: Settings) -> Path | None:
    """A local file holding the source's image, or None."""
    if is_url(source):
        return fetch(source, settings.cache_dir)
    path = imaging.text_path(source)  # names that are not UTF-8 were recorded as \xNN
    if path.is_file():
        return path
    return under_roots(source, image_roots(settings))


def load_source(source: str, settings: Settings, max_side: int = 1024) -> Photo | None:
    """The photo a face came from, or None when it cannot be had any more (or is
    larger than the pixel limit)."""
    path = resolve(source, settings)
    if path is None:
        return None
    try:
        return imaging.load(path, max_side=max_side, max_pixels=settings.max_pixels)
    except DoppelError:
        return None
