"""Files doppel writes for the user (pictures, reports, logs): safe names and one-line
errors.

A file that cannot be written (a folder in its place, a missing or read-only folder, a
full disk) is an OutputUnwritable naming the path, never a traceback; the work that
produced it is already done and stays done.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
from pathlib import Path

from doppel.errors import OutputUnwritable

# Longest gallery-derived part of a file name: file systems allow 255 bytes a name.
_STEM_CHARS = 60
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def file_stem(name: str) -> str:
    """A file-name-safe form of any name (a gallery's): letters, digits, '.', '_' and
    '-' kept, the rest folded into '_', cut to a safe length. Names that had to change
    get a short hash of the original, so two galleries never share a log file."""
    safe = _UNSAFE.sub("_", name).strip("._") or "gallery"
    if safe == name and len(name) <= _STEM_CHARS:
        return name
    digest = hashlib.blake2b(name.encode("utf-8", "surrogateescape"), digest_size=4).hexdigest()
    return f"{safe[:_STEM_CHARS]}-{digest}"


def log_file(log_dir: Path, kind: str, name: str, stamp: str | None = None) -> Path:
    """The path of a log about a gallery: log_dir/KIND-NAME[-STAMP].txt, NAME made safe."""
    suffix = f"-{stamp}" if stamp else ""
    return log_dir / f"{kind}-{file_stem(name)}{suffix}.txt"


def write_bytes(path: Path, data: bytes) -> None:
    """Write a file (making its folder), or say in one line why it cannot be."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        raise unwritable(path, exc) from None


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8", "surrogateescape"))


def check_writable_file(path: Path) -> None:
    """Refuse, before any work, an output path that can only fail: a folder, or a file
    inside something that is not a folder."""
    if path.is_dir():
        raise OutputUnwritable(
            f"{path} is a folder; give a file name for the output, such as {path / 'out.png'}"
        )
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise OutputUnwritable(f"cannot write {path}: {parent} is a file, not a folder")


def unwritable(path: Path, exc: OSError) -> OutputUnwritable:
    """An OSError from writing path, in words."""
    reasons = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is used up",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EISDIR: "it is a folder",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.ENAMETOOLONG: "the name is too long",
    }
    reason = reasons.get(exc.errno or 0) or exc.strerror or type(exc).__name__
    return OutputUnwritable(f"cannot write {os.fspath(path)}: {reason}")


def check_writable_folder(folder: Path) -> None:
    """Refuse, before any work, an output folder that is a file (or lies in one)."""
    if folder.exists() and not folder.is_dir():
        raise OutputUnwritable(
            f"{folder} is a file; give a folder for the output (it is made if missing)"
        )
    check_writable_file(folder / "probe")


def make_folder(folder: Path) -> Path:
    """Make an output folder, or say in one line why it cannot be made."""
    check_writable_folder(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise unwritable(folder, exc) from None
    return folder
