"""The IllustrisTNG web API: file listings, checksums and chunk downloads into TNG layout.

URL patterns (see docs/acquire.md; the API is documented at
https://www.tng-project.org/data/docs/api/ and its file endpoints on the
"Data Access" pages https://www.tng-project.org/data/docs/specifications/):

- run listing ......... {base}{run}/files/snapshot-{snap}/  and  {base}{run}/files/groupcat-{snap}/
                        (JSON; its "files" are the chunk URLs; their number is the chunk count)
- snapshot chunk ...... {base}{run}/files/snapshot-{snap}.{N}.hdf5[?dm=Coordinates]
                        (a field subset per particle type: `?{type}={field},{field}`, as in the
                        API's cutout requests, e.g. `?stars=Coordinates,Masses`)
- group catalogue chunk {base}{run}/files/groupcat-{snap}.{N}.hdf5
- checksums ........... {base}{run}/checksums/groupcat-{snap}/ (sha256sum lines; the
                        snapshot-{snap} variant is tried and may not exist)

Every request carries the header `api-key: <key>` (API docs, "Getting started":
"all requests must include your API key ... as an HTTP header named api-key"), with
the key read from the environment variable TNG_API_KEY, never from config.
Chunks are saved as `snapdir_{snap}/snap_{snap}.N.hdf5` and
`groups_{snap}/fof_subhalo_tab_{snap}.N.hdf5` (dm2gal.tng's layout).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from tqdm.auto import tqdm

from .. import tng
from ..atomic import atomic_path
from . import http
from .manifest import check_groupcat_chunk, check_snapshot_chunk

log = logging.getLogger("dm2gal.acquire.tng")

KEY_ENV = "TNG_API_KEY"
KEY_HEADER = "api-key"
KINDS = ("snapshot", "groupcat")
PART_TYPES = {"gas": 0, "dm": 1, "tracers": 3, "stars": 4, "bhs": 5}
"""The API's particle-type names (as in its cutout requests) and TNG's PartType numbers."""
_CHUNK = re.compile(r"\.(\d+)\.hdf5")


def api_key_headers() -> dict:
    """{"api-key": key} from $TNG_API_KEY; raises http.AuthError (naming the variable) if unset."""
    key = os.environ.get(KEY_ENV, "").strip()
    if not key:
        raise http.AuthError(
            f"the TNG web API needs your personal key: set the environment variable {KEY_ENV} "
            f"(shown on your account page at https://www.tng-project.org/users/profile/)")
    return {KEY_HEADER: key}


def run_url(base_url: str, run: str) -> str:
    """{base}{run}/ with exactly one slash between the parts."""
    return f"{base_url.rstrip('/')}/{run}/"


def listing_url(base_url: str, run: str, kind: str, snap: int) -> str:
    return f"{run_url(base_url, run)}files/{kind}-{snap}/"


def chunk_url(base_url: str, run: str, kind: str, snap: int, chunk: int) -> str:
    return f"{run_url(base_url, run)}files/{kind}-{snap}.{chunk}.hdf5"


def checksums_url(base_url: str, run: str, kind: str, snap: int) -> str:
    return f"{run_url(base_url, run)}checksums/{kind}-{snap}/"


def subset_query(fields: dict[str, list[str]] | None) -> dict[str, str] | None:
    """The query of a field subset, e.g. {"dm": ["Coordinates"]} -> {"dm": "Coordinates"}."""
    if not fields:
        return None
    unknown = set(fields) - set(PART_TYPES)
    if unknown:
        raise ValueError(f"unknown particle types {sorted(unknown)}; the API knows {sorted(PART_TYPES)}")
    return {ptype: ",".join(names) for ptype, names in fields.items()}


def chunk_urls(doc, kind: str) -> list[str]:
    """Chunk URLs of a listing, ordered by chunk number; checks that they are 0..n-1.

    Accepts {"files": [url | {"url": url}, ...]} or a bare list (the layout is not
    documented precisely; both have been seen in public scripts).
    """
    files = doc.get("files", doc.get("results")) if isinstance(doc, dict) else doc
    if not isinstance(files, list) or not files:
        raise http.DownloadError(f"{kind} listing has no file list: {str(doc)[:200]}")
    urls = [f["url"] if isinstance(f, dict) else str(f) for f in files]
    numbered = {}
    for url in urls:
        match = _CHUNK.search(url.rsplit("/", 1)[-1])
        if match:
            numbered[int(match.group(1))] = url
    if sorted(numbered) != list(range(len(numbered))) or not numbered:
        raise http.DownloadError(
            f"{kind} listing does not number its chunks 0..n-1: {sorted(numbered)[:10]}...")
    return [numbered[i] for i in range(len(numbered))]


def parse_checksums(text: str | None) -> dict[int, str]:
    """Chunk number -> SHA-256 from `sha256sum` lines ("<hex>  <name>.<N>.hdf5"); {} if none."""
    sums = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
            match = _CHUNK.search(parts[1])
            if match:
                sums[int(match.group(1))] = parts[0].lower()
    return sums


def fetch_listing(
    dest: str | os.PathLike,
    base_url: str,
    run: str,
    snap: int,
    kinds: tuple[str, ...] = KINDS,
    chunks: dict[str, int | None] | None = None,
    policy: http.Policy = http.Policy(),
) -> dict:
    """Write `dest` (JSON): for each kind, the chunk URLs and any archive checksums; returns it.

    The chunk count comes from the listing; `chunks[kind]`, when given, is used instead
    if the listing endpoint is missing (404), with URLs from the pattern above.
    """
    secret = api_key_headers()
    chunks = chunks or {}
    doc = {"run": run, "snapnum": snap, "base_url": base_url}
    for kind in kinds:
        listing = http.get_json(listing_url(base_url, run, kind, snap), secret_headers=secret,
                                key_env=KEY_ENV, policy=policy)
        if listing is not None:
            urls = chunk_urls(listing, kind)
        elif chunks.get(kind):
            urls = [chunk_url(base_url, run, kind, snap, i) for i in range(chunks[kind])]
        else:
            raise http.DownloadError(
                f"{listing_url(base_url, run, kind, snap)} does not exist and no chunk count is "
                f"configured (acquire.tng.{kind}_chunks)")
        sums = parse_checksums(http.get_text(checksums_url(base_url, run, kind, snap),
                                             secret_headers=secret, key_env=KEY_ENV, policy=policy))
        doc[kind] = {"urls": urls, "sha256": {str(k): v for k, v in sums.items()}}
        log.info("%s %s-%d: %d chunks, %d checksums", run, kind, snap, len(urls), len(sums))
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(doc, indent=1))
    return doc


def chunk_count(listing: dict, kind: str) -> int:
    """Number of chunks of `kind` in a listing written by `fetch_listing` (0 if not fetched)."""
    return len(listing.get(kind, {}).get("urls", []))


def fetch_chunk(
    listing_path: str | os.PathLike,
    kind: str,
    chunk: int,
    dest: str | os.PathLike,
    fields: dict[str, list[str]] | None = None,
    policy: http.Policy = http.Policy(),
) -> Path:
    """Download one chunk to `dest` (resuming, verifying), as listed in `listing_path`.

    `fields` (snapshots only): a subset such as {"dm": ["Coordinates"]}; the archive's
    checksum, which is of the whole file, is then not applicable. The chunk must open
    and its header counts must match its datasets (and NumFiles match the listing),
    else it is deleted and fetched again.
    """
    listing = json.loads(Path(listing_path).read_text())
    entry = listing[kind]
    n_chunks = len(entry["urls"])
    if not 0 <= chunk < n_chunks:
        raise ValueError(f"{kind} chunk {chunk} is not in the listing (0..{n_chunks - 1})")
    query = subset_query(fields) if kind == "snapshot" else None
    sha = None if query else entry["sha256"].get(str(chunk))
    part_types = sorted(PART_TYPES[p] for p in fields) if query else None

    def check(path: Path) -> None:
        if kind == "snapshot":
            check_snapshot_chunk(path, part_types)
        else:
            check_groupcat_chunk(path)
        with tng._open(path) as f:
            n_files = f["Header"].attrs["NumFilesPerSnapshot" if kind == "snapshot" else "NumFiles"]
        if int(n_files) != n_chunks:
            raise tng.CorruptChunkError(f"{path}: header says {n_files} files, the listing {n_chunks}")

    dest = Path(dest)
    label = f"{listing['run']} {kind} chunk {chunk + 1}/{n_chunks}"
    with tqdm(desc=label, unit="B", unit_scale=True, unit_divisor=1024, mininterval=5.0) as bar:
        http.download(entry["urls"][chunk], dest, params=query, secret_headers=api_key_headers(),
                      key_env=KEY_ENV, sha256=sha, check=check, policy=policy, progress=bar)
    log.info("%s -> %s (%d bytes%s)", label, dest, dest.stat().st_size, ", sha256 verified" if sha else "")
    return dest
