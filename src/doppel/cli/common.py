"""What every command shares: the consoles, error handling, progress bars, options."""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text
from typer.core import TyperCommand

from doppel.config import Settings, debug_enabled
from doppel.errors import DoppelError, Remedy

# No console markup: what doppel prints holds paths, gallery names and messages, and a
# "[draft]" in a file name must come out as written, not be taken for a style.
out = Console(markup=False)
err = Console(stderr=True, markup=False)


def labelled(label: str, style: str, message: str) -> Text:
    """`label` in its style, then the message as plain text."""
    return Text.assemble((label, style), " ", message)


# What to do next, in the command's words, after an error that names a Remedy.
HINTS: dict[Remedy, str] = {
    Remedy.OTHER_DETECTOR: "or try another detector (--detector)",
    Remedy.MAKE_GALLERY: "make one with `doppel ingest DIR` or `doppel load-dump FILE`",
    Remedy.CHOOSE_GALLERY: "choose one with --gallery",
    Remedy.OTHER_GALLERY: "use another --gallery name, or the options the gallery was made with",
    Remedy.SKIP_BAD_ROWS: "without --strict bad rows are skipped and listed",
    Remedy.NO_SAME_ATTRIBUTES: "or drop --same-attributes",
    Remedy.LIST_MODELS: "`doppel models` lists the ones doppel supports",
    Remedy.INSTALL_WEIGHTS: "then run `doppel models install {model} FILE` "
    "(`doppel models install {model}` downloads it where there is internet)",
    Remedy.PREDICT_ATTRIBUTES: "ingest with --attributes to predict them, or search without "
    "--sex, --race and --age",
    Remedy.CALIBRATE: "measure one with `doppel calibrate PEOPLE_DIR -m {model} -d {detector}` "
    "(PEOPLE_DIR: one subfolder of photos per person; needs the model's weights)",
    Remedy.LIST_FACES: "`doppel people GALLERY --json` lists them",
    Remedy.START_CLUSTER: "`doppel db cluster start` starts it again",
    Remedy.NEW_CLUSTER: "start it without --workers (it keeps its own), or "
    "`doppel db cluster stop --delete` and start a new one",
    Remedy.DISTRIBUTE: "`doppel db distribute` spreads them over the workers (it copies every "
    "face once and builds the galleries' indexes again)",
    Remedy.LIST_PEOPLE: "see `doppel people {gallery}` for their ids",
    Remedy.MAKE_PEOPLE: "it has no people yet: run `doppel people {gallery}` first",
}


def error_line(exc: DoppelError) -> str:
    """The error as the CLI prints it: its message, then its remedy in the CLI's words."""
    if exc.remedy is None:
        return str(exc)
    return f"{exc}; {HINTS[exc.remedy].format(**exc.context)}"


F = TypeVar("F", bound=Callable[..., Any])


# What Ctrl-C leaves behind, by command: ingest commits batch by batch, load-dump
# loads a dump in one transaction; other commands write nothing half-way.
INTERRUPTED = {
    "ingest_cmd": "interrupted; finished batches are saved, run the command again to resume",
    "find_cmd": "interrupted; what --in had ingested is saved, run the command again to resume",
    "load_dump_cmd": (
        "interrupted; nothing was loaded (a dump loads in one transaction), run the command "
        "again to load it whole"
    ),
}


def friendly(func: F) -> F:
    """Turn an expected failure into one line on stderr and a non-zero exit."""
    interrupted = INTERRUPTED.get(func.__name__, "interrupted")

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DoppelError as exc:
            if debug_enabled():
                raise
            err.print(labelled("error:", "bold red", error_line(exc)), soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except Exception as exc:
            # psycopg is imported only by commands that connect; --help need not load it.
            psycopg = sys.modules.get("psycopg")
            if psycopg is None or not isinstance(exc, psycopg.Error):
                raise
            if debug_enabled():
                raise
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            from doppel.store.citus_failure import node_failure

            # A Citus worker that is down fails the whole statement: name the node.
            node = node_failure(command_settings(), reason)
            if node is None and not isinstance(exc, psycopg.OperationalError):
                raise
            line = error_line(node) if node else f"database connection lost: {reason}"
            err.print(labelled("error:", "bold red", line), soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print(interrupted, highlight=False)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


class _CountingProgress(Progress):
    """A progress bar with a second line under it: what the work has found so far."""

    counts = ""

    def get_renderables(self) -> Iterator[Any]:
        yield self.make_tasks_table(self.tasks)
        if self.counts:
            yield Text(self.counts, style="dim")


# The estimate waits for this many files (or this share of them) and seconds: the first
# files come from decoders that started ahead of the model, and would promise too much.
ETA_MIN_FILES = 8
ETA_MIN_SHARE = 0.02
ETA_MIN_SECONDS = 5.0


def remaining_time(done: int, total: int, worked: int, elapsed: float, stored: bool = True) -> str:
    """The time left at the average rate since the bar started (not the last moments'),
    or "…" while there is too little to go on. `worked` counts the files that cost work
    (files already in the gallery pass in no time and would make the rate a promise).
    `stored`: a first batch has been embedded and written. Files are counted as they are
    detected, and their faces embedded a batch at a time, so before the first batch the
    rate leaves out most of the work (the Dlib model's embedding, mirror and all)."""
    import datetime

    if done >= total:
        return "0:00:00"
    enough = max(ETA_MIN_FILES, ETA_MIN_SHARE * total)
    if worked < enough or elapsed < ETA_MIN_SECONDS or not stored:
        return "…"
    seconds = (total - done) * elapsed / worked
    return str(datetime.timedelta(seconds=round(seconds)))


def _count(value: Any) -> int:
    return value if isinstance(value, int) else len(value)


def settled_files(report: Any) -> int:
    """Files an ingest has finished with: stored with their faces, without a face,
    unreadable, too small, or present already. Files whose faces wait for the next
    batch are not among them."""
    return (
        report.skipped
        + report.images_added
        + _count(report.no_face)
        + _count(report.unreadable)
        + _count(getattr(report, "too_small", ()))
    )


def found_so_far(report: Any) -> str:
    """The running counts of an ingest, as its files are detected: faces found, photos
    without one, unreadable, too small."""
    count = _count
    found = getattr(report, "faces_found", report.faces_added)
    small = count(getattr(report, "too_small", ()))
    tail = f" · too small: {small:,}" if small else ""
    return (
        f"faces found: {found:,} · photos without a face: {count(report.no_face):,} · "
        f"unreadable: {count(report.unreadable):,}{tail}"
    )


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[..., None]]:
    """A rich progress bar (count, rate, ETA) fed by a (done, total) callback; given an
    ingest's report as a third argument, it shows the report's running counts beneath.

    It appears with the first call, so a command that fails before any work (not a
    folder, no images, missing weights) prints its error alone. The estimate is the
    average rate since the first file (see remaining_time).
    """
    import time

    columns = [
        TextColumn(label),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA {task.fields[eta]}"),
    ]
    bar = _CountingProgress(*columns, console=err, transient=False)
    task = None
    started = 0.0

    def update(done: int, total: int, report: Any = None) -> None:
        nonlocal task, started
        if task is None:
            bar.start()
            task = bar.add_task(label, total=None, rate="", eta="…")
            started = time.monotonic()
        elapsed = time.monotonic() - started
        rate = f"{done / elapsed:.1f}/s" if elapsed > 0 else ""
        if report is None:
            eta = remaining_time(done, total, done, elapsed)
        else:
            # The estimate counts finished files: faces are embedded a batch at a time, so
            # files merely detected would promise the time of the embedding away.
            settled = settled_files(report)
            stored = report.images_added > 0
            eta = remaining_time(settled, total, settled - report.skipped, elapsed, stored)
        if report is not None:
            bar.counts = found_so_far(report)
        bar.update(task, completed=done, total=total, rate=rate, eta=eta)

    try:
        yield update
    finally:
        if task is not None:
            bar.stop()


@contextmanager
def index_progress_bar(label: str) -> Iterator[Callable[[Any], None]]:
    """A progress bar for an index build, fed with BuildProgress readings; it appears
    with the first reading, so a build too short to report shows nothing."""
    columns = [
        TextColumn(label),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[phase]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    bar = Progress(*columns, console=err, transient=False)
    task = None

    def update(progress: Any) -> None:
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task(label, total=None, phase="")
        # pgvector names its phases "building index: loading tuples" and the like.
        phase = str(progress.phase).removeprefix("building index: ")
        bar.update(task, completed=progress.done, total=progress.total or None, phase=phase)

    try:
        yield update
    finally:
        if task is not None:
            bar.stop()


def index_summary(built: bool, background: bool, seconds: float) -> str:
    """The end of a loader's summary line: what became of the index."""
    if built:
        return f"; HNSW index built in {seconds:.1f} s"
    if background:
        return (
            "; searchable now (exact search), HNSW index building in the background "
            "(`doppel db status` shows it)"
        )
    return ""


IndexWhenOpt = Annotated[
    str,
    typer.Option(
        "--index",
        help="When to build the gallery's index: auto (by size: in the background for "
        "20,000 to 300,000 faces, searched exactly meanwhile; otherwise before returning), "
        "wait, background or skip.",
    ),
]


def command_settings(ctx: typer.Context | None = None) -> Settings:
    """This command's Settings, kept in the root of Typer's context (ctx.obj): the
    environment (Settings.from_env) with the options given before the command over it,
    so a flag wins over its variable. The app's callback leaves the chosen fields there
    (a dict); they become Settings at the command's first use, inside its error handling.
    A caller can hand its own: CliRunner().invoke(app, args, obj=Settings(...)). ctx:
    the command's context; without it, the one the command runs in.
    """
    root = (ctx or _current_context()).find_root()
    if not isinstance(root.obj, Settings):
        root.obj = Settings.from_env(**(root.obj or {}))
    return root.obj


def _current_context() -> typer.Context:
    """The context of the running command, from the click that runs Typer: its own copy
    in the Typer installed here, click itself in older releases."""
    try:
        from typer._click.globals import get_current_context
    except ImportError:  # an older Typer on click
        from click import get_current_context  # type: ignore[no-redef]
    return get_current_context()  # type: ignore[return-value]


def connect(settings: Settings):  # type: ignore[no-untyped-def]
    from doppel.store.db import connect

    return connect(settings)


# A value that names a Ray cluster rather than a folder: ray://HOST:PORT, HOST:PORT,
# auto (the cluster this machine belongs to) or local (a Ray started for the run).
_RAY_ADDRESS = re.compile(r"(auto|local|[a-z][a-z0-9+.-]*://\S+|[\w.-]+:\d{1,5})")


def bare_option_values(args: list[str], option: str, bare: str) -> list[str]:
    """The arguments with `bare` after each `option` given without a value.

    Typer options take a value or none, never "maybe": `--cluster` alone and
    `--cluster ray://head:10001` both have to parse. The word after the option is its
    value only if it looks like a cluster's address, so `ingest --cluster photos/`
    still reads photos/ as the folder.
    """
    out: list[str] = []
    for i, arg in enumerate(args):
        out.append(arg)
        if arg == option:
            following = args[i + 1] if i + 1 < len(args) else None
            if following is None or not _RAY_ADDRESS.fullmatch(following):
                out.append(bare)
    return out


class ClusterCommand(TyperCommand):
    """A command with a `--cluster [ADDRESS]` option (see bare_option_values)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, bare_option_values(args, "--cluster", ""))


def flag(names: str, help: str) -> Any:
    """A boolean option, off unless given ("--name", or "--name/--other" for a pair):
    `x: Annotated[bool, flag("--x", "What it does.")] = False`."""
    return typer.Option(names, help=help)


JsonOpt = Annotated[bool, flag("--json", "Print JSON.")]
# Options whose default comes from the Settings (an environment variable, else doppel's
# default) are None here and resolved by the command: `model or settings.model`.
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Face recognition model (see `doppel models`; default: $DOPPEL_MODEL, else "
        "Facenet512).",
        show_default=False,
    ),
]
DetectorOpt = Annotated[
    str | None,
    typer.Option(
        "--detector",
        "-d",
        help="Face detector (default: $DOPPEL_DETECTOR, else the model's own, see `doppel "
        "models`): dlib, mmod, mtcnn, retinaface, opencv, or skip for pre-aligned crops.",
        show_default=False,
    ),
]
# The detector of photos compared or measured (verify, calibrate), not of a gallery.
PhotoDetectorOpt = Annotated[
    str | None,
    typer.Option("--detector", "-d", help="Face detector (default: $DOPPEL_DETECTOR)."),
]
GalleryOpt = Annotated[
    str | None,
    typer.Option("--gallery", "-g", help="Gallery (default: $DOPPEL_GALLERY, else the only one)."),
]
MOpt = Annotated[
    int | None,
    typer.Option(
        "--m",
        min=2,
        max=100,
        help="HNSW links per face when the index is built (default: by gallery size, 16); more: "
        "better recall, bigger, slower to build.",
    ),
]
EfConstructionOpt = Annotated[
    int | None,
    typer.Option(
        "--ef-construction",
        min=4,
        max=1000,
        help="HNSW candidate list while building (default: by gallery size, 64); more: better "
        "recall, slower build.",
    ),
]


def short_source(source: str) -> str:
    """A source short enough for a table: the path relative to the working folder when the
    file is inside it, else the file's name (--json keeps the whole path). A relative
    source (a dump's FFHQ path, a URL) is shown as recorded."""
    if not os.path.isabs(source):
        return source
    path = Path(source)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return path.name
