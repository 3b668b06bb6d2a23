"""What every command shares: the consoles, error handling, progress bars, options."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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

from doppel.config import Settings
from doppel.errors import DoppelError

out = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def friendly(func: F) -> F:
    """Turn an expected failure into one line on stderr and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DoppelError as exc:
            if Settings.from_env().debug:
                raise
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except Exception as exc:
            # psycopg is imported only by commands that connect; --help need not load it.
            psycopg = sys.modules.get("psycopg")
            if psycopg is None or not isinstance(exc, psycopg.OperationalError):
                raise
            if Settings.from_env().debug:
                raise
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            err.print(f"[bold red]error:[/] database connection lost: {reason}", highlight=False)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("interrupted; finished batches are saved, run the command again to resume")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar (count, rate, ETA) fed by a (done, total) callback."""
    columns = [
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task(label, total=None, rate="")

        def update(done: int, total: int) -> None:
            elapsed = bar.tasks[0].elapsed or 0.0
            rate = f"{done / elapsed:.1f}/s" if elapsed > 0 else ""
            bar.update(task, completed=done, total=total, rate=rate)

        yield update


def connect(settings: Settings):  # type: ignore[no-untyped-def]
    from doppel.store.db import connect

    return connect(settings)


ModelOpt = Annotated[
    str,
    typer.Option(
        "--model", "-m", envvar="DOPPEL_MODEL", help="Face recognition model (see `doppel models`)."
    ),
]
DetectorOpt = Annotated[
    str,
    typer.Option(
        "--detector",
        "-d",
        envvar="DOPPEL_DETECTOR",
        help="Face detector: mtcnn (default, offline), retinaface, dlib, opencv, or skip for "
        "pre-aligned crops such as FFHQ.",
    ),
]
MOpt = Annotated[
    int | None,
    typer.Option(
        "--m",
        min=2,
        max=100,
        help="HNSW links per face when the index is built (default 32); more: better recall, "
        "bigger, slower to build.",
    ),
]
EfConstructionOpt = Annotated[
    int | None,
    typer.Option(
        "--ef-construction",
        min=4,
        max=1000,
        help="HNSW candidate list while building (default 128); more: better recall, slower build.",
    ),
]
