"""Known answers of the painter's calibration (dm2gal.calibration) and of its held-out blocks."""

import math

import numpy as np
import pytest

from dm2gal.calibration import Calibration, fit, mass_bins
from dm2gal.inference import decode
from dm2gal.split import Cube, calibration_blocks, cubes_overlap

LN10 = math.log(10.0)


def _voxels(rng, n, scatter=0.3, tilt=0.4, predicted_scatter=0.3, empty=0.2):
    """A painter whose log mean is too heavy by tilt * (log m - 9) above 10^9 Msun/h, with a
    fraction `empty` of painted voxels empty in the truth; truth log-normal about the mean."""
    log_mean = rng.uniform(8.5, 11.5, n)  # log10 of the true E[M*] of occupied voxels
    truth = 10 ** (log_mean + scatter * rng.standard_normal(n) - 0.5 * LN10 * scatter ** 2)
    truth[rng.random(n) < empty] = 0.0
    log_painted = log_mean + tilt * np.clip(log_mean - 9.0, 0.0, None) + np.log10(1.0 - empty)
    sigma = np.full(n, predicted_scatter)
    mu = log_painted - 0.5 * LN10 * sigma ** 2
    return 10 ** log_painted, mu, sigma, truth


def _bin_ratios(painted, truth, edges):
    b = np.digitize(np.log10(painted), edges)
    return np.array([truth[b == i].sum() / painted[b == i].sum() for i in range(1, len(edges))])


def test_calibration_removes_a_tilt_on_fresh_voxels():
    rng = np.random.default_rng(1)
    cal = fit(*_voxels(rng, 40_000), min_mass=0.0, min_galaxies=400)
    painted, mu, sigma, truth = _voxels(rng, 200_000)
    edges = np.arange(8.5, 12.6, 0.5)
    before = _bin_ratios(painted, truth, edges)
    after = _bin_ratios(cal.mean_mass(painted), truth, np.arange(8.5, 11.6, 0.5))
    assert np.abs(np.log10(before)).max() > 0.5  # the tilt is there to remove: the test can fail
    np.testing.assert_allclose(after, 1.0, atol=0.06)


def test_calibrated_mass_is_monotone_and_consistent_with_its_lognormal():
    rng = np.random.default_rng(2)
    painted, mu, sigma, truth = _voxels(rng, 20_000)
    cal = fit(painted, mu, sigma, truth, min_galaxies=200)
    grid = np.logspace(7, 13, 500)
    mass = cal.mean_mass(grid)
    assert np.all(np.diff(mass) >= -1e-12 * mass[1:])  # isotonic: ties give flat steps, never a fall
    mu_c, sigma_c = cal.apply(mu, sigma)
    np.testing.assert_allclose(10 ** (mu_c + 0.5 * LN10 * sigma_c ** 2), cal.mean_mass(painted), rtol=1e-10)


@pytest.mark.parametrize("predicted", [0.2, 0.45])
def test_scatter_factor_matches_the_true_scatter(predicted):
    rng = np.random.default_rng(3)
    cal = fit(*_voxels(rng, 50_000, scatter=0.3, predicted_scatter=predicted, empty=0.0, tilt=0.0))
    assert cal.scatter_factor == pytest.approx(0.3 / predicted, rel=0.05)


def test_mass_bins_hold_the_requested_occupied_voxels_from_the_top():
    rng = np.random.default_rng(4)
    x = rng.uniform(8, 12, 1000)
    occupied = rng.random(1000) < 0.5
    b = mass_bins(x, occupied, 50)
    counts = np.bincount(b, weights=occupied)
    assert np.all(counts[1:] == 50) and counts[0] >= 50
    order = np.argsort(x)
    assert np.all(np.diff(b[order]) >= 0)  # bins increase with mass


def test_beyond_the_calibrated_range_the_mass_is_held_at_its_top():
    """A painting heavier than any calibration voxel's is calibrated as the heaviest one."""
    rng = np.random.default_rng(6)
    painted, mu, sigma, truth = _voxels(rng, 20_000)
    cal = fit(painted, mu, sigma, truth, min_galaxies=200)
    top = 10 ** cal.log10_max_painted
    assert cal.log10_max_painted == pytest.approx(np.log10(painted.max()))
    np.testing.assert_allclose(cal.mean_mass(np.array([top, 10 * top, 1e4 * top])), cal.mean_mass(np.array([top]))[0])
    assert cal.mean_mass(np.array([1e-3 * top]))[0] < cal.mean_mass(np.array([top]))[0]


def test_too_few_calibration_voxels_name_the_key():
    rng = np.random.default_rng(5)
    with pytest.raises(ValueError, match="split.calibration.fraction"):
        fit(*_voxels(rng, 50), min_galaxies=100)


def test_decode_applies_a_stored_calibration():
    norm = {"target_mean": 9.0, "target_std": 1.0}
    raw = np.array([[0.0, 2.0], [np.log(0.3), np.log(0.3)]])
    cal = Calibration((9.0, 11.0), (0.0, -0.5), 0.5, 11.5)
    plain = decode(raw, norm)
    calibrated = decode(raw, {**norm, "calibration": cal.as_dict()})
    np.testing.assert_allclose(calibrated.mean_mass(), cal.mean_mass(plain.mean_mass()))
    np.testing.assert_allclose(calibrated.sigma, 0.5 * plain.sigma)
    assert Calibration.from_dict(cal.as_dict()) == cal


def test_calibration_blocks_avoid_the_cubes_and_hold_the_fraction():
    cubes = [Cube((10, 20, 30), 52), Cube((100, 0, 90), 52)]
    blocks = calibration_blocks(128, 16, 0.15, cubes, seed=7)
    assert len(blocks) == round(0.15 * 128 ** 3 / 16 ** 3)
    assert not any(cubes_overlap(b, c, 128) for b in blocks for c in cubes)
    assert len({b.start for b in blocks}) == len(blocks)
    assert blocks == calibration_blocks(128, 16, 0.15, cubes, seed=7)
    assert blocks != calibration_blocks(128, 16, 0.15, cubes, seed=8)
    assert calibration_blocks(128, 16, 0.0, cubes, seed=7) == []
    with pytest.raises(ValueError, match="split.calibration.fraction"):
        calibration_blocks(128, 16, 0.5, [Cube((0, 0, 0), 100)], seed=7)


def galaxies_split_among_voxels(rng, n_galaxies: int, scatter: float, share_noise: float):
    """Calibration voxels of `n_galaxies` galaxies of 4 CIC voxels each: painted means P_g f_v,
    true masses T_g f_v e_v with T_g = P_g 10^(scatter z - ln10 scatter^2 / 2) and a
    log-normal share error e_v of `share_noise` dex (mean kept) that cancels in the sum."""
    painted_g = 10.0 ** rng.uniform(8.5, 11.0, n_galaxies)
    true_g = painted_g * 10.0 ** (scatter * rng.standard_normal(n_galaxies) - 0.5 * np.log(10) * scatter ** 2)
    share = rng.dirichlet(np.ones(4), n_galaxies)
    noisy = share * 10.0 ** (share_noise * rng.standard_normal((n_galaxies, 4)))
    noisy /= noisy.sum(axis=1, keepdims=True)
    hosts = np.repeat(np.arange(n_galaxies), 4)
    return (painted_g[:, None] * share).ravel(), (true_g[:, None] * noisy).ravel(), hosts


def test_galaxy_scatter_factor_recovers_the_galaxies_scatter_not_the_voxels():
    from dm2gal.calibration import fit_galaxies

    rng = np.random.default_rng(5)
    mean, truth, hosts = galaxies_split_among_voxels(rng, 4000, scatter=0.25, share_noise=0.3)
    voxel_sigma = np.full(len(mean), 0.4)  # what a voxel-level fit says: galaxy and share scatter
    fitted = fit_galaxies(mean, voxel_sigma, truth, hosts, min_galaxies=1000)
    assert len(fitted["galaxy_log10_mass"]) == 4 and np.all(np.diff(fitted["galaxy_log10_mass"]) > 0)
    assert np.allclose(np.multiply(fitted["galaxy_scatter_factor"], 0.4), 0.25, rtol=0.06)
    assert np.allclose(fitted["galaxy_log10_ratio"], 0.0, atol=0.03)  # unbiased galaxies: nothing to correct
    # the voxel-level z (what scatter_factor measures) is wider: the share noise does not cancel
    z_voxel = (np.log10(truth / mean) + 0.5 * np.log(10) * 0.4 ** 2) / 0.4
    assert np.std(z_voxel) * 0.4 > 0.3
    # voxels of no host are galaxies alone: no cancellation, the factor says so
    alone = fit_galaxies(mean, voxel_sigma, truth, np.full(len(mean), -1), min_galaxies=1000)
    assert np.all(np.multiply(alone["galaxy_scatter_factor"], 0.4) > 0.3)


def test_galaxy_calibration_removes_a_tilt_of_heavy_galaxies_and_follows_their_scatter():
    """Galaxies painted 1.5x too heavy above 10^10 with a scatter of 0.1 dex there (0.3 below):
    the fitted galaxy calibration brings summed mass per bin to the truth on fresh galaxies
    within 8 % (3 sigma of the fit's bins of 1000 galaxies and the test bins' own draw), and
    its scatter factor follows the shrinking scatter."""
    from dm2gal.calibration import Calibration, fit_galaxies, galaxy_groups

    def universe(seed):
        rng = np.random.default_rng(seed)
        mean, truth, hosts = galaxies_split_among_voxels(rng, 20000, scatter=0.0, share_noise=0.0)
        painted_g = np.bincount(hosts, weights=mean)
        heavy = painted_g > 1e10
        s = np.where(heavy, 0.1, 0.3)
        truth = truth * (np.where(heavy, 1 / 1.5, 1.0) * 10.0 ** (s * rng.standard_normal(len(s)) -
                                                                  0.5 * np.log(10) * s ** 2))[hosts]
        return mean, truth, hosts

    mean, truth, hosts = universe(6)
    fitted = fit_galaxies(mean, np.full(len(mean), 0.3), truth, hosts, min_galaxies=1000)
    knots, factors = np.array(fitted["galaxy_log10_mass"]), np.array(fitted["galaxy_scatter_factor"])
    assert np.allclose(factors[knots < 9.8], 1.0, rtol=0.12)
    assert np.allclose(factors[knots > 10.3], 1 / 3, rtol=0.15)
    cal = Calibration((8.0, 12.0), (0.0, 0.0), 1.0, 12.0, **fitted)
    mean, truth, hosts = universe(7)
    g = galaxy_groups(hosts)
    calibrated = cal.calibrate_galaxies(mean, g)
    painted_g, true_g = np.bincount(g, weights=calibrated), np.bincount(g, weights=truth)
    raw_g = np.bincount(g, weights=mean)
    for lo, hi in ((8.5, 9.2), (9.2, 9.7), (10.3, 10.6), (10.6, 11.0)):  # away from the step at 10^10
        b = (np.log10(raw_g) >= lo) & (np.log10(raw_g) < hi)
        assert abs(painted_g[b].sum() / true_g[b].sum() - 1) < 0.08, (lo, hi)
    heavy = np.log10(raw_g) > 10.3
    assert raw_g[heavy].sum() / true_g[heavy].sum() > 1.4  # what the calibration had to remove
    # the realisations' knots sit at the calibrated galaxy mass
    log_cal, f = cal.galaxy_scatter_knots()
    assert np.allclose(log_cal, knots + np.array(fitted["galaxy_log10_ratio"])) and f == list(factors)
