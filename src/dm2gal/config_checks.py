"""Checks of a config that a schema cannot make, run when the workflow loads (rules/common.smk).

Each would otherwise fail inside a job, after Snakemake had deleted that job's old
outputs, with a message about voxels rather than keys. Run at load time, they make
`snakemake -n` fail too, and each `ConfigError` names the key and the allowed range:
the validation and test cubes inside the grid and apart, room for the calibration
blocks outside them, the network's patch against
the grid, the k range, r(k) point and bispectrum triangles against the test cube's
fundamental mode and Nyquist frequency, and the TNG API key for `source: tng`.
Checks that need the box size in Mpc/h (cubes given in Mpc/h, every k) run when it is
known: from config for the synthetic source, from the acquired manifest otherwise.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

from .acquire.tng_api import KEY_ENV
from .model import head_outputs, model_config, valid_patches
from .schema import ConfigError
from .split import Cube, calibration_block, calibration_blocks, cubes_overlap, resolve_cube, voxels_per_unit
from .stats import resolved

UNIT_NAMES = {"voxels": "voxels", "Mpc/h": "Mpc/h", "box": "box sides"}
"""split.units as read in a message."""


def check_config(config: dict, box_size: float | None) -> None:
    """Every check below that the config (and `box_size` [Mpc/h], None if not known yet) allows."""
    n_grid = config["grid"]["n_grid"]
    cubes = check_cubes(config["split"], n_grid, box_size)
    if cubes:
        check_calibration(config["split"], cubes, n_grid, box_size)
    check_patch(config["model"], config["train"], n_grid)
    check_painter(config["train"], config["paint"])
    if cubes and box_size is not None:
        check_k(config["stats"], cubes["test"].size * box_size / n_grid, cubes["test"].size)


def _describe(cube: Cube) -> str:
    return f"start {cube.start}, size {cube.size}"


def check_cubes(split: dict, n_grid: int, box_size: float | None) -> dict[str, Cube]:
    """The validation and test cubes in voxels, each inside the grid, sharing no voxel;
    {} when they are given in Mpc/h and the box size is not known yet."""
    units = split["units"]
    if units == "Mpc/h" and box_size is None:
        return {}
    per_unit = voxels_per_unit(units, n_grid, box_size or float(n_grid))  # the box size matters for Mpc/h only
    cubes = {}
    for name in ("validation", "test"):
        size = split[name]["size"]
        if not 1 <= round(size * per_unit) <= n_grid:
            raise ConfigError(
                f"split.{name}.size: {size:g} {UNIT_NAMES[units]} (split.units: {units}) is "
                f"{round(size * per_unit)} voxels of the {n_grid}^3 grid; allowed: "
                f"{0.5 / per_unit:.4g} to {n_grid / per_unit:.4g} {UNIT_NAMES[units]} (1 to {n_grid} voxels)")
        cubes[name] = resolve_cube(split[name], units, n_grid, box_size or float(n_grid))
    if cubes_overlap(cubes["validation"], cubes["test"], n_grid):
        raise ConfigError(
            f"split.validation and split.test overlap on the {n_grid}^3 grid (periodic): validation "
            f"{_describe(cubes['validation'])}, test {_describe(cubes['test'])} voxels; move split.test.start "
            f"or shrink a size so that no voxel is in both")
    return cubes


MAX_CALIBRATION_TILES = 1_000_000
"""Most tiles of split.calibration.block the grid may hold (the blocks are drawn from them)."""


def check_calibration(split: dict, cubes: dict[str, Cube], n_grid: int, box_size: float | None) -> None:
    """split.calibration: blocks of at least one voxel, not too many tiles, and enough of them
    outside both cubes for the fraction asked (the draw itself is the split's)."""
    calib = split.get("calibration", {})
    units, block_spec = split["units"], calib.get("block")
    if block_spec is not None and units == "Mpc/h" and box_size is None:
        return
    per_unit = voxels_per_unit(units, n_grid, box_size or float(n_grid))
    block = calibration_block(split, n_grid, box_size or float(n_grid))
    if not 1 <= block <= n_grid or (n_grid // block) ** 3 > MAX_CALIBRATION_TILES:
        smallest = n_grid / round(MAX_CALIBRATION_TILES ** (1 / 3))
        raise ConfigError(
            f"split.calibration.block: {block_spec:g} {UNIT_NAMES[units]} is {block} voxels of the {n_grid}^3 grid; "
            f"allowed: {math.ceil(smallest) / per_unit:.4g} to {n_grid / per_unit:.4g} {UNIT_NAMES[units]}")
    try:
        calibration_blocks(n_grid, block, float(calib.get("fraction", 0.15)), list(cubes.values()), seed=0)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def check_patch(model: dict, train: dict, n_grid: int) -> None:
    """The network fits its patch exactly (at every train.capacity) and the patch fits the grid."""
    overrides = {k: v for k, v in model.items() if k != "preset"}
    try:
        cfgs = [model_config(model["preset"], capacity=c, outputs=head_outputs(train["objective"]), **overrides)
                for c in train["capacity"]]
    except ValueError as err:
        key = "model.patch" if str(err).startswith("patch") else "model"
        raise ConfigError(f"{key} (preset {model['preset']}): {err}") from err
    patch = cfgs[0]["patch"]
    if patch > n_grid:
        fitting = [p for p in valid_patches(cfgs[0], limit=20) if p <= n_grid][:5]
        raise ConfigError(
            f"model.patch: the {model['preset']} network's {patch}^3 patch is larger than the {n_grid}^3 grid "
            f"(grid.n_grid); patch sizes that fit this network and grid: {fitting or 'none'} "
            f"(or raise grid.n_grid to at least {patch})")


def check_painter(train: dict, paint: dict) -> None:
    """The galaxy painter (train.target galaxies) predicts a mean and a scatter per galaxy: it needs
    the unbiased objective's two-output head, and paints whole boxes in one job (no paint.slabs)."""
    if train["target"] != "galaxies":
        return
    if train["objective"] != "unbiased":
        raise ConfigError(f"train.objective: {train['objective']!r} is the voxel painter's (the paper's); the galaxy "
                          f"painter (train.target galaxies) needs 'unbiased', or set train.target: voxels")
    if paint["slabs"] > 1:
        raise ConfigError(f"paint.slabs: {paint['slabs']} slab jobs are the voxel painter's; the galaxy painter "
                          f"(train.target galaxies) paints a box's catalogue in one job: set paint.slabs: 1")


def check_k(stats: dict, cube_box: float, cube_n: int) -> None:
    """k_range, k_split, r_at_k and every bispectrum triangle within what the test cube (`cube_box`
    Mpc/h on `cube_n`^3 voxels) resolves: above its fundamental mode, below its Nyquist frequency."""
    kf, knyq = 2 * math.pi / cube_box, math.pi * cube_n / cube_box
    cube = f"the test cube ({cube_box:.4g} Mpc/h on {cube_n}^3 voxels: k_F {kf:.3g}, k_Nyquist {knyq:.3g} h/Mpc)"
    k_min, k_max = stats["k_range"]
    if not (k_min < k_max <= knyq and k_max > kf):
        raise ConfigError(f"stats.k_range: [{k_min:g}, {k_max:g}] h/Mpc must have k_min < k_max, "
                          f"with k_max between {kf:.3g} and {knyq:.3g} h/Mpc, for {cube}")
    if not k_min < stats["k_split"] < k_max:
        raise ConfigError(f"stats.k_split: {stats['k_split']:g} h/Mpc must lie inside stats.k_range "
                          f"[{k_min:g}, {k_max:g}] h/Mpc")
    if not kf <= stats["r_at_k"] <= knyq:
        raise ConfigError(f"stats.r_at_k: {stats['r_at_k']:g} h/Mpc must lie between {kf:.3g} and "
                          f"{knyq:.3g} h/Mpc, for {cube}")
    for i, (k1, k2) in enumerate(stats["bk"]["triangles"]):
        if not resolved(k1, k2, cube_box, cube_n):
            raise ConfigError(f"stats.bk.triangles[{i}]: [{k1:g}, {k2:g}] h/Mpc is not resolved by {cube}: "
                              f"k1 and k2 must be at least {2 * kf:.3g} and k1 + k2 at most {knyq - kf:.3g} h/Mpc")


def check_api_key(config: dict, missing: list[str], environ: Mapping[str, str]) -> None:
    """`source: tng` with runs still to download (`missing`, their directories) needs the key."""
    if config["acquire"]["source"] == "tng" and missing and not environ.get(KEY_ENV):
        raise ConfigError(
            f"acquire.source is tng and {' and '.join(missing)} still to be downloaded, but {KEY_ENV} is not set: "
            f"export {KEY_ENV}=<your key from https://www.tng-project.org/users/profile/> in this shell "
            f"(the key is read from the environment only, never from config)")
