"""The resemblance report: PNG pictures (matplotlib, Agg), index.html and report.json."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from doppel.outputs import make_folder, unwritable
from doppel.resemble.analysis import ResembleResult, pca_2d

DEFAULT_REPORT_DIR = Path("resemble-report")


@dataclass(frozen=True)
class ReportFiles:
    """Where the report went."""

    folder: Path
    html: Path
    json: Path
    pictures: dict[str, Path]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colours(n: int) -> list[Any]:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def _method_panels(n: int, width: float) -> tuple[Any, Any]:
    """A figure with one panel per method, two a row; the spare panel hidden."""
    cols = min(n, 2)
    rows = (n + cols - 1) // cols
    fig, axes = _pyplot().subplots(
        rows, cols, figsize=(width * cols, 3.6 * rows), dpi=110, squeeze=False
    )
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    return fig, axes


def _saved(fig: Any, out: Path, title: str | None = None) -> Path:
    """Lay the figure out (under its title), write it to out and free it."""
    if title is not None:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    fig.savefig(out)
    _pyplot().close(fig)
    return out


def _short(path: str, width: int = 28) -> str:
    name = Path(path).name
    return name if len(name) <= width else name[: width - 1] + "…"


def plot_pca(result: ResembleResult, out: Path) -> Path:
    """All embeddings in 2-D: people coloured, target photos marked with stars."""
    plt = _pyplot()
    everything = np.vstack([result.people_embeddings, result.target_embeddings])
    coords, share = pca_2d(everything)
    people_xy = coords[: len(result.people_embeddings)]
    target_xy = coords[len(result.people_embeddings) :]
    fig, ax = plt.subplots(figsize=(7.5, 6), dpi=110)
    for index, (name, colour) in enumerate(
        zip(result.people, _colours(len(result.people)), strict=True)
    ):
        mine = people_xy[result.people_labels == index]
        ax.scatter(
            mine[:, 0],
            mine[:, 1],
            s=70,
            color=colour,
            alpha=0.85,
            edgecolors="white",
            linewidths=0.8,
            label=f"{name} ({len(mine)} photos)",
        )
        centre = mine.mean(axis=0)
        ax.scatter(*centre, s=220, marker="X", color=colour, edgecolors="black", linewidths=0.8)
    ax.scatter(
        target_xy[:, 0],
        target_xy[:, 1],
        s=260,
        marker="*",
        color="black",
        edgecolors="yellow",
        linewidths=0.8,
        label=f"target ({len(target_xy)} photos)",
        zorder=5,
    )
    ax.scatter([], [], s=120, marker="X", color="grey", edgecolors="black", label="person's mean")
    ax.set_xlabel(f"PC1 ({share[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({share[1]:.0%} of variance)")
    ax.set_title(f"Face embeddings in 2-D (PCA, {result.config.model})")
    ax.legend(loc="best", framealpha=0.9)
    ax.grid(alpha=0.3)
    return _saved(fig, out)


def plot_scores(result: ResembleResult, out: Path) -> Path:
    """One panel per method: each person's score with its bootstrap interval."""
    fig, axes = _method_panels(len(result.methods), 5.2)
    colours = _colours(len(result.people))
    x = np.arange(len(result.people))
    for ax, method in zip(axes.flat, result.methods, strict=False):
        values = np.array([method.scores[p] for p in result.people])
        low = np.array([method.intervals[p].low for p in result.people])
        high = np.array([method.intervals[p].high for p in result.people])
        ax.bar(x, values, color=colours, edgecolor="black", linewidth=0.6)
        ax.errorbar(
            x,
            values,
            yerr=[values - low, high - values],
            fmt="none",
            ecolor="black",
            capsize=6,
            linewidth=1.3,
            label="95% interval (bootstrap)",
        )
        for xi, value in zip(x, values, strict=True):
            ax.annotate(
                f"{value:.3f}", (xi, value), textcoords="offset points", xytext=(14, 3), fontsize=9
            )
        if method.unit == "probability":
            ax.set_ylim(0, 1.08)
        else:
            floor = max(-1.0, float(low.min()) - 0.1)
            ax.set_ylim(floor, min(1.0, float(high.max()) + 0.05))
        loo = f"{method.loo_accuracy:.0%}" if method.loo_accuracy is not None else "n/a"
        ax.set_title(
            f"{method.title}\nLOO accuracy {loo}, first in {method.support:.0%} of resamples",
            fontsize=10,
        )
        ax.set_xticks(x, result.people)
        ax.set_ylabel(method.unit)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    return _saved(fig, out, "Resemblance score per method and person")


def plot_per_photo(result: ResembleResult, out: Path) -> Path:
    """A heat map: rows are target photos, columns people, cells one method's scores."""
    plt = _pyplot()
    matrix = np.array([[t.scores[p] for p in result.people] for t in result.targets])
    height = max(2.8, 0.42 * len(result.targets) + 1.6)
    width = max(5.5, 1.5 * len(result.people) + 3.5)
    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    image = ax.imshow(matrix, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(result.people)), result.people)
    labels = [("! " if t.outlier else "") + _short(t.path) for t in result.targets]
    ax.set_yticks(range(len(result.targets)), labels)
    threshold = (matrix.max() + matrix.min()) / 2
    for i, row in enumerate(matrix):
        best = int(np.argmax(row))
        for j, value in enumerate(row):
            ax.text(
                j,
                i,
                f"{value:.3f}",
                ha="center",
                va="center",
                fontsize=9,
                color="black" if value > threshold else "white",
                fontweight="bold" if j == best else "normal",
            )
        ax.add_patch(
            plt.Rectangle((best - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2)
        )
    fig.colorbar(image, ax=ax, label=f"{result.basis.title} ({result.basis.unit})")
    ax.set_title(
        "Each target photo: closest person boxed in red\n(! = closest to someone "
        "other than the verdict)",
        fontsize=10,
    )
    return _saved(fig, out)


def plot_timeline(result: ResembleResult, out: Path) -> Path:
    """Each method's scores per period of capture date, one line per person."""
    periods = result.periods or []
    fig, axes = _method_panels(len(result.methods), 5.6)
    colours = _colours(len(result.people))
    x = np.arange(len(periods))
    labels = [f"{p.label}\n({len(p.photos)})" for p in periods]
    for ax, method in zip(axes.flat, result.methods, strict=False):
        for person, colour in zip(result.people, colours, strict=True):
            ax.plot(
                x,
                [p.scores[method.name][person] for p in periods],
                marker="o",
                color=colour,
                label=person,
            )
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_title(method.title, fontsize=10)
        ax.set_ylabel(method.unit)
        if method.unit == "probability":
            ax.set_ylim(-0.04, 1.04)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _saved(fig, out, "Resemblance over time (capture period, photos in brackets)")


def as_dict(result: ResembleResult) -> dict[str, Any]:
    """Every number of the run, ready for json.dumps."""

    def interval(method: Any, person: str) -> list[float]:
        return [method.intervals[person].low, method.intervals[person].high]

    return {
        "config": {
            "model": result.config.model,
            "detector": result.config.detector,
            "align": result.config.align,
            "alignment": result.config.alignment,
            "flip": result.config.flip,
            "normalization": result.config.normalization,
        },
        "people": {name: {"photos": photos} for name, photos in result.person_photos.items()},
        "verdict": result.verdict,
        "leader": result.leader,
        "bootstrap": {"rounds": result.bootstrap_rounds, "seed": result.seed, "level": 0.95},
        "methods": [
            {
                "name": m.name,
                "title": m.title,
                "unit": m.unit,
                "winner": m.winner,
                "ranking": m.ranking,
                "support": m.support,
                "strength": m.strength,
                "margin": m.margin,
                "loo_accuracy": m.loo_accuracy,
                "loo_photos": m.loo_photos,
                "scores": m.scores,
                "intervals": {p: interval(m, p) for p in result.people},
                "per_photo": {
                    t.path: dict(zip(result.people, map(float, row), strict=True))
                    for t, row in zip(result.targets, m.per_photo, strict=True)
                },
            }
            for m in result.methods
        ],
        "per_photo_basis": result.per_photo_basis,
        "targets": [
            {
                "path": t.path,
                "closest": t.closest,
                "scores": t.scores,
                "votes": t.votes,
                "face_count": t.face_count,
                "outlier": t.outlier,
            }
            for t in result.targets
        ],
        "periods": None
        if result.periods is None
        else [{"label": p.label, "photos": p.photos, "scores": p.scores} for p in result.periods],
        "skipped": {"no_face": result.no_face, "unreadable": result.unreadable},
        "notes": result.notes,
        "embedding": {"embedded": result.embedded, "from_cache": result.from_cache},
    }


def _table(head: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    marks = classes or [""] * len(rows)
    body = "".join(
        (f'<tr class="{mark}">' if mark else "<tr>")
        + "".join(f"<td>{c}</td>" for c in row)
        + "</tr>"
        for row, mark in zip(rows, marks, strict=True)
    )
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; color: #222;
       padding: 0 1rem; }
table { border-collapse: collapse; margin: 1rem 0; max-width: 100%; }
th, td { border: 1px solid #ccc; padding: .3rem .6rem; text-align: right;
         overflow-wrap: anywhere; }
@media (max-width: 640px) {
  body { margin: 1rem auto; font-size: .9rem; }
  th, td { padding: .2rem .3rem; }
  img.thumb { display: block; margin: 0 0 .2rem; }
}
th:first-child, td:first-child { text-align: left; }
.verdict { font-size: 1.2rem; background: #f3f6fa; border-left: 4px solid #3b6ea5;
           padding: .8rem 1rem; }
.win { font-weight: bold; }
.outlier { background: #fde8e8; }
figure { margin: 1.5rem 0; } img { max-width: 100%; border: 1px solid #ddd; }
img.thumb { width: 48px; height: 48px; object-fit: cover; vertical-align: middle;
            margin-right: .5rem; border-radius: 4px; }
small { color: #666; }
"""


THUMB = 96  # pixels on the long side of a target photo's thumbnail in the report


def write_thumbnails(result: ResembleResult, folder: Path) -> dict[str, str]:
    """A small JPEG of each target photo, for its row of the page: {photo: file name
    relative to the report}. A photo that cannot be read again gets none."""
    from PIL import Image

    from doppel.errors import DoppelError
    from doppel.faces import imaging

    made: dict[str, str] = {}
    for number, target in enumerate(result.targets):
        try:
            data = imaging.read_file(imaging.text_path(target.path))
            photo = imaging.decode(data, target.path, max_side=4 * THUMB)
        except (DoppelError, OSError):
            continue
        picture = Image.fromarray(photo.pixels)
        picture.thumbnail((THUMB, THUMB), Image.Resampling.LANCZOS)
        name = f"thumbs/{number:04d}.jpg"
        (folder / "thumbs").mkdir(exist_ok=True)
        picture.convert("RGB").save(folder / name, "JPEG", quality=85)
        made[target.path] = name
    return made


# Over 80 lines: mostly the page's HTML text.
def write_html(
    result: ResembleResult,
    pictures: dict[str, Path],
    out: Path,
    thumbs: dict[str, str] | None = None,
) -> Path:
    """One page: verdict, method x person table, per-photo table (a thumbnail of each
    photo beside its row), pictures, skipped photos."""
    esc = html.escape
    thumbs = thumbs or {}
    method_rows = []
    for m in result.methods:
        cells = [esc(m.title)]
        for p in result.people:
            iv = m.intervals[p]
            text = f"{m.scores[p]:.3f} <small>[{iv.low:.3f}, {iv.high:.3f}]</small>"
            cells.append(f'<span class="win">{text}</span>' if p == m.winner else text)
        loo = (
            f"{m.loo_accuracy:.0%} <small>({m.loo_photos} photos)</small>"
            if m.loo_accuracy is not None
            else "n/a"
        )
        cells += [esc(m.winner), f"{m.support:.0%}", loo, esc(m.unit)]
        method_rows.append(cells)
    methods_table = _table(
        ["method", *result.people, "first", "first in resamples", "LOO accuracy", "unit"],
        method_rows,
    )
    photo_rows = []
    for t in result.targets:
        thumb = thumbs.get(t.path)
        picture = f'<img class="thumb" src="{esc(thumb)}" alt="">' if thumb else ""
        cells = [f"{picture}{esc(Path(t.path).name)}"]
        cells += [f"{t.scores[p]:.3f}" for p in result.people]
        votes = ", ".join(f"{esc(p)} {n}" for p, n in t.votes.items() if n)
        note = f"{t.face_count} faces, largest used" if t.face_count > 1 else ""
        cells += [esc(t.closest), votes, note]
        photo_rows.append(cells)
    photos_table = _table(
        [
            "target photo",
            *[f"{p} ({result.basis.title})" for p in result.people],
            "closest",
            "methods' votes",
            "note",
        ],
        photo_rows,
        ["outlier" if t.outlier else "" for t in result.targets],
    )
    figures = "".join(
        f'<figure><img src="{esc(path.name)}" alt="{esc(title)}">'
        f"<figcaption>{esc(title)}</figcaption></figure>"
        for title, path in pictures.items()
    )
    period_html = ""
    if result.periods:
        rows = [
            [esc(p.label), str(len(p.photos))] + [esc(p.first(m.name)) for m in result.methods]
            for p in result.periods
        ]
        period_html = "<h2>Over time</h2>" + _table(
            ["period", "photos", *[f"first by {m.title}" for m in result.methods]], rows
        )
    skipped = [f"{esc(p)}: no face found, skipped" for p in result.no_face]
    skipped += [esc(p) for p in result.unreadable]
    skipped += [esc(n) for n in result.notes]
    skipped_html = (
        "<h2>Notes</h2><ul>" + "".join(f"<li>{s}</li>" for s in skipped) + "</ul>"
        if skipped
        else ""
    )
    people = ", ".join(f"{esc(n)} ({len(p)} photos)" for n, p in result.person_photos.items())
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>doppel resemble: {esc(result.leader)}</title>
<style>{_STYLE}</style></head><body>
<h1>Whom does the target resemble?</h1>
<p>People: {people}. Target: {len(result.targets)} photos with a face.
Model {esc(result.config.model)}, detector {esc(result.config.detector)};
intervals: 95% bootstrap over the target photos ({result.bootstrap_rounds} resamples,
seed {result.seed}); LOO accuracy: how often the method names the right person for each of
the people's own photos from all the others.</p>
<p class="verdict">{esc(result.verdict)}</p>
<h2>Scores</h2>{methods_table}
<h2>Per photo</h2>{photos_table}
{period_html}
<h2>Pictures</h2>{figures}
{skipped_html}
<p><small>All numbers: <a href="report.json">report.json</a>.</small></p>
</body></html>
"""
    out.write_text(page, encoding="utf-8")
    return out


def write_report(result: ResembleResult, folder: Path = DEFAULT_REPORT_DIR) -> ReportFiles:
    """Draw the pictures and write index.html and report.json into folder; a folder
    that cannot take them (a file in its place, a full disk) is an OutputUnwritable."""
    make_folder(folder)
    try:
        return _write_report(result, folder)
    except OSError as exc:
        raise unwritable(folder, exc) from None


def _write_report(result: ResembleResult, folder: Path) -> ReportFiles:
    pictures = {
        "Embeddings in 2-D (PCA)": plot_pca(result, folder / "pca.png"),
        "Scores with 95% intervals": plot_scores(result, folder / "scores.png"),
        "Per target photo": plot_per_photo(result, folder / "per-photo.png"),
    }
    if result.periods:
        pictures["Over time"] = plot_timeline(result, folder / "timeline.png")
    data = as_dict(result)
    data["pictures"] = {title: path.name for title, path in pictures.items()}
    json_path = folder / "report.json"
    json_path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    thumbs = write_thumbnails(result, folder)
    html_path = write_html(result, pictures, folder / "index.html", thumbs)
    return ReportFiles(folder, html_path, json_path, pictures)
