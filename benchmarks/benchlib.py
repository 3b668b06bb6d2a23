"""Shared helpers for doppel's benchmarks: the machine, private homes, memory, tables."""

from __future__ import annotations

import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The benchmarks share the tests' data helpers: `from tests.helpers import ...`.
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))
SHARED_FACES = Path(os.environ.get("DOPPEL_TEST_FACES", ROOT.parent / "shared" / "faces"))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def machine_line() -> str:
    """One line naming the machine and its load, printed at the top of every benchmark."""
    return (
        f"machine: {os.cpu_count()} cores, {cpu_model()}, {memory_gib():.0f} GiB RAM, "
        f"Python {platform.python_version()}, load average {load()}"
    )


def peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident memory in MiB of this process (or of its waited-for children)."""
    return resource.getrusage(who).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Start this process's peak RSS (VmHWM) afresh from its current size (Linux)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def current_peak_rss_mib() -> float:
    """This process's peak RSS since start or since reset_peak_rss()."""
    return _status_kib(os.getpid(), "VmHWM") / 1024


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry.name))
    return out


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def server_memory_mib(pgdata: Path) -> tuple[float, float]:
    """(sum of current RSS, largest peak RSS of one process) of the server under pgdata.

    PostgreSQL shares its buffers between processes, so the sum over-counts shared
    pages; the largest single peak (VmHWM) is the better lower bound.
    """
    try:
        postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0, 0.0
    pids = [postmaster, *_children(postmaster)]
    total = sum(_status_kib(pid, "VmRSS") for pid in pids)
    peak = max(_status_kib(pid, "VmHWM") for pid in pids)
    return total / 1024, peak / 1024


def server_cpu_seconds(pgdata: Path) -> float:
    """CPU seconds (user + system) used so far by the server under pgdata: its live
    processes plus those that ended (parallel index-build workers), which the
    postmaster has waited for and so counts as its children."""
    try:
        postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in [postmaster, *_children(postmaster)]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
        if pid == postmaster:
            total += int(fields[13]) + int(fields[14])  # cutime, cstime
    return total / tick


class ChildPeak(threading.Thread):
    """Largest peak RSS (VmHWM) of any child process seen while running, sampled.

    getrusage(RUSAGE_CHILDREN) would also count helpers forked from a big parent,
    whose pages it counts before they exec.
    """

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_kib = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.25):
            for pid in _children(os.getpid()):
                self.peak_kib = max(self.peak_kib, _status_kib(pid, "VmHWM"))

    def __enter__(self) -> ChildPeak:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join()

    @property
    def mib(self) -> float:
        return self.peak_kib / 1024


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of another process (e.g. a database backend)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def private_home(keep: Path | None = None) -> Iterator[Path]:
    """A private DOPPEL_HOME and DEEPFACE_HOME; the embedded server is stopped at the end."""
    home = keep or Path(tempfile.mkdtemp(prefix="doppel-bench-"))
    home.mkdir(parents=True, exist_ok=True)
    saved = {k: os.environ.get(k) for k in ("DOPPEL_HOME", "DEEPFACE_HOME", "DOPPEL_DATABASE_URL")}
    os.environ["DOPPEL_HOME"] = str(home)
    os.environ["DEEPFACE_HOME"] = str(home / "deepface")
    os.environ.pop("DOPPEL_DATABASE_URL", None)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # TensorFlow as doppel runs it (oneDNN off: faster for the single faces of queries),
    # even when a helper imports it before doppel does.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    # A benchmark stopped with kill (SIGTERM) still stops its server and removes its home.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        yield home
    finally:
        from doppel.config import Settings
        from doppel.store.db import stop_embedded

        try:
            stop_embedded(Settings.from_env())
        finally:
            signal.signal(signal.SIGTERM, previous)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            if keep is None:
                shutil.rmtree(home, ignore_errors=True)


def install_random_facenet512(home: Path) -> None:
    """Random-weight Facenet512 (the real architecture, the same compute) into DEEPFACE_HOME.

    In a child process: TensorFlow's memory would otherwise stay in this one, and Linux
    counts a process's peak RSS into the children it starts later (across exec), which
    would inflate every peak measured after it.
    """
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[2]);"
        "from doppel.faces.catalog import install;"
        "from tests.helpers import write_random_facenet512;"
        "path = write_random_facenet512(Path(sys.argv[1]) / 'facenet512-random.h5');"
        "install('Facenet512', path); path.unlink()"
    )
    subprocess.run([sys.executable, "-c", code, str(home), str(ROOT)], check=True)


def prepare_models(*names: str) -> None:
    """Weights present and networks converted for the runtime, before any clock starts,
    in a child process (TensorFlow converts; see install_random_facenet512)."""
    code = (
        "import sys; from doppel.config import Settings; from doppel.faces.networks import prepare;"
        "settings = Settings.from_env();"
        "[print(line) for name in sys.argv[1:] for line in prepare(name, settings, say=print)]"
    )
    subprocess.run([sys.executable, "-c", code, *names], check=True)


def phase_command(
    script: str, phase: str, folder: Path, model: str, detector: str, *more: str
) -> list[str]:
    """The command that runs one side of a comparison in a fresh interpreter: the script
    again with --phase, so that each side's memory and threads start from nothing."""
    return [
        sys.executable,
        script,
        "--phase",
        phase,
        "--folder",
        str(folder),
        "--model",
        model,
        "--detector",
        detector,
        *more,
    ]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table, right-aligned numbers, for terminals and Markdown code blocks."""
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        pairs = zip(row, widths, strict=True)
        lines.append("  ".join(v.rjust(w) if n else v.ljust(w) for v, w in pairs))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)
