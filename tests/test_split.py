"""Split: cube geometry, training voxels, weights and normalisation against brute force."""

import json

import numpy as np
import pytest

from dm2gal.split import Cube, cubes_overlap, input_weights, resolve_cube, run_split, sample_weights, slab_mask
from toy_universe import write_toy

SPLIT_CFG = dict(units="box", validation=dict(start=[0.0, 0.0, 0.0], size=0.41),
                 test=dict(start=[0.5, 0.5, 0.5], size=0.41), min_stellar_mass=1e8, weight_bins=100,
                 weight_max_mass=10 ** 11.5, halo_mass_field="Group_M_Crit200", weight_by="subhalo_mass")


def test_cube_units_agree_and_reproduce_the_papers_tng100_cubes():
    # TNG100: 75 Mpc/h on 2048^3; the paper's cubes are 840^3 (30.76 Mpc/h) and 868^3 (31.78 Mpc/h).
    assert resolve_cube({"start": [0, 0, 0], "size": 30.76}, "Mpc/h", 2048, 75.0).size == 840
    assert resolve_cube({"start": [0, 0, 0], "size": 31.78}, "Mpc/h", 2048, 75.0).size == 868
    a = resolve_cube({"start": [10, 20, 127], "size": 52}, "voxels", 128, 40.0)
    b = resolve_cube({"start": [3.125, 6.25, 39.6875], "size": 16.25}, "Mpc/h", 128, 40.0)
    c = resolve_cube({"start": [10 / 128, 20 / 128, 127 / 128], "size": 52 / 128}, "box", 128, 40.0)
    assert a == b == c == Cube((10, 20, 127), 52)
    with pytest.raises(ValueError, match="size"):
        resolve_cube({"start": [0, 0, 0], "size": 200}, "voxels", 128, 40.0)


def _voxels(cube: Cube, n: int) -> set:
    r = [range(s, s + cube.size) for s in cube.start]
    return {(x % n, y % n, z % n) for x in r[0] for y in r[1] for z in r[2]}


def test_overlap_and_masks_match_explicit_voxel_sets_with_periodic_wrap():
    n = 9
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    for _ in range(200):
        a = Cube(tuple(int(v) for v in rng.integers(0, n, 3)), int(rng.integers(1, 6)))
        b = Cube(tuple(int(v) for v in rng.integers(0, n, 3)), int(rng.integers(1, 6)))
        va, vb = _voxels(a, n), _voxels(b, n)
        assert cubes_overlap(a, b, n) == bool(va & vb)
        inside = {tuple(v) for v in grid[a.contains(grid, n)]}
        assert inside == va
        x0 = int(rng.integers(0, n - 2))
        mask = slab_mask(a, x0, x0 + 3, n)
        assert {(x + x0, y, z) for x, y, z in zip(*np.nonzero(mask))} == {v for v in va if x0 <= v[0] < x0 + 3}


def test_weights_are_inverse_bin_counts_so_every_bin_is_drawn_equally():
    mstar = np.array([1.5e8, 1.6e8, 1.7e8, 5e9, 2e11, 1e13])  # 1e13 joins the last bin
    w, edges = sample_weights(mstar, 10, 1e8, 10 ** 11.5)
    assert len(edges) == 11 and np.isclose(edges[0], 8) and np.isclose(edges[-1], 11.5)
    raw = np.array([1 / 3, 1 / 3, 1 / 3, 1.0, 1 / 2, 1 / 2])
    assert np.allclose(w, raw / raw.mean())
    bins = np.clip(np.digitize(np.log10(mstar), edges) - 1, 0, 9)
    totals = [w[bins == b].sum() for b in np.unique(bins)]
    assert np.allclose(totals, totals[0])


def test_input_weights_draw_every_subhalo_mass_bin_equally_and_the_empty_voxels_as_one_bin():
    rng = np.random.default_rng(2)
    sub = np.where(rng.random(20_000) < 0.05, 0.0, 10 ** rng.exponential(0.5, 20_000) * 1e10)
    w, edges = input_weights(sub, 8)
    assert np.isclose(w.mean(), 1.0) and len(edges) == 9
    positive = sub > 0
    bins = np.where(positive, np.clip(np.digitize(np.log10(np.where(positive, sub, 1)), edges) - 1, 0, 7), 8)
    totals = np.bincount(bins, weights=w)
    occupied = np.bincount(bins) > 0
    assert np.allclose(totals[occupied], totals[occupied][0])  # every occupied bin, the empty one too
    assert np.all(w[~positive] == w[~positive][0])


def test_weight_power_interpolates_from_uniform_to_equal_total_per_bin():
    rng = np.random.default_rng(1)
    mstar = 10 ** (8 + rng.exponential(0.6, 5000))  # a falling mass function, e-fold per 0.6 dex
    bins = np.clip(np.digitize(np.log10(mstar), np.linspace(8, 11.5, 21)) - 1, 0, 19)
    uniform, _ = sample_weights(mstar, 20, 1e8, 10 ** 11.5, power=0.0)
    assert np.allclose(uniform, 1.0)
    paper, _ = sample_weights(mstar, 20, 1e8, 10 ** 11.5, power=1.0)
    assert np.array_equal(paper, sample_weights(mstar, 20, 1e8, 10 ** 11.5)[0])
    totals = np.array([paper[bins == b].sum() for b in np.unique(bins)])
    assert len(totals) > 10 and np.allclose(totals, totals[0])
    half, _ = sample_weights(mstar, 20, 1e8, 10 ** 11.5, power=0.5)
    counts = np.bincount(bins)[bins]
    assert np.allclose(half, counts ** -0.5 / np.mean(counts ** -0.5))
    # the heaviest bin's share of the draws grows with the power
    heavy = bins == bins.max()
    assert uniform[heavy].sum() < half[heavy].sum() < paper[heavy].sum()


@pytest.fixture(scope="module")
def toy_split(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("split")
    fields = write_toy(tmp / "results", tmp / "data", n=32, n_sub=800, seed=3)
    f = tmp / "results" / "fields"
    out = (tmp / "results" / "split" / "cubes.json", tmp / "results" / "split" / "train.npz")
    report = run_split(f / "dark/dm_mass.zarr", f / "dark/subhalo_mass.zarr", f / "hydro/stellar_mass.zarr",
                       tmp / "data/dark/output", tmp / "data/hydro/output", 99, SPLIT_CFG, *out)
    return fields, report, json.loads(out[0].read_text()), dict(np.load(out[1]))


def test_training_voxels_and_normalisation_match_brute_force(toy_split):
    fields, report, _, npz = toy_split
    n = 32
    val, test = Cube((0, 0, 0), 13), Cube((16, 16, 16), 13)  # 0.41 * 32 = 13.1 voxels
    assert report["validation"]["size"] == 13 and report["test"]["start"] == [16, 16, 16]
    grid = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    blocks = [Cube(tuple(int(v) for v in b[:3]), int(b[3])) for b in npz["calibration_blocks"]]
    assert blocks and not any(cubes_overlap(b, c, n) for b in blocks for c in (val, test))
    region = ~(val.contains(grid, n) | test.contains(grid, n))
    for b in blocks:  # the calibration blocks are held out from training and its statistics
        region &= ~b.contains(grid, n)
    ms = fields["stellar"].reshape(-1).astype(np.float64)
    want = {tuple(v) for v in grid[region & (ms > 1e8)]}
    assert {tuple(v) for v in npz["coords"]} == want and len(npz["coords"]) == len(want)
    got = fields["stellar"][tuple(npz["coords"].T)]
    assert np.allclose(npz["log_mstar"], np.log10(got), atol=1e-6)
    scale = fields["dm"].sum(dtype=np.float64) / n ** 3  # the mean matter mass per voxel
    assert np.allclose(npz["input_scale"], scale, rtol=1e-5)
    for c, key in enumerate(("dm", "subhalo")):
        v = np.log10(1 + fields[key].reshape(-1).astype(np.float64) / scale)[region]
        assert np.isclose(npz["input_mean"][c], v.mean()) and np.isclose(npz["input_std"][c], v.std())
    assert np.isclose(npz["target_mean"], np.log10(got).mean())
    # weights counted in the input subhalo mass need no importance weighting
    sub_at = fields["subhalo"][tuple(npz["coords"].T)].astype(np.float64)
    assert np.allclose(npz["weights"], input_weights(sub_at, SPLIT_CFG["weight_bins"])[0])
    assert str(npz["weight_by"]) == "subhalo_mass" and np.all(npz["importance"] == 1)
    vwant = {tuple(v) for v in grid[val.contains(grid, n) & (ms > 1e8)]}
    assert {tuple(v) for v in npz["val_coords"]} == vwant


def test_a_training_universe_adds_its_whole_box_on_the_stacked_grid(toy_split, tmp_path):
    """split.training_universes: every voxel of the other box above the threshold joins the
    training voxels at x + n (the stacked grid PatchSource.from_boxes cuts from), the input
    statistics are those of both regions together, the weights are counted over both, and the
    cubes, validation voxels and calibration blocks stay the training pair's."""
    fields, _, _, npz = toy_split
    n = 32
    other = write_toy(tmp_path / "other", tmp_path / "other_data", n=32, n_sub=800, seed=4)
    f, o = tmp_path / "pair", tmp_path / "other" / "fields"
    pair = write_toy(f, tmp_path / "data", n=32, n_sub=800, seed=3)
    out = (tmp_path / "cubes.json", tmp_path / "train.npz")
    report = run_split(f / "fields/dark/dm_mass.zarr", f / "fields/dark/subhalo_mass.zarr",
                       f / "fields/hydro/stellar_mass.zarr", tmp_path / "data/dark/output",
                       tmp_path / "data/hydro/output", 99, SPLIT_CFG, *out,
                       extra_boxes=[(o / "dark/dm_mass.zarr", o / "dark/subhalo_mass.zarr",
                                     o / "hydro/stellar_mass.zarr")])
    both = dict(np.load(out[1]))
    assert all(np.array_equal(pair[k], fields[k]) for k in fields)  # the same pair as toy_split's
    assert int(both["training_boxes"]) == 2 and report["training_boxes"] == 2
    first = both["coords"][:, 0] < n
    assert np.array_equal(both["coords"][first], npz["coords"])
    grid = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    ms = other["stellar"].reshape(-1).astype(np.float64)
    assert {tuple(v) for v in both["coords"][~first] - [n, 0, 0]} == {tuple(v) for v in grid[ms > 1e8]}
    in_other = tuple((both["coords"][~first] - [n, 0, 0]).T)
    assert np.allclose(both["log_mstar"][~first], np.log10(other["stellar"][in_other]))
    region = np.ones(n ** 3, bool)
    for cube in [Cube((0, 0, 0), 13), Cube((16, 16, 16), 13)] + [Cube(tuple(int(v) for v in b[:3]), int(b[3]))
                                                                  for b in npz["calibration_blocks"]]:
        region &= ~cube.contains(grid, n)
    scale = float(npz["input_scale"][0])
    for c, key in enumerate(("dm", "subhalo")):
        v = np.concatenate([np.log10(1 + fields[key].reshape(-1).astype(np.float64) / scale)[region],
                            np.log10(1 + other[key].reshape(-1).astype(np.float64) / scale)])
        assert np.isclose(both["input_mean"][c], v.mean()) and np.isclose(both["input_std"][c], v.std())
    sub_at = np.concatenate([fields["subhalo"][tuple(npz["coords"].T)],
                             other["subhalo"][in_other]]).astype(np.float64)
    assert np.allclose(both["weights"], input_weights(sub_at, SPLIT_CFG["weight_bins"])[0])
    for key in ("val_coords", "val_log_mstar", "calibration_blocks", "input_scale"):
        assert np.array_equal(both[key], npz[key])
    write_toy(tmp_path / "coarse", tmp_path / "coarse_data", n=16, n_sub=100, seed=4)
    c = tmp_path / "coarse" / "fields"
    with pytest.raises(ValueError, match="training universe 1 .* is a 16.3 grid"):
        run_split(f / "fields/dark/dm_mass.zarr", f / "fields/dark/subhalo_mass.zarr",
                  f / "fields/hydro/stellar_mass.zarr", tmp_path / "data/dark/output", tmp_path / "data/hydro/output",
                  99, SPLIT_CFG, tmp_path / "c.json", tmp_path / "c.npz",
                  extra_boxes=[(c / "dark/dm_mass.zarr", c / "dark/subhalo_mass.zarr", c / "hydro/stellar_mass.zarr")])
    assert not (tmp_path / "c.npz").exists()  # nothing half-written


def test_cube_report_counts_galaxies_and_finds_the_most_massive_halo(toy_split):
    fields, _, cubes, _ = toy_split
    n, box = 32, 20.0
    for name, cube in (("validation", Cube((0, 0, 0), 13)), ("test", Cube((16, 16, 16), 13))):
        r = cubes[name]
        sl = tuple(slice(s, s + cube.size) for s in cube.start)
        ms = fields["stellar"][sl]
        assert r["galaxy_voxels"] == int((ms > 1e8).sum()) == r["galaxies"]  # one toy galaxy per voxel
        assert np.isclose(r["voxel_stellar_mass_range"][1], ms.max(), rtol=1e-6)
        assert np.isclose(r["side_mpc_h"], 13 * box / n)
        sub = fields["subhalo"][sl]
        assert np.isclose(r["most_massive_halo_dark"]["mass"], 0.8 * sub.max(), rtol=1e-5)
        assert np.isclose(r["mean_dm_density_over_box_mean"], fields["dm"][sl].mean() / fields["dm"].mean(),
                          rtol=1e-5)


def test_overlapping_cubes_are_refused(tmp_path):
    write_toy(tmp_path / "results", tmp_path / "data", n=16, n_sub=100)
    f = tmp_path / "results" / "fields"
    cfg = dict(SPLIT_CFG, test=dict(start=[0.3, 0.3, 0.3], size=0.41))
    with pytest.raises(ValueError, match="overlap"):
        run_split(f / "dark/dm_mass.zarr", f / "dark/subhalo_mass.zarr", f / "hydro/stellar_mass.zarr",
                  tmp_path / "data/dark/output", tmp_path / "data/hydro/output", 99, cfg,
                  tmp_path / "c.json", tmp_path / "t.npz")
    assert not (tmp_path / "c.json").exists()


def test_stellar_mass_weights_carry_their_importance_weights(tmp_path):
    """The paper's weighting (counted in the target's mass) stores mean(w) / w, which the
    unbiased objective multiplies each drawn sample's loss by."""
    write_toy(tmp_path / "results", tmp_path / "data", n=24, n_sub=400, seed=4)
    f = tmp_path / "results" / "fields"
    out = (tmp_path / "cubes.json", tmp_path / "train.npz")
    run_split(f / "dark/dm_mass.zarr", f / "dark/subhalo_mass.zarr", f / "hydro/stellar_mass.zarr",
              tmp_path / "data/dark/output", tmp_path / "data/hydro/output", 99,
              dict(SPLIT_CFG, weight_by="stellar_mass"), *out)
    npz = np.load(out[1])
    assert str(npz["weight_by"]) == "stellar_mass"
    assert np.allclose(npz["weights"], sample_weights(10.0 ** npz["log_mstar"].astype(np.float64), 100, 1e8,
                                                      10 ** 11.5)[0], rtol=1e-4)
    assert np.allclose(npz["importance"], npz["weights"].mean() / npz["weights"], rtol=1e-5)
