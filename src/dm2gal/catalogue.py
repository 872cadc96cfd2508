"""Mock galaxy catalogues as HDF5 (one row per galaxy, library units).

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
