"""The mini-universe (acquire source `synthetic`) against independent references.

Fast tests use a tiny universe (32^3 particles, 32 Mpc/h); the physics tests
(`slow`) generate the default configuration once and hold it to colossus'
linear P(k) and Watson et al. (2013) FoF mass function, measured with Pylians.
"""

from __future__ import annotations

import copy

import h5py
import numpy as np
import pytest
import yaml

from dm2gal import tng
from dm2gal.acquire.manifest import write_manifest
from dm2gal.acquire.synthetic import build, fof, galaxies, ics, pm, subhalos
from dm2gal.acquire.synthetic.cosmology import RHO_CRIT, TNG_COSMOLOGY, Growth, colossus
from dm2gal.stats import power_spectrum

SNAP = 99


@pytest.fixture(scope="session")
def config(repo):
    """config.yaml, validated (defaults filled) exactly as the Snakefile does."""
    from snakemake.utils import validate

    cfg = yaml.safe_load((repo / "config.yaml").read_text())
    validate(cfg, str(repo / "workflow/schemas/config.schema.yaml"))
    return cfg


def tiny(config, **changes) -> dict:
    params = copy.deepcopy(config["acquire"]["synthetic"])
    params.update(box_size=32.0, n_particles=32, pm_steps=10, n_chunks=3, fof_min_particles=10,
                  subhalo_min_particles=8)
    params.update(changes)
    return params


@pytest.fixture(scope="module")
def tiny_runs(config, tmp_path_factory):
    """The tiny universe in memory and on disk: (runs, {sim: base})."""
    root = tmp_path_factory.mktemp("tiny")
    params = tiny(config)
    runs = build.make(params, config["seed"], progress=False)
    bases = {sim: root / sim / "output" for sim in tng.SIMS}
    for sim in tng.SIMS:
        build.write(runs[sim], bases[sim], SNAP, params["n_chunks"])
    return runs, bases


# --- the solver's parts ---------------------------------------------------------------


def test_growth_matches_colossus_and_the_growth_equation():
    """D(a) agrees with colossus' growth factor, and dG/da = 1.5 Omega_m D / (a^2 E) (the kick factors' identity)."""
    g = Growth()
    a, h = np.linspace(0.04, 0.95, 10), 1e-5
    np.testing.assert_allclose(g.D(a), g.cosmo.growthFactor(1 / a - 1), rtol=2e-4)
    lhs = (g.G(a + h) - g.G(a - h)) / (2 * h)
    rhs = 1.5 * TNG_COSMOLOGY["Omega0"] * g.D(a) / (a**2 * np.sqrt(0.3089 / a**3 + 0.6911))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-6)


def test_zeldovich_displacement_has_divergence_minus_delta():
    """div Psi1 = -delta, checked spectrally on a random field."""
    n, box = 32, 64.0
    delta_k = ics.linear_density_k(n, box, Growth(), seed=3)
    psi1, _ = ics.lpt_displacements(delta_k, box, order=1)
    kx, ky, kz = ics.wavevectors(n, box)
    div_k = sum(1j * k * np.fft.rfftn(psi1[:, i].reshape(n, n, n)) for i, k in enumerate((kx, ky, kz)))
    delta = np.fft.irfftn(delta_k, s=(n, n, n), axes=(0, 1, 2))
    div = np.fft.irfftn(div_k, s=(n, n, n), axes=(0, 1, 2))
    np.testing.assert_allclose(div, -delta, atol=1e-6 * np.abs(delta).max())


def test_second_order_displacement_of_two_crossed_waves():
    """delta = A cos(kx) + B cos(ky): the 2LPT source is phi_xx phi_yy = A B cos(kx) cos(ky) = div Psi2."""
    n, box = 32, 100.0
    k = 2 * np.pi / box * 2
    q = ics.lattice(n, box)
    delta = (0.3 * np.cos(k * q[:, 0]) + 0.5 * np.cos(k * q[:, 1])).reshape(n, n, n)
    _, psi2 = ics.lpt_displacements(np.fft.rfftn(delta), box, order=2)
    kx, ky, kz = ics.wavevectors(n, box)
    div_k = sum(1j * kk * np.fft.rfftn(psi2[:, i].reshape(n, n, n)) for i, kk in enumerate((kx, ky, kz)))
    div = np.fft.irfftn(div_k, s=(n, n, n), axes=(0, 1, 2))
    expected = (0.15 * np.cos(k * q[:, 0]) * np.cos(k * q[:, 1])).reshape(n, n, n)
    np.testing.assert_allclose(div, expected, atol=1e-10)


def test_initial_power_matches_colossus(config):
    """The seeded linear field's P(k), measured by Pylians, follows colossus P(k) to 5% in the mean.

    Over k < k_Nyquist / 2 of a 64^3, 100 Mpc/h grid there are ~5e4 independent
    modes, so cosmic variance on the mode-weighted mean ratio is ~1%.
    """
    n, box = 64, 100.0
    g = Growth()
    delta = np.fft.irfftn(ics.linear_density_k(n, box, g, seed=7), s=(n, n, n), axes=(0, 1, 2)).astype(np.float32)
    pk = power_spectrum(delta, box, mas="None")
    sel = pk["k"] < 0.5 * np.pi * n / box
    ratio = pk["pk"][sel] / g.linear_power(pk["k"][sel])
    mean = np.average(ratio, weights=pk["nmodes"][sel])
    assert abs(mean - 1) < 0.05, mean


def test_pm_follows_zeldovich_for_a_plane_wave():
    """In 1D the Zel'dovich solution is exact before shell crossing: x = q + D(a) s(q).

    A plane wave with D(1) k A = 0.25, evolved on the default mesh (2 x the
    lattice) from a = 0.1 to 1 in 20 steps, must land where linear theory puts it:
    rms error <= 3% and max <= 5% of the amplitude (measured 2.2% / 2.7%: the
    CIC deconvolution sharpens the force near the mesh scale; without it 0.7%).
    A factor-2 error in the force normalisation or a wrong kick factor fails by far.
    """
    n, box, g = 16, 100.0, Growth()
    q = ics.lattice(n, box)
    k = 2 * np.pi / box
    amp = 0.25 / k
    a0 = 0.1
    s = np.zeros_like(q)
    s[:, 0] = amp * np.sin(k * q[:, 0])
    pos = np.mod(q + g.D(a0) * s, box)
    mom = g.G(a0) * s
    pos, mom = pm.evolve(pos, mom, a0, 20, 2 * n, box, g, progress=False)
    disp = pos[:, 0] - q[:, 0]
    disp -= box * np.round(disp / box)
    err = disp - g.D(1.0) * s[:, 0]
    assert np.sqrt(np.mean(err**2)) < 0.03 * amp / np.sqrt(2) and np.abs(err).max() < 0.05 * amp
    np.testing.assert_allclose(pos[:, 1:], q[:, 1:], atol=1e-6)


def test_cic_deposit_conserves_particles():
    pos = np.random.default_rng(0).uniform(0, 10.0, (1000, 3))
    mesh = pm.cic_deposit(pos, 8, 10.0)
    assert mesh.sum() == pytest.approx(1000, rel=1e-5)


def brute_force_groups(pos, box, link):
    """Connected components of the full periodic distance matrix (no tree)."""
    d = pos[:, None, :] - pos[None, :, :]
    d -= box * np.round(d / box)
    adj = (d**2).sum(-1) < link**2
    labels = -np.ones(len(pos), dtype=int)
    for i in range(len(pos)):
        if labels[i] < 0:
            labels[i], stack = i, [i]
            while stack:
                j = stack.pop()
                for m in np.flatnonzero(adj[j] & (labels < 0)):
                    labels[m] = i
                    stack.append(m)
    return labels


def test_fof_matches_brute_force_with_periodic_wrap():
    rng = np.random.default_rng(1)
    box = 10.0
    centres = np.array([[0.1, 5, 5], [5, 9.95, 0.05], [3, 3, 3]])  # two straddle the boundary
    pos = np.concatenate([c + 0.15 * rng.standard_normal((n, 3)) for c, n in zip(centres, (40, 25, 12))]
                         + [rng.uniform(0, box, (60, 3))])
    pos = fof.wrap(pos, box)
    labels = fof.friends_of_friends(pos, box, 0.3, min_members=10)
    ref = brute_force_groups(pos, box, 0.3)
    sizes = np.bincount(ref)
    for lab in range(labels.max() + 1):
        members = labels == lab
        assert len(set(ref[members])) == 1 and sizes[ref[members][0]] == members.sum()
    assert sorted(np.bincount(labels[labels >= 0]).tolist()) == sorted(s for s in sizes if s >= 10)
    assert np.all(np.diff(np.bincount(labels[labels >= 0])) <= 0)  # ordered by size


def test_subhalos_one_central_plus_satellites():
    """Two clumps within one FoF link (b = 0.2) but not within the subhalo link: central + satellite."""
    rng = np.random.default_rng(2)
    box = 20.0  # 360 particles: mean separation 2.81 Mpc/h, FoF link 0.56, subhalo link (b = 0.08) 0.22
    big = [10, 10, 10] + 0.03 * rng.standard_normal((300, 3))
    small = [10.6, 10, 10] + 0.03 * rng.standard_normal((50, 3))
    field = rng.uniform(0, 5, (10, 3))
    pos = fof.wrap(np.concatenate([big, small, field]), box)
    halos, subs, order = subhalos.dark_catalogue(pos, np.ones_like(pos), 1e10, box, 0.2, 20, 0.08, 20, 0.01)
    assert halos["GroupNsubs"].tolist() == [2] and halos["GroupLen"].tolist() == [350]
    assert subs["SubhaloLen"].tolist() == [300, 50] and subs["SubhaloGrNr"].tolist() == [0, 0]
    np.testing.assert_allclose(subs["SubhaloPos"], [[10, 10, 10], [10.6, 10, 10]], atol=0.02)
    assert halos["GroupPos"][0] == pytest.approx(subs["SubhaloPos"][0])
    assert halos["GroupMass"][0] == 350 * 1e10
    # M200c: the 300-particle core (r ~ 0.05) is far denser than 200 rho_crit; the satellite at 0.6 is not inside
    assert 300e10 <= halos["Group_M_Crit200"][0] <= 350e10
    assert np.array_equal(order[:300], np.arange(300)) and np.array_equal(np.sort(order), np.arange(360))


# --- the galaxy model -------------------------------------------------------------------


def test_moster_ratio_peaks_near_m1():
    m = np.logspace(10, 15, 501)
    ratio = galaxies.moster_stellar_mass(m, 0.6774, 11.59, 0.0351, 1.376, 0.608) / m
    peak = m[np.argmax(ratio)] / 0.6774
    assert 10**11.4 < peak < 10**12.0
    assert ratio.max() == pytest.approx(0.0351, rel=0.1)  # 2N / (x^-b + x^g) ~ N near x = 1


def test_mass_ratio_lowered_at_low_mass_only():
    r = galaxies.mass_ratio(np.array([1e10, 10**12.5, 1e15]), 0.8, 12.5, 1.0)
    assert r[0] == pytest.approx(0.8, abs=0.01) and r[1] == pytest.approx(0.9) and r[2] > 0.99


def test_stellar_mass_carries_environment_beyond_halo_mass(tiny_runs):
    """At fixed halo mass, M* correlates with the DM overdensity within 1 Mpc/h (env_slope > 0)."""
    runs, _ = tiny_runs
    dark, hydro = runs["dark"], runs["hydro"]
    box, n = dark["header"]["BoxSize"], len(dark["particles"][1]["Coordinates"])
    tree = fof.periodic_tree(dark["particles"][1]["Coordinates"], box)
    cen = hydro["halos"]["GroupFirstSub"]
    pos = dark["subhalos"]["SubhaloPos"][dark["halos"]["GroupFirstSub"]]
    log_env = np.log10(galaxies.overdensity(tree, pos, 1.0, n, box))
    log_m = np.log10(dark["halos"]["GroupMass"])
    shmr = np.log10(galaxies.moster_stellar_mass(dark["halos"]["GroupMass"], 0.6774, 11.59, 0.0351, 1.376, 0.608))
    resid = np.log10(hydro["subhalos"]["SubhaloMassType"][cen, 4]) - shmr
    env_resid = galaxies.environment_residual(log_m, log_env)
    assert np.corrcoef(env_resid, resid)[0, 1] > 0.3
    assert abs(np.corrcoef(env_resid, log_m)[0, 1]) < 0.05


def test_hydro_twin_baryonic_effects(tiny_runs, config):
    runs, _ = tiny_runs
    dark, hydro = runs["dark"], runs["hydro"]
    bar = config["acquire"]["synthetic"]["baryons"]
    assert np.all(hydro["halos"]["GroupMass"] < dark["halos"]["GroupMass"])
    ratio = hydro["halos"]["GroupMass"] / dark["halos"]["GroupMass"]
    expected = galaxies.mass_ratio(dark["halos"]["GroupMass"], bar["mass_ratio_min"],
                                   bar["log_mass_ratio_pivot"], bar["mass_ratio_slope"])
    np.testing.assert_allclose(ratio, expected, rtol=1e-3)  # gas clipped at 0 where M* > f_b M
    n_sat_dark = dark["halos"]["GroupNsubs"].sum() - len(dark["halos"]["GroupNsubs"])
    n_sat_hydro = hydro["halos"]["GroupNsubs"].sum() - len(hydro["halos"]["GroupNsubs"])
    assert n_sat_hydro <= n_sat_dark
    cen_d = dark["subhalos"]["SubhaloPos"][dark["halos"]["GroupFirstSub"]]
    cen_h = hydro["subhalos"]["SubhaloPos"][hydro["halos"]["GroupFirstSub"]]
    d = cen_h - cen_d
    d -= dark["header"]["BoxSize"] * np.round(d / dark["header"]["BoxSize"])
    assert np.std(d) == pytest.approx(bar["position_offset"], rel=0.25)


def one_group(n_sat: int = 2000):
    """A hand-made dark catalogue: one 1e13 Msun/h group, its central and n_sat satellites of
    1e10..1e12 Msun/h, all at one point of a 10 Mpc/h box, and a tree of uniform particles."""
    halos = {"GroupMass": np.array([1e13]), "GroupFirstSub": np.array([0]), "Group_M_Crit200": np.array([8e12])}
    subs = {"SubhaloMass": np.r_[5e12, np.logspace(10, 12, n_sat)], "SubhaloGrNr": np.zeros(n_sat + 1, int),
            "SubhaloPos": np.full((n_sat + 1, 3), 5.0), "SubhaloVel": np.zeros((n_sat + 1, 3)),
            "SubhaloVmax": np.full(n_sat + 1, 100.0)}
    tree = fof.periodic_tree(np.random.default_rng(0).uniform(0, 10, (1000, 3)), 10.0)
    return halos, subs, tree


def test_satellite_loss_is_a_fraction(config):
    n_sat = 2000
    halos, subs, tree = one_group(n_sat)
    params = copy.deepcopy(config["acquire"]["synthetic"])
    params["baryons"]["satellite_loss"] = 0.25
    h_halos, h_subs, stars, idx = galaxies.hydro_twin(halos, subs, tree, 1000, 10.0, 1e9, params,
                                                      np.random.default_rng(5))
    kept = h_halos["GroupNsubs"][0] - 1
    assert abs(kept / n_sat - 0.75) < 4 * np.sqrt(0.25 * 0.75 / n_sat)
    assert idx[0] == 0 and h_halos["GroupMass"][0] == pytest.approx(h_subs["SubhaloMass"].sum())


def test_ideal_mean_is_what_the_draw_was_centred_on(config):
    """log10 M* minus the known scatter draw sigma g is the relation mu, and SubhaloStellarMassMean
    is 10^(mu + ln10 sigma^2 / 2), for every surviving subhalo (satellite loss on)."""
    halos, subs, tree = one_group()
    params = copy.deepcopy(config["acquire"]["synthetic"])
    params["baryons"]["satellite_loss"] = 0.3
    sigma = params["galaxies"]["scatter"]
    _, h_subs, _, idx = galaxies.hydro_twin(halos, subs, tree, 1000, 10.0, 1e9, params, np.random.default_rng(5))
    g = np.random.default_rng(5).standard_normal(len(subs["SubhaloMass"]))  # the generator's first draw
    mu = np.log10(h_subs["SubhaloMassType"][:, 4]) - sigma * g[idx]
    np.testing.assert_allclose(np.log10(h_subs["SubhaloStellarMassMean"]), mu + np.log(10) * sigma**2 / 2,
                               rtol=0, atol=1e-9)
    assert len(idx) < len(subs["SubhaloMass"])  # satellites were lost, and the survivors still match
    # with no scatter the mean is the drawn mass itself
    params["galaxies"]["scatter"] = 0.0
    _, h0, _, _ = galaxies.hydro_twin(halos, subs, tree, 1000, 10.0, 1e9, params, np.random.default_rng(5))
    np.testing.assert_allclose(h0["SubhaloStellarMassMean"], h0["SubhaloMassType"][:, 4], rtol=1e-12)


def test_ideal_mean_is_the_average_over_draws(config):
    """Averaged over many draws of the galaxy model, M* / SubhaloStellarMassMean -> 1; the median
    relation 10^mu (the mean without the lognormal term) is refused by the same test."""
    halos, subs, tree = one_group(n_sat=500)
    params = copy.deepcopy(config["acquire"]["synthetic"])
    sigma = params["galaxies"]["scatter"]
    ratios = []
    for seed in range(40):
        _, h_subs, _, _ = galaxies.hydro_twin(halos, subs, tree, 1000, 10.0, 1e9, params,
                                              np.random.default_rng(seed))
        ratios.append(h_subs["SubhaloMassType"][:, 4] / h_subs["SubhaloStellarMassMean"])
    ratios = np.concatenate(ratios)
    err = ratios.std() / np.sqrt(len(ratios))
    assert abs(ratios.mean() - 1) < 4 * err, (ratios.mean(), err)
    median_ratio = ratios * np.exp(np.log(10) ** 2 * sigma**2 / 2)  # M* / 10^mu
    assert abs(median_ratio.mean() - 1) > 10 * err


def test_ideal_mean_is_written_in_file_units(tiny_runs):
    """SubhaloStellarMassMean is stored beside SubhaloMassType in 1e10 Msun/h and read back in Msun/h."""
    runs, bases = tiny_runs
    expected = runs["hydro"]["subhalos"]["SubhaloStellarMassMean"]
    with h5py.File(tng.groupcat_path(bases["hydro"], SNAP, 0)) as f:
        stored = f["Subhalo/SubhaloStellarMassMean"][()]
    np.testing.assert_allclose(stored, expected[:len(stored)] / 1e10, rtol=1e-6)
    back = tng.load_subhalos(bases["hydro"], SNAP, ["SubhaloStellarMassMean"])["SubhaloStellarMassMean"]
    np.testing.assert_allclose(back, expected, rtol=1e-6)
    assert "SubhaloStellarMassMean" not in runs["dark"]["subhalos"]


# --- the files -------------------------------------------------------------------------


def test_total_mass_is_omega_m_rho_crit_volume(tiny_runs):
    """Sum of particle masses read back = Omega_m rho_crit V, rho_crit from colossus (independent)."""
    _, bases = tiny_runs
    cosmo = colossus()
    rho_m = cosmo.rho_m(0.0) * 1e9  # Msun h^2 / kpc^3 -> Msun h^2 / Mpc^3
    assert RHO_CRIT * TNG_COSMOLOGY["Omega0"] == pytest.approx(rho_m, rel=1e-4)
    header = tng.snapshot_header(bases["dark"], SNAP)
    total = sum(tng.read_particle_chunk(bases["dark"], SNAP, c)[1].sum()
                for c in range(int(header["NumFilesPerSnapshot"])))
    assert total == pytest.approx(rho_m * header["BoxSize"] ** 3, rel=1e-6)
    hydro_dm = sum(tng.read_particle_chunk(bases["hydro"], SNAP, c)[1].sum() for c in range(3))
    omega_dm = TNG_COSMOLOGY["Omega0"] - TNG_COSMOLOGY["OmegaBaryon"]
    assert hydro_dm == pytest.approx(rho_m * omega_dm / TNG_COSMOLOGY["Omega0"] * header["BoxSize"] ** 3, rel=1e-6)


def test_star_particles_sum_to_subhalo_stellar_mass(tiny_runs):
    import illustris_python as il

    _, bases = tiny_runs
    stars = il.snapshot.loadSubset(str(bases["hydro"]), SNAP, "stars", ["Masses"])
    subs = il.groupcat.loadSubhalos(str(bases["hydro"]), SNAP, fields=["SubhaloLenType", "SubhaloMassType"])
    edges = np.r_[0, np.cumsum(subs["SubhaloLenType"][:, 4])]
    sums = np.add.reduceat(stars.astype(np.float64), edges[:-1])
    np.testing.assert_allclose(sums, subs["SubhaloMassType"][:, 4], rtol=1e-5)


def test_illustris_python_round_trip(tiny_runs):
    import illustris_python as il

    runs, bases = tiny_runs
    for sim in tng.SIMS:
        run, base = runs[sim], str(bases[sim])
        head = il.groupcat.loadHeader(base, SNAP)
        assert head["Ngroups_Total"] == len(run["halos"]["GroupMass"])
        assert head["Nsubgroups_Total"] == len(run["subhalos"]["SubhaloMass"])
        assert head["BoxSize"] == pytest.approx(1000 * run["header"]["BoxSize"])
        dm = il.snapshot.loadSubset(base, SNAP, "dm", ["Coordinates", "ParticleIDs"])
        np.testing.assert_allclose(dm["Coordinates"] / 1000, run["particles"][1]["Coordinates"], rtol=1e-12)
        assert np.array_equal(dm["ParticleIDs"], run["particles"][1]["ParticleIDs"])
        halos = il.groupcat.loadHalos(base, SNAP, fields=list(run["halos"]))
        subs = il.groupcat.loadSubhalos(base, SNAP, fields=list(run["subhalos"]))
        for written, read in ((run["halos"], halos), (run["subhalos"], subs)):
            for name, values in written.items():
                np.testing.assert_allclose(tng.to_library_units(name, read[name]), values, rtol=1e-6,
                                           atol=1e-6 * np.abs(values).max(), err_msg=f"{sim} {name}")
    stars = il.snapshot.loadSubset(str(bases["hydro"]), SNAP, "stars", ["Coordinates", "Masses"])
    np.testing.assert_allclose(stars["Masses"] * 1e10, runs["hydro"]["particles"][4]["Masses"], rtol=1e-6)


def test_catalogue_is_tng_consistent(tiny_runs):
    runs, _ = tiny_runs
    for sim in tng.SIMS:
        halos, subs = runs[sim]["halos"], runs[sim]["subhalos"]
        first, nsubs = halos["GroupFirstSub"], halos["GroupNsubs"]
        assert np.all(nsubs >= 1) and first[0] == 0 and np.array_equal(first[1:], np.cumsum(nsubs)[:-1])
        assert np.array_equal(subs["SubhaloGrNr"], np.repeat(np.arange(len(nsubs)), nsubs))
        # the central is the most massive subhalo of its group
        central_mass = subs["SubhaloMass"][first]
        group_max = np.maximum.reduceat(subs["SubhaloMass"], first)
        assert np.array_equal(central_mass, group_max)
        np.testing.assert_allclose(halos["GroupMass"], halos["GroupMassType"].sum(1), rtol=1e-9)
    dark = runs["dark"]
    assert np.all(dark["halos"]["Group_M_Crit200"] <= dark["halos"]["GroupMass"])
    assert np.all(dark["subhalos"]["SubhaloVmax"] > 0)


def test_same_seed_same_files_other_seed_different(config, tmp_path, tiny_runs):
    _, bases = tiny_runs
    params = tiny(config)
    build.synthesize(params, config["seed"], tmp_path / "a/dark/output", tmp_path / "a/hydro/output",
                     progress=False)
    build.synthesize(dict(params, seed_offset=1), config["seed"], tmp_path / "b/dark/output",
                     tmp_path / "b/hydro/output", progress=False)

    def digests(sim_dir):
        m = write_manifest(sim_dir, SNAP, "synthetic")
        return [c["sha256"] for c in m["snapshot_chunks"] + m["groupcat_chunks"]]

    for sim in tng.SIMS:
        reference = digests(bases[sim].parent)
        assert digests(tmp_path / "a" / sim) == reference
        assert set(digests(tmp_path / "b" / sim)).isdisjoint(reference)


def test_out_of_range_value_is_refused_naming_the_key(repo):
    from snakemake.utils import validate

    cfg = yaml.safe_load((repo / "config.yaml").read_text())
    cfg["acquire"]["synthetic"]["n_particles"] = 4
    with pytest.raises(Exception) as err:
        validate(cfg, str(repo / "workflow/schemas/config.schema.yaml"))
    assert "n_particles" in str(err.value) and "minimum of 16" in str(err.value)


def test_hdf5_layout_names(tiny_runs):
    _, bases = tiny_runs
    with h5py.File(tng.snapshot_path(bases["hydro"], SNAP, 0)) as f:
        for key in ("BoxSize", "MassTable", "NumPart_ThisFile", "NumPart_Total", "NumPart_Total_HighWord",
                    "NumFilesPerSnapshot", "Omega0", "OmegaLambda", "HubbleParam", "Redshift", "Time"):
            assert key in f["Header"].attrs
        assert {"Coordinates", "ParticleIDs"} <= set(f["PartType1"]) and "Masses" in f["PartType4"]


def test_subhalo_link_must_be_shorter_than_fof_link(config):
    with pytest.raises(ValueError, match="subhalo_b"):
        build.make(tiny(config, subhalo_b=0.25), config["seed"], progress=False)


# --- the default mini-universe against linear theory and the FoF mass function ----------


@pytest.fixture(scope="module")
def default_runs(config):
    """The default mini-universe (config.yaml), made once."""
    params = config["acquire"]["synthetic"]
    return params, build.make(params, config["seed"], progress=False)


def power_against_linear(pos, box, n, seed, growth, k_max):
    """Bins k < k_max of (k, P_final / P_lin D^2, P_final / (P_lin D^2 x realisation), propagator).

    The z = 0 particle P(k) (Pylians, CIC deconvolved) over colossus' P_lin(k)
    D(1)^2; the realisation's own linear power (the seeded field at z = 0,
    measured identically) divided out removes the Gaussian cosmic variance of
    bins with few modes; the propagator P_x(final, linear) / P_linear(realisation)
    is the part of the final field that is the grown initial field.
    """
    import MAS_library as MASL
    import Pk_library as PKL

    grid = np.zeros((n,) * 3, dtype=np.float32)
    MASL.MA(pos.astype(np.float32), grid, box, "CIC", verbose=False)
    grid = grid / grid.mean() - 1
    lin = np.fft.irfftn(ics.linear_density_k(n, box, growth, seed), s=(n,) * 3, axes=(0, 1, 2)).astype(np.float32)
    x = PKL.XPk([grid, lin], box, 0, MAS=["CIC", "None"], threads=1)
    sel = x.k3D < k_max
    k, p_final, p_real = x.k3D[sel], x.Pk[sel, 0, 0], x.Pk[sel, 0, 1]
    p_lin = growth.linear_power(k) * growth.D(1.0) ** 2
    return k, p_final / p_lin, p_final / p_lin / (p_real / p_lin), x.XPk[sel, 0, 0] / p_real


@pytest.mark.slow
def test_large_scale_power_matches_linear_theory(config):
    """The solver in a 400 Mpc/h box (64^3 particles, the default's settings otherwise): on the linear
    scales k < 0.1 h/Mpc (95% of the ~1.5e3 modes there are linear to ~3%), P(k) / (P_lin D^2) is 1
    within 15% once each bin's Gaussian cosmic variance (its realisation's linear power) is divided out.
    """
    params = dict(config["acquire"]["synthetic"], box_size=400.0, n_particles=64)
    pos, _ = build.gravity_only(params, config["seed"], progress=False)
    seed = build.seeds(config["seed"], params["seed_offset"])[0]
    k, raw, ratio, prop = power_against_linear(pos, 400.0, 64, seed, Growth(), 0.1)
    print("\nk", k.round(3), "\nP/(P_lin D^2)", raw.round(3), "\n  / realisation", ratio.round(3),
          "\npropagator", prop.round(3))
    assert np.all(np.abs(ratio - 1) < 0.15), ratio


@pytest.mark.slow
def test_default_box_largest_scales_follow_linear_theory(default_runs, config):
    """The default 50 Mpc/h box: its largest-scale bin (k < 0.2 h/Mpc, 13 modes) within 15% of
    P_lin D^2 x realisation.

    Measured 0.853 (default seed), 1.018 and 0.802 (seed_offset 1, 2); unchanged (to 0.001) with
    80 steps or a mesh of 1 x the lattice, so this is the realisation's own mode coupling, not the
    solver (2LPT alone gives 0.64-0.70; the 400 Mpc/h test above checks the solver's linear growth).
    Larger k in so small a box carry halo-dominated nonlinear power (x 1.2-1.6 at k = 0.3 across
    seeds): reported, not tested. The propagator (printed) shows the expected damping
    exp(-k^2 sigma_v^2 / 2) of the grown initial field.
    """
    params, runs = default_runs
    seed = build.seeds(config["seed"], params["seed_offset"])[0]
    k, raw, ratio, prop = power_against_linear(runs["dark"]["particles"][1]["Coordinates"], params["box_size"],
                                               params["n_particles"], seed, Growth(), 0.5)
    print("\nk", k.round(3), "\nP/(P_lin D^2)", raw.round(3), "\n  / realisation", ratio.round(3),
          "\npropagator", prop.round(3))
    assert abs(ratio[0] - 1) < 0.15, ratio


@pytest.mark.slow
def test_fof_mass_function_matches_watson13(default_runs):
    """FoF (b = 0.2) halo counts >= 50 particles vs Watson et al. (2013) FoF fit, within 30%.

    Bins are 0.4 dex wide and used where the fit predicts >= 100 halos (Poisson
    error <= 10%); the fit itself is good to ~10%, and a mesh twice the particle
    grid costs PM halos near 50 particles < 10% of their mass function.
    """
    from colossus.lss import mass_function

    params, runs = default_runs
    colossus()
    box = params["box_size"]
    mass = runs["dark"]["halos"]["GroupMass"]
    m_p = build.particle_mass(box, params["n_particles"])
    edges = 50 * m_p * 10 ** (0.4 * np.arange(8))
    counts, _ = np.histogram(mass, edges)
    expected = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = np.logspace(np.log10(lo), np.log10(hi), 33)
        dndlnm = mass_function.massFunction(m, 0.0, q_in="M", q_out="dndlnM", mdef="fof", model="watson13")
        expected.append(np.trapezoid(dndlnm, np.log(m)) * box**3)
    expected = np.array(expected)
    use = expected >= 100
    print("M_lo", edges[:-1][use], "N", counts[use], "Watson13", expected[use], "ratio", counts[use] / expected[use])
    assert use.sum() >= 2
    assert np.all(np.abs(counts[use] / expected[use] - 1) < 0.30)


@pytest.mark.slow
def test_default_has_thousands_of_galaxies_above_1e8(default_runs):
    _, runs = default_runs
    mstar = runs["hydro"]["subhalos"]["SubhaloMassType"][:, 4]
    assert (mstar > 1e8).sum() >= 2000
