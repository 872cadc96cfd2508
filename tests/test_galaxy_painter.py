"""The galaxy painter (train.target galaxies): samples, calibration, training, painting, realisations."""

import math

import numpy as np
import pytest
import torch

from dm2gal import paint
from dm2gal.calibration import fit_galaxy_painter
from dm2gal.catalogue import read_catalogue
from dm2gal.cic import deposit_cube
from dm2gal.fields import read_field
from dm2gal.galaxy_samples import ROLES, matched_masses, sample_roles, write_galaxy_samples
from dm2gal.inference import Prediction, load_model
from dm2gal.model import model_config
from dm2gal.realisations import write_realisations
from dm2gal.sampler import with_query
from dm2gal.split import Cube, SplitCubes, run_split
from dm2gal.train import fit, load_galaxy_training_data
from toy_universe import write_toy

SPLIT_CFG = dict(units="box", validation=dict(start=[0.0, 0.0, 0.0], size=0.41),
                 test=dict(start=[0.5, 0.5, 0.5], size=0.41), min_stellar_mass=1e8, weight_bins=30,
                 weight_max_mass=10 ** 11.5, halo_mass_field="GroupMass", calibration=dict(fraction=0.15, block=None))


def test_hydro_galaxies_go_to_their_nearest_subhalo_across_the_periodic_edge():
    dark = np.array([[0.1, 5.0, 5.0], [5.0, 5.0, 5.0], [9.0, 9.0, 9.0]])
    hydro = np.array([[9.95, 5.0, 5.0], [5.2, 5.0, 4.9], [5.0, 5.1, 5.0], [8.0, 8.0, 8.0]])
    (mass, ideal), farthest = matched_masses(dark, hydro, [np.array([1.0, 2.0, 4.0, 8.0]), np.ones(4)], 10.0)
    # the first sits 0.15 Mpc/h from subhalo 0 through the edge, 9.85 away without the wrap
    assert mass.tolist() == [1.0, 6.0, 8.0] and ideal.tolist() == [1.0, 2.0, 1.0]
    assert farthest == pytest.approx(math.sqrt(3.0))


def test_samples_take_the_role_of_the_cube_or_block_holding_their_voxel():
    cubes = SplitCubes(Cube((0, 0, 0), 4), Cube((8, 8, 8), 4), 1e8)
    voxel = np.array([[1, 1, 1], [15, 0, 0], [9, 9, 11], [5, 5, 5], [6, 12, 12]])
    roles = sample_roles(voxel, cubes, np.array([[4, 4, 4, 2], [4, 12, 12, 4]]), 16)
    assert roles.tolist() == [ROLES["validation"], ROLES["train"], ROLES["test"], ROLES["calibration"],
                              ROLES["calibration"]]


def test_query_channels_hold_the_query_at_the_centre_voxel_only():
    x = torch.randn(2, 2, 5, 5, 5)
    out = with_query(x, torch.tensor([[1.5, -2.0], [0.5, 3.0]]))
    assert out.shape == (2, 4, 5, 5, 5) and torch.equal(out[:, :2], x)
    assert out[1, 3, 2, 2, 2] == 3.0 and out[:, 2:].abs().sum() == pytest.approx(7.0)
    assert with_query(x, None) is x


def shrunk_predictions(rng, n, k_of_x=lambda x: 1.3, empty=0.05):
    """A network shrunk towards 10^10: mu = 10.1 + 0.8 (x - 10) for true log10 medians x, its
    scatter sigma; truths log-normal about x with scatter k(x) sigma, a share `empty` of them 0."""
    x, sigma = rng.uniform(8.5, 11.5, n), rng.uniform(0.1, 0.3, n)
    truth = 10 ** (x + k_of_x(x) * sigma * rng.standard_normal(n))
    return 10.1 + 0.8 * (x - 10.0), sigma, np.where(rng.random(n) < empty, 0.0, truth)


def test_the_calibration_recovers_a_known_line_scatter_and_mass_factor():
    """A shrunk network: the fit gives the inverse line, the scatter factor and the occupied
    share back, and on new subhalos the summed truth over the summed painted mass is 1 in every
    bin of painted mass, where the uncalibrated network is off by up to 0.3 dex."""
    rng = np.random.default_rng(3)
    mu, sigma, truth = shrunk_predictions(rng, 100_000)
    cal = fit_galaxy_painter(mu, sigma, truth)
    a, b = cal.log10_line  # the inverse of the shrinkage, x = 10 + (mu - 10.1) / 0.8
    assert b == pytest.approx(1 / 0.8, abs=0.01) and a + b * np.array([9.1, 10.1, 10.9]) == pytest.approx(
        [8.75, 10.0, 11.0], abs=0.01)
    assert cal.scatter_factor == pytest.approx(1.3, abs=0.01)
    assert 10 ** cal.log10_ratio[0] == pytest.approx(0.95, abs=0.005)  # the subhalos with a galaxy
    assert len(cal.scatter_factors) == int((truth > 0).sum()) // 100  # bins of min_galaxies, from the heaviest down
    per_bin = fit_galaxy_painter(mu, sigma, truth, min_galaxies=2000).scatter_factors
    assert np.allclose(per_bin, 1.3, atol=0.1)  # 0.1 is 5 standard errors of a std from 2000 draws
    # new subhalos: calibrated, sum T / sum P per bin of painted mass is 1; uncalibrated, it is not
    mu2, sigma2, truth2 = shrunk_predictions(np.random.default_rng(4), 100_000)
    calibrated, raw = Prediction(*cal.apply(mu2, sigma2)).mean_mass(), Prediction(mu2, sigma2).mean_mass()
    for painted, tolerance in ((calibrated, 0.05), (raw, None)):
        bins = np.digitize(np.log10(painted), [9.0, 9.5, 10.0, 10.5, 11.0])
        ratios = np.array([truth2[bins == b].sum() / painted[bins == b].sum() for b in range(6)])
        if tolerance:  # 0.05: the heaviest bin's sum rests on its tail of log-normals 0.4 dex wide
            assert np.allclose(ratios, 1.0, atol=tolerance), ratios
        else:
            assert np.abs(np.log10(ratios)).max() > 0.3, ratios
    # a true scatter that falls with mass: the binned factors follow it
    mu3, sigma3, falling = shrunk_predictions(rng, 100_000, lambda x: np.where(x < 10.0, 1.2, 0.8), empty=0.0)
    binned = fit_galaxy_painter(mu3, sigma3, falling, min_galaxies=5000)
    knots, factors = np.array(binned.scatter_log10_mass), np.array(binned.scatter_factors)
    assert np.allclose(factors[knots < 9.6], 1.2, atol=0.04) and np.allclose(factors[knots > 10.5], 0.8, atol=0.04)
    line_mu = np.polyval(binned.log10_line[::-1], np.array([9.1, 10.9]))  # x = 8.75 and 11
    _, drawn_sigma = binned.apply(np.array([9.1, 10.9]), np.array([0.2, 0.2]))
    assert drawn_sigma == pytest.approx(0.2 * np.interp(line_mu + 0.5 * math.log(10) * 0.04, knots, factors))
    assert drawn_sigma == pytest.approx([0.24, 0.16], abs=0.015)
    # decoded through the checkpoint's calibration: the line's log-normal times the mass factor
    mu_cal, sigma_cal = cal.apply(mu[:5], sigma[:5])
    assert mu_cal == pytest.approx(cal.log10_line[0] + cal.log10_line[1] * mu[:5] + cal.log10_ratio[0])
    with pytest.raises(ValueError, match="calibration blocks hold 2 galaxies"):
        fit_galaxy_painter(mu[:2], sigma[:2], truth[:2] + 1.0)
    with pytest.raises(ValueError, match="does not rise with the prediction"):
        fit_galaxy_painter(mu[:500], sigma[:500], 10 ** (20.0 - mu[:500]))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The galaxy painter trained on the toy universe, whose stellar mass is a function of the
    subhalo's mass and of the smoothed density around it (tests/toy_universe.py)."""
    tmp = tmp_path_factory.mktemp("galaxies")
    write_toy(tmp / "results", tmp / "data", n=40, n_sub=1800, seed=5)
    f, s = tmp / "results/fields", tmp / "results/split"
    paths = [f / "dark/dm_mass.zarr", f / "dark/subhalo_mass.zarr", f / "hydro/stellar_mass.zarr"]
    run_split(*paths, tmp / "data/dark/output", tmp / "data/hydro/output", 99, SPLIT_CFG, s / "cubes.json",
              s / "train.npz")
    write_galaxy_samples(s / "galaxies.npz", tmp / "data/dark/output", tmp / "data/hydro/output", 99,
                         s / "cubes.json", s / "train.npz")
    data = load_galaxy_training_data(*paths, s / "train.npz", s / "galaxies.npz", s / "cubes.json", "group", 30, 0.5)
    torch.set_num_threads(1)
    ckpt, history = tmp / "results/train/best.ckpt", tmp / "results/train/history.csv"
    fit(data, model_config("small", outputs=2, query_channels=3), learning_rate=3e-3, weight_decay=1e-5,
        batch_size=32, steps_per_epoch=40, max_epochs=4, seed=1, selection=dict(mas="CIC", k_range=[0.5, 6.0]),
        ckpt_path=ckpt, history_path=history, progress=False, calibration_bin_voxels=20,
        extra_hparams={"capacity": 1.0, "target": "galaxies", "query": "group"})
    return tmp, paths, data, ckpt


def test_the_samples_are_the_catalogues_subhalos_with_their_matched_galaxies(trained):
    tmp, _, data, _ = trained
    samples = np.load(tmp / "results/split/galaxies.npz")
    # the toy's hydro subhalos sit on their twins: every subhalo has its own galaxy
    assert len(samples["role"]) == 1800 and (samples["stellar_mass"] > 0).sum() == 1800
    assert set(np.unique(samples["role"])) == set(ROLES.values())
    assert len(data.coords) == (samples["role"] == ROLES["train"]).sum()
    assert data.query.shape == (len(data.coords), 3) and np.all(data.query[:, 2] == 1.0)


def test_training_beats_the_mean_predictor_and_stores_the_query_and_calibration(trained):
    tmp, _, data, ckpt_path = trained
    rows = np.genfromtxt(tmp / "results/train/history.csv", delimiter=",", names=True)
    assert rows["val_mse"][-1] < 0.5 * rows["val_mse_mean_predictor"][-1]
    assert np.all(np.isfinite(rows["pk_error"]))
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert ckpt["model_config"]["in_channels"] == 5 and ckpt["hparams"]["target"] == "galaxies"
    assert len(ckpt["normalisation"]["query_mean"]) == 3
    cal = ckpt["calibration"]
    assert len(cal["log10_ratio"]) == 1 and 0.5 < 10 ** cal["log10_ratio"][0] <= 1 and cal["scatter_factor"] > 0
    assert len(cal["log10_line"]) == 2 and cal["log10_line"][1] > 0


def test_the_painting_is_its_catalogue_deposited_and_the_realisations_keep_its_mean(trained, tmp_path):
    tmp, paths, _, ckpt = trained
    split = tmp / "results/split"
    job = paint.Job(ckpt, paths[0], paths[1], paths[0], split / "cubes.json", "dark",
                    occupancy_json=None, subhalos=(tmp / "data/dark/output", 99), mode="oracle", truth_path=paths[2])
    # the galaxy painter paints every subhalo: no occupancy threshold
    honest = paint.Job(ckpt, paths[0], paths[1], paths[0], split / "cubes.json", "dark",
                       subhalos=(tmp / "data/dark/output", 99))
    settings = paint.Settings(device="cpu")
    out = {name: tmp_path / name for name in ("field.zarr", "scatter.zarr", "catalogue.hdf5")}
    paint.run(honest, out["field.zarr"], out_scatter=out["scatter.zarr"], out_catalogue=out["catalogue.hdf5"],
              settings=settings)
    field, attrs = read_field(out["field.zarr"])
    cols, cat_attrs = read_catalogue(out["catalogue.hdf5"])
    assert attrs["painter"] == "galaxies" and cat_attrs["painter"] == "galaxies"
    n, box = int(attrs["parent_n_grid"]), float(attrs["parent_box_size"])
    again = deposit_cube(cols["position"], cols["stellar_mass"], box, n, tuple(attrs["origin"]), field.shape[0])
    np.testing.assert_allclose(field, again, rtol=1e-6)
    scatter, _ = read_field(out["scatter.zarr"])
    assert np.all((scatter > 0) == (field > 0)) and scatter.max() <= cols["log10_scatter"].max() * (1 + 1e-5)
    # each galaxy painted from the checkpoint alone: its mean mass as the network and calibration give it
    net, norm = load_model(ckpt)
    assert cols["stellar_mass"].min() > 0 and "query_mean" in norm
    # the oracle paints a subset of the honest painter's subhalos
    paint.run(job, tmp_path / "oracle.zarr", settings=settings)
    oracle, oracle_attrs = read_field(tmp_path / "oracle.zarr")
    assert oracle_attrs["mode"] == "oracle" and 0 < oracle.sum() <= field.sum() * (1 + 1e-6)
    # realisations: every galaxy drawn whole; their mean over many draws is the painting
    draws = [tmp_path / f"r{i}.zarr" for i in range(40)]
    write_realisations(draws, out["field.zarr"], out["scatter.zarr"], str(tmp / "data/dark/output"), 99, 7,
                       out["catalogue.hdf5"])
    total = np.array([read_field(p)[0].sum(dtype=np.float64) for p in draws])
    spread = np.sqrt(np.sum((cols["stellar_mass"] ** 2) * (10 ** ((math.log(10) * cols["log10_scatter"] ** 2)) - 1)))
    # spread bounds the std of a draw's total in the cube (a galaxy at the edge puts only a share inside)
    assert abs(total.mean() - field.sum(dtype=np.float64)) < 4 * spread / math.sqrt(len(draws))
    assert np.std(total) > 0

