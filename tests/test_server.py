"""`doppel serve`: the JSON API, its refusals, the reports view, and the page in Chromium."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import psycopg
import pytest

GALLERY_PHOTOS = {  # file -> person, from identities.csv
    "img2.jpg": "person01",
    "img4.jpg": "person01",
    "img5.jpg": "person01",
    "img26.jpg": "person02",
    "img27.jpg": "person02",
    "img8.jpg": "person03",
    "img9.jpg": "person03",
    "img3.jpg": "person04",
    "img12.jpg": "person04",
    "img13.jpg": "person05",
}
QUERY = "img1.jpg"  # person01, not in the gallery
DOPPEL = str(Path(sys.executable).with_name("doppel"))


@dataclass(frozen=True)
class Served:
    url: str
    database_url: str
    reports: Path
    report_name: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serving(process: subprocess.Popen[str], url: str) -> httpx.Response:
    """The first answer of a `doppel serve` subprocess's /api/health, once it listens."""
    deadline = time.monotonic() + 300
    while True:
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "doppel serve did not answer"
        try:
            return httpx.get(f"{url}/api/health", timeout=5)
        except httpx.TransportError:
            time.sleep(0.5)


@pytest.fixture(scope="module")
def gallery_url(
    server_url: str, unit_faces: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database holding gallery "unit": ten photos of five people, Dlib + mtcnn."""
    from doppel.config import Settings
    from doppel.store.db import connect
    from doppel.types import EmbeddingConfig
    from tests.helpers import ingest_folder

    folder = tmp_path_factory.mktemp("gallery")
    for name in GALLERY_PHOTOS:
        (folder / name).symlink_to(unit_faces / name)
    name = f"doppel_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    info = psycopg.conninfo.conninfo_to_dict(server_url)
    info["dbname"] = name
    url = psycopg.conninfo.make_conninfo(**{k: v for k, v in info.items() if v is not None})
    settings = replace(Settings.from_env(), database_url=url)
    with connect(settings) as conn:
        report = ingest_folder(conn, folder, "unit", EmbeddingConfig("Dlib", "mtcnn"), workers=0)
    assert report.faces_added == len(GALLERY_PHOTOS)
    yield url
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _make_report(reports: Path) -> str:
    """A folder shaped like `doppel resemble`'s output, and a secret beside it."""
    from PIL import Image

    folder = reports / "resemble-report-family"
    folder.mkdir(parents=True)
    (folder / "index.html").write_text(
        "<!doctype html><title>report</title><h1>Resemblance report</h1>"
        '<img src="scores.png"><a href="report.json">numbers</a>'
    )
    (folder / "report.json").write_text(json.dumps({"verdict": "The target resembles mum."}))
    Image.new("RGB", (40, 30), (200, 80, 40)).save(folder / "scores.png")
    (folder / "notes.py").write_text("print('not served')\n")
    (reports / "secret.txt").write_text("outside every report\n")
    return folder.name


@contextmanager
def _uvicorn(app: object) -> Iterator[str]:
    """Run an app under uvicorn on a free loopback port in a thread; yield its URL."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,  # type: ignore[arg-type]
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 300
    while not server.started:
        assert thread.is_alive(), "the server stopped while starting"
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def served(gallery_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`doppel serve`'s app, models loaded, with a report folder to list."""
    from doppel.config import Settings
    from doppel.web.app import create_app

    reports = tmp_path_factory.mktemp("reports")
    report_name = _make_report(reports)
    settings = replace(Settings.from_env(), database_url=gallery_url)
    # Two face workers, whatever the machine: searches run in worker processes.
    app = create_app(
        settings, reports_dir=reports, report_cwd=None, max_upload=5 * 2**20, workers=2
    )
    with _uvicorn(app) as url:
        yield Served(url, gallery_url, reports, report_name)


@pytest.fixture
def client(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=120) as http:
        yield http


def _post_photo(client: httpx.Client, path: str, photo: Path, **data: object) -> httpx.Response:
    with photo.open("rb") as handle:
        return client.post(path, files={"file": (photo.name, handle, "image/jpeg")}, data=data)


def test_find_ranks_the_same_person_first(client: httpx.Client, unit_faces: Path) -> None:
    response = _post_photo(client, "/api/find", unit_faces / QUERY, k=5)
    assert response.status_code == 200, response.text
    result = response.json()
    names = [m["name"] for m in result["matches"]]
    assert len(names) == 5
    assert {GALLERY_PHOTOS[n] for n in names[:3]} == {"person01"}
    similarities = [m["similarity"] for m in result["matches"]]
    assert similarities == sorted(similarities, reverse=True)
    crop = client.get(result["matches"][0]["crop_url"])
    assert crop.status_code == 200
    assert crop.headers["content-type"] == "image/jpeg"
    assert crop.content[:2] == b"\xff\xd8"


def test_upload_pick_a_face_then_search(client: httpx.Client, unit_faces: Path) -> None:
    upload = _post_photo(client, "/api/uploads", unit_faces / "couple.jpg")
    assert upload.status_code == 200, upload.text
    body = upload.json()
    assert len(body["faces"]) == 2
    boxes = []
    for face in (0, 1):
        found = client.post(
            "/api/search",
            json={"upload_id": body["upload_id"], "face": face, "gallery": "unit", "k": 3},
        )
        assert found.status_code == 200, found.text
        assert len(found.json()["matches"]) == 3
        boxes.append(found.json()["face"]["box"])
    assert boxes[0] != boxes[1]
    photo = client.get(f"/api/uploads/{body['upload_id']}/image?face=1")
    assert photo.status_code == 200 and photo.content[:2] == b"\xff\xd8"
    too_far = client.post("/api/search", json={"upload_id": body["upload_id"], "face": 2})
    assert too_far.status_code == 400
    assert "2 face(s)" in too_far.json()["detail"]
    assert client.delete(f"/api/uploads/{body['upload_id']}").status_code == 204
    gone = client.post("/api/search", json={"upload_id": body["upload_id"]})
    assert gone.status_code == 404
    assert "send the photo again" in gone.json()["detail"]


def _get_raw(served: Served, path: str) -> tuple[int, bytes]:
    """GET a path exactly as written (HTTP clients resolve `..` before sending)."""
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest


def test_refusals_leave_the_server_up(client: httpx.Client, served: Served, tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    big.write_bytes(os.urandom(50 * 2**20))
    with big.open("rb") as handle:
        response = client.post("/api/uploads", files={"file": ("big.jpg", handle, "image/jpeg")})
    assert response.status_code == 413
    assert "too large" in response.json()["detail"]

    fake = tmp_path / "notes.jpg"
    fake.write_text("this is a text file with a photo's name\n")
    response = _post_photo(client, "/api/uploads", fake)
    assert response.status_code == 415
    assert "not an image" in response.json()["detail"]

    from PIL import Image

    bomb = tmp_path / "bomb.png"  # a small file that would decode to 108 megapixels
    Image.new("L", (12000, 9000)).save(bomb)
    response = _post_photo(client, "/api/uploads", bomb)
    assert response.status_code == 413  # too large, not "not an image"
    assert "megapixels" in response.json()["detail"]
    assert "too large" in response.json()["detail"]

    for path in (
        "/static/../../etc/passwd",
        "/static/..%2f..%2fetc%2fpasswd",
        "/static/%2e%2e/%2e%2e/etc/passwd",
        "/api/faces/..%2f..%2fetc%2fpasswd/image",
        "/reports/../../etc/passwd",
        "/api/faces/999999/image",
    ):
        status, body = _get_raw(served, path)
        assert status == 404, path
        assert b"root:" not in body

    assert client.get("/api/health").json()["status"] == "ok"


def test_reports_are_listed_and_served_from_their_folder(
    client: httpx.Client, served: Served
) -> None:
    reports = client.get("/api/reports").json()
    assert [r["name"] for r in reports] == [served.report_name]
    report = reports[0]
    assert report["title"] == "The target resembles mum."
    page = client.get(report["index_url"])
    assert page.status_code == 200 and "Resemblance report" in page.text
    assert "sandbox" in page.headers["content-security-policy"]
    assert client.get(report["pictures"][0]).content[:4] == b"\x89PNG"
    rid = report["id"]
    for path in (
        f"/reports/{rid}/../secret.txt",
        f"/reports/{rid}/..%2fsecret.txt",
        f"/reports/{rid}/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        f"/reports/{rid}//etc/passwd",
        "/reports/000000000000/index.html",
    ):
        status, body = _get_raw(served, path)
        assert status == 404, path
        assert b"outside every report" not in body
    assert client.get(f"/reports/{rid}/notes.py").status_code == 403


def test_openapi_describes_the_api(client: httpx.Client) -> None:
    spec = client.get("/api/openapi.json").json()
    for path in (
        "/api/uploads",
        "/api/search",
        "/api/find",
        "/api/galleries",
        "/api/faces/{face_id}/image",
        "/api/reports",
    ):
        assert path in spec["paths"], path
    galleries = client.get("/api/galleries").json()
    assert galleries["default"] == "unit"
    assert galleries["galleries"][0]["faces"] == len(GALLERY_PHOTOS)
    assert galleries["galleries"][0]["attributes"] is None


def test_uploads_are_saved_only_when_asked(
    served: Served, unit_faces: Path, tmp_path: Path
) -> None:
    from doppel.config import Settings
    from doppel.web.app import create_app

    settings = replace(Settings.from_env(), database_url=served.database_url)
    kept = tmp_path / "kept"
    with (
        _uvicorn(create_app(settings, keep_uploads=kept, warm_up=False)) as url,
        httpx.Client(base_url=url, timeout=120) as http,
    ):
        response = _post_photo(http, "/api/uploads", unit_faces / QUERY)
    assert response.status_code == 200, response.text
    saved = list(kept.iterdir())
    assert len(saved) == 1
    assert saved[0].read_bytes() == (unit_faces / QUERY).read_bytes()
    assert response.json()["kept"] == str(saved[0])

    with httpx.Client(base_url=served.url, timeout=120) as http:
        response = _post_photo(http, "/api/uploads", unit_faces / QUERY)
    assert response.status_code == 200 and response.json()["kept"] is None


def test_loopback_detection() -> None:
    from doppel.web.app import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")


def test_serve_command_answers_on_loopback(served: Served) -> None:
    """The installed `doppel serve` starts uvicorn on 127.0.0.1 and stops on Ctrl-C."""
    port = _free_port()
    env = {**os.environ, "DOPPEL_DATABASE_URL": served.database_url}
    process = subprocess.Popen(
        [DOPPEL, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        health = _serving(process, f"http://127.0.0.1:{port}")
        assert health.json()["galleries"] == 1
        assert health.json()["models_loaded"] == ["Dlib/mtcnn"]
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert f"http://127.0.0.1:{port}/" in stderr
    assert "anyone who can reach this machine" not in stderr


def test_serve_command_warns_off_loopback(database_url: str) -> None:
    # 192.0.2.1 is a documentation address no machine has: the warning comes first,
    # then binding fails, so nothing ever listens beyond loopback.
    command = [DOPPEL, "serve", "--host", "192.0.2.1", "--port", str(_free_port())]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert "warning: listening on 192.0.2.1" in result.stderr
    assert result.returncode != 0


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    reason = (
        "Debian's chromium and chromium-driver are not installed (apt-get install -y "
        "chromium chromium-driver)"
    )
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def test_page_in_chromium(served: Served, unit_faces: Path, tmp_path: Path) -> None:
    browser, driver_path = _chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        "--window-size=1280,1100",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        wait = WebDriverWait(driver, 120)
        driver.get(served.url + "/")
        wait.until(lambda d: d.find_element(By.ID, "gallery").get_attribute("value") == "unit")
        driver.find_element(By.ID, "file").send_keys(str(unit_faces / QUERY))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#matches .match")) == 5)
        wait.until(
            lambda d: d.execute_script(
                "return [...document.images].filter(i => i.offsetParent)"
                ".every(i => i.complete && i.naturalWidth > 0)"
            )
        )
        cards = driver.find_elements(By.CSS_SELECTOR, "#matches .match")
        assert cards[0].find_element(By.CLASS_NAME, "name").text in {
            n for n, person in GALLERY_PHOTOS.items() if person == "person01"
        }
        assert float(cards[0].find_element(By.CLASS_NAME, "sim").text) > 0.9
        assert "probably you" in cards[0].find_element(By.CLASS_NAME, "strength").text
        assert not driver.find_element(By.ID, "error").is_displayed()
        shot = tmp_path / "serve-page.png"
        driver.save_screenshot(str(shot))
        print(f"screenshot: {shot}")

        cards[0].click()
        viewer = driver.find_element(By.ID, "viewer")
        wait.until(lambda d: viewer.get_attribute("open") is not None)
        wait.until(
            lambda d: d.execute_script(
                "const i = document.getElementById('viewer-img');"
                "return i.complete && i.naturalWidth > 0"
            )
        )
        assert cards[0].find_element(By.CLASS_NAME, "name").text in viewer.text
        driver.save_screenshot(str(tmp_path / "serve-viewer.png"))
        driver.find_element(By.CSS_SELECTOR, "#viewer .close").click()

        # A stricter threshold for this search: the same first match, no longer "you".
        driver.find_element(By.ID, "threshold").send_keys("0.999\t")
        wait.until(
            lambda d: (
                "probably you"
                not in d.find_element(By.CSS_SELECTOR, "#matches .match .strength").text
            )
        )
        # Strangers with all their photos: the control is there only in strangers mode.
        assert not driver.find_element(By.ID, "all-photos").is_enabled()
        driver.find_element(By.ID, "strangers").click()
        driver.find_element(By.ID, "all-photos").click()
        wait.until(lambda d: "every photo of each" in d.find_element(By.ID, "query-text").text)
        driver.find_element(By.ID, "strangers").click()
        driver.find_element(By.ID, "threshold").clear()

        # Several photos of one person chosen at once: one query.
        driver.find_element(By.ID, "file").send_keys(
            f"{unit_faces / 'img4.jpg'}\n{unit_faces / 'img5.jpg'}"
        )
        wait.until(lambda d: "photos as one query" in d.find_element(By.ID, "query-text").text)

        driver.find_element(By.ID, "tab-reports").click()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#report-list button")))
        assert "resembles mum" in driver.find_element(By.ID, "report-list").text
        driver.switch_to.frame(driver.find_element(By.ID, "report-frame"))
        wait.until(lambda d: "Resemblance report" in d.find_element(By.TAG_NAME, "body").text)
        driver.switch_to.default_content()
        driver.save_screenshot(str(tmp_path / "serve-reports.png"))
    finally:
        driver.quit()


@pytest.mark.slow
def test_find_strangers_switch(client: httpx.Client, unit_faces: Path) -> None:
    """Doppelganger mode over the API: faces at or above the same-person threshold leave."""
    plain = _post_photo(client, "/api/find", unit_faces / QUERY, k=10).json()
    assert plain["strangers"] is None
    response = _post_photo(
        client, "/api/find", unit_faces / QUERY, k=5, strangers="true", all_photos="true"
    )
    assert response.status_code == 200, response.text
    result = response.json()
    threshold = result["strangers"]["threshold"]
    # k=10 listed the whole gallery: every stranger there, and the faces left out.
    assert len(plain["matches"]) == len(GALLERY_PHOTOS)
    expected = [m["name"] for m in plain["matches"] if m["similarity"] < threshold][:5]
    assert expected and [m["name"] for m in result["matches"]] == expected
    assert any(m["similarity"] >= threshold for m in plain["matches"])


@pytest.mark.slow
def test_threshold_and_all_photos_in_the_api(client: httpx.Client, unit_faces: Path) -> None:
    """The page's threshold and all-photos controls: in the OpenAPI document for both
    search routes; a threshold moves the verdicts for one search, all photos lets a
    stranger's second photo in."""
    spec = client.get("/api/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert {"threshold", "all_photos"} <= set(schemas["SearchIn"]["properties"])
    form = spec["paths"]["/api/find"]["post"]["requestBody"]["content"]["multipart/form-data"]
    fields = schemas[form["schema"]["$ref"].rsplit("/", 1)[1]]["properties"]
    assert {"threshold", "all_photos"} <= set(fields)
    plain = _post_photo(client, "/api/find", unit_faces / QUERY, k=3).json()
    assert plain["matches"][0]["probably_query_person"] is True
    strict = _post_photo(client, "/api/find", unit_faces / QUERY, k=3, threshold="0.999").json()
    assert strict["threshold"] == 0.999
    assert not any(m["probably_query_person"] for m in strict["matches"])
    one = _post_photo(client, "/api/find", unit_faces / QUERY, k=8, strangers="true").json()
    assert one["strangers"]["one_per_person"] is True
    people = [GALLERY_PHOTOS[m["name"]] for m in one["matches"]]
    assert len(people) == len(set(people))
    # Most of this small gallery is above the calibrated threshold: a stricter one
    # keeps every face a stranger, and all photos shows two of one person.
    every = _post_photo(
        client,
        "/api/find",
        unit_faces / QUERY,
        k=8,
        strangers="true",
        all_photos="true",
        threshold="0.999",
    ).json()
    assert every["strangers"] == {**every["strangers"], "threshold": 0.999, "one_per_person": False}
    people = [GALLERY_PHOTOS[m["name"]] for m in every["matches"]]
    assert len(people) == 8 and len(set(people)) < 8, people


def _answer(response: httpx.Response) -> tuple[object, ...]:
    """What a user sees of a search: the face and each match with its similarity."""
    assert response.status_code == 200, response.text
    body = response.json()
    return (
        tuple(body["face"]["box"].items()),
        tuple((m["face_id"], m["similarity"]) for m in body["matches"]),
    )


def test_searches_at_once_answer_as_one_at_a_time(
    client: httpx.Client, served: Served, unit_faces: Path
) -> None:
    """Eight searches sent together, on two worker processes, each get the answer
    they get when sent alone."""
    from concurrent.futures import ThreadPoolExecutor

    photos = sorted((unit_faces.parent / "lfw-dev" / "photos").glob("*.jpg"))[::40][:8]
    assert len(photos) == 8
    alone = [_answer(_post_photo(client, "/api/find", photo, k=4)) for photo in photos]
    assert len(set(alone)) == 8  # eight different photos, eight different answers

    def send(photo: Path) -> tuple[object, ...]:
        with httpx.Client(base_url=served.url, timeout=300) as http:
            return _answer(_post_photo(http, "/api/find", photo, k=4))

    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(send, photos))
    assert together == alone
    queue = client.get("/api/health").json()["queue"]
    assert queue["workers"] == 2 and queue["running"] == 0 and queue["waiting"] == 0


def test_two_serve_processes_share_uploads(served: Served, unit_faces: Path) -> None:
    """An upload taken by one `doppel serve` is searched through another on the same
    database, as behind a load balancer."""
    port = _free_port()
    env = {**os.environ, "DOPPEL_DATABASE_URL": served.database_url}
    command = [DOPPEL, "serve", "--port", str(port), "--workers", "0"]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    other = f"http://127.0.0.1:{port}"
    try:
        _serving(process, other)
        with httpx.Client(base_url=other, timeout=120) as http:
            sent = _post_photo(http, "/api/uploads", unit_faces / QUERY)
        assert sent.status_code == 200, sent.text
        upload = sent.json()["upload_id"]
        with httpx.Client(base_url=served.url, timeout=120) as http:
            found = http.post("/api/search", json={"upload_id": upload, "k": 3})
            assert found.status_code == 200, found.text
            names = [m["name"] for m in found.json()["matches"]]
            assert {GALLERY_PHOTOS[n] for n in names} == {"person01"}
            assert http.get(f"/api/uploads/{upload}/image?face=0").status_code == 200
            assert http.delete(f"/api/uploads/{upload}").status_code == 204
        with httpx.Client(base_url=other, timeout=120) as http:
            gone = http.post("/api/search", json={"upload_id": upload})
        assert gone.status_code == 404
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)


def test_a_full_queue_answers_503_with_retry_after(gallery_url: str, unit_faces: Path) -> None:
    """When no worker can take a search within the allowed wait (here: none at all),
    the answer is 503 with Retry-After at once; once a worker is free, searches pass."""
    from doppel.config import Settings
    from doppel.web.app import create_app

    settings = replace(Settings.from_env(), database_url=gallery_url, queue_wait_s=0)
    app = create_app(settings, workers=0, warm_up=False)
    work = app.state.doppel.models.work
    release = threading.Event()
    busy = threading.Thread(target=work.run, args=(release.wait,))
    with _uvicorn(app) as url, httpx.Client(base_url=url, timeout=120) as http:
        busy.start()
        while work.state().running == 0:
            time.sleep(0.01)
        refused = _post_photo(http, "/api/find", unit_faces / QUERY)
        assert refused.status_code == 503, refused.text
        assert int(refused.headers["retry-after"]) >= 1
        assert "busy" in refused.json()["detail"]
        queue = http.get("/api/health").json()["queue"]
        assert queue == {**queue, "workers": 0, "running": 1, "waiting": 0, "refused": 1}
        release.set()
        busy.join()
        found = _post_photo(http, "/api/find", unit_faces / QUERY)
        assert found.status_code == 200, found.text


def _real_report(reports: Path, unit_faces: Path) -> None:
    """A real `doppel resemble` report (seeded vectors, real photos for the thumbnails)."""
    import numpy as np

    from doppel.resemble import analysis
    from doppel.resemble.report import write_report
    from doppel.types import EmbeddingConfig

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 64))
    people = np.vstack([c + 0.3 * rng.standard_normal((5, 64)) for c in centres])
    labels = np.repeat(np.arange(3), 5)
    target = centres[0] + 0.3 * rng.standard_normal((4, 64))
    photos = [str(unit_faces / n) for n in ("img1.jpg", "img2.jpg", "img4.jpg", "img5.jpg")]
    result = analysis.analyse(
        ["grandmother-on-mothers-side", "father", "uncle"],
        people,
        labels,
        target,
        photos,
        EmbeddingConfig("Dlib", "mtcnn"),
    )
    write_report(result, reports / "resemble-report-narrow")


def test_page_at_390_pixels_in_chromium(served: Served, unit_faces: Path, tmp_path: Path) -> None:
    """A phone-sized window: nothing wider than the screen, on the search view (cards,
    the same-person line, the enlarged view with its outline) and the reports view."""
    browser, driver_path = _chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _real_report(served.reports, unit_faces)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=600,900")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    fits = "return document.documentElement.scrollWidth <= window.innerWidth"
    try:
        # A window cannot be narrower than 500 px in headless Chromium: a phone's screen
        # is emulated instead, as its developer tools do.
        screen = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", screen)
        wait = WebDriverWait(driver, 120)
        driver.get(served.url + "/")
        assert driver.execute_script("return window.innerWidth") <= 390
        wait.until(lambda d: d.find_element(By.ID, "gallery").get_attribute("value") == "unit")
        driver.find_element(By.ID, "k").clear()
        driver.find_element(By.ID, "k").send_keys("8")
        driver.find_element(By.ID, "file").send_keys(str(unit_faces / QUERY))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#matches .match")) == 8)
        wait.until(
            lambda d: d.execute_script(
                "return [...document.images].filter(i => i.offsetParent)"
                ".every(i => i.complete && i.naturalWidth > 0)"
            )
        )
        driver.save_screenshot(str(tmp_path / "narrow-search.png"))
        assert driver.execute_script(fits), "the search view is wider than 390 px"
        # The gallery has no attributes: no card says anything about them.
        assert "attributes" not in driver.find_element(By.ID, "matches").text
        # A line where the faces the model takes for the query person's end, and only
        # there. This gallery's pipeline (Dlib with mtcnn) takes all eight for img1's
        # person; the page's own search is redrawn with the first three taken so.
        with httpx.Client(base_url=served.url, timeout=120) as http:
            found = _post_photo(http, "/api/find", unit_faces / QUERY, k=8).json()
        same = [m["probably_query_person"] for m in found["matches"]]
        assert same[0] is True, same
        shown = driver.find_elements(By.CSS_SELECTOR, "#matches .same-person")
        assert len(shown) == (1 if False in same else 0)
        redrawn = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "api('/api/search', {method: 'POST', headers: {'content-type': 'application/json'},"
            " body: JSON.stringify({upload_id: state.upload.upload_id, face: 0, k: 8})})"
            ".then((r) => { r.matches.forEach((m, i) => { m.probably_query_person = i < 3; });"
            " renderResults(r); done(true); }).catch((e) => done(String(e)));"
        )
        assert redrawn is True, redrawn
        lines = driver.find_elements(By.CSS_SELECTOR, "#matches .same-person")
        assert len(lines) == 1 and "likely the same person" in lines[0].text
        position = driver.execute_script(
            "const line = document.querySelector('#matches .same-person');"
            "return [...line.parentNode.children].indexOf(line)"
        )
        assert position == 3
        cards = driver.find_elements(By.CSS_SELECTOR, "#matches .match")
        cards[0].click()
        wait.until(
            lambda d: d.execute_script(
                "const i = document.getElementById('viewer-img');"
                "return i.complete && i.naturalWidth > 0"
            )
        )
        assert "outline=true" in driver.find_element(By.ID, "viewer-img").get_attribute("src")
        driver.save_screenshot(str(tmp_path / "narrow-viewer.png"))
        assert driver.execute_script(fits), "the enlarged view is wider than 390 px"
        driver.find_element(By.CSS_SELECTOR, "#viewer .close").click()

        driver.find_element(By.ID, "tab-reports").click()
        wait.until(lambda d: "narrow" in d.find_element(By.ID, "report-list").text)
        for button in driver.find_elements(By.CSS_SELECTOR, "#report-list button"):
            if "narrow" in button.text:
                button.click()
        driver.switch_to.frame(driver.find_element(By.ID, "report-frame"))
        wait.until(lambda d: "Per photo" in d.find_element(By.TAG_NAME, "body").text)
        assert driver.execute_script(fits), "the report scrolls sideways in its frame"
        assert len(driver.find_elements(By.CSS_SELECTOR, "img.thumb")) == 4
        driver.switch_to.default_content()
        driver.save_screenshot(str(tmp_path / "narrow-reports.png"))
        assert driver.execute_script(fits), "the reports view is wider than 390 px"
    finally:
        driver.quit()
        print(f"screenshots: {tmp_path}")


@pytest.mark.slow
def test_find_with_several_photos_and_strengths(client: httpx.Client, unit_faces: Path) -> None:
    """Two photos of person01 make one query; the answer names them, leaves out the one
    the gallery holds, and gives each match its strength; one face per stranger."""
    with (unit_faces / QUERY).open("rb") as one, (unit_faces / "img2.jpg").open("rb") as two:
        response = client.post(
            "/api/find",
            files=[
                ("file", (QUERY, one, "image/jpeg")),
                ("more", ("img2.jpg", two, "image/jpeg")),
            ],
            data={"k": 3},
        )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["photos"] == [QUERY, "img2.jpg"] and result["threshold"] is not None
    names = [m["name"] for m in result["matches"]]
    assert "img2.jpg" not in names and {GALLERY_PHOTOS[n] for n in names[:2]} == {"person01"}
    for m in result["matches"]:
        assert m["strength"].endswith("probably you") == m["probably_query_person"]
        assert (m["probability"] >= 0.5) == (m["similarity"] >= result["threshold"])
    strangers = _post_photo(client, "/api/find", unit_faces / QUERY, k=5, strangers="true").json()
    assert strangers["strangers"]["one_per_person"] is True
    people = [GALLERY_PHOTOS[m["name"]] for m in strangers["matches"]]
    assert "person01" not in people
