"""The picture: the query face large on top, its matches in a captioned row beneath."""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from doppel import sources
from doppel.config import Settings
from doppel.errors import DoppelError
from doppel.faces import imaging
from doppel.faces.imaging import Photo
from doppel.outputs import write_bytes
from doppel.types import Box, Match, QueryResult

TILE = 256
PER_ROW = 5  # matches per row of the composite; more wrap onto the next row
MARGIN = 16
CAPTION = 44
BACKGROUND = (248, 248, 246)
INK = (30, 30, 30)
MUTED = (110, 110, 110)


@dataclass(frozen=True)
class Tile:
    """One picture of the composite with its caption lines."""

    photo: Photo | None
    box: Box | None
    title: str
    subtitle: str = ""
    picture: Image.Image | None = None  # the square picture, when already cut


PAD = 0.25  # the face box grows by this much of its side on every side


def face_crop(photo: Photo, box: Box | None, side: int, pad: float = PAD) -> Image.Image:
    """A square crop around the face box (file pixels), padded, scaled to side."""
    img = Image.fromarray(photo.pixels)
    if box is None or box.w <= 0 or box.h <= 0:
        region = _square(0, 0, img.width, img.height, img.width, img.height)
    else:
        s = photo.scale
        x, y, w, h = box.x / s, box.y / s, box.w / s, box.h / s
        grow = max(w, h) * (1 + 2 * pad)
        cx, cy = x + w / 2, y + h / 2
        region = _square(cx - grow / 2, cy - grow / 2, grow, grow, img.width, img.height)
    return img.crop(region).resize((side, side), Image.Resampling.LANCZOS)


def _square(
    x: float, y: float, w: float, h: float, width: int, height: int
) -> tuple[int, int, int, int]:
    side = min(max(w, h), width, height)
    cx, cy = x + w / 2, y + h / 2
    left = min(max(cx - side / 2, 0), width - side)
    top = min(max(cy - side / 2, 0), height - side)
    return round(left), round(top), round(left + side), round(top + side)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _placeholder(side: int, label: str) -> Image.Image:
    img = Image.new("RGB", (side, side), (215, 215, 212))
    draw = ImageDraw.Draw(img)
    draw.line([(0, 0), (side, side)], fill=(190, 190, 186), width=2)
    draw.line([(0, side), (side, 0)], fill=(190, 190, 186), width=2)
    font = _font(16)
    width = draw.textlength(label, font=font)
    draw.rectangle(
        [(side - width) / 2 - 6, side / 2 - 14, (side + width) / 2 + 6, side / 2 + 12],
        fill=(240, 240, 238),
    )
    draw.text(((side - width) / 2, side / 2 - 10), label, fill=MUTED, font=font)
    return img


def _fit(
    text: str,
    draw: ImageDraw.ImageDraw,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    width: int,
) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength("…" + text, font=font) > width:
        text = text[1:]
    return "…" + text


def compose(
    query: Tile, matches: Sequence[Tile], out: Path | None = None, tile: int = TILE
) -> Image.Image:
    """Render the composite; write it to `out` as PNG when given. The matches wrap at
    PER_ROW a row, so ten make two rows rather than one picture 2,700 pixels wide."""
    columns = max(min(len(matches), PER_ROW), 1)
    rows = max(math.ceil(len(matches) / PER_ROW), 1)
    width = columns * tile + (columns + 1) * MARGIN
    big = min(2 * tile, width - 2 * MARGIN)
    height = MARGIN + big + CAPTION + MARGIN + rows * (tile + CAPTION + MARGIN)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    _paste(canvas, draw, query, ((width - big) // 2, MARGIN), big, title_size=20)
    top = MARGIN + big + CAPTION + MARGIN
    for i, match in enumerate(matches):
        row, column = divmod(i, PER_ROW)
        at = (MARGIN + column * (tile + MARGIN), top + row * (tile + CAPTION + MARGIN))
        _paste(canvas, draw, match, at, tile, title_size=16)
    if out is not None:
        # Level 1: a third of the default's time for a picture a few percent larger.
        save_png(canvas, out, compress_level=1)
    return canvas


def _paste(
    canvas: Image.Image,
    draw: ImageDraw.ImageDraw,
    item: Tile,
    at: tuple[int, int],
    side: int,
    title_size: int,
) -> None:
    x, y = at
    if item.picture is not None:
        picture = (
            item.picture
            if item.picture.size == (side, side)
            else item.picture.resize((side, side), Image.Resampling.LANCZOS)
        )
    elif item.photo is None:
        picture = _placeholder(side, "image not available")
    else:
        picture = face_crop(item.photo, item.box, side)
    canvas.paste(picture, (x, y))
    title_font, sub_font = _font(title_size), _font(13)
    draw.text(
        (x, y + side + 4), _fit(item.title, draw, title_font, side), fill=INK, font=title_font
    )
    if item.subtitle:
        draw.text(
            (x, y + side + 8 + title_size),
            _fit(item.subtitle, draw, sub_font, side),
            fill=MUTED,
            font=sub_font,
        )


ROW_TILE = 160
ROW_HEADING = 28


def compose_rows(
    rows: Sequence[tuple[str, Sequence[Tile]]], out: Path | None = None, tile: int = ROW_TILE
) -> Image.Image:
    """Rows of captioned tiles, each under a heading (one row per person, or per pair)."""
    columns = max((len(tiles) for _, tiles in rows), default=1) or 1
    width = columns * tile + (columns + 1) * MARGIN
    row_height = ROW_HEADING + tile + CAPTION + MARGIN
    height = MARGIN + max(len(rows), 1) * row_height
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    heading_font = _font(18)
    for r, (heading, tiles) in enumerate(rows):
        top = MARGIN + r * row_height
        draw.text(
            (MARGIN, top),
            _fit(heading, draw, heading_font, width - 2 * MARGIN),
            fill=INK,
            font=heading_font,
        )
        for i, item in enumerate(tiles):
            _paste(canvas, draw, item, (MARGIN + i * (tile + MARGIN), top + ROW_HEADING), tile, 14)
    if out is not None:
        save_png(canvas, out)
    return canvas


def save_png(picture: Image.Image, out: Path, compress_level: int = 6) -> None:
    """Write a picture as PNG, or say in one line why it cannot be written (a folder in
    its place, a full disk): outputs.write_bytes."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=compress_level)
    write_bytes(out, buffer.getvalue())


def caption(match: Match) -> tuple[str, str]:
    """Title and subtitle for a match's tile: rank, strength in words (else similarity),
    person; then similarity, file name, attributes."""
    name = Path(match.face.source).name or match.face.source
    attrs = ", ".join(str(a) for a in (match.face.sex, match.face.age, match.face.race) if a)
    if match.strength is None:
        title = f"#{match.rank}  {match.similarity:.3f}"
        if match.face.person:
            title += f"  {match.face.person}"
        return title, f"{name}  {attrs}".strip()
    # The words fill the title; the person moves to the line beneath.
    person = f"{match.face.person}  " if match.face.person else ""
    return (
        # Pillow's built-in font has no em dash.
        f"#{match.rank}  {match.strength.words.replace(' — ', ' - ')}",
        f"{person}{match.similarity:.3f}  {name}  {attrs}".strip(),
    )


def render(
    photo: Photo,
    result: QueryResult,
    out: Path,
    settings: Settings,
    title: str = "query",
    note: str = "",
) -> Path:
    """The composite picture of one query face and its matches, written to out.

    title and note: the query face's caption, e.g. that its person's faces were left out.

    The matches' pictures are cut in threads (decoding lets go of the GIL), each from its
    photo decoded no larger than the face needs, and kept in a cache for the next time.
    """
    query = Tile(photo, result.face.box, title, note)
    with ThreadPoolExecutor(max(1, min(len(result.matches), 4))) as pool:
        pictures = list(
            pool.map(
                lambda m: match_picture(m.face.source, m.face.box, TILE, settings),
                result.matches,
            )
        )
    tiles = []
    for match, picture in zip(result.matches, pictures, strict=True):
        title, subtitle = caption(match)
        tiles.append(Tile(None, match.face.box, title, subtitle, picture))
    compose(query, tiles, out)
    return out


def match_picture(
    source: str, box: Box | None, side: int, settings: Settings
) -> Image.Image | None:
    """The square picture of a gallery face, side pixels, or None when its photo is gone.

    Cut once and cached (by file, its size and time, box and side) under the cache folder;
    a JPEG is decoded at the smallest scale (Pillow's draft: 1/2, 1/4, 1/8) that still
    gives the face at least side pixels.
    """
    path = sources.resolve(source, settings)
    if path is None:
        return None
    try:
        stat = path.stat()
    except OSError:
        return None
    what = f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{box}|{side}|{PAD}"
    cached = (
        settings.cache_dir
        / "crops"
        / (hashlib.blake2b(what.encode("utf-8", "surrogateescape")).hexdigest()[:32] + ".png")
    )
    if cached.is_file():
        try:
            with Image.open(cached) as img:
                return img.convert("RGB")
        except OSError:
            pass
    try:
        photo = imaging.load(
            path, max_side=_side_needed(path, box, side), max_pixels=settings.max_pixels
        )
    except DoppelError:
        return None
    picture = face_crop(photo, box, side)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(cached.name + ".part")
        picture.save(partial, format="PNG", compress_level=1)
        partial.replace(cached)
    except OSError:
        pass  # a read-only cache costs only the time
    return picture


def _side_needed(path: Path, box: Box | None, side: int) -> int:
    """The longest side to decode the photo at so the face's square is >= side pixels."""
    try:
        # Pillow's own pixel check off: imaging.load applies doppel's, without a warning.
        with imaging.pillow().open(path) as img:
            width, height = img.size
            if imaging.rotated(img):
                width, height = height, width
    except OSError:
        return 1024
    longest = max(width, height)
    if box is None or box.w <= 0 or box.h <= 0:
        region: float = min(width, height)
    else:
        region = min(max(box.w, box.h) * (1 + 2 * PAD), width, height)
    return min(longest, max(side, math.ceil(longest * side / max(region, 1))))
