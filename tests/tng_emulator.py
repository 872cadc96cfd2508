"""A local stand-in for the IllustrisTNG web API, on 127.0.0.1, for the acquisition tests.

It serves runs laid out in TNG format on disk (dm2gal.tng's layout) through the
endpoints dm2gal.acquire.tng_api uses:

    /api/{run}/files/{snapshot|groupcat}-{snap}/       JSON listing {"files": [chunk URLs]}
    /api/{run}/files/snapshot-{snap}.{N}.hdf5[?dm=..]  a chunk, or a field subset of it
    /api/{run}/files/groupcat-{snap}.{N}.hdf5          a group-catalogue chunk
    /api/{run}/checksums/groupcat-{snap}/              sha256sum lines (the snapshot variant: 404)
    /data/{token}/{original path}                      a "data server" reached by redirect

with HTTP Range (206 + Content-Range), the `api-key` header check (401 or 403), and
faults queued per path: "429" (with Retry-After), "503", "drop" (Content-Length of
the whole file, connection closed after half of it), "corrupt" (bytes flipped,
same size), "truncate" (the first half announced as the whole file), "redirect"
(302 to http://localhost:{port}/data/..., a different host name than 127.0.0.1),
"ignore_range" (200 with the whole file despite Range). Every request is recorded;
past `max_requests` it answers 500 and sets `overflow`, so a client stuck in a loop
fails the test instead of hanging it.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import h5py

from dm2gal import tng

PART_TYPES = {"gas": 0, "dm": 1, "tracers": 3, "stars": 4, "bhs": 5}


@dataclass
class Request:
    path: str
    query: str
    had_key: bool
    key_ok: bool
    range: str | None
    host: str


def subset_bytes(path: Path, query: dict[str, list[str]]) -> bytes:
    """An HDF5 file with the Header of `path` and only the requested PartType datasets."""
    buf = io.BytesIO()
    with h5py.File(path, "r") as src, h5py.File(buf, "w") as dst:
        src.copy("Header", dst)
        for ptype, values in query.items():
            group = f"PartType{PART_TYPES[ptype]}"
            if group not in src:
                continue
            out = dst.create_group(group)
            for name in ",".join(values).split(","):
                src.copy(f"{group}/{name}", out)
    return buf.getvalue()


class TNGEmulator:
    """Start with `start()` (returns the base URL, ending in /api/), stop with `stop()`."""

    def __init__(self, runs: dict[str, Path], snap: int, key: str = "emulator-key",
                 auth_status: int = 401, max_requests: int = 400, listings: bool = True):
        self.runs = {name: Path(base) for name, base in runs.items()}
        self.snap = snap
        self.key = key
        self.auth_status = auth_status
        self.max_requests = max_requests
        self.listings = listings
        self.faults: dict[str, deque] = defaultdict(deque)
        self.requests: list[Request] = []
        self.overflow = False
        self.delay_s = 0.0
        """Pause before each file body (makes concurrent downloads overlap, to observe the cap)."""
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        self._cache: dict[tuple, bytes] = {}
        self._server: ThreadingHTTPServer | None = None

    # -- control ------------------------------------------------------------------

    def start(self) -> str:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def fault(self, path: str, *faults: str) -> None:
        """Queue faults for the next requests of `path` (e.g. '/api/TNG-D/files/snapshot-99.0.hdf5')."""
        self.faults[path].extend(faults)

    def hits(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path.endswith(path)]

    # -- content ------------------------------------------------------------------

    def _file(self, run: str, kind: str, chunk: int) -> Path:
        base = self.runs[run]
        return (tng.snapshot_path if kind == "snapshot" else tng.groupcat_path)(base, self.snap, chunk)

    def _n_chunks(self, run: str, kind: str) -> int:
        directory = self._file(run, kind, 0).parent
        return len(list(directory.glob("*.hdf5")))

    def _body(self, run: str, kind: str, chunk: int, query: dict) -> bytes | None:
        path = self._file(run, kind, chunk)
        if not path.exists():
            return None
        cache_key = (str(path), json.dumps(query, sort_keys=True))
        if cache_key not in self._cache:
            self._cache[cache_key] = subset_bytes(path, query) if query else path.read_bytes()
        return self._cache[cache_key]

    def _checksums(self, run: str, kind: str) -> str:
        lines = []
        for chunk in range(self._n_chunks(run, kind)):
            path = self._file(run, kind, chunk)
            lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}")
        return "\n".join(lines) + "\n"

    # -- HTTP ---------------------------------------------------------------------

    def _handler(self):
        emu = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                url = urlsplit(self.path)
                key = self.headers.get("api-key")
                with emu._lock:
                    emu.requests.append(Request(url.path, url.query, key is not None, key == emu.key,
                                                self.headers.get("Range"), self.headers.get("Host", "")))
                    if len(emu.requests) > emu.max_requests:
                        emu.overflow = True
                        return self._send(500, b"request budget exhausted", "text/plain")
                    queue = emu.faults.get(url.path)
                    fault = queue.popleft() if queue else None
                if url.path.startswith("/data/"):
                    return self._data(url, fault)
                if key != emu.key:
                    return self._send(emu.auth_status, b'{"detail": "bad api key"}', "application/json")
                return self._api(url, fault)

            def _api(self, url, fault):
                m = re.fullmatch(r"/api/([^/]+)/(files|checksums)/(snapshot|groupcat)-(\d+)"
                                 r"(?:/|\.(\d+)\.hdf5)", url.path)
                if not m or m.group(1) not in emu.runs or int(m.group(4)) != emu.snap:
                    return self._send(404, b'{"detail": "Not found."}', "application/json")
                run, endpoint, kind, _, chunk = m.groups()
                if fault in ("429", "503"):
                    return self._send(int(fault), b"slow down", "text/plain", {"Retry-After": "0"})
                if endpoint == "checksums":
                    if chunk is not None or kind == "snapshot":
                        return self._send(404, b'{"detail": "Not found."}', "application/json")
                    return self._send(200, emu._checksums(run, kind).encode(), "text/plain")
                if chunk is None:
                    if not emu.listings:
                        return self._send(404, b'{"detail": "Not found."}', "application/json")
                    base = f"http://127.0.0.1:{emu.port}/api/{run}/files/{kind}-{emu.snap}"
                    files = [f"{base}.{i}.hdf5" for i in range(emu._n_chunks(run, kind))]
                    return self._send(200, json.dumps({"files": files}).encode(), "application/json")
                if fault == "redirect":
                    target = f"http://localhost:{emu.port}/data/signed-token{url.path}"
                    if url.query:
                        target += "?" + url.query
                    return self._send(302, b"", "text/plain", {"Location": target})
                self._file(run, kind, int(chunk), parse_qs(url.query), fault)

            def _data(self, url, fault):
                m = re.fullmatch(r"/data/signed-token/api/([^/]+)/files/(snapshot|groupcat)-\d+\.(\d+)\.hdf5",
                                 url.path)
                if not m:
                    return self._send(404, b"", "text/plain")
                self._file(m.group(1), m.group(2), int(m.group(3)), parse_qs(url.query), fault)

            def _file(self, run, kind, chunk, query, fault):
                with emu._lock:
                    emu.in_flight += 1
                    emu.max_in_flight = max(emu.max_in_flight, emu.in_flight)
                try:
                    time.sleep(emu.delay_s)
                    self._send_file(run, kind, chunk, query, fault)
                finally:
                    with emu._lock:
                        emu.in_flight -= 1

            def _send_file(self, run, kind, chunk, query, fault):
                body = emu._body(run, kind, chunk, query)
                if body is None:
                    return self._send(404, b'{"detail": "Not found."}', "application/json")
                if fault == "corrupt":
                    mid = len(body) // 2
                    body = body[:mid] + bytes(b ^ 0xFF for b in body[mid:mid + 64]) + body[mid + 64:]
                if fault == "truncate":
                    body = body[: len(body) // 2]
                size = len(body)
                start = 0
                rng = self.headers.get("Range")
                if rng and fault != "ignore_range":
                    start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
                    if start >= size:
                        return self._send(416, b"", "text/plain", {"Content-Range": f"bytes */{size}"})
                name = (tng.snapshot_path if kind == "snapshot" else tng.groupcat_path)("", emu.snap, chunk).name
                extra = {"Accept-Ranges": "bytes", "Content-Disposition": f"attachment; filename={name}"}
                if start:
                    extra["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
                payload = body[start:]
                if fault == "drop":
                    self.send_response(206 if start else 200)
                    self.send_header("Content-Type", "application/x-hdf5")
                    self.send_header("Content-Length", str(len(payload)))
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self._send(206 if start else 200, payload, "application/x-hdf5", extra)

            def _send(self, status, body, ctype, extra=None):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler
