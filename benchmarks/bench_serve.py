"""`doppel serve` under load: 1, 2, 4 and 8 clients sending new photos at once.

Builds a private gallery of lfw-dev (the first photos of each person) with a model's
default pipeline (Dlib: dlib's detector, five-point chips, mirror averaging; or
Facenet512, its real architecture with random weights), starts the installed
`doppel serve --workers N` on a free loopback port, and lets each number of clients
post photos to /api/find, each photo once in the whole run (the other photos of the
same people), so no answer comes from a cache. Prints p50 and p95 latency, searches
per second, how often the right person came first, the CPU time of the server and
its workers per search (which the machine's other work does not inflate much), and
every process's peak memory;
then, with --stages, the cost of each stage of one search, timed in this process.
With --same-photos N every client count sends the same N photos instead, rewritten as
PNGs of the same pixels with new bytes each round: new photos bring each count its own
mix of hard ones (a photo where HOG finds no face runs the fallback detectors, several
times a search's CPU), which the throughput ratios would otherwise carry. They go out
in --rounds back-to-back rounds, and searches per second is that of the steady load,
over the middle rounds (see run_clients); the whole run's rate is printed beside it.

    .venv/bin/python benchmarks/bench_serve.py [--model Dlib] [--workers 2] [--stages]
    .venv/bin/python benchmarks/bench_serve.py --per-person 1 --same-photos 80 --repeat 3
"""

from __future__ import annotations

import csv
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (  # noqa: E402
    SHARED_FACES,
    _children,
    _status_kib,
    install_random_facenet512,
    load,
    machine_line,
    prepare_models,
    private_home,
    process_cpu_seconds,
    table,
)

LFW = SHARED_FACES / "lfw-dev"
CLIENTS = (1, 2, 4, 8)
DOPPEL = str(Path(sys.executable).with_name("doppel"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def split(per_person: int) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The gallery (each person's first photos) and the queries (the rest, with their
    person), the queries interleaved across people."""
    people: dict[str, list[str]] = defaultdict(list)
    with (LFW / "identities.csv").open() as handle:
        for row in csv.DictReader(handle):
            people[row["person"]].append(row["file"])
    gallery, rest = [], []
    for person, files in sorted(people.items()):
        files.sort()
        gallery += [LFW / "photos" / f for f in files[:per_person]]
        rest.append([(LFW / "photos" / f, person) for f in files[per_person:]])
    queries = [q for round_ in zip(*rest, strict=False) for q in round_]
    longest = max(len(r) for r in rest)
    queries += [r[i] for i in range(len(rest[0]), longest) for r in rest if i < len(r)]
    return gallery, queries


def multipart(path: Path) -> tuple[bytes, str]:
    """The body and content type of a POST of one photo as the form field "file"."""
    boundary = "doppel-bench-" + path.stem.replace(" ", "_")
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    body = head + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def run_clients(
    url: str, clients: int, photos: list[tuple[Path, str]], rounds: int = 1
) -> dict[str, float]:
    """Each client posts its share of the photos one after another; all at once.

    With rounds > 1, `photos` is that many rounds of the same photos one after another
    (new bytes each round), and the searches per second are those of the steady load:
    the searches of the middle rounds divided by the time from the first search of the
    second round to the first of the last. A single round ends with fewer searches in
    flight than workers (at worst one worker alone on the costliest photo, the others
    idle), which no steady load has; the first and last rounds take that start and end,
    and since every round sends the same photos in the same order, the searches in
    flight when the window opens and when it closes are alike.

    The load generator shares the server's cores here, so it is kept lean: the request
    bodies are made before the clock starts, and each client is one kept-alive
    http.client connection; its CPU a search is reported beside the server's."""
    import http.client
    import json
    from urllib.parse import urlsplit

    address = urlsplit(url)
    per_round = len(photos) // rounds
    bodies = [(multipart(path), person, i // per_round) for i, (path, person) in enumerate(photos)]
    latencies: list[float] = []  # of the searches the rate is taken over
    round_starts: dict[int, float] = {}  # round -> when its first search was sent
    right = refused = 0
    lock = threading.Lock()
    work = iter(bodies)
    counted = range(1, rounds - 1) if rounds > 2 else range(rounds)

    def client() -> None:
        nonlocal right, refused
        conn = http.client.HTTPConnection(address.hostname, address.port, timeout=300)
        try:
            while True:
                with lock:
                    item = next(work, None)
                    if item is not None:
                        round_starts.setdefault(item[2], time.perf_counter())
                if item is None:
                    return
                (body, kind), person, round_ = item
                while True:
                    start = time.perf_counter()
                    conn.request("POST", "/api/find", body, {"Content-Type": kind})
                    answer = conn.getresponse()
                    data = answer.read()
                    took = time.perf_counter() - start
                    if answer.status != 503:
                        break
                    # Refused at once: wait as told, then send the same photo again.
                    with lock:
                        refused += 1
                    time.sleep(float(answer.getheader("retry-after") or 1))
                with lock:
                    assert answer.status == 200, data[:300]
                    if round_ in counted:
                        latencies.append(took)
                    # Facenet512 with random weights can leave no match (every face
                    # one "person" to its threshold): a search all the same, not right.
                    matches = json.loads(data)["matches"]
                    right += bool(matches) and matches[0]["name"].rsplit("_", 1)[0] == person
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start, own = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall, own = time.perf_counter() - start, time.process_time() - own
    if rounds > 2:
        rate = (rounds - 2) * per_round / (round_starts[rounds - 1] - round_starts[1])
    else:
        rate = len(bodies) / wall
    latencies.sort()
    return {
        "n": len(bodies),
        "p50": statistics.median(latencies) * 1000,
        "p95": latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))] * 1000,
        "rate": rate,
        "whole_rate": len(bodies) / wall,
        "client_cpu": own / max(1, len(bodies)),
        "right": right / max(1, len(bodies)),
        "refused": refused,
    }


def rewritten(photos: list[tuple[Path, str]], round_: int, folder: Path) -> list[tuple[Path, str]]:
    """The photos as PNGs of the same pixels, each carrying the round's number in a text
    chunk: the same work for the server as the originals, in bytes it has not seen."""
    from PIL import Image, PngImagePlugin

    out = []
    for path, person in photos:
        info = PngImagePlugin.PngInfo()
        info.add_text("round", str(round_))
        target = folder / f"round{round_}-{path.stem}.png"
        Image.open(path).convert("RGB").save(target, pnginfo=info)
        out.append((target, person))
    return out


def peaks(pid: int) -> list[tuple[str, float]]:
    """Peak resident memory (MiB) of the server process and each of its children."""
    out = [("server", _status_kib(pid, "VmHWM") / 1024)]
    for child in _children(pid):
        command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        kind = "resource tracker" if "resource_tracker" in command else "face worker"
        out.append((f"{kind} {child}", _status_kib(child, "VmHWM") / 1024))
    return out


def stages(config_model: str, queries: list[tuple[Path, str]], count: int) -> None:
    """The stages of one search (Dlib default pipeline), timed here, one photo at a time.
    The network is timed on the chip alone and on the chip with its mirror image (one
    batch, as a search runs it), on the runtime the Embedder picks."""
    import dataclasses

    import numpy as np

    from doppel.config import Settings
    from doppel.faces import catalog, dlibface
    from doppel.faces.detect import _dlib_boxes
    from doppel.faces.embed import Embedder
    from doppel.search import SearchRequest, find
    from doppel.store.db import connect
    from doppel.web.schemas import FindOut, detected_out, match_out
    from doppel.web.uploads import take_upload

    settings = Settings.from_env()
    options = settings.face_options
    config = catalog.default_config(config_model)
    # One thread each, as a serve worker runs them (and so the thread's CPU time is all
    # of the network's).
    embedder = Embedder(config, threads=1, options=options)
    embedder.warm_up()
    single = Embedder(dataclasses.replace(config, flip=False), threads=1, options=options)
    single.warm_up()
    times: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, list[float]] = defaultdict(list)
    with connect(settings) as conn:
        for path, _ in queries[:count]:
            data = path.read_bytes()
            marks = [(time.perf_counter(), time.thread_time())]

            def mark() -> None:
                marks.append((time.perf_counter(), time.thread_time()))  # noqa: B023

            upload = take_upload(data, path.name)
            mark()
            rgb = np.ascontiguousarray(upload.photo.pixels)
            boxes = _dlib_boxes(rgb, config.detector, options)
            mark()
            chip = dlibface.chip(rgb, boxes[0], options)
            mark()
            bgr = np.ascontiguousarray(chip[:, :, ::-1])
            one = single.embed_crops([bgr])
            mark()
            embedder.embed_crops([bgr])  # the chip and its mirror image, one batch
            mark()
            embedded = embedder.embed_photo(upload.photo)
            searched = (time.perf_counter(), time.thread_time())
            result = find(
                conn,
                path,
                SearchRequest("bench"),
                faces=lambda *_, e=embedded: e,
                settings=settings,
            )
            found = result.results[0]
            marks.append(searched)
            mark()
            FindOut(
                gallery="bench",
                upload_id=None,
                face=detected_out(found.face),
                matches=[match_out(m) for m in found.matches],
                strangers=None,
                seconds={},
                faces=[detected_out(found.face)],
            ).model_dump_json()
            mark()
            assert one.shape == (1, 128)
            names = [
                "decode and check the upload",
                "detection (dlib HOG)",
                "landmarks and chip",
                "network (Dlib ResNet), the face alone",
                "network, the face and its mirror",
                None,  # the whole pipeline again, for find() below
                "find: reading the photo again, SQL",
                "JSON",
            ]
            for name, (a, b) in zip(names, zip(marks, marks[1:], strict=False), strict=False):
                if name:
                    times[name].append(b[0] - a[0])
                    cpu[name].append(b[1] - a[1])
    rows = [
        [k, f"{statistics.median(v) * 1000:.1f}", f"{statistics.median(cpu[k]) * 1000:.1f}"]
        for k, v in times.items()
    ]
    print(table(["stage", "median ms", "CPU ms"], rows))
    print(
        f"{count} lfw-dev photos, one at a time, the network on {embedder.runtime_label}; "
        f"load average after {load()}"
    )


def main() -> None:
    import argparse

    import httpx

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="Dlib", choices=["Facenet512", "Dlib"])
    parser.add_argument("--workers", type=int, default=None, help="default: one per core")
    parser.add_argument("--per-person", type=int, default=3, help="gallery photos per person")
    parser.add_argument("--searches", type=int, default=12, help="per client count, times 2")
    parser.add_argument("--stages", action="store_true", help="also time one search's stages")
    parser.add_argument("--only-stages", action="store_true", help="no server, no clients")
    parser.add_argument(
        "--same-photos",
        type=int,
        default=0,
        metavar="N",
        help="every client count sends the same N photos (new bytes each round): the same"
        " work at every count, where new photos bring a different mix of hard ones",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="with --same-photos, rounds of them per client count, back to back; searches/s"
        " is taken over the middle rounds (the steady load)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="run the client counts this many times over"
    )
    args = parser.parse_args()

    from doppel.config import Settings
    from doppel.faces import catalog
    from doppel.faces.embed import Embedder
    from doppel.store.db import connect
    from tests.helpers import ingest_folder

    print(machine_line())
    gallery, queries = split(args.per_person)
    with private_home() as home:
        folder = Path(tempfile.mkdtemp(dir=home))
        for path in gallery:
            (folder / path.name).symlink_to(path)
        if args.model == "Facenet512":
            install_random_facenet512(home)
        config = catalog.default_config(args.model)
        prepare_models(args.model, config.detector)
        settings = Settings.from_env()
        start = time.perf_counter()
        with connect(settings) as conn:
            embedder = Embedder(config, options=settings.face_options)
            report = ingest_folder(conn, folder, "bench", config, embedder=embedder)
        print(
            f"gallery: {report.faces_added} faces of {len(gallery)} lfw-dev photos "
            f"({config}), ingested in {time.perf_counter() - start:.0f} s"
        )
        if args.only_stages:
            stages(args.model, queries, 20)
            return
        port = free_port()
        command = [DOPPEL, "serve", "--port", str(port)]
        if args.workers is not None:
            command += ["--workers", str(args.workers)]
        # Its own session, as a service runs: not in the clients' scheduling group.
        server = subprocess.Popen(command, stderr=subprocess.DEVNULL, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        rows = []
        try:
            while True:
                assert server.poll() is None, "doppel serve stopped"
                try:
                    health = httpx.get(f"{url}/api/health", timeout=5).json()
                    break
                except httpx.TransportError:
                    time.sleep(0.5)
            used = 0
            warm = queries[used : used + 2]
            used += 2
            run_clients(url, 2, warm)  # the first searches load what is loaded lazily
            sent = 0  # rounds of rewritten photos so far: each round's bytes are new
            same = queries[2 : 2 + args.same_photos]
            for _repeat in range(args.repeat):
                for clients in CLIENTS:
                    rounds = 1
                    if args.same_photos:
                        rounds = args.rounds
                        rewrites = Path(tempfile.mkdtemp(dir=folder.parent))
                        photos = []
                        for _ in range(rounds):
                            sent += 1
                            photos += rewritten(same, sent, rewrites)
                    else:
                        count = args.searches * (2 + clients // 2)
                        photos = queries[used : used + count]
                        used += count
                        assert len(photos) == count, "not enough new photos: lower --searches"
                    family = [server.pid, *_children(server.pid)]
                    cpu = sum(process_cpu_seconds(p) for p in family)
                    own = process_cpu_seconds(server.pid)
                    figures = run_clients(url, clients, photos, rounds)
                    cpu = sum(process_cpu_seconds(p) for p in family) - cpu
                    own = process_cpu_seconds(server.pid) - own
                    rows.append(
                        [
                            clients,
                            figures["n"],
                            f"{figures['p50']:.0f}",
                            f"{figures['p95']:.0f}",
                            f"{figures['rate']:.2f}",
                            f"{figures['whole_rate']:.2f}",
                            f"{figures['right']:.0%}",
                            figures["refused"],
                            f"{cpu / max(1, figures['n']) * 1000:.0f}",
                            f"{own / max(1, figures['n']) * 1000:.0f}",
                            f"{figures['client_cpu'] * 1000:.1f}",
                            load(),
                        ]
                    )
            memory = peaks(server.pid)
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=60)
        workers = health["queue"]["workers"]
        print(f"doppel serve, {workers} face workers, model {args.model}, POST /api/find")
        headers = ["clients", "n", "p50 ms", "p95 ms", "searches/s", "whole run /s"]
        headers += ["right first", "503", "CPU ms/search", "of it server", "clients' CPU ms"]
        print(table([*headers, "load after"], rows))
        if args.same_photos and args.rounds > 2:
            print(
                f"searches/s: of the steady load (rounds 2 to {args.rounds - 1} of "
                f"{args.rounds}); whole run /s: all rounds, the last one's end included"
            )
        ratios: dict[int, list[float]] = defaultdict(list)
        for start in range(0, len(rows), len(CLIENTS)):
            rep = rows[start : start + len(CLIENTS)]
            base = float(rep[0][4])
            for row in rep:
                ratios[row[0]].append(float(row[4]) / base)
            print(
                "throughput vs 1 client: "
                + ", ".join(f"{r[0]}: {float(r[4]) / base:.2f}x" for r in rep)
            )
        if args.repeat > 1:
            print(
                f"median of {args.repeat} repeats: "
                + ", ".join(f"{k}: {statistics.median(v):.2f}x" for k, v in ratios.items())
            )
        print(table(["process", "peak RSS MiB"], [[k, f"{v:.0f}"] for k, v in memory]))
        if args.stages and args.model == "Dlib":
            stages(args.model, queries[used:], 20)
    print(f"load average at the end {load()}; {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
