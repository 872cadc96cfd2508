"""The validation and test cubes, the training voxels, their weights and the input normalisation.

Cubes are axis-aligned, periodic sub-boxes of the n_grid^3 grid (`start` [3] and
`size` in voxels). Training voxels are those with stellar mass above a threshold
[Msun/h] outside both cubes; their targets are log10 M*; their sampling weights are
the inverse counts in logarithmic stellar-mass bins (Kasmanoff et al. 2020), to a
configurable power. The input normalisation (mean and std of log10(1 + M) of each
input channel over every voxel of the training region) is computed here and stored,
never hard-coded. Fields are read in slabs of whole chunks, so the memory use does
not grow with n_grid^3.
Only coordinates, targets, weights and statistics are stored, never patches.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from .atomic import atomic_path
from .fields import open_field, read_periodic
from .tng import load_halos, load_subhalos

log = logging.getLogger("dm2gal.split")

UNITS = ("voxels", "Mpc/h", "box")
"""How cube positions and sizes are given in config: voxels, Mpc/h, or fractions of the box side."""


@dataclass(frozen=True)
class Cube:
    """A periodic cube of the grid: first voxel `start` [3] and edge `size` in voxels."""

    start: tuple[int, int, int]
    size: int

    def contains(self, coords: np.ndarray, n: int) -> np.ndarray:
        """(N,) bool: voxels `coords` (N, 3) lie inside the cube (periodic)."""
        coords = np.asarray(coords)
        return np.all([((coords[:, i] - self.start[i]) % n) < self.size for i in range(3)], axis=0)

    def as_dict(self) -> dict:
        return {"start": list(self.start), "size": self.size}


def voxels_per_unit(units: str, n_grid: int, box_size: float) -> float:
    """Voxels of the n_grid^3 grid of side `box_size` [Mpc/h] in one of `units` (see UNITS)."""
    if units not in UNITS:
        raise ValueError(f"split.units must be one of {UNITS}, got {units!r}")
    return {"voxels": 1.0, "Mpc/h": n_grid / box_size, "box": float(n_grid)}[units]


def calibration_block(split_cfg: dict, n_grid: int, box_size: float) -> int:
    """Edge in voxels (rounded, not yet checked) of the calibration blocks: split.calibration.block
    in split.units, or an eighth of the grid when it is null."""
    spec = split_cfg.get("calibration", {}).get("block")
    if spec is None:
        return max(1, n_grid // 8)
    return int(round(spec * voxels_per_unit(split_cfg["units"], n_grid, box_size)))


def resolve_cube(spec: dict, units: str, n_grid: int, box_size: float) -> Cube:
    """A Cube from a config entry {start: [3], size} in `units` (see UNITS), rounded to voxels."""
    scale = voxels_per_unit(units, n_grid, box_size)
    start = tuple(int(round(float(s) * scale)) % n_grid for s in spec["start"])
    size = int(round(float(spec["size"]) * scale))
    if len(start) != 3 or not 1 <= size <= n_grid:
        raise ValueError(f"cube {spec} ({units}) gives start {start}, size {size} on a {n_grid}^3 grid")
    return Cube(start, size)


def cubes_overlap(a: Cube, b: Cube, n: int) -> bool:
    """True if two periodic cubes share a voxel (their intervals meet on all three axes)."""
    def meet(s1, l1, s2, l2):
        return (s2 - s1) % n < l1 or (s1 - s2) % n < l2
    return all(meet(a.start[i], a.size, b.start[i], b.size) for i in range(3))


def calibration_blocks(n: int, block: int, fraction: float, exclude: list[Cube], seed: int) -> list[Cube]:
    """Cubes of edge `block` voxels on the regular tiling of the n^3 grid that overlap none of
    `exclude`, drawn at random (numpy, entropy [seed, 1]) until they hold `fraction` of the
    box's voxels: the voxels training never sees and the painter's calibration is fitted on
    (`dm2gal.calibration`). An empty list for `fraction` 0."""
    if fraction <= 0:
        return []
    starts = range(0, n - block + 1, block)
    free = [Cube((x, y, z), block) for x in starts for y in starts for z in starts
            if not any(cubes_overlap(Cube((x, y, z), block), c, n) for c in exclude)]
    want = int(round(fraction * n ** 3 / block ** 3))
    if want > len(free):
        raise ValueError(f"split.calibration.fraction {fraction} needs {want} blocks of {block}^3 voxels, "
                         f"but only {len(free)} lie outside the validation and test cubes")
    chosen = np.random.default_rng([int(seed), 1]).choice(len(free), size=max(1, want), replace=False)
    return [free[i] for i in sorted(chosen)]


def _in_interval(indices: np.ndarray, start: int, size: int, n: int) -> np.ndarray:
    return ((indices - start) % n) < size


def slab_mask(cube: Cube, x0: int, x1: int, n: int) -> np.ndarray:
    """(x1 - x0, n, n) bool: voxels of the slab [x0, x1) that lie inside `cube`."""
    ix = _in_interval(np.arange(x0, x1), cube.start[0], cube.size, n)
    iy = _in_interval(np.arange(n), cube.start[1], cube.size, n)
    iz = _in_interval(np.arange(n), cube.start[2], cube.size, n)
    return ix[:, None, None] & iy[None, :, None] & iz[None, None, :]


def scan_training_region(stellar, inputs, cubes: list[Cube], min_mass: float, slab: int,
                         scales=None) -> dict:
    """Walk the box in x-slabs: training voxels and input statistics outside `cubes`.

    `stellar` and each of `inputs` are (n, n, n) arrays or Zarr arrays [Msun/h].
    Returns coords (N, 3) int32, mstar (N,) float64 and inputs (N, C) float64 (the input
    fields there) of voxels with stellar mass >
    `min_mass` outside every cube, and mean/std (per input) of log10(1 + M / scale) over
    all voxels outside the cubes (`scales` [Msun/h] per input, default 1), and box_mean
    (per input): the voxel mean of M over the box.
    """
    n = int(stellar.shape[0])
    total = np.zeros(len(inputs))
    s1 = np.zeros(len(inputs))
    s2 = np.zeros(len(inputs))
    count = 0
    coords, mstar, at = [], [], []
    for x0 in tqdm(range(0, n, slab), desc="split: scanning slabs", mininterval=5):
        x1 = min(x0 + slab, n)
        region = np.ones((x1 - x0, n, n), dtype=bool)
        for cube in cubes:
            region &= ~slab_mask(cube, x0, x1, n)
        count += int(region.sum())
        m = np.asarray(stellar[x0:x1], dtype=np.float64)
        idx = np.nonzero(region & (m > min_mass))
        values = []
        for c, field in enumerate(inputs):
            block = np.asarray(field[x0:x1], dtype=np.float64)
            total[c] += block.sum()
            v = np.log10(1.0 + block[region] / (1.0 if scales is None else float(scales[c])))
            s1[c] += v.sum()
            s2[c] += np.square(v).sum()
            values.append(block[idx])
        at.append(np.stack(values, axis=1))
        coords.append(np.stack([idx[0] + x0, idx[1], idx[2]], axis=1).astype(np.int32))
        mstar.append(m[idx])
    if count == 0:
        raise ValueError("the validation and test cubes leave no training region")
    mean = s1 / count
    std = np.sqrt(np.maximum(s2 / count - mean ** 2, 0.0))
    if (std == 0).any():
        raise ValueError("an input field is constant over the training region")
    return dict(coords=np.concatenate(coords), mstar=np.concatenate(mstar), inputs=np.concatenate(at),
                input_mean=mean, input_std=std, box_mean=total / n ** 3, count=count)


def pool_scans(scans: list[dict], n: int) -> dict:
    """One `scan_training_region` result from the scans of m boxes of n^3 voxels (box b's
    coordinates shifted to rows [b n, (b + 1) n) of the stacked grid, as `PatchSource`
    stacks boxes); the input mean and std are those of all the boxes' regions together,
    box_mean is the first box's."""
    counts = np.array([s["count"] for s in scans], dtype=np.float64)
    means = np.stack([s["input_mean"] for s in scans])
    second = np.stack([s["input_std"] ** 2 + s["input_mean"] ** 2 for s in scans])
    mean = counts @ means / counts.sum()
    std = np.sqrt(np.maximum(counts @ second / counts.sum() - mean ** 2, 0.0))
    coords = [s["coords"] + np.array([b * n, 0, 0], dtype=np.int32) for b, s in enumerate(scans)]
    return dict(coords=np.concatenate(coords), mstar=np.concatenate([s["mstar"] for s in scans]),
                inputs=np.concatenate([s["inputs"] for s in scans]), input_mean=mean, input_std=std,
                box_mean=scans[0]["box_mean"], count=int(counts.sum()))


def sample_weights(mstar: np.ndarray, n_bins: int, lo: float, hi: float,
                   power: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(weights (N,), edges (n_bins + 1,)): each voxel's log10 mass bin count to the -`power`.

    Bins are logarithmic between `lo` and `hi` [Msun/h]; masses beyond `hi` join the
    last bin, masses at or below `lo` the first. Weights are scaled to mean 1. `power` = 1 (the
    paper) draws every occupied bin equally often; 0 draws voxels uniformly. Under
    weights w(y) the MSE-optimal prediction is the w-weighted conditional mean, biased
    by about power * sigma^2 * d ln(1/n)/dy for a scatter sigma of y = log10 M* at
    fixed input, upwards where the mass function falls (docs/training.md).
    """
    edges = np.linspace(np.log10(lo), np.log10(hi), n_bins + 1)
    b = np.clip(np.digitize(np.log10(mstar), edges) - 1, 0, n_bins - 1)
    counts = np.bincount(b, minlength=n_bins)
    w = counts[b].astype(np.float64) ** -power
    return w / w.mean(), edges


def input_weights(sub_mass: np.ndarray, n_bins: int, power: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(weights (N,), edges (n_bins + 1,) log10 Msun/h): sampling weights counted in log bins of
    the voxels' gravity-only subhalo mass [Msun/h] over its positive range, to the -`power`,
    mean 1; voxels without subhalo mass are one more bin. The subhalo mass is an input, so
    draws by these weights keep the unweighted conditional mean as every loss's optimum."""
    positive = sub_mass > 0
    log_m = np.log10(np.where(positive, sub_mass, 1.0))
    lo, hi = (log_m[positive].min(), log_m[positive].max()) if positive.any() else (0.0, 1.0)
    edges = np.linspace(lo, hi + 1e-9, n_bins + 1)
    bins = np.where(positive, np.clip(np.digitize(log_m, edges) - 1, 0, n_bins - 1), n_bins)
    w = np.bincount(bins, minlength=n_bins + 1)[bins].astype(np.float64) ** -power
    return w / w.mean(), edges

def cube_report(cube: Cube, stellar, dm, dm_box_mean: float, min_mass: float, box_size: float,
                galaxies: dict, halos: dict) -> dict:
    """What a user needs to judge a cube: galaxies, stellar masses, density, biggest halos.

    `galaxies`: hydro subhalos {'pos' (N, 3) Mpc/h, 'mstar' (N,) Msun/h}; `halos`:
    {run: {'pos', 'mass'}} FoF groups of each run. The mean dark-matter density of the
    cube is given relative to `dm_box_mean` (voxel mean of the whole box): a cube in a
    big void has a ratio well below 1.
    """
    n = int(stellar.shape[0])
    voxel = box_size / n
    ms = read_periodic(stellar, cube.start, (cube.size,) * 3).astype(np.float64)
    rho = read_periodic(dm, cube.start, (cube.size,) * 3).astype(np.float64)
    gal = ms[ms > min_mass]
    in_cube = cube.contains(np.floor(galaxies["pos"] / voxel).astype(np.int64) % n, n)
    sel = in_cube & (galaxies["mstar"] > min_mass)
    report = {
        **cube.as_dict(),
        "side_mpc_h": cube.size * voxel,
        "galaxy_voxels": int(gal.size),
        "galaxies": int(sel.sum()),
        "galaxies_per_box_volume_fraction": float(sel.sum() / max(1, (galaxies["mstar"] > min_mass).sum())
                                                  / (cube.size / n) ** 3),
        "voxel_stellar_mass_range": [float(gal.min()), float(gal.max())] if gal.size else None,
        "galaxy_stellar_mass_range": ([float(galaxies["mstar"][sel].min()), float(galaxies["mstar"][sel].max())]
                                      if sel.any() else None),
        "total_stellar_mass": float(ms.sum()),
        "mean_dm_density_over_box_mean": float(rho.mean() / dm_box_mean),
        "empty_fraction_of_dm_voxels": float((rho == 0).mean()),
    }
    for run, h in halos.items():
        inside = cube.contains(np.floor(h["pos"] / voxel).astype(np.int64) % n, n)
        if inside.any():
            j = np.flatnonzero(inside)[np.argmax(h["mass"][inside])]
            report[f"most_massive_halo_{run}"] = {"mass": float(h["mass"][j]), "pos_mpc_h": h["pos"][j].tolist(),
                                                  "box_most_massive": float(h["mass"].max())}
        else:
            report[f"most_massive_halo_{run}"] = None
    return report


def _catalogue(base: str, snapshot: int, halo_mass_field: str, hydro: bool) -> tuple[dict, dict | None]:
    """FoF groups {'pos', 'mass'} of one run, and for the hydro run its galaxies {'pos', 'mstar'}."""
    h = load_halos(base, snapshot, ["GroupPos", halo_mass_field])
    halos = ({"pos": h["GroupPos"], "mass": h[halo_mass_field]} if h["count"]
             else {"pos": np.zeros((0, 3)), "mass": np.zeros(0)})
    if not hydro:
        return halos, None
    s = load_subhalos(base, snapshot, ["SubhaloPos", "SubhaloMassType"])
    galaxies = ({"pos": s["SubhaloPos"], "mstar": s["SubhaloMassType"][:, 4]} if s["count"]
                else {"pos": np.zeros((0, 3)), "mstar": np.zeros(0)})
    return halos, galaxies


@dataclass(frozen=True)
class SplitCubes:
    """What cubes.json (`run_split`) tells the later stages: the validation and test Cubes and the
    training threshold `min_stellar_mass` [Msun/h]."""

    validation: Cube
    test: Cube
    min_stellar_mass: float


def read_cubes(cubes_json) -> SplitCubes:
    """The SplitCubes recorded in cubes.json: the one reader of that file."""
    with open(cubes_json) as f:
        report = json.load(f)
    cube = {name: Cube(tuple(int(s) for s in report[name]["start"]), int(report[name]["size"]))
            for name in ("validation", "test")}
    return SplitCubes(cube["validation"], cube["test"], float(report["min_stellar_mass"]))


def _open_inputs(stellar_path, dm_path, subhalo_path):
    """The stellar, dark-matter and subhalo fields, opened, and their common (n_grid, box_size [Mpc/h])."""
    fields = [open_field(p) for p in (stellar_path, dm_path, subhalo_path)]
    attrs = [dict(f.attrs) for f in fields]
    n, box = int(attrs[0]["n_grid"]), float(attrs[0]["box_size"])
    if any(int(a["n_grid"]) != n or not np.isclose(float(a["box_size"]), box) for a in attrs):
        raise ValueError("the stellar, dark-matter and subhalo fields differ in n_grid or box_size")
    return (*fields, n, box)


def _cubes_and_blocks(cfg: dict, n: int, box: float, seed: int) -> tuple[dict[str, Cube], int, list[Cube]]:
    """The validation and test Cubes of the `split` config `cfg` (checked apart), the calibration
    blocks' edge [voxels] (checked) and the blocks drawn outside both cubes."""
    cubes = {name: resolve_cube(cfg[name], cfg["units"], n, box) for name in ("validation", "test")}
    if cubes_overlap(cubes["validation"], cubes["test"], n):
        raise ValueError(f"validation cube {cubes['validation']} and test cube {cubes['test']} overlap")
    calib = cfg.get("calibration", {})
    block = calibration_block(cfg, n, box)
    if not 1 <= block <= n:
        raise ValueError(f"split.calibration.block {calib.get('block')} ({cfg['units']}) is not between one voxel "
                         f"and the {n}^3 grid")
    blocks = calibration_blocks(n, block, float(calib.get("fraction", 0.15)), list(cubes.values()), seed)
    return cubes, block, blocks


def _training_weights(scan: dict, cfg: dict, min_mass: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sampling weights (N,), bin edges (log10 Msun/h), importance (N,)) of the scanned training
    voxels, counted in bins of `cfg["weight_by"]` (stellar or gravity-only subhalo mass)."""
    power = float(cfg.get("weight_power", 1.0))
    if cfg.get("weight_by", "subhalo_mass") == "subhalo_mass":
        weights, edges = input_weights(scan["inputs"][:, 1], int(cfg["weight_bins"]), power)
        return weights, edges, np.ones(len(weights))  # weights of an input: no correction needed
    weights, edges = sample_weights(scan["mstar"], int(cfg["weight_bins"]), min_mass,
                                    float(cfg["weight_max_mass"]), power)
    return weights, edges, weights.mean() / weights  # the importance undoes draws weighted by the target


def _validation_voxels(stellar, val: Cube, min_mass: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(coords (K, 3) int32 on the parent grid, log10 M* (K,) float32) of the validation cube's
    voxels with stellar mass > `min_mass` [Msun/h], in the cube's C order."""
    vm = read_periodic(stellar, val.start, (val.size,) * 3)
    vidx = np.argwhere(vm > min_mass)
    coords = ((vidx + np.asarray(val.start)) % n).astype(np.int32)
    return coords, np.log10(vm[vm > min_mass]).astype(np.float32)


def _split_report(cfg: dict, n: int, box: float, cubes: dict[str, Cube], block: int, blocks: list[Cube],
                  scan: dict, stellar, dm, dark_base, hydro_base, snapshot: int) -> dict:
    """cubes.json: grid, threshold, training and calibration counts, and a `cube_report` per cube."""
    min_mass = float(cfg["min_stellar_mass"])
    dark_halos, _ = _catalogue(dark_base, snapshot, cfg["halo_mass_field"], hydro=False)
    hydro_halos, galaxies = _catalogue(hydro_base, snapshot, cfg["halo_mass_field"], hydro=True)
    return {
        "n_grid": n, "box_size": box, "units_in_config": cfg["units"], "min_stellar_mass": min_mass,
        "halo_mass_field": cfg["halo_mass_field"],
        "training_voxels": int(len(scan["mstar"])),
        "calibration": {"block_voxels": block, "blocks": len(blocks),
                        "fraction_of_box": len(blocks) * block ** 3 / n ** 3},
        **{name: cube_report(c, stellar, dm, float(scan["box_mean"][0]), min_mass, box, galaxies,
                             {"dark": dark_halos, "hydro": hydro_halos}) for name, c in cubes.items()},
    }


def run_split(dm_path, subhalo_path, stellar_path, dark_base, hydro_base, snapshot: int, cfg: dict,
              cubes_json, train_npz, seed: int = 0, extra_boxes: list[tuple] = ()) -> dict:
    """The split stage: cubes.json (cubes and their reports) and train.npz (see docs/pipeline.md).

    `cfg` is the `split` config section. train.npz holds: coords (N, 3) int32 training
    voxels, log_mstar (N,) float32 log10 M* [Msun/h], weights (N,) (sampling, mean 1,
    counted in bins of `weight_by`), importance (N,) (what the unbiased objective
    multiplies each drawn sample's loss by: 1 for input weights, mean(w)/w for stellar-mass
    weights), weight_by, bin_edges (log10 Msun/h), input_scale (2,) [Msun/h] the mean matter mass per voxel (the
    dark-matter field's total mass / n^3) for both inputs, input_mean / input_std (2,) of
    log10(1 + M / input_scale) for [dm_mass, subhalo_mass], target_mean / target_std of log10 M* over the training
    voxels, val_coords / val_log_mstar (the validation cube's voxels above the
    threshold, where the validation painting is done), n_grid, box_size, min_stellar_mass,
    training_boxes (the number of boxes the training voxels come from).

    `extra_boxes`: (dm_path, subhalo_path, stellar_path) of more paired runs of the same box
    size and grid (`training_universes`), whose whole boxes add training voxels; the voxels of
    extra box b (from 1) have coords[:, 0] in [b n, (b + 1) n), the stacked grid that
    `dm2gal.sampler.PatchSource.from_boxes` cuts from. The cubes, the calibration blocks and
    the input scale are the first box's.
    """
    stellar, dm, sub, n, box = _open_inputs(stellar_path, dm_path, subhalo_path)
    cubes, block, blocks = _cubes_and_blocks(cfg, n, box, seed)
    min_mass = float(cfg["min_stellar_mass"])
    scale = float(dm.attrs["total_mass"]) / n ** 3  # mean matter mass per voxel of the gravity-only run
    scans = [scan_training_region(stellar, [dm, sub], list(cubes.values()) + blocks, min_mass,
                                  slab=int(stellar.chunks[0]), scales=[scale, scale])]
    for i, (extra_dm, extra_sub, extra_stellar) in enumerate(extra_boxes):
        e_stellar, e_dm, e_sub, e_n, e_box = _open_inputs(extra_stellar, extra_dm, extra_sub)
        if e_n != n or not np.isclose(e_box, box):
            raise ValueError(f"training universe {i + 1} ({extra_stellar}) is a {e_n}^3 grid of a {e_box:g} Mpc/h box; "
                             f"the training pair's is {n}^3 of {box:g} Mpc/h, and patches must have one voxel size")
        scans.append(scan_training_region(e_stellar, [e_dm, e_sub], [], min_mass, slab=int(e_stellar.chunks[0]),
                                          scales=[scale, scale]))
        log.info("training universe %d: %d training voxels", i + 1, len(scans[-1]["mstar"]))
    scan = pool_scans(scans, n)
    if len(scan["mstar"]) == 0:
        raise ValueError(f"no training voxel has stellar mass > {min_mass:g} Msun/h")
    weights, edges, importance = _training_weights(scan, cfg, min_mass)
    log_m = np.log10(scan["mstar"])
    val_coords, val_log_mstar = _validation_voxels(stellar, cubes["validation"], min_mass, n)

    report = _split_report(cfg, n, box, cubes, block, blocks, scan, stellar, dm, dark_base, hydro_base, snapshot)
    report["training_boxes"] = len(scans)
    for name in cubes:
        r = report[name]
        log.info("%s cube: start %s, %d voxels (%.2f Mpc/h), %d galaxies, %d galaxy voxels, "
                 "DM density %.2f x mean", name, r["start"], r["size"], r["side_mpc_h"], r["galaxies"],
                 r["galaxy_voxels"], r["mean_dm_density_over_box_mean"])
    log.info("%d training voxels; input mean %s std %s", len(log_m), scan["input_mean"], scan["input_std"])
    with atomic_path(cubes_json) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    with atomic_path(train_npz) as tmp, open(tmp, "wb") as f:
        np.savez(f, coords=scan["coords"], log_mstar=log_m.astype(np.float32), weights=weights,
                 importance=importance.astype(np.float32), weight_by=cfg.get("weight_by", "subhalo_mass"), bin_edges=edges,
                 input_scale=np.array([scale, scale]), input_mean=scan["input_mean"], input_std=scan["input_std"],
                 target_mean=log_m.mean(), target_std=log_m.std(),
                 val_coords=val_coords, val_log_mstar=val_log_mstar,
                 calibration_blocks=np.array([[*b.start, b.size] for b in blocks], np.int32).reshape(-1, 4),
                 n_grid=n, box_size=box, min_stellar_mass=min_mass, training_boxes=len(scans))
    return report
