"""The resemblance report: index.html and report.json beside its pictures
(doppel.resemble.pictures)."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from doppel.outputs import make_folder, unwritable
from doppel.resemble.analysis import ResembleResult
from doppel.resemble.pictures import draw_charts, write_thumbnails

DEFAULT_REPORT_DIR = Path("resemble-report")


@dataclass(frozen=True)
class ReportFiles:
    """Where the report went."""

    folder: Path
    html: Path
    json: Path
    pictures: dict[str, Path]


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


def _methods_table(result: ResembleResult) -> str:
    """Each method's score per person with its interval, the winner in bold."""
    esc = html.escape
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
    return _table(
        ["method", *result.people, "first", "first in resamples", "LOO accuracy", "unit"],
        method_rows,
    )


def _photos_table(result: ResembleResult, thumbs: dict[str, str]) -> str:
    """A row per target photo, its thumbnail beside its name; outliers marked."""
    esc = html.escape
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
    return _table(
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


def _periods_html(result: ResembleResult) -> str:
    """Who comes first by each method in each period of capture dates; "" without dates."""
    esc = html.escape
    if not result.periods:
        return ""
    rows = [
        [esc(p.label), str(len(p.photos))] + [esc(p.first(m.name)) for m in result.methods]
        for p in result.periods
    ]
    return "<h2>Over time</h2>" + _table(
        ["period", "photos", *[f"first by {m.title}" for m in result.methods]], rows
    )


def _notes_html(result: ResembleResult) -> str:
    """The photos skipped and the run's notes; "" when there are none."""
    esc = html.escape
    skipped = [f"{esc(p)}: no face found, skipped" for p in result.no_face]
    skipped += [esc(p) for p in result.unreadable]
    skipped += [esc(n) for n in result.notes]
    if not skipped:
        return ""
    return "<h2>Notes</h2><ul>" + "".join(f"<li>{s}</li>" for s in skipped) + "</ul>"


def write_html(
    result: ResembleResult,
    pictures: dict[str, Path],
    out: Path,
    thumbs: dict[str, str] | None = None,
) -> Path:
    """One page: verdict, method x person table, per-photo table (a thumbnail of each
    photo beside its row), pictures, skipped photos."""
    esc = html.escape
    figures = "".join(
        f'<figure><img src="{esc(path.name)}" alt="{esc(title)}">'
        f"<figcaption>{esc(title)}</figcaption></figure>"
        for title, path in pictures.items()
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
<h2>Scores</h2>{_methods_table(result)}
<h2>Per photo</h2>{_photos_table(result, thumbs or {})}
{_periods_html(result)}
<h2>Pictures</h2>{figures}
{_notes_html(result)}
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
    pictures = draw_charts(result, folder)
    data = as_dict(result)
    data["pictures"] = {title: path.name for title, path in pictures.items()}
    json_path = folder / "report.json"
    json_path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    thumbs = write_thumbnails(result, folder)
    html_path = write_html(result, pictures, folder / "index.html", thumbs)
    return ReportFiles(folder, html_path, json_path, pictures)
