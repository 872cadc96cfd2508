"""Outputs appear only when complete: write to a temporary sibling, then move into place."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `final`; move it onto `final` only if the block succeeds.

    Works for files and directories (e.g. a Zarr store). On any exception the
    temporary is removed and `final` is left untouched, so an interrupted job never
    leaves a complete-looking output. The temporary lives in the same directory, so
    the final move is an atomic rename on one filesystem.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if final.exists() and final.is_dir() and not final.is_symlink():
        shutil.rmtree(final)
    os.replace(tmp, final)
