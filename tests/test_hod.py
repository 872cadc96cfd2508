"""The HOD benchmark: bins, central/satellite split and corrections against hand
computations; the stellar mass function against the truth; the cube deposit
against a whole-box Pylians deposit."""

import numpy as np
import pytest

from dm2gal import hod
from dm2gal.cic import deposit_cube


def hand_hydro():
    # halo: mass [Msun/h]; subhalos (stellar mass) with the central first
    # 0: 1e11 -> 1e8 (c), 0 (s)     1: 3e11 -> 5e8 (c)
    # 2: 2e12 -> 1e10 (c), 1e8, 2e8  3: 1e13 -> 5e10 (c), 1e9, 0, 3e9    4: 5e13, no subhalo
    return hod.Catalogue(
        halo_mass=np.array([1e11, 3e11, 2e12, 1e13, 5e13]),
        first_sub=np.array([0, 2, 3, 6, -1]),
        sub_halo=np.array([0, 0, 1, 2, 2, 2, 3, 3, 3, 3]),
        sub_stellar=np.array([1e8, 0, 5e8, 1e10, 1e8, 2e8, 5e10, 1e9, 0, 3e9]),
    )


def hand_dark():
    # 0: 2e11 (c + 2 s)  1: 8e11 (c)  2: 5e12 (c + 1 s)  3: 1e14 (c + 2 s, above range)
    # 4: 5e10 (c, below range); subhalos deliberately not sorted by halo
    return hod.Catalogue(
        halo_mass=np.array([2e11, 8e11, 5e12, 1e14, 5e10]),
        first_sub=np.array([0, 3, 4, 6, 9]),
        sub_halo=np.array([0, 0, 0, 1, 2, 2, 3, 3, 3, 4]),
        sub_pos=np.zeros((10, 3)),
    )


def test_bins_and_central_split_match_hand_values():
    h = hand_hydro()
    np.testing.assert_array_equal(hod.is_central(h), [1, 0, 1, 1, 0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(hod.satellite_counts(h), [1, 0, 2, 3, 0])
    model = hod.fit(h, n_bins=2, mass_min=1e11, mass_max=1e13)
    np.testing.assert_allclose(model.edges, [11, 12, 13])
    np.testing.assert_array_equal(sorted(model.centrals[0]), [1e8, 5e8])
    np.testing.assert_array_equal(sorted(model.satellites[0]), [0])
    np.testing.assert_array_equal(sorted(model.centrals[1]), [1e10, 5e10])
    np.testing.assert_array_equal(sorted(model.satellites[1]), [0, 1e8, 2e8, 1e9, 3e9])
    np.testing.assert_array_equal(model.n_halo, [2, 2])  # the halo without subhalos is not counted
    np.testing.assert_array_equal(model.n_sat, [1, 5])
    np.testing.assert_allclose(model.mass_sum, [4e11, 1.2e13])


def test_correction_factors_match_hand_values():
    model = hod.fit(hand_hydro(), n_bins=2, mass_min=1e11, mass_max=1e13)
    c = hod.corrections(model, hand_dark())
    # dark bin 0: halos 2e11, 8e11, 5e10 (clipped) with 2 satellites; bin 1: 5e12, 1e14 with 3
    np.testing.assert_array_equal(c["n_halo"], [3, 2])
    np.testing.assert_array_equal(c["n_sat"], [2, 3])
    np.testing.assert_allclose(c["sat_ratio"], [(1 / 2) / (2 / 3), (5 / 2) / (3 / 2)])
    np.testing.assert_allclose(c["mass_ratio"], [(4e11 / 2) / (1.05e12 / 3), (1.2e13 / 2) / (1.05e14 / 2)])


def test_samples_come_from_their_bin_and_class():
    model = hod.fit(hand_hydro(), n_bins=2, mass_min=1e11, mass_max=1e13)
    dark = hand_dark()
    out = hod.sample(model, dark, np.random.default_rng(0))
    np.testing.assert_array_equal(out["central"], [1, 0, 0, 1, 1, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(out["bin"], [0, 0, 0, 0, 1, 1, 1, 1, 1, 0])
    m = out["stellar_mass"]
    for i in np.flatnonzero(out["central"]):
        assert m[i] in model.centrals[out["bin"][i]]
    for i in np.flatnonzero(~out["central"]):
        b = out["bin"][i]
        raw = m[i] / (out["sat_ratio"][b] * out["mass_ratio"][b])
        assert np.isclose(model.satellites[b], raw, rtol=1e-12, atol=0).any()
    again = hod.sample(model, dark, np.random.default_rng(0))["stellar_mass"]
    np.testing.assert_array_equal(m, again)  # seeded


def test_empty_bin_draws_from_nearest_bin():
    model = hod.fit(hand_hydro(), n_bins=4, mass_min=1e11, mass_max=1e14)
    # edges 11, 11.75, 12.5, 13.25, 14: the last bin holds only the halo without subhalos
    assert [len(c) for c in model.centrals] == [2, 1, 1, 0]
    assert [len(s) for s in model.satellites] == [1, 2, 3, 0]
    dark = hod.Catalogue(halo_mass=np.array([5e13]), first_sub=np.array([0]),
                         sub_halo=np.array([0, 0]), sub_pos=np.zeros((2, 3)))
    out = hod.sample(model, dark, np.random.default_rng(1))
    np.testing.assert_array_equal(out["bin"], [3, 3])
    assert out["sat_ratio"][3] == 1 and out["mass_ratio"][3] == 1  # no hydro halo: no correction
    assert out["stellar_mass"][0] == 5e10
    assert out["stellar_mass"][1] in model.satellites[2]


def synthetic_run(rng, halo_mass, hydro, baryon_factor=1.0):
    """A halo population with an explicit stellar-mass--halo-mass relation; satellite
    numbers are Poisson, so two calls on the same halos make a run and its twin.
    `baryon_factor` scales the catalogued halo masses (not the satellite numbers)."""
    n_sub = 1 + rng.poisson(halo_mass / 5e11)
    sub_halo = np.repeat(np.arange(len(halo_mass)), n_sub)
    first = np.concatenate([[0], np.cumsum(n_sub)[:-1]])
    halo_mass = halo_mass * baryon_factor
    cat = hod.Catalogue(halo_mass, first, sub_halo, sub_pos=rng.random((len(sub_halo), 3)))
    if hydro:
        host = halo_mass[sub_halo]
        cen = hod.is_central(cat)
        smhm = 0.02 * host / ((host / 1e12) ** -1.2 + (host / 1e12) ** 0.6)
        stellar = np.where(cen, smhm, 0.1 * smhm * rng.random(len(sub_halo)) ** 3)
        stellar *= 10 ** (0.25 * rng.standard_normal(len(sub_halo)))
        dark_fraction = np.where(cen, np.exp(-host / 3e10), 0.4)
        cat.sub_stellar = np.where(rng.random(len(sub_halo)) < dark_fraction, 0.0, stellar)
    return cat


def test_stellar_mass_function_matches_truth_within_poisson_noise():
    rng = np.random.default_rng(42)
    halo_mass = 10 ** (10 + 4 * rng.random(30000) ** 3)  # steep halo mass function, 1e10-1e14
    hydro = synthetic_run(rng, halo_mass, hydro=True)
    dark = synthetic_run(rng, halo_mass * 10 ** (0.02 * rng.standard_normal(len(halo_mass))), hydro=False)
    model = hod.fit(hydro, n_bins=15)
    out = hod.sample(model, dark, rng)
    np.testing.assert_allclose(out["sat_ratio"][model.n_sat > 400], 1, atol=0.15)  # same process
    np.testing.assert_allclose(out["mass_ratio"][model.n_halo > 100], 1, atol=0.02)
    edges = np.arange(7, 12.01, 0.25)
    truth = hod.stellar_mass_function(hydro.sub_stellar, edges)
    painted = hod.stellar_mass_function(out["stellar_mass"], edges)
    used = truth + painted > 20
    chi2 = ((painted - truth)[used] ** 2 / (painted + truth)[used]).sum() / used.sum()
    assert chi2 < 2.0, (chi2, truth, painted)
    # the test has power: treating every subhalo as a central is far off
    wrong = model.centrals[0][rng.integers(0, len(model.centrals[0]), len(out["stellar_mass"]))]
    bad = hod.stellar_mass_function(wrong, edges)
    assert ((bad - truth)[used] ** 2 / (bad + truth + 1)[used]).sum() / used.sum() > 10


def test_abundance_matching_gives_hydro_masses_by_rank():
    hydro = hand_hydro()  # occupied hydro halos: 1e11, 3e11, 2e12, 1e13
    matched = hod.match_halo_masses(hand_dark(), hydro)
    # dark occupied halos by mass: 1e14, 5e12, 8e11, 2e11, 5e10 -> 1e13, 2e12, 3e11, 1e11, then 5e10 * 1e11 / 2e11
    np.testing.assert_allclose(matched.halo_mass, [1e11, 3e11, 2e12, 1e13, 2.5e10])


def test_abundance_matching_corrects_a_baryonic_halo_mass_shift():
    rng = np.random.default_rng(7)
    halo_mass = 10 ** (10 + 4 * rng.random(30000) ** 3)
    hydro = synthetic_run(rng, halo_mass, hydro=True, baryon_factor=0.8)  # feedback: hydro halos 20 % lighter
    dark = synthetic_run(rng, halo_mass, hydro=False)
    model = hod.fit(hydro, n_bins=15)
    edges = np.arange(7, 12.01, 0.25)
    truth = hod.stellar_mass_function(hydro.sub_stellar, edges)

    def chi2(catalogue):
        smf = hod.stellar_mass_function(hod.sample(model, catalogue, rng)["stellar_mass"], edges)
        used = truth + smf > 20
        return ((smf - truth)[used] ** 2 / (smf + truth)[used]).sum() / used.sum()
    assert chi2(hod.match_halo_masses(dark, hydro)) < 2.0
    assert chi2(dark) > 3.0  # binning by the gravity-only mass alone is biased


def test_training_relation_transfers_to_an_independent_box():
    """The abundance-matching relation of one pair, applied to another gravity-only box of the
    same statistics, corrects its baryonic halo-mass shift like matching in its own box; on the
    training box it reproduces rank matching (up to ties)."""
    rng = np.random.default_rng(8)
    train_mass, other_mass = (10 ** (10 + 4 * rng.random(30000) ** 3) for _ in range(2))
    hydro = synthetic_run(rng, train_mass, hydro=True, baryon_factor=0.8)
    dark = synthetic_run(rng, train_mass, hydro=False)
    fitted, painted = hod.fit_training(dark, hydro, n_bins=15)
    np.testing.assert_allclose(hod.transfer_halo_masses(dark, fitted.relation).halo_mass, painted.halo_mass,
                               rtol=1e-9)  # distinct masses: the relation is the rank matching
    other_hydro = synthetic_run(rng, other_mass, hydro=True, baryon_factor=0.8)  # never seen by the HOD
    other_dark = synthetic_run(rng, other_mass, hydro=False)
    edges = np.arange(7, 12.01, 0.25)
    truth = hod.stellar_mass_function(other_hydro.sub_stellar, edges)

    def chi2(target):
        smf = hod.stellar_mass_function(hod.draw(fitted, target, [np.random.SeedSequence(1)])[0]["stellar_mass"],
                                        edges)
        used = truth + smf > 20
        return ((smf - truth)[used] ** 2 / (smf + truth)[used]).sum() / used.sum()
    assert chi2(hod.prepare_target(fitted, other_dark)) < 2.0
    assert chi2(other_dark) > 3.0  # without the relation the shift is back


def test_training_universes_join_the_pools_and_statistics_box_by_box():
    """split.training_universes: the HOD fitted on two pairs holds both boxes' centrals and
    satellites in its pools and both boxes' halos in its statistics, each box abundance-matched
    in itself (so the training box is painted as when fitted alone), and its relation still
    carries the baryonic shift over to a third box."""
    rng = np.random.default_rng(9)
    masses = [10 ** (10 + 4 * rng.random(m) ** 3) for m in (20000, 12000, 30000)]
    pairs = [(synthetic_run(rng, m, hydro=False), synthetic_run(rng, m, hydro=True, baryon_factor=0.8))
             for m in masses]
    joined = hod.concatenate([h for _, h in pairs[:2]])
    assert np.array_equal(hod.is_central(joined), np.concatenate([hod.is_central(h) for _, h in pairs[:2]]))
    assert np.array_equal(hod.satellite_counts(joined),
                          np.concatenate([hod.satellite_counts(h) for _, h in pairs[:2]]))
    fitted, painted = hod.fit_training(*pairs[0], n_bins=12, extra_pairs=[pairs[1]])
    alone, painted_alone = hod.fit_training(*pairs[0], n_bins=12, mass_min=10 ** fitted.hod.edges[0],
                                            mass_max=10 ** fitted.hod.edges[-1])
    np.testing.assert_array_equal(painted.halo_mass, painted_alone.halo_mass)
    second, _ = hod.fit_training(*pairs[1], n_bins=12, mass_min=10 ** fitted.hod.edges[0],
                                 mass_max=10 ** fitted.hod.edges[-1])
    for b in range(12):
        assert np.array_equal(np.sort(fitted.hod.centrals[b]),
                              np.sort(np.concatenate([alone.hod.centrals[b], second.hod.centrals[b]])))
    np.testing.assert_array_equal(fitted.hod.n_halo, alone.hod.n_halo + second.hod.n_halo)
    np.testing.assert_array_equal(fitted.corrections["n_halo"],
                                  alone.corrections["n_halo"] + second.corrections["n_halo"])
    other_dark, other_hydro = pairs[2]
    edges = np.arange(7, 12.01, 0.25)
    truth = hod.stellar_mass_function(other_hydro.sub_stellar, edges)
    smf = hod.stellar_mass_function(hod.draw(fitted, hod.prepare_target(fitted, other_dark),
                                             [np.random.SeedSequence(2)])[0]["stellar_mass"], edges)
    used = truth + smf > 20
    assert ((smf - truth)[used] ** 2 / (smf + truth)[used]).sum() / used.sum() < 2.0


def ensemble_scatter_ratio(seeds_of, n: int, n_ensembles: int = 100) -> float:
    """std over independent ensembles of the n-draw ensemble mean of the HOD's total stellar mass
    in the heavy halos, divided by the std of a single draw's; `seeds_of(ensemble, n)` gives the
    seeds of one ensemble's draws."""
    rng = np.random.default_rng(11)
    halo_mass = 10 ** (11 + 3 * rng.random(3000) ** 2)
    hydro = synthetic_run(rng, halo_mass, hydro=True)
    dark = synthetic_run(rng, halo_mass, hydro=False)
    fitted, target = hod.fit_training(dark, hydro, n_bins=10)
    heavy = target.halo_mass[target.sub_halo] > 1e13

    def ensemble_mean(e, size):
        return np.mean([d["stellar_mass"][heavy].sum() for d in hod.draw(fitted, target, seeds_of(e, size))])
    single = np.std([ensemble_mean(e, 1) for e in range(n_ensembles)], ddof=1)
    return np.std([ensemble_mean(n_ensembles + e, n) for e in range(n_ensembles)], ddof=1) / single


def test_hod_ensemble_mean_scatter_shrinks_as_one_over_sqrt_n():
    """Independent realisations: the ensemble mean's scatter over 100 independent ensembles is
    1/sqrt(N) of one draw's. Each std of 100 values is known to ~7% (1/sqrt(2 * 99)), so the
    ratio of two is within 25% of 1/sqrt(N) at 3.5 sigma. Reusing one seed (draws not
    independent) leaves the scatter of a single draw and fails the same bound."""
    n = 9
    ratio = ensemble_scatter_ratio(lambda e, size: hod.realisation_seeds(e, "test", size), n)
    assert abs(ratio * np.sqrt(n) - 1) < 0.25, ratio
    reused = ensemble_scatter_ratio(lambda e, size: hod.realisation_seeds(e, "test", 1) * size, n)
    assert abs(reused * np.sqrt(n) - 1) > 0.25, reused


def test_realisation_seeds_are_reproducible_and_distinct():
    a, b = hod.realisation_seeds(1234, "test", 10), hod.realisation_seeds(1234, "test", 10)
    draws = [np.random.default_rng(s).random() for s in a]
    assert draws == [np.random.default_rng(s).random() for s in b]  # same config, same numbers
    assert len(set(draws)) == 10
    assert [np.random.default_rng(s).random() for s in hod.realisation_seeds(1234, "test", 3)] == draws[:3]
    other = [np.random.default_rng(s).random() for s in hod.realisation_seeds(1234, "heldout1", 10)]
    assert not set(other) & set(draws)  # another universe draws independently


@pytest.mark.parametrize("mas", ["CIC", "TSC", "PCS"])
@pytest.mark.parametrize("start", [(3, 20, 7), (28, -4, 30)])
def test_cube_deposit_equals_whole_box_deposit(mas, start):
    import MAS_library as MASL

    from dm2gal.fields import read_periodic

    rng = np.random.default_rng(3)
    box, n, size = 25.0, 40, 12
    pos = rng.random((5000, 3)) * box
    mass = 10 ** rng.uniform(8, 11, 5000)
    full = np.zeros((n,) * 3, np.float32)
    MASL.MA(pos.astype(np.float32), full, np.float32(box), mas, W=mass.astype(np.float32), verbose=False)
    expected = read_periodic(full, start, (size,) * 3)
    got = deposit_cube(pos, mass, box, n, start, size, mas)
    # float32 positions are rounded differently in the local and the whole-box frame
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=1e-5 * expected.max())
    assert expected.sum() > 0


@pytest.mark.slow
def test_stellar_mass_function_on_the_mini_universe():
    """The HOD of a freshly generated mini-universe reproduces its hydro stellar mass function."""
    import yaml

    from dm2gal.acquire.synthetic.build import make

    repo = __import__("pathlib").Path(__file__).resolve().parents[1]
    params = yaml.safe_load((repo / "config.yaml").read_text())["acquire"]["synthetic"]
    params.update(n_particles=96, box_size=40.0, pm_steps=20)  # a smaller twin of the default, same physics
    runs = make(params, seed=11, progress=False)

    def catalogue(run):
        h, s = run["halos"], run["subhalos"]
        return hod.Catalogue(np.asarray(h["GroupMass"]), np.asarray(h["GroupFirstSub"]), np.asarray(s["SubhaloGrNr"]),
                             np.asarray(s["SubhaloPos"]), np.asarray(s["SubhaloMassType"])[:, 4]
                             if "SubhaloMassType" in s else None)
    hydro, dark = catalogue(runs["hydro"]), catalogue(runs["dark"])
    model = hod.fit(hydro, n_bins=10)
    painted = hod.sample(model, hod.match_halo_masses(dark, hydro), np.random.default_rng(0))["stellar_mass"]
    edges = np.arange(7, 12.51, 0.25)
    truth = hod.stellar_mass_function(hydro.sub_stellar, edges)
    smf = hod.stellar_mass_function(painted, edges)
    used = truth + smf > 20
    assert used.sum() >= 6
    chi2 = ((smf - truth)[used] ** 2 / (smf + truth)[used]).sum() / used.sum()
    assert chi2 < 2.0, (chi2, truth, smf)
