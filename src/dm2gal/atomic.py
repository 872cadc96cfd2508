"""Outputs appear only when complete: write to a temporary sibling, then move into place."""

from __future__ import annotations

import errno
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

FULL_BELOW_BYTES = 16 * 2**20
"""A filesystem with less free space than this after a failed write counts as full: libraries
that write from C (torch.save, HDF5) report a full disk as their own error, not as ENOSPC."""


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _size(path: Path) -> int:
    """Bytes in a file or a directory tree (0 if absent)."""
    if path.is_dir() and not path.is_symlink():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return path.stat().st_size if path.is_file() else 0


def _disk_full(err: Exception, directory: Path) -> bool:
    """Whether `err` (or an error it was raised from) is ENOSPC, or is an I/O-like error
    (OSError, RuntimeError) while the disk is full."""
    seen, cause = set(), err
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return isinstance(err, (OSError, RuntimeError)) and shutil.disk_usage(directory).free < FULL_BELOW_BYTES


def no_space_error(final: Path, written: int, needs_bytes: int | None) -> OSError:
    """The OSError(ENOSPC) a writer raises: which file, and about how much it needs."""
    needs = (f"needs about {needs_bytes / 2**20:.1f} MB" if needs_bytes
             else f"needs more than the {written / 2**20:.1f} MB written when the disk filled")
    return OSError(errno.ENOSPC, f"no space left on device while writing {final} ({needs})")


@contextmanager
def atomic_path(final: str | os.PathLike, needs_bytes: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `final`; move it onto `final` only if the block succeeds.

    Works for files and directories (e.g. a Zarr store). On any exception the
    temporary is removed and `final` is left untouched, so an interrupted job never
    leaves a complete-looking output. The temporary lives in the same directory, so
    the final move is an atomic rename on one filesystem. A full disk is raised as
    `no_space_error`, naming `final` and `needs_bytes` (the writer's estimate of the
    output's size, if it has one), from the writer's own error.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
    except Exception as err:
        full, written = _disk_full(err, final.parent), _size(tmp)
        _remove(tmp)
        if full:
            raise no_space_error(final, written, needs_bytes) from err
        raise
    except BaseException:
        _remove(tmp)
        raise
    if final.exists() and final.is_dir() and not final.is_symlink():
        shutil.rmtree(final)
    os.replace(tmp, final)
