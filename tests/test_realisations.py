"""Realisations of a painted cube: one draw per gravity-only subhalo, mean preserved."""

import math

import numpy as np

from dm2gal.calibration import galaxy_groups
from dm2gal.realisations import draw, host_subhalos, realise

N, BOX = 16, 16.0  # 1 Mpc/h voxels


def test_each_voxel_takes_the_subhalo_with_the_largest_cic_share():
    # subhalo 0 sits at a voxel centre's corner point (its cloud: 8 voxels); subhalo 1, ten times
    # lighter, shares one of them; voxel (10, 10, 10) is reached by nobody; positions wrap.
    pos = np.array([[4.5, 4.5, 4.5], [5.2, 5.5, 5.5], [15.9, 0.3, 8.5]])
    mass = np.array([1e12, 1e11, 1e11])
    coords = np.array([[4, 4, 4], [5, 5, 5], [10, 10, 10], [15, 0, 8]])
    hosts = host_subhalos(coords, (0, 0, 0), N, BOX, pos, mass)
    assert hosts.tolist() == [0, 0, -1, 2]
    alone = host_subhalos(np.array([[5, 6, 6]]), (0, 0, 0), N, BOX, pos, mass)
    assert alone.tolist() == [1]  # only subhalo 1 reaches (5, 6, 6)
    # cube-local coordinates are offsets from the origin, periodic
    assert host_subhalos(np.array([[1, 2, 0]]), (14, 14, 8), N, BOX, pos, mass).tolist() == [2]


def test_draws_keep_the_mean_and_are_coherent_within_a_host():
    rng = np.random.default_rng(0)
    mean = np.full(4, 1e10)
    sigma = np.full(4, 0.3)
    galaxies = galaxy_groups(np.array([7, 7, 3, -1]))
    samples = np.array([draw(mean, sigma, galaxies, rng) for _ in range(40_000)])
    ratio = samples.mean(axis=0) / mean
    err = np.sqrt(math.exp((math.log(10) * 0.3) ** 2) - 1) / np.sqrt(len(samples))
    assert np.all(np.abs(ratio - 1) < 5 * err)
    logs = np.log10(samples)
    assert np.allclose(logs[:, 0], logs[:, 1])  # one galaxy, one draw
    c = np.corrcoef(logs.T)
    assert abs(c[0, 2]) < 0.03 and abs(c[2, 3]) < 0.03
    assert np.isclose(logs[:, 2].std(), 0.3, rtol=0.03)


def test_realise_is_reproducible_and_paints_only_painted_voxels():
    mean = np.zeros((N,) * 3, np.float32)
    mean[4, 4, 4] = mean[5, 5, 5] = 1e10
    sigma = np.where(mean > 0, 0.2, 0.0).astype(np.float32)
    pos, mass = np.array([[4.5, 4.5, 4.5]]), np.array([1e12])
    a = list(realise(mean, sigma, (0, 0, 0), N, BOX, pos, mass, 3, seed=11))
    b = list(realise(mean, sigma, (0, 0, 0), N, BOX, pos, mass, 3, seed=11))
    assert len(a) == 3 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(np.count_nonzero(x) == 2 for x in a)
    assert not np.array_equal(a[0], a[1])
    # both voxels belong to the one subhalo: the same factor in each realisation
    assert all(np.isclose(x[4, 4, 4], x[5, 5, 5]) for x in a)


def test_the_galaxy_scatter_factor_scales_each_galaxys_draw_by_its_painted_mass():
    mean = np.zeros((N,) * 3, np.float32)
    mean[4, 4, 4], mean[10, 10, 10] = 1e9, 1e11
    sigma = np.where(mean > 0, 0.4, 0.0).astype(np.float32)
    pos, mass = np.array([[4.5, 4.5, 4.5], [10.5, 10.5, 10.5]]), np.array([1e12, 1e13])
    knots = ([9.0, 11.0], [1.0, 0.5])
    draws = np.array([(x[4, 4, 4], x[10, 10, 10]) for x in realise(mean, sigma, (0, 0, 0), N, BOX, pos, mass,
                                                                  4000, seed=3, galaxy_scatter_knots=knots)])
    assert np.allclose(np.log10(draws).std(axis=0), [0.4, 0.2], rtol=0.05)


def test_a_galaxys_total_takes_the_galaxy_scatter_and_its_voxels_the_rest():
    # one subhalo's 8-voxel cloud, voxel scatter 0.4 dex, galaxy scatter factor 0.5: the galaxy's
    # total scatters by 0.2 dex; each voxel's share of it by the rest, sqrt(0.4^2 - 0.2^2), less
    # what renormalising eight equal shares takes back (1/8 of its variance)
    mean = np.zeros((N,) * 3, np.float32)
    mean[4:6, 4:6, 4:6] = 1e10
    sigma = np.where(mean > 0, 0.4, 0.0).astype(np.float32)
    pos, mass = np.array([[4.5, 4.5, 4.5]]), np.array([1e12])
    draws = np.array([x[4:6, 4:6, 4:6].reshape(-1) for x in realise(
        mean, sigma, (0, 0, 0), N, BOX, pos, mass, 4000, seed=5, galaxy_scatter_knots=([9.0, 12.0], [0.5, 0.5]))])
    assert np.isclose(np.log10(draws.sum(axis=1)).std(), 0.2, rtol=0.05)
    expected = math.sqrt(0.2 ** 2 + (0.4 ** 2 - 0.2 ** 2) * 7 / 8)
    assert np.allclose(np.log10(draws).std(axis=0), expected, rtol=0.06)
    assert abs(np.corrcoef(np.log10(draws[:, :2]).T)[0, 1]) < 0.5  # voxels no longer move as one
    # the mean of every voxel is kept
    err = draws.std(axis=0) / math.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - 1e10) < 5 * err)


def test_a_galaxy_deposited_painting_draws_each_galaxy_as_one_object():
    """After `dm2gal.galaxy_deposit.deposit` every voxel of a galaxy holds the galaxy's scatter
    and no knots are left to apply: each draw multiplies a galaxy's CIC cloud by one factor,
    whose log10 scatters as the galaxy's, and the voxels of no host draw alone."""
    from dm2gal.galaxy_deposit import deposit

    pos = np.array([[4.3, 4.6, 4.2], [11.6, 11.3, 11.8]])  # two subhalos off the grid points
    mass = np.array([1e12, 1e12])
    coords = np.array([[4, 4, 4], [4, 5, 4], [11, 11, 11], [3, 3, 12]])  # the last: no host
    mean, sigma = np.array([6e10, 4e10, 1e10, 2e9]), np.array([0.3, 0.3, 0.25, 0.4])
    hosts = host_subhalos(coords, (0, 0, 0), N, BOX, pos, mass)
    assert hosts.tolist() == [0, 0, 1, -1]
    new_coords, new_mass, new_sigma = deposit(coords, mean, sigma, hosts, pos, (0, 0, 0), N, BOX, N)
    mean_cube, sigma_cube = np.zeros((N,) * 3), np.zeros((N,) * 3)
    mean_cube[tuple(new_coords.T)], sigma_cube[tuple(new_coords.T)] = new_mass, new_sigma
    cloud_a = new_sigma == 0.3
    assert cloud_a.sum() == 8 and np.isclose(new_mass[cloud_a].sum(), 1e11)
    draws = np.array(list(realise(mean_cube, sigma_cube, (0, 0, 0), N, BOX, pos, mass, 2000, seed=5)))
    ratio = draws[:, new_coords[:, 0], new_coords[:, 1], new_coords[:, 2]] / new_mass
    for galaxy in (cloud_a, new_sigma == 0.25):
        assert np.allclose(ratio[:, galaxy], ratio[:, galaxy][:, :1], rtol=1e-5)  # one factor per galaxy
    assert np.isclose(np.log10(ratio[:, cloud_a][:, 0]).std(), 0.3, rtol=0.05)
    lone = np.all(new_coords == [3, 3, 12], axis=1)
    assert np.isclose(np.log10(ratio[:, lone][:, 0]).std(), 0.4, rtol=0.05)
