"""Painted galaxies as points: each galaxy's painted mass deposited at its gravity-only subhalo.

The network paints voxels, and a galaxy's mass lands in the voxels around its subhalo
in shares the network has to guess: the hydro galaxy sits 0.02 Mpc/h (on the
mini-universe) from the subhalo, and a voxel's share of a point depends on where in
the voxel it lies. The truth field is the CIC deposit of point galaxies (the hydro
catalogue, `grid.stellar_source: subhalos`), and so are the HOD's. `deposit` makes the
painting one too: the voxels one gravity-only subhalo hosts (`dm2gal.cic.host_subhalos`,
the galaxies of the calibration and the realisations) are summed, and the sum is
deposited by CIC at the subhalo's SubhaloPos, so the network decides how much stellar
mass a galaxy has and the gravity-only run where it is. A painted voxel no subhalo
reaches keeps its mass. Within a cube that is not the whole box, a galaxy's CIC weights
are renormalised over the voxels inside it, so the cube keeps its painted mass.

The scatter field follows: every voxel a galaxy is deposited into holds the galaxy's
log10 scatter s [dex] (the mass-weighted rms of its voxels' predicted scatter times
the calibration's galaxy scatter factor at its painted mass, as `dm2gal.realisations`
computes it), the galaxy giving the voxel the most mass deciding where galaxies
overlap; the realisations then draw each galaxy as one object with that s and no
split among voxels (a voxel's share of its galaxy is no longer uncertain).
"""

from __future__ import annotations

import numpy as np

from .calibration import drawn_galaxy_scatter, galaxy_groups
from .cic import corners


def deposit(coords: np.ndarray, mean: np.ndarray, sigma: np.ndarray, hosts: np.ndarray, sub_pos: np.ndarray,
            origin, n_grid: int, box_size: float, size, scatter_knots=((), ())):
    """The galaxies of a painting deposited at their subhalos.

    `coords` (K, 3) cube-local painted voxels of a cube of `size` (int or (3,)) voxels
    whose first voxel is `origin` of the periodic n_grid^3 parent grid of side `box_size`
    [Mpc/h]; `mean` (K,) their painted mass [Msun/h], `sigma` (K,) their predicted log10
    scatter [dex], `hosts` (K,) their host subhalo (index into `sub_pos` (S, 3) [Mpc/h], -1
    for none); `scatter_knots` the galaxy scatter factor's (log10 galaxy mass, factor) knots.
    Returns (coords (M, 3) int64, mass (M,) float64, scatter (M,) float64): the new painted
    voxels, their mass (summing to mean.sum()) and the scatter of their main galaxy.
    """
    coords, mean = np.asarray(coords, np.int64).reshape(-1, 3), np.asarray(mean, np.float64)
    size = np.broadcast_to(np.asarray(size, np.int64), (3,))
    if len(mean) == 0:
        return coords, mean, np.zeros(0)
    galaxies = galaxy_groups(hosts)
    n_galaxies = int(galaxies.max()) + 1
    total = np.bincount(galaxies, weights=mean, minlength=n_galaxies)
    scatter = drawn_galaxy_scatter(mean, sigma, galaxies, scatter_knots)
    host_of = np.full(n_galaxies, -1, np.int64)
    host_of[galaxies] = hosts
    hosted = np.flatnonzero(host_of >= 0)
    keys, owner, weight = [], [], []
    for index, share in corners(np.asarray(sub_pos, np.float64)[host_of[hosted]], int(n_grid), box_size):
        local = (index.T - np.asarray(origin, np.int64)) % int(n_grid)
        inside = np.all(local < size, axis=1) & (share > 0)
        keys.append(local[inside])
        owner.append(hosted[inside])
        weight.append(share[inside].astype(np.float64))
    lone = np.flatnonzero(np.asarray(hosts) < 0)  # voxels of no host: galaxies of one voxel, kept in place
    keys, owner = np.concatenate([*keys, coords[lone]]), np.concatenate([*owner, galaxies[lone]])
    weight = np.concatenate([*weight, np.ones(len(lone))])
    weight = weight / np.bincount(owner, weights=weight, minlength=n_galaxies)[owner]  # inside the cube
    mass = total[owner] * weight
    flat = (keys[:, 0] * size[1] + keys[:, 1]) * size[2] + keys[:, 2]
    order = np.lexsort((-mass, flat))  # by voxel, the largest contribution first
    flat, keys, owner, mass = flat[order], keys[order], owner[order], mass[order]
    first = np.r_[True, flat[1:] != flat[:-1]]
    voxel = np.cumsum(first) - 1
    summed = np.bincount(voxel, weights=mass)
    keep = summed > 0
    return keys[first][keep], summed[keep], scatter[owner[first]][keep]
