"""The explorer as a web application: a production WSGI server, a shared response cache, compression.

**Server.** waitress: pure Python (Linux, macOS and Windows alike, no C build), one process with a pool of
threads. One process matters here: every client shares one catalogue (one rescan per interval) and one cache of
computed responses, which several gunicorn workers would each hold (and compute) again. The figures' work is NumPy,
h5py and JSON encoding, so threads overlap their I/O and the cache removes the repeated work; CPU-bound
concurrency beyond that would need processes, which this workload does not (BENCHMARKS.md, ``bench/explorer_load.py``).

**Cache.** A Dash callback's response is a function of its request body (the inputs and states, including the
version of the files a view follows) and of the catalogue's generation; identical requests get the stored bytes,
and a request arriving while the same one is being computed waits for it instead of computing it again. Bounded by
bytes (least recently used out first), so memory stays bounded whatever the clients ask. The rescan's own requests
are not cached (their answer is the catalogue's current state).

**Compression.** Responses over 1 KiB of JSON, HTML, JavaScript or CSS are gzipped for clients that accept it
(Dash's component bundles and plotly.js once per server, as they never change while it runs).
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from collections import OrderedDict
from typing import Callable

from flask import Flask, Response, g, request

DASH_UPDATE = "/_dash-update-component"
NOT_CACHED = ("snapshot.data", "generation.data")  # the rescan: its answer is the catalogue's current state
COMPRESSIBLE = ("application/json", "text/html", "application/javascript", "text/javascript", "text/css")
MIN_COMPRESS = 1024
THREADS = 8


class ResponseCache:
    """Least-recently-used response bytes by key, bounded by their total size; one computation per key at a time."""

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        self.max_bytes, self.size = max_bytes, 0
        self.entries: OrderedDict[tuple, tuple[bytes, dict[str, str]]] = OrderedDict()
        self.lock = threading.Lock()
        self.pending: dict[tuple, threading.Event] = {}
        self.hits = self.misses = 0

    def get_or_claim(self, key: tuple) -> tuple[bytes, dict[str, str]] | None:
        """The stored response, or None after claiming the key (then :meth:`put` or :meth:`release` it); waits while
        another thread computes the same key."""
        while True:
            with self.lock:
                if key in self.entries:
                    self.entries.move_to_end(key)
                    self.hits += 1
                    return self.entries[key]
                event = self.pending.get(key)
                if event is None:
                    self.pending[key] = threading.Event()
                    self.misses += 1
                    return None
            event.wait(60)

    def put(self, key: tuple, body: bytes, headers: dict[str, str]) -> None:
        with self.lock:
            if key not in self.entries and len(body) <= self.max_bytes // 4:
                self.entries[key] = (body, headers)
                self.size += len(body)
                while self.size > self.max_bytes:
                    _, (old, _) = self.entries.popitem(last=False)
                    self.size -= len(old)
        self.release(key)

    def release(self, key: tuple) -> None:
        with self.lock:
            event = self.pending.pop(key, None)
        if event is not None:
            event.set()


def _accepts_gzip() -> bool:
    return "gzip" in request.headers.get("Accept-Encoding", "").lower()


def _compress(response: Response) -> None:
    """Gzip the body in place where it is worth it and the client takes it."""
    if (
        response.status_code != 200
        or "Content-Encoding" in response.headers
        or response.mimetype not in COMPRESSIBLE
        or not _accepts_gzip()
    ):
        return
    response.direct_passthrough = False  # a static file is streamed otherwise
    data = response.get_data()
    if len(data) < MIN_COMPRESS:
        return
    response.set_data(gzip.compress(data, compresslevel=5))
    response.headers["Content-Encoding"] = "gzip"
    response.headers.add("Vary", "Accept-Encoding")


def install(server: Flask, generation: Callable[[], int], cache: ResponseCache | None = None) -> ResponseCache:
    """Put the response cache and compression in front of ``server``'s routes; ``generation()``: the catalogue's
    generation (a cached response is valid while it stays the same)."""
    cache = cache or ResponseCache()
    static: dict[str, tuple[bytes, dict[str, str]]] = {}  # compressed bundles, by URL

    @server.before_request
    def from_cache():
        g.cache_key = None
        if request.method == "GET" and "/_dash-component-suites/" in request.path and _accepts_gzip():
            stored = static.get(request.full_path)
            return Response(stored[0], headers=stored[1]) if stored else None
        if request.method != "POST" or not request.path.endswith(DASH_UPDATE):
            return None
        body = request.get_data(cache=True)
        if any(name.encode() in body[:300] for name in NOT_CACHED):  # Dash writes the "output" field first
            return None
        key = (generation(), hashlib.sha256(body).digest(), _accepts_gzip())
        stored = cache.get_or_claim(key)
        if stored is not None:
            return Response(stored[0], headers=stored[1])
        g.cache_key = key
        return None

    @server.after_request
    def to_cache(response: Response) -> Response:
        _compress(response)
        key = getattr(g, "cache_key", None)
        if request.method == "GET" and "/_dash-component-suites/" in request.path and response.status_code == 200:
            if response.headers.get("Content-Encoding") == "gzip":
                static[request.full_path] = (response.get_data(), dict(response.headers))
        elif key is not None:
            g.cache_key = None
            if response.status_code == 200:
                cache.put(key, response.get_data(), dict(response.headers))
            else:
                cache.release(key)
        return response

    @server.teardown_request
    def unclaim(_exc):  # a callback that raised: let the next request compute it
        key = getattr(g, "cache_key", None)
        if key is not None:
            cache.release(key)

    return cache


def make_server(server: Flask, host: str, port: int, threads: int = THREADS):
    """A waitress server for ``server`` bound to ``host:port`` (0: any free port): ``.run()`` serves until
    ``.close()``; ``.effective_port`` is the port bound."""
    from waitress.server import create_server

    return create_server(server, host=host, port=port, threads=threads, ident="landscape-explorer")


__all__: list[str] = []
