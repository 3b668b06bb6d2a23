"""Reading photos: EXIF orientation, scaling down big photos, refusing non-images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from doppel.errors import UnreadableImage, UsageError
from doppel.faces.imaging import MAX_SIDE, iter_images, load, photos_to_ingest


def _rotated_photo(path: Path, **options: object) -> Path:
    """A 200x100 image, left half red, whose EXIF says: turn 90° clockwise to show."""
    pixels = np.zeros((100, 200, 3), dtype=np.uint8)
    pixels[:, :100] = (255, 0, 0)
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(path, exif=exif, **options)
    return path


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    photo = load(_rotated_photo(tmp_path / "rotated.jpg", quality=95))
    assert photo.pixels.shape[:2] == (200, 100)
    assert photo.pixels[10, 50, 0] > 200  # red now on top
    assert photo.pixels[190, 50, 0] < 60


def test_big_photos_are_scaled_down_and_boxes_can_be_mapped_back(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    Image.new("RGB", (4000, 3000), (120, 80, 60)).save(path)
    photo = load(path)
    assert max(photo.pixels.shape[:2]) == MAX_SIDE
    assert photo.scale == pytest.approx(4000 / MAX_SIDE)


@pytest.mark.parametrize("content", [b"", b"hello", b"\x89PNG\r\n\x1a\n broken"])
def test_non_images_are_refused_with_the_file_name(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(content)
    with pytest.raises(UnreadableImage, match="photo.png"):
        load(path)


def test_walk_finds_image_suffixes_in_any_case(tmp_path: Path) -> None:
    for name in ("a.JPG", "b.jpeg", "c.Png", "d.webp", "e.bmp", "f.txt", "sub/g.jpg", ".h.jpg"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in iter_images(tmp_path)] == [
        "a.JPG",
        "b.jpeg",
        "c.Png",
        "d.webp",
        "e.bmp",
        "g.jpg",
    ]


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "I;16"])
def test_png_decodes_to_the_same_rgb_pixels_as_pillow(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    img = Image.fromarray(pixels)
    img = img.convert("I;16") if mode == "I;16" else img.convert(mode)
    path = tmp_path / "photo.png"
    img.save(path)
    expected = np.asarray(Image.open(path).convert("RGB"))
    if mode == "I;16":  # Pillow narrows 16-bit grey by clipping; decoders keep the top byte
        expected = np.asarray(Image.open(path).point(lambda v: v / 256).convert("RGB"))
    photo = load(path)
    assert photo.pixels.shape == (48, 64, 3) and photo.pixels.dtype == np.uint8
    assert np.abs(photo.pixels.astype(int) - expected.astype(int)).max() <= 1


def test_png_with_exif_orientation_is_turned(tmp_path: Path) -> None:
    path = _rotated_photo(tmp_path / "rotated.png")
    assert b"eXIf" in path.read_bytes()  # so OpenCV, not libspng, decodes it
    photo = load(path)
    assert photo.pixels.shape[:2] == (200, 100)
    assert tuple(photo.pixels[10, 50]) == (255, 0, 0)  # red on top, and in RGB order
    assert tuple(photo.pixels[190, 50]) == (0, 0, 0)


def test_big_png_is_scaled_down(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (3200, 2000), (10, 200, 30)).save(path, compress_level=1)
    photo = load(path)
    assert photo.pixels.shape[:2] == (1000, MAX_SIDE)
    assert photo.scale == pytest.approx(2)
    assert tuple(photo.pixels[500, 800]) == (10, 200, 30)


def test_an_ingest_refuses_a_folder_without_images(tmp_path: Path) -> None:
    # Both ingest pipelines (this machine's and Ray's) start with this check.
    with pytest.raises(UsageError, match=r"holds no images \(jpg, jpeg, png, webp or bmp\)$"):
        photos_to_ingest(tmp_path)
    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(UsageError, match=r"bmp\) \(1 entries that cannot be read\)$"):
        photos_to_ingest(tmp_path)
    with pytest.raises(UsageError, match="is not a folder"):
        photos_to_ingest(tmp_path / "pipe.jpg")
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    scan = photos_to_ingest(tmp_path)
    assert scan.images == [tmp_path / "a.png"] and len(scan.skipped) == 1
