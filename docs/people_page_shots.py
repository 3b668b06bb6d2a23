"""Screenshots of the web page's People view, for the README.

    .venv/bin/python docs/people_page_shots.py                # images/people-*.png
    .venv/bin/python docs/people_page_shots.py --serve-only   # leave the page running

What a user does, in a private DOPPEL_HOME (its own embedded PostgreSQL, removed at
the end): `doppel ingest` of the demo set (images/demo, every face, Dlib with dlib's
detector), `doppel people`, the two largest people named, then
`doppel serve` and Debian's chromium (through selenium, as the tests drive it) on
/#people: the list, then the largest person opened with two faces selected.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DOPPEL = str(Path(sys.executable).with_name("doppel"))


def run(env: dict[str, str], *args: str) -> str:
    # In DOPPEL_HOME: `doppel people` writes its overview page where it runs.
    done = subprocess.run(
        [DOPPEL, *args], env=env, capture_output=True, text=True, cwd=env["DOPPEL_HOME"]
    )
    if done.returncode != 0:
        sys.exit(f"doppel {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def name_people(env: dict[str, str], gallery: str, names: list[str]) -> None:
    """Name the largest people, as a user would with `doppel people name`."""
    listing = json.loads(run(env, "people", "list", gallery, "--json"))
    for person, name in zip(listing["people"], names, strict=False):
        run(env, "people", "name", gallery, str(person["id"]), name)


def serve(env: dict[str, str], gallery: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen(
        [DOPPEL, "serve", "--port", str(port), "--workers", "0", "--gallery", gallery],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        if process.poll() is not None:
            sys.exit(f"doppel serve stopped:\n{process.communicate()[1]}")
        if time.monotonic() > deadline:
            sys.exit("doppel serve did not answer in 5 minutes")
        try:
            httpx.get(f"{url}/api/health", timeout=5)
            return process, url
        except httpx.TransportError:
            time.sleep(0.5)


def shoot(url: str, out: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,1000")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    loaded = (
        "return [...document.images].filter(i => i.offsetParent)"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    try:
        wait = WebDriverWait(driver, 120)
        driver.get(url + "/#people")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#people-list .person-card"))
        wait.until(lambda d: d.execute_script(loaded))
        driver.save_screenshot(str(out / "people-list.png"))
        driver.find_elements(By.CSS_SELECTOR, "#people-list .person-card")[0].click()
        wait.until(lambda d: d.find_element(By.ID, "person").is_displayed())
        wait.until(lambda d: d.execute_script(loaded))
        for tile in driver.find_elements(By.CSS_SELECTOR, "#person-faces .face img")[1:3]:
            tile.click()
        wait.until(lambda d: "2 faces selected" in d.find_element(By.ID, "selection-count").text)
        driver.save_screenshot(str(out / "people-person.png"))
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=ROOT / "images" / "demo")
    parser.add_argument("--out", type=Path, default=ROOT / "images")
    parser.add_argument("--serve-only", action="store_true", help="Serve until Ctrl-C.")
    args = parser.parse_args()
    # Stopped by a signal, the finally clauses still stop the server and remove the home.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    home = Path(tempfile.mkdtemp(prefix="doppel-shots-"))
    env = {**os.environ, "DOPPEL_HOME": str(home)}
    for key in ("DOPPEL_DATABASE_URL", "DOPPEL_GALLERY"):
        env.pop(key, None)
    gallery = "family"
    try:
        run(
            env,
            "ingest",
            str(args.photos),
            "-g",
            gallery,
            "-m",
            "Dlib",
            "-d",
            "dlib",
            "--all-faces",
        )
        run(env, "people", gallery)
        name_people(env, gallery, ["Ada", "Grace"])
        process, url = serve(env, gallery)
        try:
            if args.serve_only:
                print(f"{url}/#people  (Ctrl-C to stop)", flush=True)
                process.wait()
            else:
                shoot(url, args.out)
                print(f"wrote {args.out / 'people-list.png'} and {args.out / 'people-person.png'}")
        finally:
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=60)
    except KeyboardInterrupt:
        pass
    finally:
        subprocess.run([DOPPEL, "db", "stop"], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
