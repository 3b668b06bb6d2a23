"""Finding, hashing and decoding photos: EXIF orientation applied, big photos scaled down."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from doppel.config import DEFAULT_MAX_PIXELS
from doppel.errors import ImageTooLarge, PhotoTooSmall, UnreadableImage, UsageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
# Photos are decoded at most this size (a side): enough to cut faces sharply,
# small enough to keep memory bounded. Detection runs on a smaller copy.
MAX_SIDE = 1600
# The floor on a photo's size. No detector doppel runs finds a face in a photo under
# 15 pixels a side, even one the face fills (none of 30 lfw-dev faces at 12 to 14
# pixels: benchmarks/bench_image_floor.py, docs/benchmarks.md); the floor stays a
# little below that. dlib's CNN detector corrupts its own memory on a picture two
# pixels wide, so a smaller photo is refused before any detector sees it.
MIN_FACE_SIDE = 12
# Detectors look at a copy at most 640 pixels long (faces.detect.DETECT_SIDE): a photo
# longer than this many times its width would be thinner than the floor there.
MAX_ASPECT = 40


@dataclass(frozen=True)
class Photo:
    """A decoded photo in RGB, possibly scaled down from the file by `scale`."""

    pixels: np.ndarray  # H x W x 3, uint8, RGB
    scale: float  # file pixels per pixel here

    @property
    def bgr(self) -> np.ndarray:
        return np.ascontiguousarray(self.pixels[:, :, ::-1])

    def shrunk(self, max_side: int | None, square: bool = False) -> Photo:
        """This photo scaled down (area averaging) so no side exceeds max_side.

        With square, both sides become max_side, as for a model's input.
        """
        height, width = self.pixels.shape[:2]
        if not max_side or (max(height, width) <= max_side and not square):
            return self
        import cv2

        factor = max(height, width) / max_side
        size = (
            (max_side, max_side)
            if square
            else (max(1, round(width / factor)), max(1, round(height / factor)))
        )
        pixels = cv2.resize(self.pixels, size, interpolation=cv2.INTER_AREA)
        return Photo(pixels, self.scale * factor)


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def iter_images(root: Path) -> Iterator[Path]:
    """Every regular image file under root, recursively, in a stable order (see scan_images)."""
    yield from scan_images(root).images


@dataclass(frozen=True)
class Skipped:
    """Something under an ingested folder that was not read, and why."""

    path: Path
    reason: str


@dataclass
class FolderScan:
    """The image files under a folder, and what was passed over: special files (FIFOs,
    sockets, devices), symbolic link loops, broken links and folders that cannot be read."""

    images: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def scan_images(root: Path) -> FolderScan:
    """Every regular image file under root, recursively, in a stable order.

    Only regular files are taken: opening a FIFO for reading waits for a writer
    forever, and a link loop cannot be opened at all. Symbolic links to files are
    followed, links to folders are not (as os.walk), names starting with a dot are
    left out.
    """
    scan = FolderScan()
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            scan.skipped.append(Skipped(folder, f"folder cannot be read: {_why(exc)}"))
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            try:
                if entry.is_dir(follow_symlinks=False):
                    subfolders.append(path)
                    continue
            except OSError as exc:
                scan.skipped.append(Skipped(path, _why(exc)))
                continue
            if not is_image_name(path):
                continue
            try:
                mode = os.stat(path).st_mode
            except OSError as exc:
                scan.skipped.append(Skipped(path, _why(exc)))
                continue
            if stat.S_ISREG(mode):
                scan.images.append(path)
            else:
                scan.skipped.append(Skipped(path, f"not a regular file ({_kind(mode)})"))
        pending.extend(reversed(subfolders))
    return scan


def photos_to_ingest(root: Path) -> FolderScan:
    """scan_images for an ingest: a root that is not a folder, or that holds no image
    file, is refused before any gallery is touched."""
    if not root.is_dir():
        raise UsageError(f"{root} is not a folder")
    scan = scan_images(root)
    if not scan.images:
        passed = f" ({len(scan.skipped)} entries that cannot be read)" if scan.skipped else ""
        raise UsageError(f"{root} holds no images (jpg, jpeg, png, webp or bmp){passed}")
    return scan


def _why(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno == errno.ENOENT:
        return "broken symbolic link"
    return exc.strerror or type(exc).__name__


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a plain file"


def read_file(path: Path | str) -> bytes:
    """A regular file's bytes; anything else is refused without waiting on it.

    Opened non-blocking and checked with fstat, so a file swapped for a FIFO after
    the folder was listed cannot hang the reader.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        why = _why(exc) if exc.errno == errno.ELOOP else exc.strerror or type(exc).__name__
        raise UnreadableImage(f"{path_text(path)}: {why}") from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnreadableImage(f"{path_text(path)}: not a regular file ({_kind(mode)})")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    except OSError as exc:
        raise UnreadableImage(f"{path_text(path)}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


_ESCAPED_BYTE = re.compile(rb"\\x([89a-f][0-9a-f])")


def path_text(path: Path | str) -> str:
    """The text doppel records and prints for a path.

    Linux names are bytes; Python keeps the bytes that are not UTF-8 as lone
    surrogates, which PostgreSQL's text (and a UTF-8 terminal or log) cannot hold.
    Those bytes are written \\xNN here; text_path turns them back.
    """
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    return text


def text_path(text: str) -> Path:
    """The path path_text was given: \\xNN (80 to ff) back to the byte, unless a file
    is named with those very characters."""
    path = Path(text)
    if "\\x" not in text or path.exists():
        return path
    raw = _ESCAPED_BYTE.sub(lambda m: bytes([int(m.group(1), 16)]), text.encode("utf-8"))
    return Path(os.fsdecode(raw))


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def file_hash(path: Path) -> str:
    return content_hash(read_file(path))


def decode(
    data: bytes,
    name: str = "image",
    max_side: int | None = MAX_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: bool = True,
) -> Photo:
    """Decode image bytes with EXIF orientation applied, scaled so no side exceeds max_side.

    An image of more than max_pixels is refused from its header, before any pixel is
    decoded (a small PNG can claim 20000x20000 pixels: 1.2 GB decoded). With min_side,
    so is one too small or too thin to hold a face (check_face_room): every path that
    looks for faces decodes here, so no detector ever sees such a picture.
    """
    if data[:8] == _PNG_SIGNATURE:
        size = _png_size(data)
        if size is not None:
            check_pixels(*size, name, max_pixels)
            if min_side:
                check_face_room(*size, name)
        photo = _decode_png(data, max_side)
        if photo is not None:
            return photo
    import io

    from PIL import ImageOps, UnidentifiedImageError

    Image = pillow()
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            check_pixels(width, height, name, max_pixels)
            if min_side:
                check_face_room(width, height, name)
            if rotated(img):
                width, height = height, width
            if max_side and max(width, height) > max_side:
                shrink = max(width, height) / max_side
                # JPEG can decode at 1/2, 1/4, 1/8 size directly, much faster.
                img.draft("RGB", (int(img.width / shrink), int(img.height / shrink)))
            rgb = ImageOps.exif_transpose(img).convert("RGB")
            if max_side and max(rgb.size) > max_side:
                rgb.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
            scale = max(width, height) / max(rgb.size)
            pixels = np.asarray(rgb, dtype=np.uint8)
    except UnidentifiedImageError:
        raise UnreadableImage(
            f"{name}: not a readable image (JPEG, PNG, WebP, BMP or GIF expected, judged by its "
            "content)"
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise UnreadableImage(f"{name}: damaged image ({_reason(exc)})") from exc
    return Photo(pixels=pixels, scale=scale)


def pillow():  # type: ignore[no-untyped-def]
    """PIL.Image, with Pillow's own pixel limit off: doppel checks its own (max_pixels)
    before decoding, and Pillow's would first print a DecompressionBombWarning."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    return Image


def _reason(exc: BaseException) -> str:
    """An exception's message without the Python objects Pillow puts in some."""
    text = re.sub(r"<[^<>]* object at 0x[0-9a-fA-F]+>", "the data", str(exc)).strip()
    return text or type(exc).__name__


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    return None


def check_face_room(width: int, height: int, name: str) -> None:
    """Refuse a photo too small or too thin to hold a face any detector can find."""
    short, long = min(width, height), max(width, height)
    if short < MIN_FACE_SIDE:
        raise PhotoTooSmall(
            f"{name}: {width}x{height} pixels is too small to hold a face (doppel needs at "
            f"least {MIN_FACE_SIDE} pixels a side)"
        )
    if long > MAX_ASPECT * short:
        raise PhotoTooSmall(
            f"{name}: {width}x{height} pixels is too thin to hold a face (the longer side "
            f"may be at most {MAX_ASPECT} times the shorter)"
        )


def check_pixels(width: int, height: int, name: str, max_pixels: int) -> None:
    """Refuse an image larger than max_pixels before any of it is decoded."""
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{name}: {width}x{height} pixels ({width * height / 1e6:,.0f} megapixels) is "
            f"too large: doppel decodes images of up to {max_pixels / 1e6:,.0f} megapixels "
            "(DOPPEL_MAX_PIXELS)"
        )


def _decode_png(data: bytes, max_side: int | None) -> Photo | None:
    """PNG (FFHQ's format) through libspng, else OpenCV: both faster than Pillow.

    libspng (pyspng) decodes a 1024x1024 PNG in about two thirds of OpenCV's time and
    gives RGB directly; it ignores EXIF orientation, so a PNG with an eXIf chunk goes
    to OpenCV, which applies it. None means: let Pillow try (and explain the failure).
    """
    if b"eXIf" not in data:
        try:
            import pyspng

            rgb = pyspng.load(data, format="RGB")
        except (ImportError, RuntimeError, ValueError):
            rgb = None
        if rgb is not None and rgb.ndim == 3 and rgb.dtype == np.uint8:
            return Photo(rgb, 1.0).shrunk(max_side)
    try:
        import cv2
    except ImportError:
        return None
    # IMREAD_COLOR applies EXIF orientation and drops alpha and 16-bit depth.
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        return None
    small = Photo(bgr, 1.0).shrunk(max_side)  # shrink first: then the BGR->RGB copy is small
    return Photo(np.ascontiguousarray(small.pixels[:, :, ::-1]), small.scale)


def rotated(img: object) -> bool:
    try:
        return img.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # type: ignore[attr-defined]
    except Exception:
        return False


def load(
    path: Path, max_side: int | None = MAX_SIDE, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Photo:
    return decode(read_file(path), path_text(path), max_side, max_pixels)
