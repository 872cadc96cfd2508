"""Check a run laid out in TNG format and record it in a manifest (written last, atomically)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .. import tng
from ..atomic import atomic_path


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def check_snapshot_chunk(path: str | os.PathLike, part_types: list[int] | None = None) -> np.ndarray:
    """NumPart_ThisFile [6] of one snapshot chunk, verified: it opens, and every dataset of the
    checked particle types holds NumPart_ThisFile rows.

    `part_types`: the types whose `PartType{t}/Coordinates` must be present; None means
    every type with particles in this file. A field subset (TNG's `?dm=Coordinates`)
    keeps the full header but only the requested datasets: pass [1] for it.
    Raises tng.CorruptChunkError naming the file.
    """
    path = Path(path)
    with tng._open(path) as f:
        if "Header" not in f or "NumPart_ThisFile" not in f["Header"].attrs:
            raise tng.CorruptChunkError(f"{path} has no Header/NumPart_ThisFile")
        this = np.asarray(f["Header"].attrs["NumPart_ThisFile"], dtype=np.int64)
        types = np.flatnonzero(this) if part_types is None else part_types
        for t in types:
            group = f.get(f"PartType{t}")
            if this[t] and (group is None or "Coordinates" not in group):
                raise tng.CorruptChunkError(f"{path}: PartType{t}/Coordinates missing ({this[t]} particles)")
            for name, ds in (group.items() if group is not None else ()):
                if ds.shape[0] != this[t]:
                    raise tng.CorruptChunkError(
                        f"{path}: PartType{t}/{name} does not hold NumPart_ThisFile={this[t]} rows")
    return this


def check_snapshot(base: str | os.PathLike, snap: int, part_types: list[int] | None = None) -> list[Path]:
    """All snapshot chunks of a run, verified: each passes `check_snapshot_chunk`, and
    NumPart_ThisFile adds up to the header totals.

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
        seen += check_snapshot_chunk(path, part_types)
        paths.append(path)
    if not np.array_equal(seen, totals):
        raise tng.CorruptChunkError(
            f"snapshot chunks under {base} hold {seen.tolist()} particles, header totals say {totals.tolist()}")
    return paths


def check_groupcat_chunk(path: str | os.PathLike) -> tuple[int, int]:
    """(groups, subhalos) in one group-catalogue chunk, verified: it opens, and every Group/*
    and Subhalo/* dataset holds Ngroups_ThisFile and Nsubgroups_ThisFile (or Nsubhalos_) rows.
    """
    path = Path(path)
    with tng._open(path) as f:
        if "Header" not in f:
            raise tng.CorruptChunkError(f"{path} has no Header group")
        h = f["Header"].attrs
        sub_key = "Nsubgroups" if "Nsubgroups_ThisFile" in h else "Nsubhalos"
        try:
            counts = {"Group": int(h["Ngroups_ThisFile"]), "Subhalo": int(h[f"{sub_key}_ThisFile"])}
        except KeyError as err:
            raise tng.CorruptChunkError(f"{path}: header lacks {err}") from err
        for group, n in counts.items():
            for name, ds in (f[group].items() if group in f else ()):
                if ds.shape[0] != n:
                    raise tng.CorruptChunkError(f"{path}: {group}/{name} does not hold {n} rows")
            if n and group not in f:
                raise tng.CorruptChunkError(f"{path}: {group} missing ({n} entries)")
    return counts["Group"], counts["Subhalo"]


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
        n_g, n_s = check_groupcat_chunk(path)
        seen_g += n_g
        seen_s += n_s
        paths.append(path)
    if seen_g != int(header["Ngroups_Total"]) or seen_s != int(header[f"{sub_key}_Total"]):
        raise tng.CorruptChunkError(
            f"group catalogue under {base}: chunks hold {seen_g} groups / {seen_s} subhalos, "
            f"header totals say {header['Ngroups_Total']} / {header[f'{sub_key}_Total']}")
    return paths


def write_manifest(
    sim_dir: str | os.PathLike, snap: int, source: str, checksums: bool = True,
    part_types: list[int] | None = None, **extra
) -> dict:
    """Verify `{sim_dir}/output` and write `{sim_dir}/manifest.json`; returns the manifest.

    The manifest lists every chunk (path relative to sim_dir, bytes, sha256 when
    `checksums`), the box size [Mpc/h], particle totals and the source; `extra`
    key-values (e.g. the archive's run name) are recorded too. `part_types`: as in
    `check_snapshot_chunk` (the particle types fetched, for field subsets); `[]` means
    this run has no snapshot on disk (only its group catalogue is needed, e.g. the
    hydro run when stellar mass comes from the catalogue): box size and redshift are
    then read from the catalogue header and `snapshot_chunks` is empty.
    """
    sim_dir = Path(sim_dir)
    base = sim_dir / "output"

    def entry(path: Path) -> dict:
        item = {"path": str(path.relative_to(sim_dir)), "bytes": path.stat().st_size}
        if checksums:
            item["sha256"] = sha256(path)
        return item

    if part_types == []:
        header = {k: tng.to_library_units(k, v) for k, v in tng.groupcat_header(base, snap, 0).items()}
        totals, snapshot_chunks = None, []
    else:
        header = tng.snapshot_header(base, snap, 0)
        totals = [tng.total_particles(header, t) for t in range(6)]
        snapshot_chunks = [entry(p) for p in check_snapshot(base, snap, part_types)]
    manifest = {
        "source": source,
        "snapshot": snap,
        "box_size": float(header["BoxSize"]),
        "redshift": float(header["Redshift"]),
        "num_part_total": totals,
        "part_types": part_types,
        "snapshot_chunks": snapshot_chunks,
        "groupcat_chunks": [entry(p) for p in check_groupcat(base, snap)],
        **extra,
    }
    with atomic_path(sim_dir / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))
    return manifest


def read_manifest(sim_dir: str | os.PathLike) -> dict:
    """The manifest of a run, as written by `write_manifest`."""
    return json.loads((Path(sim_dir) / "manifest.json").read_text())
