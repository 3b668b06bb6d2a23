"""Resemblance reports written by `doppel resemble`: listed, and their files served."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse

from doppel.web.schemas import ReportOut, errors
from doppel.web.state import AppState, app_state

REPORT_SUFFIXES = {
    ".html": "text/html",
    ".json": "application/json",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
    ".css": "text/css",
    ".txt": "text/plain",
    ".csv": "text/csv",
}

router = APIRouter()
State = Annotated[AppState, Depends(app_state)]


@dataclass(frozen=True)
class Report:
    """A `doppel resemble` output folder found on disk."""

    id: str
    folder: Path
    modified: float


def find_reports(reports_dir: Path | None, cwd: Path | None) -> list[Report]:
    """Report folders: those under reports_dir, and cwd's resemble-report* folders."""
    candidates: list[Path] = []
    if reports_dir is not None and reports_dir.is_dir():
        candidates.extend(p for p in reports_dir.iterdir() if p.is_dir())
    if cwd is not None and cwd.is_dir():
        candidates.extend(p for p in cwd.glob("resemble-report*") if p.is_dir())
    found: dict[str, Report] = {}
    for folder in candidates:
        folder = folder.resolve()
        if not ((folder / "index.html").is_file() or (folder / "report.json").is_file()):
            continue
        rid = hashlib.blake2b(str(folder).encode(), digest_size=6).hexdigest()
        found[rid] = Report(rid, folder, folder.stat().st_mtime)
    return sorted(found.values(), key=lambda r: r.modified, reverse=True)


def report_title(folder: Path) -> str | None:
    try:
        data = json.loads((folder / "report.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    for key in ("title", "verdict", "query", "name"):
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def safe_child(folder: Path, relative: str) -> Path | None:
    """folder/relative when it is a file inside folder (after links), else None."""
    if "\x00" in relative:
        return None
    root = folder.resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        return None
    return target


@router.get("/api/reports", response_model=list[ReportOut], tags=["reports"])
def reports(state: State) -> list[ReportOut]:
    """Resemblance reports written by `doppel resemble`, newest first."""
    out = []
    for r in find_reports(state.reports_dir, state.report_cwd):
        pictures = sorted(
            p.name
            for p in r.folder.iterdir()
            if p.suffix.lower() in (".png", ".jpg", ".jpeg") and p.is_file()
        )
        out.append(
            ReportOut(
                id=r.id,
                name=r.folder.name,
                folder=str(r.folder),
                modified=datetime.fromtimestamp(r.modified, tz=timezone.utc),
                title=report_title(r.folder),
                index_url=f"/reports/{r.id}/index.html"
                if (r.folder / "index.html").is_file()
                else None,
                json_url=f"/reports/{r.id}/report.json"
                if (r.folder / "report.json").is_file()
                else None,
                pictures=[f"/reports/{r.id}/{name}" for name in pictures],
            )
        )
    return out


@router.get(
    "/reports/{report_id}/{file_path:path}",
    tags=["reports"],
    response_class=FileResponse,
    responses=errors(404),
)
def report_file(state: State, report_id: str, file_path: str) -> FileResponse:
    """A file inside a report folder; nothing outside the folder is served."""
    found = {r.id: r for r in find_reports(state.reports_dir, state.report_cwd)}
    report = found.get(report_id)
    if report is None:
        raise HTTPException(404, f"no report {report_id!r}")
    target = safe_child(report.folder, file_path or "index.html")
    if target is None:
        raise HTTPException(404, "no such file in this report")
    media = REPORT_SUFFIXES.get(target.suffix.lower())
    if media is None:
        raise HTTPException(403, f"{target.suffix or 'this'} files are not served")
    # A report is shown in a sandboxed frame; it may not script this origin.
    return FileResponse(
        target,
        media_type=media,
        headers={
            "content-security-policy": "sandbox allow-scripts allow-popups",
            "x-content-type-options": "nosniff",
        },
    )
