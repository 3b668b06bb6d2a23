"""`doppel serve` logs one line per request: method, path, status, ms; no photo data."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest


def test_one_access_line_per_request_without_query_or_body(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from fastapi.testclient import TestClient

    from doppel.config import Settings
    from doppel.web.app import create_app

    settings = replace(Settings.from_env(), database_url=database_url)
    app = create_app(settings, workers=0, warm_up=False)
    photo = b"\xff\xd8\xff\xe0" + b"SECRET-PIXELS" * 100
    with TestClient(app) as client, caplog.at_level(logging.INFO, logger="doppel.access"):
        assert client.get("/api/health").status_code == 200
        assert client.get("/api/faces/987654/image?crop=true").status_code == 404
        upload = client.post("/api/uploads", files={"file": ("me.jpg", photo, "image/jpeg")})
        assert upload.status_code >= 400
        client.get("/api/x%0Aforged 200 1 ms")
    lines = [r.getMessage() for r in caplog.records if r.name == "doppel.access"]
    assert len(lines) == 4, lines
    assert lines[0].startswith("GET /api/health 200 ") and lines[0].endswith(" ms")
    assert lines[1].startswith("GET /api/faces/987654/image 404 ")
    assert lines[2].startswith(f"POST /api/uploads {upload.status_code} ")
    assert lines[3].startswith("GET /api/x\\x0aforged 200 1 ms 404 ")
    text = "\n".join(lines)
    assert "SECRET" not in text and "crop=" not in text and "me.jpg" not in text
    assert all("\n" not in line for line in lines)
