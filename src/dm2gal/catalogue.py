"""Mock galaxy catalogues as HDF5 (one row per galaxy, library units), and the one built from a painting.

Datasets: `position` [Mpc/h, (n, 3) float64], `stellar_mass` [Msun/h, (n,) float64],
`host_subhalo` (n,) int64, the index of the host subhalo in the gravity-only
run's Subfind catalogue or -1 where the galaxy has none; optional extra columns
(e.g. `central` for the HOD). Root attributes: `box_size` [Mpc/h], `source`,
`mode`, `units`, and whatever the writer adds.
"""

from __future__ import annotations

import os

import h5py
import numpy as np

from .atomic import atomic_path
from .cic import cell_index, corners, wrap_positions

COLUMNS = ("position", "stellar_mass", "host_subhalo")


def write_catalogue(path: str | os.PathLike, position: np.ndarray, stellar_mass: np.ndarray,
                    host_subhalo: np.ndarray, attrs: dict, **extra: np.ndarray) -> None:
    """Write the galaxies with stellar_mass > 0, atomically."""
    keep = np.asarray(stellar_mass) > 0
    columns = dict(position=np.asarray(position, np.float64).reshape(-1, 3),
                   stellar_mass=np.asarray(stellar_mass, np.float64),
                   host_subhalo=np.asarray(host_subhalo, np.int64), **extra)
    if any(len(v) != len(keep) for v in columns.values()):
        raise ValueError(f"catalogue columns differ in length: { {k: len(v) for k, v in columns.items()} }")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for name, values in columns.items():
            f.create_dataset(name, data=np.asarray(values)[keep], compression="gzip", shuffle=True)
        f.attrs.update(dict(units_position="Mpc/h", units_stellar_mass="Msun/h",
                            n_galaxies=int(keep.sum()), **attrs))


def read_catalogue(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """(columns, attributes) of a catalogue written by `write_catalogue`."""
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f.keys()}, dict(f.attrs)


def galaxies(painted, origin, parent_n_grid: int, box_size: float, sub_pos: np.ndarray, sub_mass: np.ndarray,
             slab: int = 64) -> dict[str, np.ndarray]:
    """A mock catalogue from a painted cube: the painted mass shared among the subhalos.

    `painted`: (s, s, s) array or Zarr field [Msun/h per voxel] whose first voxel is
    `origin` of the parent n^3 grid of side `box_size` [Mpc/h]; `sub_pos` [Mpc/h] and
    `sub_mass` [Msun/h]: the gravity-only subhalos. Each painted voxel's mass goes to
    the subhalos whose CIC cloud (`dm2gal.cic.corners`, the weights of the subhalo
    field) reaches it, in proportion to their share of that voxel's subhalo mass; a
    painted voxel no subhalo reaches becomes a galaxy at the voxel's grid point with
    host -1. Total mass is conserved. Returns position, stellar_mass, host_subhalo.
    """
    n, s = int(parent_n_grid), int(painted.shape[0])
    cell = box_size / n
    lower_x, _ = cell_index(wrap_positions(sub_pos, box_size)[:, 0], n, box_size)
    local_x = (lower_x - int(origin[0])) % n  # lower x plane, cube-local
    gal_mass = np.zeros(len(sub_pos))
    orphan_pos, orphan_mass = [], []
    for x0 in range(0, s, slab):
        x1 = min(x0 + slab, s)
        block = np.asarray(painted[x0:x1], np.float64)
        # subhalos whose cloud reaches planes x0..x1-1: lower plane in [x0 - 1, x1)
        sel = np.flatnonzero(((local_x - (x0 - 1)) % n) < (x1 - x0 + 1))
        denom = np.zeros(block.size)
        keys, weights = [], []
        for idx, share in corners(np.asarray(sub_pos)[sel], n, box_size):
            ix, iy, iz = ((idx[a] - int(origin[a])) % n for a in range(3))
            ix = ix - x0
            w = sub_mass[sel] * share
            inside = (ix >= 0) & (ix < x1 - x0) & (iy < s) & (iz < s) & (w > 0)
            key = (ix[inside] * s + iy[inside]) * s + iz[inside]
            keys.append((sel[inside], key))
            weights.append(w[inside])
            np.add.at(denom, key, w[inside])
        flat = block.reshape(-1)
        for (subs, key), w in zip(keys, weights):
            np.add.at(gal_mass, subs, flat[key] * w / denom[key])
        orphan = np.flatnonzero((flat > 0) & (denom == 0))
        if len(orphan):
            ox, oy, oz = np.unravel_index(orphan, block.shape)
            grid = np.stack([ox + x0, oy, oz], axis=1) + np.asarray(origin)
            orphan_pos.append((grid % n) * cell)
            orphan_mass.append(flat[orphan])
    has = gal_mass > 0
    position = np.concatenate([np.asarray(sub_pos, np.float64)[has]] + orphan_pos)
    return dict(position=position, stellar_mass=np.concatenate([gal_mass[has]] + orphan_mass),
                host_subhalo=np.concatenate([np.flatnonzero(has)] + [np.full(len(m), -1) for m in orphan_mass]))
