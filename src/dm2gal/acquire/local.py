"""A TNG-format copy already on disk (a cluster's archive): checked, then linked, never copied.

Chunks are found under the names illustris_python accepts
(`snapdir_099/snap_099.N.hdf5` or `snapshot_099.N.hdf5`, `groups_099/fof_subhalo_tab_099.N.hdf5`
or `groups_099.N.hdf5`, and CAMELS-style single files `snapshot_099.hdf5`,
`groups_099.hdf5` beside them), symlinked under dm2gal.tng's names into a fresh
directory, checked there (every chunk present, each opens, header counts add up)
and only then moved into place.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .. import tng
from ..atomic import atomic_path
from .manifest import check_groupcat, check_snapshot

log = logging.getLogger("dm2gal.acquire.local")


def _candidates(src: Path, snap: int, kind: str) -> list[Path]:
    """Chunk-0 paths (or single files) the two layouts use, in order of preference."""
    s = f"{snap:03d}"
    if kind == "snapshot":
        return [src / f"snapdir_{s}" / f"snap_{s}.0.hdf5", src / f"snapdir_{s}" / f"snapshot_{s}.0.hdf5",
                src / f"snap_{s}.hdf5", src / f"snapshot_{s}.hdf5"]
    return [src / f"groups_{s}" / f"fof_subhalo_tab_{s}.0.hdf5", src / f"groups_{s}" / f"groups_{s}.0.hdf5",
            src / f"fof_subhalo_tab_{s}.hdf5", src / f"groups_{s}.hdf5"]


def find_chunks(src: str | os.PathLike, snap: int, kind: str) -> list[Path]:
    """Every chunk of `kind` ('snapshot' or 'groupcat') of the copy at `src`, in order.

    The count is the first chunk's NumFilesPerSnapshot / NumFiles. A missing chunk
    raises CorruptChunkError naming it.
    """
    src = Path(src)
    first = next((p for p in _candidates(src, snap, kind) if p.exists()), None)
    if first is None:
        raise tng.CorruptChunkError(
            f"no {kind} of snapshot {snap} under {src} (looked for "
            f"{', '.join(str(p.relative_to(src)) for p in _candidates(src, snap, kind))})")
    with tng._open(first) as f:
        n_files = int(f["Header"].attrs["NumFilesPerSnapshot" if kind == "snapshot" else "NumFiles"])
    if not first.name.endswith(".0.hdf5"):
        if n_files != 1:
            raise tng.CorruptChunkError(f"{first} is a single file but its header says {n_files} files")
        return [first]
    stem = first.name[: -len(".0.hdf5")]
    chunks = [first.with_name(f"{stem}.{i}.hdf5") for i in range(n_files)]
    missing = [p for p in chunks if not p.exists()]
    if missing:
        raise tng.CorruptChunkError(f"{len(missing)} of {n_files} {kind} chunks missing under {src}, "
                                    f"first {missing[0]}")
    return chunks


def link_run(src: str | os.PathLike, base: str | os.PathLike, snap: int, snapshot: bool = True) -> Path:
    """Symlink the copy at `src` into `base` (TNG names), check it, and return `base`.

    `snapshot=False` links only the group catalogue (the run's particles are not needed).
    Raises CorruptChunkError (nothing is left at `base`) if the copy is incomplete.
    """
    src = Path(src).resolve()
    kinds = ("snapshot", "groupcat") if snapshot else ("groupcat",)
    with atomic_path(base) as tmp:
        for kind in kinds:
            path_of = tng.snapshot_path if kind == "snapshot" else tng.groupcat_path
            chunks = find_chunks(src, snap, kind)
            for i, chunk in enumerate(chunks):
                link = path_of(tmp, snap, i)
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(chunk)
            log.info("%s: linked %d %s chunks", src, len(chunks), kind)
        if snapshot:
            check_snapshot(tmp, snap)
        check_groupcat(tmp, snap)
    return Path(base)
