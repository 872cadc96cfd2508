"""The IllustrisTNG on-disk layout and its units, in one place.

Files hold lengths in ckpc/h and masses in 1e10 Msun/h; the library works in
Mpc/h and Msun/h (all snapshots used here are at z=0, where comoving = physical).
Readers convert with `to_library_units`, the writer with `to_file_units`, both
driven by the same field tables. Reading goes through `illustris_python`.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from .atomic import atomic_path

KPC_PER_MPC = 1000.0
"""File lengths (ckpc/h) per library length (Mpc/h)."""
MASS_UNIT = 1.0e10
"""Library masses (Msun/h) per file mass unit (1e10 Msun/h)."""

LENGTH_FIELDS = frozenset(
    {"Coordinates", "SubhaloPos", "SubhaloCM", "GroupPos", "GroupCM",
     "Group_R_Crit200", "SubhaloHalfmassRad", "BoxSize"}
)
MASS_FIELDS = frozenset(
    {"Masses", "SubhaloMass", "SubhaloMassType", "GroupMass", "GroupMassType",
     "Group_M_Crit200", "MassTable",
     "SubhaloStellarMassMean"}  # the mini-universe's noise-free mean M* (not a TNG field)
)

SIMS = ("dark", "hydro")
"""The two runs of a pair: gravity-only and hydrodynamic."""


def snapshot_path(base: str | os.PathLike, snap: int, chunk: int) -> Path:
    """Path of snapshot chunk `chunk`: base/snapdir_099/snap_099.N.hdf5."""
    return Path(base) / f"snapdir_{snap:03d}" / f"snap_{snap:03d}.{chunk}.hdf5"


def groupcat_path(base: str | os.PathLike, snap: int, chunk: int) -> Path:
    """Path of group-catalogue chunk `chunk`: base/groups_099/fof_subhalo_tab_099.N.hdf5."""
    return Path(base) / f"groups_{snap:03d}" / f"fof_subhalo_tab_{snap:03d}.{chunk}.hdf5"


def to_library_units(name: str, values):
    """Convert a dataset or header value named `name` from file units to Mpc/h, Msun/h."""
    if name in LENGTH_FIELDS:
        return np.asarray(values, dtype=np.float64) / KPC_PER_MPC
    if name in MASS_FIELDS:
        return np.asarray(values, dtype=np.float64) * MASS_UNIT
    return values


def to_file_units(name: str, values):
    """Inverse of `to_library_units`: Mpc/h -> ckpc/h and Msun/h -> 1e10 Msun/h."""
    if name in LENGTH_FIELDS:
        return np.asarray(values, dtype=np.float64) * KPC_PER_MPC
    if name in MASS_FIELDS:
        return np.asarray(values, dtype=np.float64) / MASS_UNIT
    return values


class CorruptChunkError(RuntimeError):
    """A chunk file is missing, truncated or has inconsistent header counts."""


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except (OSError, KeyError) as err:
        raise CorruptChunkError(f"cannot read HDF5 chunk {path}: {err}") from err


def snapshot_header(base: str | os.PathLike, snap: int, chunk: int = 0) -> dict:
    """Header attributes of one snapshot chunk, in library units (BoxSize Mpc/h, MassTable Msun/h)."""
    path = snapshot_path(base, snap, chunk)
    with _open(path) as f:
        if "Header" not in f:
            raise CorruptChunkError(f"{path} has no Header group")
        attrs = dict(f["Header"].attrs.items())
    return {k: to_library_units(k, v) for k, v in attrs.items()}


def groupcat_header(base: str | os.PathLike, snap: int, chunk: int = 0) -> dict:
    """Header attributes of one group-catalogue chunk (counts, NumFiles)."""
    path = groupcat_path(base, snap, chunk)
    with _open(path) as f:
        if "Header" not in f:
            raise CorruptChunkError(f"{path} has no Header group")
        return dict(f["Header"].attrs.items())


def total_particles(header: dict, part_type: int) -> int:
    """NumPart_Total plus NumPart_Total_HighWord << 32 for one particle type."""
    low = int(header["NumPart_Total"][part_type])
    high = int(header.get("NumPart_Total_HighWord", np.zeros(6, np.int64))[part_type])
    return low + (high << 32)


def read_particle_chunk(
    base: str | os.PathLike, snap: int, chunk: int, part_type: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Positions [Mpc/h, (n, 3) float64] and masses [Msun/h, (n,)] of one particle type in one chunk.

    Dark matter (type 1) has no Masses dataset: its mass is Header/MassTable[1].
    Raises CorruptChunkError (naming the file) if the chunk cannot be read or its
    datasets disagree with NumPart_ThisFile.
    """
    path = snapshot_path(base, snap, chunk)
    with _open(path) as f:
        try:
            header = dict(f["Header"].attrs.items())
            n = int(header["NumPart_ThisFile"][part_type])
            if n == 0:
                return np.zeros((0, 3)), np.zeros(0)
            group = f[f"PartType{part_type}"]
            pos = group["Coordinates"][()]
            if "Masses" in group:
                mass = group["Masses"][()]
            else:
                mass = np.full(n, header["MassTable"][part_type])
        except (KeyError, OSError) as err:
            raise CorruptChunkError(f"cannot read PartType{part_type} from {path}: {err}") from err
    if pos.shape != (n, 3) or mass.shape != (n,):
        raise CorruptChunkError(
            f"{path}: NumPart_ThisFile[{part_type}]={n} but Coordinates has shape {pos.shape}"
        )
    return to_library_units("Coordinates", pos), to_library_units("Masses", mass)


def load_subhalos(base: str | os.PathLike, snap: int, fields: list[str]) -> dict[str, np.ndarray]:
    """Subhalo catalogue fields via illustris_python, in library units; always has 'count'."""
    import illustris_python as il  # ~0.7 s to import; the Snakefile imports this module on every job

    return _converted(il.groupcat.loadSubhalos(str(base), snap, fields=list(fields)), fields)


def load_halos(base: str | os.PathLike, snap: int, fields: list[str]) -> dict[str, np.ndarray]:
    """FoF group catalogue fields via illustris_python, in library units; always has 'count'."""
    import illustris_python as il  # ~0.7 s to import; the Snakefile imports this module on every job

    return _converted(il.groupcat.loadHalos(str(base), snap, fields=list(fields)), fields)


def _converted(raw, fields: list[str]) -> dict[str, np.ndarray]:
    if not isinstance(raw, dict):  # illustris_python returns a bare array for one field
        raw = {fields[0]: raw, "count": len(raw)}
    if raw["count"] == 0:
        return {"count": 0}
    return {k: (v if k == "count" else to_library_units(k, v)) for k, v in raw.items()}


# --- writing (the mini-universe, test fixtures) ------------------------------------


def _file_dtype(name: str, values: np.ndarray) -> np.dtype:
    """TNG's dtypes: float64 particle coordinates, float32 other floats, integers unchanged."""
    if np.issubdtype(values.dtype, np.floating):
        return np.dtype(np.float64 if name == "Coordinates" else np.float32)
    return values.dtype


def _write_datasets(group: h5py.Group, fields: dict[str, np.ndarray], sl: slice) -> None:
    for name, values in fields.items():
        values = np.asarray(values)
        data = np.asarray(to_file_units(name, values[sl]) if np.issubdtype(values.dtype, np.floating)
                          else values[sl])
        group.create_dataset(name, data=data.astype(_file_dtype(name, values)))


def _cosmology_attrs(header: dict) -> dict:
    keys = ("BoxSize", "Omega0", "OmegaLambda", "HubbleParam", "Redshift", "Time")
    return {k: to_file_units(k, header[k]) for k in keys}


def _chunk_slices(n: int, n_chunks: int) -> list[slice]:
    edges = np.linspace(0, n, n_chunks + 1).round().astype(np.int64)
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def write_snapshot(
    base: str | os.PathLike,
    snap: int,
    header: dict,
    particles: dict[int, dict[str, np.ndarray]],
    n_chunks: int,
) -> list[Path]:
    """Write particles in TNG layout, split evenly over `n_chunks` files; returns the paths.

    `header` holds BoxSize [Mpc/h], MassTable [6, Msun/h], Omega0, OmegaLambda,
    HubbleParam, Redshift, Time. `particles[t]` maps field names (Coordinates [Mpc/h,
    (n, 3)], ParticleIDs, Masses [Msun/h] for types without a MassTable entry) to
    arrays in library units. Each file is written under a temporary name and moved.
    """
    counts = np.zeros(6, dtype=np.int64)
    for t, fields in particles.items():
        counts[t] = len(fields["Coordinates"])
    slices = {t: _chunk_slices(int(counts[t]), n_chunks) for t in particles}
    paths = []
    for chunk in range(n_chunks):
        path = snapshot_path(base, snap, chunk)
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            h = f.create_group("Header")
            this = np.zeros(6, dtype=np.int64)
            for t in particles:
                this[t] = slices[t][chunk].stop - slices[t][chunk].start
            h.attrs["NumPart_ThisFile"] = this.astype(np.int32)
            h.attrs["NumPart_Total"] = (counts & 0xFFFFFFFF).astype(np.uint32)
            h.attrs["NumPart_Total_HighWord"] = (counts >> 32).astype(np.uint32)
            h.attrs["NumFilesPerSnapshot"] = np.int32(n_chunks)
            h.attrs["MassTable"] = to_file_units("MassTable", header["MassTable"])
            for k, v in _cosmology_attrs(header).items():
                h.attrs[k] = v
            for t, fields in particles.items():
                if this[t]:
                    _write_datasets(f.create_group(f"PartType{t}"), fields, slices[t][chunk])
        paths.append(path)
    return paths


def write_groupcat(
    base: str | os.PathLike,
    snap: int,
    header: dict,
    halos: dict[str, np.ndarray],
    subhalos: dict[str, np.ndarray],
    n_chunks: int,
) -> list[Path]:
    """Write a FoF/Subfind catalogue in TNG layout over `n_chunks` files; returns the paths.

    `halos` holds Group* fields and `subhalos` Subhalo* fields in library units
    (positions Mpc/h, masses Msun/h); groups and subhalos are each split into
    contiguous blocks, as in TNG. `header` carries the cosmology keys of
    `write_snapshot`.
    """
    n_groups = len(next(iter(halos.values()))) if halos else 0
    n_subs = len(next(iter(subhalos.values()))) if subhalos else 0
    g_slices = _chunk_slices(n_groups, n_chunks)
    s_slices = _chunk_slices(n_subs, n_chunks)
    paths = []
    for chunk in range(n_chunks):
        path = groupcat_path(base, snap, chunk)
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            h = f.create_group("Header")
            h.attrs["Ngroups_ThisFile"] = np.int32(g_slices[chunk].stop - g_slices[chunk].start)
            h.attrs["Ngroups_Total"] = np.int32(n_groups)
            h.attrs["Nsubgroups_ThisFile"] = np.int32(s_slices[chunk].stop - s_slices[chunk].start)
            h.attrs["Nsubgroups_Total"] = np.int32(n_subs)
            h.attrs["NumFiles"] = np.int32(n_chunks)
            for k, v in _cosmology_attrs(header).items():
                h.attrs[k] = v
            _write_datasets(f.create_group("Group"), halos, g_slices[chunk])
            _write_datasets(f.create_group("Subhalo"), subhalos, s_slices[chunk])
        paths.append(path)
    return paths
