"""The galaxy painter's samples: every gravity-only subhalo, what the network is told about it, its galaxy.

The galaxy painter (`train.target: galaxies`, docs/painting.md) asks the network, for each
gravity-only subhalo, for the stellar mass of its hydro galaxy. A sample is one subhalo:
its position [Mpc/h] and voxel (where its input patch is centred), its query (what the
network reads at the patch's centre voxel: log10 SubhaloMass, log10 of its FoF group's
GroupMass [Msun/h], and whether it is the group's central: the catalogue the HOD reads),
and its target, the summed SubhaloMassType[:, 4] [Msun/h] of the hydro subhalos matched
to it (0 for none). The match gives each hydro subhalo with stars its nearest gravity-only
subhalo (periodic): on the mini-universe every hydro galaxy sits 0.02 Mpc/h from its twin
and the match is one to one (docs/training.md, session 29). TNG publishes a matching of
its own (SubhaloMatchingToDark), which this does not read yet.

The split stage writes the samples of the training pair and of every training universe to
`split/galaxies.npz` with their role: training, the validation or the test cube (by the
subhalo's voxel), or a calibration block; a training universe's are all training.
For the mini-universe the generator's noise-free mean (`SubhaloStellarMassMean`) is matched
the same way, the floor the painter is measured against.
"""

from __future__ import annotations

import logging

import h5py
import numpy as np

from .atomic import atomic_path
from .cic import cell_index, wrap_positions
from .split import Cube, read_cubes
from .tng import groupcat_path, load_halos, load_subhalos

log = logging.getLogger("dm2gal.galaxy_samples")

QUERY_COLUMNS = ("log10_subhalo_mass", "log10_group_mass", "central")
QUERIES = {"subhalo": 1, "group": 3}
"""train.query -> how many of QUERY_COLUMNS the network reads: the subhalo's own mass, or also its group."""
ROLES = {"train": 0, "validation": 1, "test": 2, "calibration": 3}
IDEAL_FIELD = "SubhaloStellarMassMean"


def load_dark_catalogue(base: str, snapshot: int) -> dict:
    """The gravity-only subhalos of illustris_python's `base`: SubhaloPos [Mpc/h], SubhaloMass and
    their group's GroupMass [Msun/h], and `central` (1.0 for their group's first subhalo)."""
    subs = load_subhalos(str(base), snapshot, ["SubhaloPos", "SubhaloMass", "SubhaloGrNr"])
    if not subs["count"]:
        raise ValueError(f"{base} (snapshot {snapshot}) has no subhalos: nothing for the galaxy painter to paint")
    halos = load_halos(str(base), snapshot, ["GroupMass", "GroupFirstSub"])
    central = np.zeros(len(subs["SubhaloMass"]))
    first = halos["GroupFirstSub"]
    central[first[first >= 0]] = 1.0
    return dict(SubhaloPos=np.asarray(subs["SubhaloPos"], np.float64),
                SubhaloMass=np.asarray(subs["SubhaloMass"], np.float64),
                GroupMass=np.asarray(halos["GroupMass"], np.float64)[subs["SubhaloGrNr"]], central=central)


def query_features(subs: dict) -> np.ndarray:
    """(S, 3) QUERY_COLUMNS of the subhalos of `load_dark_catalogue`."""
    return np.stack([np.log10(subs["SubhaloMass"]), np.log10(subs["GroupMass"]), subs["central"]], 1)


def subhalo_voxels(pos: np.ndarray, n_grid: int, box_size: float) -> np.ndarray:
    """(S, 3) int64 voxel of the periodic n_grid^3 grid of side `box_size` [Mpc/h] holding each position `pos` (S, 3)."""
    return cell_index(wrap_positions(np.asarray(pos, np.float64), box_size), n_grid, box_size)[0].astype(np.int64)


def reaching(voxel: np.ndarray, start, size: int, n_grid: int) -> np.ndarray:
    """(S,) bool: the subhalos of lower CIC voxel `voxel` (S, 3) whose clouds reach the cube of
    `size` voxels from `start` of the periodic n_grid^3 grid (a cloud covers its voxel and the next)."""
    if size >= n_grid:
        return np.ones(len(voxel), bool)
    return Cube(tuple(int(v) for v in (np.asarray(start) - 1) % n_grid), size + 1).contains(voxel, n_grid)


def nearest_subhalo(dark_pos: np.ndarray, pos: np.ndarray, box_size: float) -> tuple[np.ndarray, np.ndarray]:
    """(index (H,), distance (H,) [Mpc/h]) of the nearest of the subhalos at `dark_pos` (S, 3) to
    each position `pos` (H, 3), in the periodic box of side `box_size` [Mpc/h]."""
    from scipy.spatial import cKDTree  # scipy: kept out of the import on GPU machines

    tree = cKDTree(wrap_positions(np.asarray(dark_pos, np.float64), box_size), boxsize=box_size)
    distance, index = tree.query(wrap_positions(np.asarray(pos, np.float64), box_size))
    return index.astype(np.int64), distance


def matched_masses(dark_pos: np.ndarray, hydro_pos: np.ndarray, hydro_values: list[np.ndarray],
                   box_size: float) -> tuple[list[np.ndarray], float]:
    """Each of `hydro_values` ((H,) per hydro subhalo at `hydro_pos`) summed onto its nearest
    gravity-only subhalo (`dark_pos` (S, 3)): a list of (S,) arrays, and the largest match distance [Mpc/h]."""
    index, distance = nearest_subhalo(dark_pos, hydro_pos, box_size)
    sums = [np.bincount(index, weights=v, minlength=len(dark_pos)) for v in hydro_values]
    return sums, float(distance.max()) if len(distance) else 0.0


def box_samples(dark_base: str, hydro_base: str, snapshot: int, n_grid: int, box_size: float) -> dict:
    """The samples of one paired box: position (S, 3) [Mpc/h], voxel (S, 3), query (S, 3),
    stellar_mass (S,) [Msun/h] (the matched hydro stellar mass) and ideal (S,) [Msun/h] (the
    matched noise-free mean; NaN where the hydro catalogue has none)."""
    subs = load_dark_catalogue(dark_base, snapshot)
    hydro_fields = ["SubhaloPos", "SubhaloMassType"]
    with h5py.File(groupcat_path(hydro_base, snapshot, 0), "r") as f:  # an archive run has no generator's mean
        has_ideal = IDEAL_FIELD in f.get("Subhalo", {})
    hydro = load_subhalos(str(hydro_base), snapshot, hydro_fields + [IDEAL_FIELD] * has_ideal)
    stars = np.asarray(hydro["SubhaloMassType"], np.float64)[:, 4] if hydro["count"] else np.zeros(0)
    has = stars > 0
    values = [stars[has]] + ([np.asarray(hydro[IDEAL_FIELD], np.float64)[has]] if IDEAL_FIELD in hydro else [])
    hydro_pos = np.asarray(hydro["SubhaloPos"], np.float64)[has] if hydro["count"] else np.zeros((0, 3))
    sums, farthest = matched_masses(subs["SubhaloPos"], hydro_pos, values, box_size)
    matched = sums[0] > 0
    log.info("%s: %d gravity-only subhalos, %d hydro galaxies matched to %d of them (farthest %.3f Mpc/h)",
             dark_base, len(matched), int(has.sum()), int(matched.sum()), farthest)
    return dict(position=subs["SubhaloPos"], voxel=subhalo_voxels(subs["SubhaloPos"], n_grid, box_size),
                query=query_features(subs), stellar_mass=sums[0],
                ideal=sums[1] if len(sums) > 1 else np.full(len(matched), np.nan))


def sample_roles(voxel: np.ndarray, cubes, blocks: np.ndarray, n_grid: int) -> np.ndarray:
    """(S,) int8 ROLES of the training pair's samples at voxels `voxel` (S, 3): the validation
    or test cube of `cubes` (`dm2gal.split.SplitCubes`), a calibration block (`blocks` (B, 4):
    first voxel and edge), else training."""
    role = np.full(len(voxel), ROLES["train"], np.int8)
    for block in blocks:
        role[Cube(tuple(int(v) for v in block[:3]), int(block[3])).contains(voxel, n_grid)] = ROLES["calibration"]
    role[cubes.validation.contains(voxel, n_grid)] = ROLES["validation"]
    role[cubes.test.contains(voxel, n_grid)] = ROLES["test"]
    return role


def write_galaxy_samples(out_npz, dark_base: str, hydro_base: str, snapshot: int, cubes_json, train_npz,
                         extra_runs: list[tuple] = ()) -> dict:
    """galaxies.npz of the training pair (`dark_base`, `hydro_base`) and of the training universes
    `extra_runs` ((dark_base, hydro_base, snapshot) each, in the split's order): the
    `box_samples` columns stacked, with box (S,) (0 for the pair) and role (S,) (`sample_roles`;
    ROLES train for a training universe); voxel addresses the stacked grid of the training boxes
    (box b: voxel[:, 0] in [b n, (b + 1) n)), as train.npz's coords. Returns the counts per role."""
    cubes = read_cubes(cubes_json)
    split = np.load(train_npz)
    n, box = int(split["n_grid"]), float(split["box_size"])
    runs = [(dark_base, hydro_base, snapshot), *extra_runs]
    parts = []
    for b, (dark, hydro, snap) in enumerate(runs):
        samples = box_samples(dark, hydro, snap, n, box)
        role = (sample_roles(samples["voxel"], cubes, split["calibration_blocks"], n) if b == 0
                else np.full(len(samples["voxel"]), ROLES["train"], np.int8))
        samples["voxel"] = samples["voxel"] + np.array([b * n, 0, 0])
        parts.append(dict(samples, box=np.full(len(role), b, np.int32), role=role))
    columns = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    with atomic_path(out_npz) as tmp, open(tmp, "wb") as f:
        np.savez(f, **columns, query_columns=np.array(QUERY_COLUMNS), n_grid=n, box_size=box)
    counts = {name: int(((columns["role"] == r) & (columns["stellar_mass"] > 0)).sum()) for name, r in ROLES.items()}
    log.info("galaxy samples: %d subhalos in %d boxes; galaxies by role %s", len(columns["role"]), len(runs), counts)
    return counts
