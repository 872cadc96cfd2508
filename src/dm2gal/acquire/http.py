"""A robust HTTP file download: resumable, verified, retried, never incomplete at the final path.

`download(url, dest)` streams into `dest + ".part"`, resuming an existing `.part`
with an HTTP Range request (RFC 9110 section 14), checks the size the server
announced (Content-Length, or the total of Content-Range) and the SHA-256 when the
caller knows it, runs an optional content check (e.g. "this HDF5 chunk opens and
its header counts add up"), and only then renames the `.part` onto `dest`.

Failures and what happens:
- timeouts, dropped connections, 429 and 5xx: retried, resuming the `.part`, with
  exponential backoff (doubling from `backoff_s`, capped at `max_backoff_s`) that
  honours a `Retry-After` header; at most `retries` consecutive attempts that
  deliver no new byte, so a transfer that keeps progressing is never abandoned;
- 401/403: `AuthError` at once (no retry), naming the environment variable of the
  key; other 4xx: `DownloadError` at once;
- wrong checksum or failed content check: the `.part` is deleted and the file is
  fetched again from byte 0, at most `retries` times.

Redirects (3xx with Location) are followed by hand, at most `max_redirects`. The
secret headers (`secret_headers`, e.g. TNG's `api-key`) go only to hosts that
`same_site(first URL)` accepts: the host of the first URL and hosts of the
same parent domain (a redirect from www.tng-project.org to data.tng-project.org
keeps the key; one to a foreign storage host does not). Neither the key nor the
headers ever appear in messages or exceptions.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from .manifest import sha256 as file_sha256

log = logging.getLogger("dm2gal.acquire.http")

RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
"""Statuses worth another try: timeouts, throttling and server-side errors."""
AUTH_STATUS = frozenset({401, 403})
BLOCK = 1 << 20
"""Bytes read from the socket per write to the `.part` file."""


class DownloadError(RuntimeError):
    """A file could not be fetched complete and verified within the retry bounds."""


class AuthError(DownloadError):
    """The server refused the credentials (401/403): retrying cannot help."""


@dataclass(frozen=True)
class Policy:
    """How hard to try. Times in seconds."""

    retries: int = 8
    """Consecutive attempts without a new byte (and re-fetches after a bad checksum) allowed."""
    backoff_s: float = 2.0
    """First wait; doubled after each failed attempt."""
    max_backoff_s: float = 120.0
    """Cap on one wait, Retry-After included."""
    connect_timeout_s: float = 30.0
    read_timeout_s: float = 120.0
    """Longest silence on an open connection before it counts as dropped."""
    max_redirects: int = 10


def same_site(first_url: str) -> Callable[[str], bool]:
    """Host filter for secret headers: the first URL's host and its siblings under the same parent domain.

    For `www.tng-project.org` this accepts `*.tng-project.org`; for an IP address or
    a single-label host only that exact host.
    """
    host = (urlsplit(first_url).hostname or "").lower()
    labels = host.split(".")
    parent = ".".join(labels[-2:]) if len(labels) > 2 and not host.replace(".", "").isdigit() else host

    def allowed(other: str) -> bool:
        other = (other or "").lower()
        return other == host or (parent != host and (other == parent or other.endswith("." + parent)))

    return allowed


def retry_after(response: requests.Response, default: float) -> float:
    """Seconds the server asks us to wait (Retry-After: seconds or an HTTP date), else `default`."""
    value = response.headers.get("Retry-After")
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    when = email.utils.parsedate_to_datetime(value)
    if when is None:
        return default
    return max(0.0, when.timestamp() - time.time())


def _content_range_total(response: requests.Response) -> tuple[int | None, int | None]:
    """(first byte, total size) of a `Content-Range: bytes a-b/total` header (None where absent or '*')."""
    value = response.headers.get("Content-Range", "")
    if not value.startswith("bytes"):
        return None, None
    spec, _, total = value[5:].strip().partition("/")
    first = int(spec.split("-")[0]) if spec and spec != "*" else None
    return first, (int(total) if total.strip().isdigit() else None)


def _open(session: requests.Session, url: str, params: dict | None, headers: dict, secret: dict,
          key_allowed: Callable[[str], bool], policy: Policy) -> requests.Response:
    """GET `url`, following redirects by hand so that secret headers never reach a foreign host."""
    for _ in range(policy.max_redirects + 1):
        send = dict(headers)
        if key_allowed(urlsplit(url).hostname or ""):
            send.update(secret)
        response = session.get(url, params=params, headers=send, stream=True, allow_redirects=False,
                               timeout=(policy.connect_timeout_s, policy.read_timeout_s))
        if response.is_redirect or response.status_code in (301, 302, 303, 307, 308):
            location = response.headers.get("Location")
            response.close()
            if not location:
                raise DownloadError(f"redirect without Location from {_public(url)}")
            url = urljoin(url, location)
            params = None  # the Location already carries its query
            log.debug("redirected to %s", _public(url))
            continue
        return response
    raise DownloadError(f"more than {policy.max_redirects} redirects from {_public(url)}")


def _auth_error(url: str, response: requests.Response, key_env: str | None) -> AuthError:
    """The 401/403 message: names the key's environment variable, never its value."""
    what = f"{_public(url)}: HTTP {response.status_code} ({response.reason})"
    if key_env is None:
        return AuthError(f"{what}: access refused by a server that should need no key; check the URL")
    return AuthError(f"{what}: the archive refused the API key. Set the environment variable {key_env} "
                     f"to your personal key (shown on your account page of the archive) and run again.")


def _public(url: str) -> str:
    """The URL without its query (which may carry a signed token) for messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class _Backoff:
    """The retry budget of one download: consecutive attempts without a new byte, and the next wait [s]."""

    def __init__(self, url: str, policy: Policy, sleep: Callable[[float], None]):
        self.url, self.policy, self.sleep = url, policy, sleep
        self.stalls = 0
        self.wait = policy.backoff_s

    def progressed(self) -> None:
        """New bytes arrived: the budget and the backoff start afresh."""
        self.stalls, self.wait = 0, self.policy.backoff_s

    def fail(self, reason: str, delay: float | None = None) -> None:
        """Count a failed attempt and sleep before the next (`delay` [s], else the backoff; capped);
        DownloadError once `policy.retries` attempts in a row delivered nothing."""
        policy = self.policy
        self.stalls += 1
        if self.stalls > policy.retries:
            raise DownloadError(f"{_public(self.url)}: giving up after {policy.retries} retries ({reason})")
        delay = min(policy.max_backoff_s, self.wait if delay is None else delay)
        log.warning("%s: %s; retry %d/%d in %.1f s", _public(self.url), reason, self.stalls, policy.retries, delay)
        self.sleep(delay)
        self.wait = min(policy.max_backoff_s, self.wait * 2)


_AGAIN = object()
"""What one attempt returns when it failed (already counted by `_Backoff.fail`): try again."""


def _receive(response: requests.Response, part: Path, offset: int, backoff: _Backoff, progress):
    """Write the body of a 200/206 `response` into `part` from byte `offset` (0 for a 200).

    Returns the file size [bytes] the server announced (None when it did not), or `_AGAIN`
    when the server resumed at another byte (the `.part` is deleted) or the connection
    dropped (the bytes received so far stay in the `.part`).
    """
    first, total = _content_range_total(response)
    length = response.headers.get("Content-Length")
    if response.status_code == 206 and first != offset:
        part.unlink(missing_ok=True)
        backoff.fail(f"server resumed at byte {first}, not {offset}; restarting")
        return _AGAIN
    if response.status_code == 200:
        offset = 0  # the server ignored Range (or there was none): start over
    size_known = total if total is not None else (offset + int(length) if length is not None else None)
    if progress is not None:
        progress.reset(total=size_known)
        progress.update(offset)
    got = 0
    try:
        with open(part, "r+b" if offset else "wb") as f:
            f.seek(offset)
            f.truncate()
            # read1 hands over bytes as they arrive, so a drop loses none of them
            while block := response.raw.read1(BLOCK, decode_content=False):
                f.write(block)
                got += len(block)
                if progress is not None:
                    progress.update(len(block))
    except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as err:
        if got:
            backoff.progressed()
        backoff.fail(f"connection dropped after {offset + got} bytes ({type(err).__name__}); resuming")
        return _AGAIN
    if got:
        backoff.progressed()
    return size_known


def _attempt(session: requests.Session, url: str, params: dict | None, secret: dict,
             key_allowed: Callable[[str], bool], key_env: str | None, part: Path, backoff: _Backoff, progress):
    """One GET of the rest of `part` (a Range request from its size), written into `part`.

    Returns the announced file size [bytes] (None when unknown) or `_AGAIN` after a
    retryable failure; raises AuthError on 401/403 and DownloadError on other 4xx.
    """
    offset = part.stat().st_size if part.exists() else 0
    # identity encoding: byte offsets and Content-Length then refer to the file itself
    range_header = {"Accept-Encoding": "identity", **({"Range": f"bytes={offset}-"} if offset else {})}
    try:
        response = _open(session, url, params, range_header, secret, key_allowed, backoff.policy)
    except (requests.ConnectionError, requests.Timeout) as err:
        backoff.fail(f"{type(err).__name__}")
        return _AGAIN
    with response:
        status = response.status_code
        if status in AUTH_STATUS:
            raise _auth_error(url, response, key_env)
        if status == 416:  # our offset is at or past the end: restart if the .part is not exactly whole
            _, total = _content_range_total(response)
            if total is not None and offset == total:
                return total
            part.unlink(missing_ok=True)
            backoff.fail("requested range not satisfiable; restarting from byte 0")
            return _AGAIN
        if status in RETRY_STATUS:
            backoff.fail(f"HTTP {status}", retry_after(response, backoff.wait))
            return _AGAIN
        if status not in (200, 206):
            raise DownloadError(f"{_public(url)}: HTTP {status} ({response.reason})")
        return _receive(response, part, offset, backoff, progress)


def _complete(part: Path, size_known: int | None, backoff: _Backoff) -> bool:
    """Whether `part` holds exactly the announced `size_known` bytes (any size when unknown); a
    short file is kept to resume, a long one deleted, and either counts as a failed attempt."""
    size = part.stat().st_size if part.exists() else 0
    if size_known is not None and size < size_known:
        backoff.fail(f"got {size} of {size_known} bytes; resuming")
        return False
    if size_known is not None and size > size_known:
        part.unlink()
        backoff.fail(f"got {size} bytes, more than the announced {size_known}; restarting")
        return False
    return True


def _content_problem(part: Path, sha256: str | None, check: Callable[[Path], None] | None) -> str | None:
    """Why the complete `part` is not the archive's file (SHA-256 or content check), or None."""
    if sha256 is not None and (digest := file_sha256(part)) != sha256.lower():
        return f"SHA-256 {digest} differs from the archive's {sha256}"
    if check is not None:
        try:
            check(part)
        except Exception as err:  # any content failure means: fetch it again
            return f"content check failed: {err}"
    return None


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    params: dict | None = None,
    secret_headers: dict | None = None,
    key_env: str | None = "TNG_API_KEY",
    sha256: str | None = None,
    check: Callable[[Path], None] | None = None,
    policy: Policy = Policy(),
    progress=None,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Fetch `url` (with query `params`) to `dest`; returns `dest`.

    `secret_headers` (e.g. {"api-key": key}) are sent only to hosts
    `same_site(url)` accepts; `key_env` names where the key came from,
    for the 401/403 message (None: a public server). `sha256`: expected hex digest, checked when given.
    `check(path)`: raises on bad content (called on the complete `.part`).
    `progress`: a tqdm-like object with `update(n)`, `reset(total)`; optional.
    Raises AuthError on 401/403, DownloadError when the bounds are exhausted; the
    `.part` is kept after transient failures so the next call resumes it.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    session = requests.Session()
    secret = dict(secret_headers or {})
    key_allowed = same_site(url)
    backoff = _Backoff(url, policy, sleep)
    refetches = 0
    while True:
        size_known = _attempt(session, url, params, secret, key_allowed, key_env, part, backoff, progress)
        if size_known is _AGAIN or not _complete(part, size_known, backoff):
            continue
        problem = _content_problem(part, sha256, check)
        if problem:
            part.unlink()
            refetches += 1
            if refetches > policy.retries:
                raise DownloadError(f"{_public(url)}: {problem} (after {refetches} fetches)")
            log.warning("%s: %s; fetching again", _public(url), problem)
            continue
        os.replace(part, dest)
        return dest


def get_json(url: str, *, secret_headers: dict | None = None, key_env: str | None = "TNG_API_KEY",
             policy: Policy = Policy()):
    """GET a JSON document (an API listing) with the same retries, redirects and key handling.

    Returns the parsed JSON, or None on 404 (an endpoint this archive does not offer).
    """
    text = get_text(url, secret_headers=secret_headers, key_env=key_env, policy=policy)
    return None if text is None else json.loads(text)


def get_text(url: str, *, secret_headers: dict | None = None, key_env: str | None = "TNG_API_KEY",
             policy: Policy = Policy()) -> str | None:
    """GET a small text document with retries; None on 404."""
    session = requests.Session()
    allowed = same_site(url)
    wait = policy.backoff_s
    for attempt in range(policy.retries + 1):
        try:
            response = _open(session, url, None, {"Accept": "application/json, text/plain"},
                             dict(secret_headers or {}), allowed, policy)
        except (requests.ConnectionError, requests.Timeout) as err:
            reason, delay = type(err).__name__, wait
        else:
            with response:
                if response.status_code in AUTH_STATUS:
                    raise _auth_error(url, response, key_env)
                if response.status_code == 404:
                    return None
                if response.status_code == 200:
                    try:
                        return response.content.decode()
                    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as err:
                        reason, delay = type(err).__name__, wait
                elif response.status_code in RETRY_STATUS:
                    reason, delay = f"HTTP {response.status_code}", retry_after(response, wait)
                else:
                    raise DownloadError(f"{_public(url)}: HTTP {response.status_code} ({response.reason})")
        if attempt == policy.retries:
            raise DownloadError(f"{_public(url)}: giving up after {policy.retries} retries ({reason})")
        delay = min(policy.max_backoff_s, delay)
        log.warning("%s: %s; retry %d/%d in %.1f s", _public(url), reason, attempt + 1, policy.retries, delay)
        time.sleep(delay)
        wait = min(policy.max_backoff_s, wait * 2)
    raise AssertionError("unreachable")
