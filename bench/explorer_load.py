"""The explorer under load: N concurrent clients replaying the browser's real requests (issue 26's target: 50
clients x 20 requests over the demo folder, p99 under 1 s, no errors).

1. The explorer serves FOLDER in a process of its own: ``landscape explore`` (waitress, the response cache, gzip);
   for the comparison Flask's development server without the cache (as before issue 26), and waitress alone.
2. Headless Chromium opens the page and visits every tab (and picks a surface kind and a log scale), while the
   requests it sends are recorded: the page, its scripts, the layout and every callback with its real body.
3. N client threads each send M of those requests (each client starts at its own place in the list, so every kind
   of request is in flight at once), with ``Accept-Encoding: gzip`` like a browser; requests/s, p50, p99 and errors.

    make demo                                               # the demo folder (runs/demo)
    python bench/explorer_load.py                           # before, waitress alone, now: side by side
    python bench/explorer_load.py --clients 50 --requests 20 --server waitress
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from report import report

ROOT = Path(__file__).resolve().parents[1]
TABS = ("Training", "Surface", "Hessian", "Sweep", "Robustness", "Connectivity", "Compare", "Runs")
# the server before issue 26 (Flask's development server, no response cache, no compression), and waitress alone
DEV = "from landscape.apps.explorer.app import create_app; create_app({root!r}, cache=False).run(port={port})"
BARE = (
    "from landscape.apps.explorer.app import create_app; from landscape.apps.explorer.serving import make_server; "
    "make_server(create_app({root!r}, cache=False).server, '127.0.0.1', {port}).run()"
)
LABELS = {
    "dev": "before: Flask's development server (werkzeug, threaded), no cache",
    "bare": "waitress (8 threads) alone, no cache",
    "waitress": "now (`landscape explore`): waitress (8 threads), response cache, gzip",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(server: str, root: str, port: int) -> subprocess.Popen:
    if server in ("dev", "bare"):
        cmd = [sys.executable, "-c", (DEV if server == "dev" else BARE).format(root=root, port=port)]
    else:
        cmd = [sys.executable, "-m", "landscape.apps.cli", "explore", root, "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"the {server} server did not start on port {port}")


def record(url: str) -> list[tuple[str, str, bytes | None, str]]:
    """(method, path, body, content type) of every request the browser sends while it visits each tab."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    seen: list[tuple[str, str, bytes | None, str]] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})

        def keep(req) -> None:
            parts = urlsplit(req.url)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            seen.append((req.method, path, req.post_data_buffer, req.headers.get("content-type", "")))

        page.on("request", keep)
        page.goto(url)
        page.wait_for_selector("#runs-table .ag-row", state="attached", timeout=60_000)
        for tab in TABS:
            page.get_by_text(tab, exact=True).click()
            page.wait_for_timeout(2500)
            if tab == "Surface":
                page.get_by_text("heatmap", exact=True).click()
                page.wait_for_timeout(1500)
        browser.close()
    return seen


def replay(port: int, requests: list, clients: int, per_client: int) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine, bad = [], 0
        for i in range(per_client):
            method, path, body, ctype = requests[(k * 7 + i) % len(requests)]
            headers = {"Accept-Encoding": "gzip", **({"Content-Type": ctype} if ctype else {})}
            tic = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status not in (200, 204):
                    bad += 1
            except (OSError, http.client.HTTPException):
                bad += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            mine.append(time.perf_counter() - tic)
        conn.close()
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    tic = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors[0], time.perf_counter() - tic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", nargs="?", default="runs/demo")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=20, help="per client")
    ap.add_argument("--server", choices=("waitress", "bare", "dev", "all"), default="all")
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    if not Path(args.folder).is_dir():
        raise SystemExit(f"{args.folder}: no such folder (make demo writes runs/demo)")
    rows = []
    for server in ("dev", "bare", "waitress") if args.server == "all" else (args.server,):
        port = free_port()
        proc = start(server, args.folder, port)
        try:
            requests = record(f"http://127.0.0.1:{port}/")
            callbacks = sum(1 for _, path, _, _ in requests if "_dash-update-component" in path)
            latencies, errors, seconds = replay(port, requests, args.clients, args.requests)
        finally:
            proc.terminate()
            proc.wait(10)
        q = statistics.quantiles(latencies, n=100)
        rows.append(
            f"| {LABELS[server]} | "
            f"{len(requests)} ({callbacks} callbacks) | {len(latencies) / seconds:.0f} | {q[49]:.3f} | {q[98]:.3f} | "
            f"{max(latencies):.2f} | {errors} |"
        )
    n = len(list(Path(args.folder).rglob("config.json")))
    lines = [
        f"explorer load: {args.clients} clients x {args.requests} requests over {args.folder} ({n} runs), "
        f"{os.cpu_count()} CPUs",
        "",
        "| server | recorded requests | requests/s | p50 (s) | p99 (s) | max (s) | errors |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]
    report(lines, args.out, "explorer_load.md")


if __name__ == "__main__":
    main()
