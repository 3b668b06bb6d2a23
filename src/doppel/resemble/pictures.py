"""The resemblance report's pictures: charts drawn with matplotlib (Agg), and a
thumbnail of each target photo for its row of the page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from doppel.resemble.analysis import ResembleResult, pca_2d


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


def draw_charts(result: ResembleResult, folder: Path) -> dict[str, Path]:
    """Every chart of the report, drawn into folder: {title: file}."""
    charts = {
        "Embeddings in 2-D (PCA)": plot_pca(result, folder / "pca.png"),
        "Scores with 95% intervals": plot_scores(result, folder / "scores.png"),
        "Per target photo": plot_per_photo(result, folder / "per-photo.png"),
    }
    if result.periods:
        charts["Over time"] = plot_timeline(result, folder / "timeline.png")
    return charts


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
