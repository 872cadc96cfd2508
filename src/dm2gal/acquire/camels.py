"""CAMELS runs (public, no key) laid out as one-chunk TNG files.

CAMELS stores each z = 0 output as single files, `snapshot_090.hdf5` and
`groups_090.hdf5` (camels.readthedocs.io, "Snapshots" and "Subfind" pages, 2024
layout), under `{base_url}{suite}/{set}/{run}/`, e.g.
https://users.flatironinstitute.org/~camels/Sims/IllustrisTNG/L25n256/CV/CV_0/.
Units are TNG's (ckpc/h, 1e10 Msun/h). A single-file snapshot is already a valid
one-chunk TNG snapshot, so each file is downloaded straight to the TNG path that
later stages read (`snapdir_090/snap_090.0.hdf5`, `groups_090/fof_subhalo_tab_090.0.hdf5`);
only a missing `NumFilesPerSnapshot`/`NumFiles` header entry (not guaranteed by the
documentation) is added, set to 1, before the file is moved into place.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from .. import tng
from . import http
from .manifest import check_groupcat_chunk, check_snapshot_chunk

log = logging.getLogger("dm2gal.acquire.camels")


def file_url(base_url: str, run_path: str, kind: str, snap: int) -> str:
    """URL of a run's single snapshot (`kind='snapshot'`) or group-catalogue file."""
    name = f"snapshot_{snap:03d}.hdf5" if kind == "snapshot" else f"groups_{snap:03d}.hdf5"
    return f"{base_url.rstrip('/')}/{run_path.strip('/')}/{name}"


def as_single_chunk(path: str | os.PathLike, kind: str) -> None:
    """Make a CAMELS single file a complete one-chunk TNG file, or raise CorruptChunkError.

    Adds NumFilesPerSnapshot (snapshot) or NumFiles (catalogue) = 1 if absent, then
    checks that this file holds every particle / group / subhalo its header counts
    and that its datasets match those counts.
    """
    path = Path(path)
    count_key = "NumFilesPerSnapshot" if kind == "snapshot" else "NumFiles"
    with tng._open(path) as f:
        attrs = dict(f["Header"].attrs) if "Header" in f else None
    if attrs is None:
        raise tng.CorruptChunkError(f"{path} has no Header group")
    if count_key not in attrs:
        with h5py.File(path, "r+") as f:
            f["Header"].attrs[count_key] = np.int32(1)
        attrs[count_key] = 1
    if int(attrs[count_key]) != 1:
        raise tng.CorruptChunkError(f"{path}: {count_key}={attrs[count_key]}, expected a single file")
    if kind == "snapshot":
        this = check_snapshot_chunk(path)
        totals = [tng.total_particles(attrs, t) for t in range(6)]
        if this.tolist() != totals:
            raise tng.CorruptChunkError(f"{path}: holds {this.tolist()} particles, header totals {totals}")
    else:
        n_groups, n_subs = check_groupcat_chunk(path)
        sub_total = attrs.get("Nsubgroups_Total", attrs.get("Nsubhalos_Total"))
        if n_groups != int(attrs["Ngroups_Total"]) or n_subs != int(sub_total):
            raise tng.CorruptChunkError(f"{path}: holds {n_groups}/{n_subs} groups/subhalos, "
                                        f"header totals {attrs['Ngroups_Total']}/{sub_total}")


def fetch(url: str, base: str | os.PathLike, snap: int, kind: str,
          policy: http.Policy = http.Policy()) -> Path:
    """Download one CAMELS file to its TNG path under `base` (resumable, checked); returns the path."""
    dest = (tng.snapshot_path if kind == "snapshot" else tng.groupcat_path)(base, snap, 0)
    with tqdm(desc=f"{kind} {url.rsplit('/', 1)[-1]}", unit="B", unit_scale=True,
              unit_divisor=1024, mininterval=5.0) as bar:
        http.download(url, dest, check=lambda p: as_single_chunk(p, kind), policy=policy,
                      progress=bar, key_env=None)
    log.info("%s -> %s (%d bytes)", url, dest, dest.stat().st_size)
    return dest
