"""A config the pipeline cannot run with stops `snakemake -n` before any job, in a few lines
that name the key and what is allowed (issue 13): schema errors, and the checks of
dm2gal.config_checks that a schema cannot make."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from dm2gal.config_checks import check_api_key
from snakemake_run import prepare_workdir, snakemake

CASES = {
    "test cube larger than the box": (
        dict(split={"test": {"start": [0.1, 0.1, 0.1], "size": 2.0}}),
        "split.test.size: 2 box sides (split.units: box) is 128 voxels of the 64^3 grid; "
        "allowed: 0.007812 to 1 box sides (1 to 64 voxels)"),
    "cube in Mpc/h larger than the box": (
        dict(split={"units": "Mpc/h", "validation": {"start": [0, 0, 0], "size": 5},
                    "test": {"start": [10, 10, 10], "size": 30}}),
        "split.test.size: 30 Mpc/h (split.units: Mpc/h) is 77 voxels of the 64^3 grid; "
        "allowed: 0.1953 to 25 Mpc/h (1 to 64 voxels)"),
    "overlapping cubes": (
        dict(split={"test": {"start": [0.6, 0.3, 0.65], "size": 0.41}}),
        "split.validation and split.test overlap on the 64^3 grid (periodic): validation start (36, 16, 40), "
        "size 26, test start (38, 19, 42), size 26 voxels"),
    "calibration blocks of no voxel": (
        dict(split={"calibration": {"block": 0.001}}),
        "split.calibration.block: 0.001 box sides is 0 voxels of the 64^3 grid; allowed:"),
    "no room for the calibration blocks": (
        dict(split={"calibration": {"fraction": 0.5, "block": 0.5}}),
        "split.calibration.fraction 0.5 needs 4 blocks of 32^3 voxels, but only 0 lie outside the validation "
        "and test cubes"),
    "patch the network does not fit": (
        dict(model={"preset": "small", "patch": 23}),
        "model.patch (preset small): patch 23 does not fit the network exactly"),
    "patch larger than the grid": (
        dict(model={"preset": "paper"}),
        "model.patch: the paper network's 65^3 patch is larger than the 64^3 grid (grid.n_grid); "
        "patch sizes that fit this network and grid: [49, 57]"),
    "galaxy painter with the paper's objective": (
        dict(train={"objective": "paper"}),
        "train.objective: 'paper' is the voxel painter's (the paper's); the galaxy painter (train.target galaxies) "
        "needs 'unbiased', or set train.target: voxels"),
    "galaxy painter in slab jobs": (
        dict(paint={"slabs": 2}),
        "paint.slabs: 2 slab jobs are the voxel painter's; the galaxy painter (train.target galaxies) paints a "
        "box's catalogue in one job: set paint.slabs: 1"),
    "k range beyond Nyquist": (
        dict(stats={"k_range": [0.5, 20.0]}),
        "stats.k_range: [0.5, 20] h/Mpc must have k_min < k_max, with k_max between 0.619 and 8.04 h/Mpc, "
        "for the test cube (10.16 Mpc/h on 26^3 voxels: k_F 0.619, k_Nyquist 8.04 h/Mpc)"),
    "P(k) split outside the k range": (
        dict(stats={"k_split": 7.0}),
        "stats.k_split: 7 h/Mpc must lie inside stats.k_range [0.5, 6] h/Mpc"),
    "r(k) point below the fundamental mode": (
        dict(stats={"r_at_k": 0.1}),
        "stats.r_at_k: 0.1 h/Mpc must lie between 0.619 and 8.04 h/Mpc"),
    "unresolved triangle": (
        dict(stats={"bk": {"triangles": [[3.0, 4.0], [5.0, 6.0]]}}),
        "stats.bk.triangles[1]: [5, 6] h/Mpc is not resolved by the test cube"),
    "tng without its key": (
        dict(acquire={"source": "tng"}, evaluation={"universes": []}),
        "acquire.source is tng and data/tiny/dark and data/tiny/hydro still to be downloaded, "
        "but TNG_API_KEY is not set: export TNG_API_KEY="),
    "unknown key": (
        dict(grid={"n_gird": 64}),
        "unknown key grid.n_gird: did you mean grid.n_grid?"),
    "wrong value": (
        dict(grid={"method": "fft"}),
        "grid.method: 'fft' is not one of ['auto', 'box', 'slabs']"),
}


@pytest.mark.parametrize("overrides, message", CASES.values(), ids=CASES.keys())
def test_dry_run_stops_naming_the_key(tmp_path: Path, overrides: dict, message: str):
    env = {k: v for k, v in os.environ.items() if k != "TNG_API_KEY"}
    proc = snakemake(prepare_workdir(tmp_path, **overrides), "--dry-run", "all", env=env, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and message in out, out[-3000:]
    assert len(out.splitlines()) < 20, out  # the message and a short traceback, not the schema
    assert not (tmp_path / "results").exists() and not (tmp_path / "data").exists()


def test_key_is_needed_only_for_what_is_still_to_download():
    config = {"acquire": {"source": "tng"}}
    check_api_key(config, [], {})  # everything acquired already
    check_api_key(config, ["data/tng/dark"], {"TNG_API_KEY": "k"})
    check_api_key({"acquire": {"source": "synthetic"}}, ["data/mini/dark"], {})
