"""Check a run laid out in TNG format and record it in a manifest (written last, atomically)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import h5py
import numpy as np

from .. import tng
from ..atomic import atomic_path


def sha256(path: str | os.PathLike, block: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def check_snapshot(base: str | os.PathLike, snap: int) -> list[Path]:
    """All snapshot chunks of a run, verified: each opens, and NumPart_ThisFile adds up to the totals.

    Raises tng.CorruptChunkError naming the first bad or missing file.
    """
    header = tng.snapshot_header(base, snap, 0)
    n_files = int(header["NumFilesPerSnapshot"])
    totals = np.array([tng.total_particles(header, t) for t in range(6)], dtype=np.int64)
    seen = np.zeros(6, dtype=np.int64)
    paths = []
    for chunk in range(n_files):
        path = tng.snapshot_path(base, snap, chunk)
        if not path.exists():
            raise tng.CorruptChunkError(f"missing snapshot chunk {path} (NumFilesPerSnapshot={n_files})")
        h = tng.snapshot_header(base, snap, chunk)
        this = np.asarray(h["NumPart_ThisFile"], dtype=np.int64)
        with h5py.File(path, "r") as f:
            for t in np.flatnonzero(this):
                ds = f.get(f"PartType{t}/Coordinates")
                if ds is None or ds.shape[0] != this[t]:
                    raise tng.CorruptChunkError(
                        f"{path}: PartType{t}/Coordinates does not hold NumPart_ThisFile={this[t]} rows")
        seen += this
        paths.append(path)
    if not np.array_equal(seen, totals):
        raise tng.CorruptChunkError(
            f"snapshot chunks under {base} hold {seen.tolist()} particles, header totals say {totals.tolist()}")
    return paths


def check_groupcat(base: str | os.PathLike, snap: int) -> list[Path]:
    """All group-catalogue chunks, verified like `check_snapshot` (Ngroups, Nsubgroups)."""
    header = tng.groupcat_header(base, snap, 0)
    n_files = int(header["NumFiles"])
    sub_key = "Nsubgroups" if "Nsubgroups_Total" in header else "Nsubhalos"
    seen_g = seen_s = 0
    paths = []
    for chunk in range(n_files):
        path = tng.groupcat_path(base, snap, chunk)
        if not path.exists():
            raise tng.CorruptChunkError(f"missing group-catalogue chunk {path} (NumFiles={n_files})")
        h = tng.groupcat_header(base, snap, chunk)
        seen_g += int(h["Ngroups_ThisFile"])
        seen_s += int(h[f"{sub_key}_ThisFile"])
        paths.append(path)
    if seen_g != int(header["Ngroups_Total"]) or seen_s != int(header[f"{sub_key}_Total"]):
        raise tng.CorruptChunkError(
            f"group catalogue under {base}: chunks hold {seen_g} groups / {seen_s} subhalos, "
            f"header totals say {header['Ngroups_Total']} / {header[f'{sub_key}_Total']}")
    return paths


def write_manifest(
    sim_dir: str | os.PathLike, snap: int, source: str, checksums: bool = True, **extra
) -> dict:
    """Verify `{sim_dir}/output` and write `{sim_dir}/manifest.json`; returns the manifest.

    The manifest lists every chunk (path relative to sim_dir, bytes, sha256 when
    `checksums`), the box size [Mpc/h], particle totals and the source; `extra`
    key-values (e.g. the archive's run name) are recorded too.
    """
    sim_dir = Path(sim_dir)
    base = sim_dir / "output"
    header = tng.snapshot_header(base, snap, 0)

    def entry(path: Path) -> dict:
        item = {"path": str(path.relative_to(sim_dir)), "bytes": path.stat().st_size}
        if checksums:
            item["sha256"] = sha256(path)
        return item

    manifest = {
        "source": source,
        "snapshot": snap,
        "box_size": float(header["BoxSize"]),
        "redshift": float(header["Redshift"]),
        "num_part_total": [tng.total_particles(header, t) for t in range(6)],
        "snapshot_chunks": [entry(p) for p in check_snapshot(base, snap)],
        "groupcat_chunks": [entry(p) for p in check_groupcat(base, snap)],
        **extra,
    }
    with atomic_path(sim_dir / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))
    return manifest


def read_manifest(sim_dir: str | os.PathLike) -> dict:
    """The manifest of a run, as written by `write_manifest`."""
    return json.loads((Path(sim_dir) / "manifest.json").read_text())
