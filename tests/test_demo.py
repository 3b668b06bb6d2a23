"""The demo runs from any clone: its photos are in the repository, not in ../shared."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "images" / "demo"


def test_demo_set_is_small_and_says_where_it_comes_from() -> None:
    photos = sorted(DEMO.glob("*.jpg"))
    assert len(photos) >= 20
    assert sum(p.stat().st_size for p in photos) < 4 * 2**20
    assert (DEMO / "LICENSE.deepface").read_text().startswith("MIT License")
    provenance = (DEMO / "README.md").read_text()
    assert "deepface" in provenance and "480" in provenance
    from PIL import Image

    for photo in photos:
        with Image.open(photo) as img:
            assert max(img.size) <= 480, photo.name


def test_make_demo_reads_only_the_clone(tmp_path: Path) -> None:
    """A clone made where no ../shared exists: `make demo`'s photo and folder resolve
    inside the clone (make -n prints the commands without running them)."""
    if shutil.which("git") is None or shutil.which("make") is None:
        pytest.skip("git and make are needed to clone and read the Makefile")
    tracked = subprocess.run(
        ["git", "ls-files", "--error-unmatch", "images/demo/img1.jpg", "Makefile"],
        cwd=ROOT,
        capture_output=True,
    )
    if tracked.returncode != 0:
        pytest.skip("not a git checkout with the demo set committed")
    clone = tmp_path / "elsewhere" / "doppel"
    subprocess.run(
        ["git", "clone", "--quiet", "--depth", "1", f"file://{ROOT}", str(clone)],
        check=True,
        capture_output=True,
    )
    assert not (clone.parent.parent / "shared").exists()
    plan = subprocess.run(
        ["make", "-n", "demo"], cwd=clone, check=True, capture_output=True, text=True
    ).stdout
    find = next(line for line in plan.splitlines() if " find " in line)
    words = shlex.split(find)
    photo = clone / words[words.index("find") + 1]
    folder = clone / words[words.index("--in") + 1]
    assert photo.is_file(), find
    assert folder.is_dir() and len(list(folder.glob("*.jpg"))) >= 20, find
    assert "shared" not in find
