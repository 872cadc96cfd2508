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
inflate the galaxy's; s is therefore multiplied by the calibration's galaxy scatter
factor at the galaxy's painted mass (fitted on calibration galaxies, see
dm2gal.calibration), whose knots the paint stage writes into the scatter field's
attributes. The rest of a voxel's scatter, sqrt(sigma^2 - s^2), is that split: each
voxel's share of its galaxy is redrawn with it, independently, and the galaxy's voxels
are renormalised to their summed mean, so the galaxy's total is drawn by its z alone
(P(k) and B on scales above a voxel see galaxies as wholes) while each voxel keeps its
predicted scatter (the one-point PDF of voxel masses). A painted voxel no subhalo
reaches draws alone. Realisations carry the scatter that the one-point PDF and the
small-scale power need (model dm2gal_realisations); the mean field is scored as dm2gal.

A galaxy painter's painting (`dm2gal.paint_galaxies`) is a catalogue of galaxies, each with
its mean mass and scatter: its realisations draw every galaxy on its own and deposit the
catalogue by CIC again (`realise_galaxies`), as the mini-universe's generator draws its galaxies.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from .atomic import atomic_path
from .calibration import drawn_galaxy_scatter, galaxy_groups
from .catalogue import read_catalogue
from .cic import deposit_cube, host_subhalos
from .fields import create_field, open_field
from .ideal import draw_masses
from .tng import load_subhalos

log = logging.getLogger("dm2gal.realisations")


def draw(mean: np.ndarray, sigma: np.ndarray, galaxies: np.ndarray, rng: np.random.Generator,
         share_sigma: np.ndarray | None = None) -> np.ndarray:
    """One realisation of the voxels with means `mean` (K,) [Msun/h] and galaxy log scatters
    `sigma` (K,) [dex]: one standard-normal z per galaxy (`galaxies` (K,), from
    `galaxy_groups`). With `share_sigma` (K,) [dex], each voxel's mass is first multiplied by
    10^(share_sigma e), one standard-normal e per voxel, and the galaxy's voxels rescaled to
    their summed `mean`: the split of a galaxy among its voxels is drawn, its total is not."""
    n_galaxies = int(galaxies.max()) + 1 if len(galaxies) else 0
    z = rng.standard_normal(n_galaxies)[galaxies]
    split = mean
    if share_sigma is not None:
        moved = mean * 10.0 ** (share_sigma * rng.standard_normal(len(mean)))
        total, moved_total = (np.bincount(galaxies, weights=w, minlength=n_galaxies) for w in (mean, moved))
        split = moved * (total / np.where(moved_total > 0, moved_total, 1.0))[galaxies]
    return split * 10.0 ** (sigma * z - 0.5 * math.log(10.0) * sigma ** 2)


def realise(mean_cube: np.ndarray, sigma_cube: np.ndarray, origin, n_grid: int, box_size: float,
            sub_pos: np.ndarray, sub_mass: np.ndarray, n_realisations: int, seed, galaxy_scatter_knots=((), ())):
    """Yield `n_realisations` (s, s, s) float32 realisations of a painted cube whose first voxel
    is `origin` of the parent grid, each galaxy drawn with its scatter s
    (`dm2gal.calibration.drawn_galaxy_scatter` with `galaxy_scatter_knots`: knots in log10
    painted galaxy mass [Msun/h], factors), each voxel's share of it with
    the rest of the voxel's scatter, sqrt(sigma^2 - s^2); draw i uses numpy's
    SeedSequence(seed).spawn(n)[i]."""
    painted = np.argwhere(mean_cube > 0)
    mean = mean_cube[tuple(painted.T)].astype(np.float64)
    galaxies = galaxy_groups(host_subhalos(painted, origin, n_grid, box_size, sub_pos, sub_mass))
    voxel_sigma = sigma_cube[tuple(painted.T)].astype(np.float64)
    sigma = drawn_galaxy_scatter(mean, voxel_sigma, galaxies, galaxy_scatter_knots)[galaxies]
    share_sigma = np.sqrt(np.maximum(voxel_sigma ** 2 - sigma ** 2, 0.0))
    for child in np.random.SeedSequence(seed).spawn(n_realisations):
        cube = np.zeros(mean_cube.shape, np.float32)
        cube[tuple(painted.T)] = draw(mean, sigma, galaxies, np.random.default_rng(child), share_sigma)
        yield cube


def realise_galaxies(catalogue_path, attrs: dict, n_realisations: int, seed):
    """Yield `n_realisations` (s, s, s) float32 realisations of a galaxy painter's cube (`attrs`:
    the painted field's): every galaxy of its catalogue drawn on its own from its log-normal
    (`dm2gal.ideal.draw_masses`: its mean mass, its log10 scatter) and deposited by CIC at its
    position, as the painting; draw i uses numpy's SeedSequence(seed).spawn(n)[i]."""
    columns, _ = read_catalogue(catalogue_path)
    pos, mean, sigma = columns["position"], columns["stellar_mass"], columns["log10_scatter"]
    n, box = int(attrs["parent_n_grid"]), float(attrs["parent_box_size"])
    for child in np.random.SeedSequence(seed).spawn(n_realisations):
        drawn = draw_masses(mean, sigma, np.random.default_rng(child))
        yield deposit_cube(pos, drawn, box, n, tuple(attrs["origin"]), int(attrs["n_grid"]), mas=attrs["mas"])


def _write_draws(out_paths, draws, attrs: dict) -> None:
    """Write the i-th cube of `draws` to out_paths[i] atomically, with `attrs` and its draw number."""
    for i, (path, cube) in enumerate(zip(out_paths, draws)):
        with atomic_path(path) as tmp:
            create_field(tmp, dict(attrs, realisation=i, realisations=len(out_paths)))[...] = cube


def write_realisations(out_paths, mean_path, scatter_path, base: str, snapshot: int, seed,
                       catalogue_path=None) -> None:
    """One drawn field per path of `out_paths` from a painted field (attributes as the painted
    field's, plus the draw), each written atomically; the hosts come from the gravity-only
    subhalo catalogue at illustris_python's `base`; `seed` is an int or a list of ints
    (numpy SeedSequence entropy). A galaxy painter's field is drawn from its catalogue at
    `catalogue_path` instead (`realise_galaxies`)."""
    mean_field = open_field(mean_path)
    attrs = dict(mean_field.attrs)
    if attrs.get("painter") == "galaxies":
        _write_draws(out_paths, realise_galaxies(catalogue_path, attrs, len(out_paths), seed),
                     dict(attrs, seed=seed, drawn="one z per painted galaxy, deposited by CIC"))
        log.info("%d realisations drawn galaxy by galaxy from %s (seed %s)", len(out_paths), catalogue_path, seed)
        return
    subs = load_subhalos(base, snapshot, ["SubhaloPos", "SubhaloMass"])
    pos, mass = (subs["SubhaloPos"], subs["SubhaloMass"]) if subs["count"] else (np.zeros((0, 3)), np.zeros(0))
    scatter_field = open_field(scatter_path)
    knots = (list(scatter_field.attrs.get("galaxy_scatter_log10_mass", [])),
             list(scatter_field.attrs.get("galaxy_scatter_factor", [])))
    draws = realise(np.asarray(mean_field[...]), np.asarray(scatter_field[...]), attrs["origin"],
                    int(attrs["parent_n_grid"]), float(attrs["parent_box_size"]), pos, mass, len(out_paths), seed,
                    galaxy_scatter_knots=knots)
    _write_draws(out_paths, draws, dict(attrs, seed=seed,
                                        drawn="one z per gravity-only subhalo, the split among its voxels per voxel",
                                        galaxy_scatter_log10_mass=knots[0], galaxy_scatter_factor=knots[1]))
    log.info("%d realisations drawn (seed %s, galaxy scatter x %s at log10 m %s)", len(out_paths), seed,
             np.round(knots[1], 2).tolist(), np.round(knots[0], 2).tolist())
