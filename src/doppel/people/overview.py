"""The people overview: an HTML page of face thumbnails, one row per person.

A page with small JPEG thumbnails beside it replaces one tall PNG of every face
(1248x9936 px, 9.8 MB for 100 people): a browser shows the rows as they load, and
the page names each face's id, which the people commands take.
"""

from __future__ import annotations

import html
import io
from pathlib import Path

from doppel import sources
from doppel.composer import face_crop
from doppel.config import Settings
from doppel.outputs import make_folder, write_bytes, write_text
from doppel.people.groups import PeopleListing
from doppel.types import Face

PEOPLE = 100  # people on the page, the largest first
FACES = 8  # faces per person, the cover first
SIDE = 112  # thumbnail side in pixels
DECODE_SIDE = 640  # photos are decoded no larger than this for the thumbnails

STYLE = """
body { font-family: sans-serif; margin: 1em; background: #fafafa; }
section { margin: 0 0 1em; }
h2 { font-size: 1em; margin: 0.2em 0; }
h2 small { color: #666; font-weight: normal; }
figure { display: inline-block; margin: 0 4px 4px 0; text-align: center; }
figure img { width: SIDEpx; height: SIDEpx; border-radius: 4px; background: #ddd; }
figcaption { font-size: 0.7em; color: #555; }
""".replace("SIDE", str(SIDE))


def write_overview(
    listing: PeopleListing,
    out: Path,
    settings: Settings,
    people: int = PEOPLE,
    per_person: int = FACES,
) -> Path:
    """Write the page to out and its thumbnails to a folder beside it; return out."""
    folder = make_folder(thumbnails_folder(out))
    sections = []
    for person in listing.people[:people]:
        faces = listing.members.get(person.id, [])
        cover = person.cover
        ordered = ([cover] if cover else []) + [f for f in faces if not cover or f.id != cover.id]
        figures = "".join(
            _figure(face, folder, out.parent, settings) for face in ordered[:per_person]
        )
        title = html.escape(person.name or f"person {person.id}")
        more = "" if len(faces) <= per_person else f", {per_person} shown"
        sections.append(
            f"<section><h2>{title} <small>id {person.id}, {person.faces} faces{more}"
            f"{', hidden' if person.hidden else ''}</small></h2>{figures}</section>"
        )
    gallery = html.escape(listing.gallery.name)
    left = len(listing.people) - people
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>people in {gallery}</title>"
        f"<style>{STYLE}</style></head><body><h1>people in {gallery}</h1>"
        f"<p>{len(listing.people)} people, {len(listing.unassigned)} faces in none"
        f"{f'; {left} smaller people not shown' if left > 0 else ''}.</p>"
        + (
            f"<p>unassigned: low quality: {len(listing.low_quality)} faces (too small, blurred"
            " or turned to be grouped; still searchable)</p>"
            if listing.low_quality
            else ""
        )
        + "".join(sections)
        + "</body></html>\n"
    )
    write_text(out, page)
    return out


def thumbnails_folder(out: Path) -> Path:
    """Where the page's thumbnails go: a folder named after the page, beside it."""
    return out.with_name(out.stem + "-faces")


def _figure(face: Face, folder: Path, base: Path, settings: Settings) -> str:
    thumb = folder / f"face-{face.id}.jpg"
    if not thumb.is_file():
        photo = sources.load_source(face.source, settings, DECODE_SIDE)
        if photo is not None:
            buffer = io.BytesIO()
            face_crop(photo, face.box, SIDE).convert("RGB").save(buffer, "JPEG", quality=85)
            write_bytes(thumb, buffer.getvalue())
    name = html.escape(Path(face.source).name or face.source)
    src = html.escape(str(thumb.relative_to(base)) if thumb.is_relative_to(base) else str(thumb))
    img = f"<img src='{src}' alt='face {face.id}' loading='lazy'>" if thumb.is_file() else ""
    return f"<figure title='{name}'>{img}<figcaption>face {face.id}</figcaption></figure>"
