"""Realisations of a painted cube: stellar masses drawn from the distribution the network predicts.

The painted field holds, per voxel, the mean stellar mass of a log-normal whose log10
scatter sigma [dex] the paint stage writes beside it. A realisation multiplies the
painted voxels of one galaxy by one factor 10^(s z - ln10 s^2 / 2), which keeps their
mean, with one standard-normal z per *gravity-only subhalo*: the voxels whose largest
share of subhalo mass (the CIC cloud of SubhaloMass at SubhaloPos, as in the subhalo
field) comes from one subhalo are that subhalo's galaxy, and s is their mass-weighted
rms sigma. The voxel scatter itself also holds how a galaxy's mass is split among its
CIC voxels (a voxel with a small share is uncertain in proportion), which is not
scatter of the galaxy: drawn voxel by voxel, or with each voxel's own sigma, it would
inflate the galaxy's. A painted voxel no subhalo reaches draws alone.
The mean field stays what P(k) and B are measured on; realisations carry the
intrinsic scatter the one-point PDF needs.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from .atomic import atomic_path
from .cic import corners
from .fields import create_field, open_field
from .tng import load_subhalos

log = logging.getLogger("dm2gal.realisations")


def host_subhalos(coords: np.ndarray, origin, n_grid: int, box_size: float, sub_pos: np.ndarray,
                  sub_mass: np.ndarray) -> np.ndarray:
    """(K,) index of the subhalo giving the most CIC mass to each voxel `coords` (K, 3) of the
    parent n_grid^3 grid (cube-local: offsets from `origin`); -1 where no subhalo reaches it."""
    n = int(n_grid)
    keys, hosts, weights = [], [], []
    for idx, share in corners(sub_pos, n, box_size):
        keys.append((idx[0] * n + idx[1]) * n + idx[2])
        hosts.append(np.arange(len(share)))
        weights.append(np.asarray(sub_mass, np.float64) * share)
    keys, hosts, weights = np.concatenate(keys), np.concatenate(hosts), np.concatenate(weights)
    keep = weights > 0
    keys, hosts, weights = keys[keep], hosts[keep], weights[keep]
    order = np.lexsort((-weights, keys))  # by voxel, heaviest share first
    keys, hosts = keys[order], hosts[order]
    first = np.r_[True, keys[1:] != keys[:-1]]
    keys, hosts = keys[first], hosts[first]
    g = (np.asarray(coords, np.int64).reshape(-1, 3) + np.asarray(origin, np.int64)) % n
    want = (g[:, 0] * n + g[:, 1]) * n + g[:, 2]
    if len(keys) == 0:
        return np.full(len(want), -1)
    at = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
    return np.where(keys[at] == want, hosts[at], -1)


def galaxy_scatter(mean: np.ndarray, sigma: np.ndarray, hosts: np.ndarray) -> np.ndarray:
    """(K,) the scatter [dex] each voxel is drawn with: the mass-weighted rms of `sigma` over the
    voxels of its host (`hosts` (K,), -1: the voxel's own)."""
    out = np.asarray(sigma, np.float64).copy()
    has = hosts >= 0
    if has.any():
        _, inverse = np.unique(hosts[has], return_inverse=True)
        w = np.bincount(inverse, weights=mean[has])
        s2 = np.bincount(inverse, weights=mean[has] * sigma[has] ** 2)
        out[has] = np.sqrt(s2 / w)[inverse]
    return out


def draw(mean: np.ndarray, sigma: np.ndarray, hosts: np.ndarray, n_subhalos: int,
         rng: np.random.Generator) -> np.ndarray:
    """One realisation of the voxels with means `mean` (K,) [Msun/h] and log scatters `sigma`
    (K,) [dex]: z shared by voxels of one host (`hosts` (K,), -1 for none), independent otherwise."""
    z_sub = rng.standard_normal(n_subhalos)
    z = np.where(hosts >= 0, z_sub[np.maximum(hosts, 0)], rng.standard_normal(len(mean)))
    return mean * 10.0 ** (sigma * z - 0.5 * math.log(10.0) * sigma ** 2)


def realise(mean_cube: np.ndarray, sigma_cube: np.ndarray, origin, n_grid: int, box_size: float,
            sub_pos: np.ndarray, sub_mass: np.ndarray, n_realisations: int, seed):
    """Yield `n_realisations` (s, s, s) float32 realisations of a painted cube whose first voxel
    is `origin` of the parent grid; draw i uses numpy's SeedSequence(seed).spawn(n)[i]."""
    painted = np.argwhere(mean_cube > 0)
    mean = mean_cube[tuple(painted.T)].astype(np.float64)
    sigma = sigma_cube[tuple(painted.T)].astype(np.float64)
    hosts = host_subhalos(painted, origin, n_grid, box_size, sub_pos, sub_mass)
    sigma = galaxy_scatter(mean, sigma, hosts)
    for child in np.random.SeedSequence(seed).spawn(n_realisations):
        cube = np.zeros(mean_cube.shape, np.float32)
        cube[tuple(painted.T)] = draw(mean, sigma, hosts, len(sub_mass), np.random.default_rng(child))
        yield cube


def write_realisations(out_paths, mean_path, scatter_path, base: str, snapshot: int, seed) -> None:
    """One drawn field per path of `out_paths` from a painted field (attributes as the painted
    field's, plus the draw), each written atomically; the hosts come from the gravity-only
    subhalo catalogue at illustris_python's `base`; `seed` is an int or a list of ints
    (numpy SeedSequence entropy)."""
    mean_field = open_field(mean_path)
    attrs = dict(mean_field.attrs)
    subs = load_subhalos(base, snapshot, ["SubhaloPos", "SubhaloMass"])
    pos, mass = (subs["SubhaloPos"], subs["SubhaloMass"]) if subs["count"] else (np.zeros((0, 3)), np.zeros(0))
    draws = realise(np.asarray(mean_field[...]), np.asarray(open_field(scatter_path)[...]), attrs["origin"],
                    int(attrs["parent_n_grid"]), float(attrs["parent_box_size"]), pos, mass, len(out_paths), seed)
    for i, (path, cube) in enumerate(zip(out_paths, draws)):
        with atomic_path(path) as tmp:
            out = create_field(tmp, dict(attrs, realisation=i, realisations=len(out_paths), seed=seed,
                                         drawn="one z per gravity-only subhalo"))
            out[...] = cube
    log.info("%d realisations drawn (seed %s)", len(out_paths), seed)
