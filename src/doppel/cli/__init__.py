"""The `doppel` command: a thin Typer layer over the library."""

from __future__ import annotations

import functools
import json
import os
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
from rich.table import Table

from doppel.config import DEFAULT_DETECTOR, DEFAULT_MODEL, Settings, load_dotenv_once
from doppel.errors import DoppelError, UsageError

app = typer.Typer(
    help="Find look-alikes in a face gallery, and tell whom a face resembles.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # a DSN holds a password
    add_completion=False,
)
db_app = typer.Typer(
    help="The database: where it is, what it holds; stop the embedded server.", no_args_is_help=True
)
models_app = typer.Typer(
    help="Face models: list them, see which weights are present, install weights from a file.",
    invoke_without_command=True,
)
app.add_typer(db_app, name="db")
app.add_typer(models_app, name="models")
index_app = typer.Typer(
    help="A gallery's HNSW index: rebuild it with other parameters.", no_args_is_help=True
)
app.add_typer(index_app, name="index")

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


def _connect(settings: Settings):  # type: ignore[no-untyped-def]
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


def _ingest(
    settings: Settings,
    folder: Path,
    gallery: str,
    model: str,
    detector: str,
    all_faces: bool,
    batch_size: int,
    workers: int | None,
    storage: str = "vector",
    attributes: bool = False,
    m: int | None = None,
    ef_construction: int | None = None,
) -> None:
    from doppel.faces.embed import Embedder
    from doppel.ingest import ingest
    from doppel.store.repository import DEFAULT_EF_CONSTRUCTION, DEFAULT_M
    from doppel.types import EmbeddingConfig

    embedder = Embedder(
        EmbeddingConfig(model, detector, align=detector != "skip"), batch_size=batch_size
    )
    labeller = None
    if attributes:
        from doppel.faces.attributes import AttributePredictor

        labeller = AttributePredictor().predict_crops
    with _connect(settings) as conn, progress_bar(f"ingest {gallery}") as update:
        report = ingest(
            conn,
            folder,
            gallery,
            embedder,
            all_faces=all_faces,
            batch_size=batch_size,
            workers=workers,
            log_dir=settings.log_dir,
            progress=update,
            storage=storage,
            attributes=labeller,
            m=m or DEFAULT_M,
            ef_construction=ef_construction or DEFAULT_EF_CONSTRUCTION,
        )
    err.print(
        f"{report.faces_added} faces added from {report.images_added} files "
        f"({report.rate:.1f} files/s); {report.skipped} already present, "
        f"{len(report.no_face)} without a face, {len(report.unreadable)} unreadable"
        + (f"; listed in {report.listed_in}" if report.listed_in else "")
        + ("; HNSW index built" if report.index_built else ""),
        highlight=False,
    )


@app.command("ingest")
@friendly
def ingest_cmd(
    folder: Annotated[Path, typer.Argument(help="Folder of photos, searched recursively.")],
    gallery: Annotated[
        str | None,
        typer.Option("--gallery", "-g", help="Gallery name (default: the folder's name)."),
    ] = None,
    model: ModelOpt = DEFAULT_MODEL,
    detector: DetectorOpt = DEFAULT_DETECTOR,
    all_faces: Annotated[
        bool,
        typer.Option(
            "--all-faces/--largest-face", help="Keep every face of a photo, or only the largest."
        ),
    ] = False,
    attributes: Annotated[
        bool, typer.Option("--attributes", help="Predict age, sex and race for each face.")
    ] = False,
    halfvec: Annotated[
        bool, typer.Option("--halfvec", help="Store the index in half precision (new galleries).")
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Faces embedded per model call.")] = 32,
    workers: Annotated[
        int | None, typer.Option(min=0, help="Decoding processes (default: one per core).")
    ] = None,
    m: MOpt = None,
    ef_construction: EfConstructionOpt = None,
) -> None:
    """Embed every photo under FOLDER into a gallery; run again to resume or update."""
    settings = Settings.from_env()
    _ingest(
        settings,
        folder,
        gallery or folder.resolve().name,
        model,
        detector,
        all_faces,
        batch_size,
        workers,
        "halfvec" if halfvec else "vector",
        attributes,
        m,
        ef_construction,
    )


@app.command("load-dump")
@friendly
def load_dump_cmd(
    dump: Annotated[
        Path,
        typer.Argument(
            help="pg_dump of the original faces table: plain SQL, "
            "INSERTs or custom format, gzip or not."
        ),
    ],
    gallery: Annotated[
        str | None, typer.Option("--gallery", "-g", help="Gallery name (default: the file's name).")
    ] = None,
    image_root: Annotated[
        Path | None,
        typer.Option(
            "--image-root",
            envvar="DOPPEL_IMAGE_ROOT",
            help="Local copy of FFHQ for the pictures; dump paths map onto it by NNNNN/NNNNN.png.",
        ),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Stop at the first bad row instead of skipping it.")
    ] = False,
) -> None:
    """Load the original project's sql_dump.sql (its 70,000 FFHQ faces) into a gallery."""
    from doppel.dump.loader import load_dump
    from doppel.sources import add_image_root

    settings = Settings.from_env()
    if image_root is not None:
        image_root = add_image_root(image_root, settings)
    columns = [
        TextColumn(f"load {dump.name}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rows]:,} rows {task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    with _connect(settings) as conn, Progress(*columns, console=err) as bar:
        task = bar.add_task("load", total=None, rows=0, rate="")

        def update(done: int, total: int, rows: int) -> None:
            elapsed = bar.tasks[0].elapsed or 0.0
            rate = f"({rows / elapsed:,.0f}/s)" if elapsed > 0 else ""
            bar.update(task, completed=done, total=total, rows=rows, rate=rate)

        report = load_dump(conn, dump, gallery, strict=strict, progress=update)
    listed = None
    if report.bad_rows or report.ignored:
        settings.log_dir.mkdir(parents=True, exist_ok=True)
        listed = settings.log_dir / f"load-dump-{report.gallery}.txt"
        listed.write_text(
            "".join(f"bad row\tline {b.line}\t{b.reason}\n" for b in report.bad_rows)
            + "".join(f"ignored\tline {i.line}\t{i.what}\n" for i in report.ignored),
            encoding="utf-8",
        )
    for bad in report.bad_rows[:5]:
        err.print(f"bad row at line {bad.line}: {bad.reason}", highlight=False)
    for item in report.ignored[:5]:
        err.print(f"ignored (not run) at line {item.line}: {item.what}", highlight=False)
    err.print(
        f"{report.rows_loaded:,} faces loaded into gallery {report.gallery} from a "
        f"{report.format} dump in {report.seconds:.1f} s ({report.rate:,.0f} rows/s); "
        f"{report.rows_present:,} already present, {len(report.bad_rows):,} bad rows skipped, "
        f"{len(report.ignored):,} other statements ignored"
        + (f" (listed in {listed})" if listed else "")
        + (f"; HNSW index built in {report.index_seconds:.1f} s" if report.index_built else "")
        + (f"; images from {image_root}" if image_root else ""),
        highlight=False,
        soft_wrap=True,
    )


def _parse_age(value: str | None) -> tuple[int | None, int | None]:
    if not value:
        return None, None
    low, sep, high = value.partition("-")
    try:
        return (int(low) if low else None), (
            int(high) if sep and high else int(low) if not sep else None
        )
    except ValueError:
        raise typer.BadParameter(
            "use MIN-MAX, MIN- or -MAX, e.g. 20-35", param_hint="--age"
        ) from None


@app.command("find")
@friendly
def find_cmd(
    photo: Annotated[Path, typer.Argument(help="Photo with the face to look for.")],
    gallery: Annotated[
        str | None,
        typer.Option(
            "--gallery",
            "-g",
            envvar="DOPPEL_GALLERY",
            help="Gallery to search (default: the only one).",
        ),
    ] = None,
    in_dir: Annotated[
        Path | None, typer.Option("--in", help="Ingest this folder (incrementally) and search it.")
    ] = None,
    k: Annotated[int, typer.Option("-k", "--top", min=1, max=100, help="How many matches.")] = 5,
    model: ModelOpt = DEFAULT_MODEL,
    detector: Annotated[
        str | None,
        typer.Option(
            "--detector", "-d", help="Detector for the query (default: the gallery's, or mtcnn)."
        ),
    ] = None,
    all_faces: Annotated[
        bool,
        typer.Option(
            "--all-faces", help="Search with every face in the photo, not only the largest."
        ),
    ] = False,
    sex: Annotated[str | None, typer.Option(help="Only faces of this sex (F or M).")] = None,
    race: Annotated[
        list[str] | None, typer.Option(help="Only faces of this race (repeatable).")
    ] = None,
    age: Annotated[str | None, typer.Option(help="Only faces in this age range, MIN-MAX.")] = None,
    same_attributes: Annotated[
        bool,
        typer.Option(
            "--same-attributes", help="Predict the query's sex and race and filter on them."
        ),
    ] = False,
    exact: Annotated[
        bool, typer.Option("--exact", help="Exact search without the index (slow; to check it).")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Composite PNG (default: doppel-<photo>.png)."),
    ] = None,
    no_picture: Annotated[
        bool, typer.Option("--no-picture", help="Do not write the composite.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    ef_search: Annotated[
        int | None,
        typer.Option(
            "--ef-search",
            envvar="DOPPEL_EF_SEARCH",
            min=1,
            max=1000,
            help="HNSW candidates per search (default 400); more: better recall, slower.",
        ),
    ] = None,
) -> None:
    """Find the faces in a gallery most like the face in PHOTO."""
    from doppel.search import find
    from doppel.store.repository import DEFAULT_EF_SEARCH
    from doppel.types import Filters

    settings = Settings.from_env()
    if not photo.is_file():
        raise UsageError(f"{photo}: no such file")
    if sex is not None and sex.upper() not in ("F", "M"):
        raise typer.BadParameter("use F or M", param_hint="--sex")
    if in_dir is not None:
        gallery = gallery or in_dir.resolve().name
        _ingest(settings, in_dir, gallery, model, settings.detector, False, 32, None)
    age_min, age_max = _parse_age(age)
    filters = Filters(sex.upper() if sex else None, tuple(race or ()), age_min, age_max)
    picture = None if no_picture else (output or Path(f"doppel-{photo.stem}.png"))
    with _connect(settings) as conn:
        if same_attributes:
            from doppel.faces.attributes import same_attribute_filters

            filters = same_attribute_filters(photo, filters)
        result = find(
            conn,
            photo,
            gallery,
            k=k,
            filters=filters,
            exact=exact,
            all_faces=all_faces,
            detector=detector,
            default_detector=settings.detector,
            composite=picture,
            ef_search=ef_search or DEFAULT_EF_SEARCH,
        )
    _print_find(result, as_json)


def _short(source: str) -> str:
    """A source as the user would type it: relative to the working folder when inside it."""
    try:
        return os.path.relpath(source) if os.path.isabs(source) else source
    except ValueError:
        return source


def _print_find(result: Any, as_json: bool) -> None:
    if as_json:
        payload = {
            "gallery": result.gallery.name,
            "query": result.query,
            "composite": str(result.composite) if result.composite else None,
            "faces": [
                {
                    "box": vars(item.face.box),
                    "matches": [
                        {
                            "rank": m.rank,
                            "similarity": round(m.similarity, 6),
                            "distance": round(m.distance, 6),
                            "face_id": m.face.id,
                            "source": m.face.source,
                            "age": m.face.age,
                            "sex": m.face.sex,
                            "race": m.face.race,
                        }
                        for m in item.matches
                    ],
                }
                for item in result.results
            ],
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    for number, item in enumerate(result.results, start=1):
        table = Table(
            title=f"{result.query} in gallery {result.gallery.name}"
            + (f" (face {number})" if len(result.results) > 1 else "")
        )
        for column, justify in (
            ("rank", "right"),
            ("similarity", "right"),
            ("distance", "right"),
            ("source", "left"),
            ("attributes", "left"),
        ):
            table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
        for m in item.matches:
            attrs = ", ".join(str(a) for a in (m.face.sex, m.face.age, m.face.race) if a)
            table.add_row(
                str(m.rank),
                f"{m.similarity:.4f}",
                f"{m.distance:.4f}",
                _short(m.face.source),
                attrs or "-",
            )
        out.print(table)
    if result.composite:
        err.print(f"composite written to {result.composite}", highlight=False)


@app.command("resemble")
@friendly
def resemble_cmd(
    people_dir: Annotated[
        Path,
        typer.Argument(
            help="A folder per person (people/mum/*.jpg, people/dad/*.jpg), two or more."
        ),
    ],
    target_dir: Annotated[Path, typer.Argument(help="Folder of the target's photos.")],
    model: ModelOpt = DEFAULT_MODEL,
    detector: DetectorOpt = DEFAULT_DETECTOR,
    method: Annotated[
        list[str] | None,
        typer.Option(
            "--method", help="Only this method (repeatable): cosine, centroid, knn, logistic."
        ),
    ] = None,
    k: Annotated[
        int | None,
        typer.Option(
            "-k",
            min=1,
            help="Neighbours for knn (default: the smallest person's photo count, at most 5).",
        ),
    ] = None,
    rounds: Annotated[
        int, typer.Option("--bootstrap", min=10, help="Bootstrap resamples of the target photos.")
    ] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    by_date: Annotated[
        bool,
        typer.Option(
            "--by-date",
            help="Group target photos by capture "
            "date (EXIF, else file time) and show how resemblance moves.",
        ),
    ] = False,
    period: Annotated[
        str, typer.Option(help="Period for --by-date: auto, year, month, day.")
    ] = "auto",
    output: Annotated[
        Path, typer.Option("--out", "-o", help="Report folder (index.html, report.json, PNGs).")
    ] = Path("resemble-report"),
) -> None:
    """Tell which person of PEOPLE_DIR the target in TARGET_DIR resembles, and how surely."""
    from doppel.faces.embed import embedder_for
    from doppel.resemble.analysis import resemble
    from doppel.resemble.report import write_report
    from doppel.types import EmbeddingConfig

    settings = Settings.from_env()
    embedder = embedder_for(EmbeddingConfig(model, detector, align=detector != "skip"))
    with _connect(settings) as conn, progress_bar("embed photos") as update:
        result = resemble(
            conn,
            people_dir,
            target_dir,
            embedder,
            methods=method,
            k=k,
            rounds=rounds,
            seed=seed,
            by_date=by_date,
            period=period,
            progress=update,
        )
    files = write_report(result, output)
    _print_resemble(result)
    err.print(
        f"{result.embedded} photos embedded, {result.from_cache} from the cache; "
        f"report: {files.html.resolve()}",
        highlight=False,
    )


def _print_resemble(result: Any) -> None:
    table = Table(title="resemblance per method (95% bootstrap interval over target photos)")
    table.add_column("method")
    for person in result.people:
        table.add_column(person, justify="right")
    for column in ("first", "in resamples", "LOO accuracy"):
        table.add_column(column, justify="right")
    for m in result.methods:
        cells = []
        for p in result.people:
            text = f"{m.scores[p]:.3f} [{m.intervals[p].low:.3f}, {m.intervals[p].high:.3f}]"
            cells.append(f"[bold]{text}[/]" if p == m.winner else text)
        loo = f"{m.loo_accuracy:.0%} of {m.loo_photos}" if m.loo_accuracy is not None else "n/a"
        table.add_row(m.title, *cells, m.winner, f"{m.support:.0%}", loo)
    out.print(table)
    out.print(f"[bold]{result.verdict}[/]", highlight=False)
    photos = Table(title=f"per target photo ({result.basis.title})")
    photos.add_column("photo")
    for person in result.people:
        photos.add_column(person, justify="right")
    photos.add_column("closest")
    photos.add_column("note")
    for t in result.targets:
        note = "outlier" if t.outlier else ""
        if t.face_count > 1:
            note = ", ".join(filter(None, [note, f"{t.face_count} faces, largest used"]))
        photos.add_row(
            Path(t.path).name, *[f"{t.scores[p]:.3f}" for p in result.people], t.closest, note
        )
    out.print(photos)
    if result.periods:
        over_time = Table(title=f"over time ({result.basis.title})")
        over_time.add_column("period")
        over_time.add_column("photos", justify="right")
        for person in result.people:
            over_time.add_column(person, justify="right")
        for period in result.periods:
            scores = period.scores[result.per_photo_basis]
            over_time.add_row(
                period.label, str(len(period.photos)), *[f"{scores[p]:.3f}" for p in result.people]
            )
        out.print(over_time)
    for path in result.no_face:
        err.print(f"skipped {path}: no face found", highlight=False)
    for line in [*result.unreadable, *result.notes]:
        err.print(line, highlight=False)


@db_app.command("status")
@friendly
def db_status() -> None:
    """Where the database is, its versions, and each gallery with its faces and index."""
    from doppel.store.db import server_info
    from doppel.store.repository import Repository
    from doppel.types import describe

    settings = Settings.from_env()
    with _connect(settings) as conn:
        info = server_info(conn, settings)
        stats = Repository(conn).stats()
    out.print(f"database:  {info.location}", highlight=False)
    out.print(
        f"server:    PostgreSQL {info.server_version}, pgvector {info.pgvector_version}",
        highlight=False,
    )
    if not stats:
        out.print("galleries: none yet")
        return
    table = Table(title="galleries")
    for column in ("name", "faces", "files", "no face", "unreadable", "embedding", "index"):
        table.add_column(column)
    for s in stats:
        index = (
            f"{s.index} (HNSW cosine, {s.gallery.storage}, {s.index_bytes / 2**20:.1f} MiB)"
            if s.index
            else "none"
        )
        table.add_row(
            s.gallery.name,
            str(s.faces),
            str(s.images),
            str(s.no_face),
            str(s.unreadable),
            describe(s.gallery.config),
            index,
        )
    out.print(table)


@db_app.command("stop")
@friendly
def db_stop() -> None:
    """Stop doppel's embedded PostgreSQL server (the next command starts it again)."""
    from doppel.store.db import stop_embedded

    settings = Settings.from_env()
    if settings.database_url:
        raise UsageError("DOPPEL_DATABASE_URL points at your own server; doppel does not stop it")
    stopped = stop_embedded(settings)
    out.print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")


@models_app.callback()
@friendly
def models_list(ctx: typer.Context) -> None:
    """List supported models and detectors, with whether their weights are present."""
    if ctx.invoked_subcommand is not None:
        return
    from doppel.faces.catalog import all_status, weights_dir

    table = Table(title=f"models (weights folder: {weights_dir()})")
    for column in ("name", "kind", "dim", "weights", "where", "note"):
        table.add_column(column)
    for status in all_status():
        spec = status.spec
        present = "n/a" if spec.weights is None else ("present" if status.present else "MISSING")
        where = str(status.path) if status.path else (spec.weights or "")
        table.add_row(spec.name, spec.kind, str(spec.dimension or ""), present, where, spec.note)
    out.print(table)
    out.print("Install a missing file with `doppel models install NAME FILE`.")


@models_app.command("install")
@friendly
def models_install(
    name: Annotated[str, typer.Argument(help="Model name, as `doppel models` lists it.")],
    file: Annotated[Path, typer.Argument(help="The weights file you downloaded.")],
) -> None:
    """Install a weights file downloaded elsewhere, where DeepFace looks for it."""
    from doppel.faces.catalog import install

    target = install(name, file)
    out.print(f"installed {file} as {target}", highlight=False)


@app.command("serve")
@friendly
def serve_cmd(
    port: Annotated[
        int,
        typer.Option(
            "--port", "-p", envvar="DOPPEL_PORT", min=1, max=65535, help="TCP port to listen on."
        ),
    ] = 8765,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            envvar="DOPPEL_HOST",
            help="Address to listen on; anything but loopback lets other machines in.",
        ),
    ] = "127.0.0.1",
    gallery: Annotated[
        str | None,
        typer.Option(
            "--gallery", "-g", envvar="DOPPEL_GALLERY", help="Gallery the page starts with."
        ),
    ] = None,
    reports: Annotated[
        Path | None,
        typer.Option(
            "--reports",
            envvar="DOPPEL_REPORTS",
            help="Folder of `doppel resemble` reports (default: $DOPPEL_HOME/reports).",
        ),
    ] = None,
    max_upload: Annotated[
        int, typer.Option("--max-upload", min=1, max=1024, help="Largest upload accepted, in MiB.")
    ] = 20,
    keep_uploads: Annotated[
        Path | None,
        typer.Option(
            "--keep-uploads",
            help="Save uploaded photos in this folder (default: they are never written to disk).",
        ),
    ] = None,
) -> None:
    """Serve the look-alike search page and its JSON API (/api/docs), models loaded once."""
    from doppel.web.app import create_app, is_loopback, serve

    settings = Settings.from_env()
    if not is_loopback(host):
        err.print(
            f"[bold yellow]warning:[/] listening on {host}: anyone who can reach this "
            "machine can search your galleries and see their photos",
            highlight=False,
        )
    app_ = create_app(
        settings,
        gallery=gallery,
        reports_dir=reports or settings.home / "reports",
        report_cwd=Path.cwd(),
        max_upload=max_upload * 2**20,
        keep_uploads=keep_uploads,
    )
    err.print(
        f"loading models, then serving on http://{host}:{port}/ (Ctrl-C stops)", highlight=False
    )
    serve(app_, host, port)


@index_app.command("rebuild")
@friendly
def index_rebuild(
    gallery: Annotated[
        str | None,
        typer.Option(
            "--gallery", "-g", envvar="DOPPEL_GALLERY", help="Gallery (default: the only one)."
        ),
    ] = None,
    m: MOpt = None,
    ef_construction: EfConstructionOpt = None,
) -> None:
    """Drop a gallery's HNSW index and build it again, e.g. with other --m/--ef-construction."""
    import time

    from doppel.store.repository import DEFAULT_EF_CONSTRUCTION, DEFAULT_M, Repository

    settings = Settings.from_env()
    m, ef_construction = m or DEFAULT_M, ef_construction or DEFAULT_EF_CONSTRUCTION
    with _connect(settings) as conn:
        repo = Repository(conn)
        target = repo.pick_gallery(gallery)
        err.print(
            f"building the HNSW index of {target.name} ({repo.face_count(target)} faces, "
            f"m={m}, ef_construction={ef_construction}) ...",
            highlight=False,
        )
        start = time.perf_counter()
        repo.drop_index(target)
        repo.ensure_index(target, m, ef_construction)
        size = next(s.index_bytes for s in repo.stats() if s.gallery.id == target.id)
    out.print(
        f"index of {target.name} rebuilt in {time.perf_counter() - start:.1f} s ({size / 2**20:.1f} MiB)",
        highlight=False,
    )


def main() -> None:
    load_dotenv_once()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    app(prog_name="doppel")


if __name__ == "__main__":  # pragma: no cover
    main()
