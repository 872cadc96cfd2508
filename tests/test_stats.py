"""The summary statistics on fields with known answers, and the metrics and figures built from them.

Gaussian random fields are drawn here directly in Fourier space with a known P(k)
and the CIC window folded in, so the references are analytic: the power spectrum
and its sampling error P / sqrt(N_modes), a zero bispectrum with the Gaussian error
sqrt(V P1 P2 P3 / N_tri), the tree-level bispectrum of a quadratic field
2 f_NL [P1 P2 + P2 P3 + P3 P1], r(k) = 1 for a field with itself, scattering as
1 / sqrt(2 N_modes) about 0 for independent fields, and sqrt(P / (P + N)) with noise.
"""

import json

import numpy as np
import pytest

from dm2gal import stats

CFG = dict(mas="CIC", threads=1, k_range=[0.5, 4.0],
           bk=dict(n_angles=20, triangles=[[1.5, 2.0], [2.0, 3.0]]),
           pdf=dict(log10_mass_min=6.0, log10_mass_max=12.0, n_bins=12, metric_log10_mass_min=8.5),
           r_at_k=1.5)
OCCUPANCY = {"threshold": 1e9, "test": {"precision": 0.8, "recall": 0.7, "f1": 0.747}}


def smooth_pk(k, amp=50.0, k0=1.0):
    """A smooth spectrum [(Mpc/h)^3]: flat on large scales, k^-2 on small ones."""
    return amp / (1.0 + (k / k0) ** 2)


def gaussian_field(n, box, pk, rng, window=True):
    """A Gaussian overdensity (n^3, float32) with power spectrum pk(k) and, by default, the
    CIC window of a deposit folded in (so that Pylians' CIC deconvolution returns pk)."""
    kf = 2 * np.pi / box
    ki = np.fft.fftfreq(n, 1.0 / n)
    kx, ky, kz = np.meshgrid(ki, ki, np.fft.rfftfreq(n, 1.0 / n), indexing="ij")
    k = kf * np.sqrt(kx**2 + ky**2 + kz**2)
    amp = np.sqrt(pk(np.where(k > 0, k, kf)) / (box / n) ** 3)
    if window:
        for q in (kx, ky, kz):
            amp *= np.sinc(q / n) ** 2  # np.sinc(x) = sin(pi x) / (pi x)
    amp[0, 0, 0] = 0.0
    white = np.fft.rfftn(rng.standard_normal((n, n, n)))
    return np.fft.irfftn(white * amp, s=(n, n, n), axes=(0, 1, 2)).astype(np.float32)


def chi2_ok(z, n_sigma=5.0):
    """chi^2 of independent unit normals within n_sigma of its mean dof (std sqrt(2 dof))."""
    dof = len(z)
    return abs(np.sum(z**2) - dof) < n_sigma * np.sqrt(2 * dof)


def test_power_spectrum_recovers_known_pk_within_sampling_variance():
    n, box = 48, 30.0
    delta = gaussian_field(n, box, smooth_pk, np.random.default_rng(1))
    p = stats.power_spectrum(delta, box, "CIC")
    expected = smooth_pk(p["k"])
    z = (p["pk"] - expected) / (expected / np.sqrt(p["nmodes"]))
    assert np.all(np.abs(z) < 5), z
    assert chi2_ok(z), np.sum(z**2) / len(z)
    # The test can fail: a 10% amplitude error, or skipping the CIC deconvolution, is caught.
    z_amp = (p["pk"] - 1.1 * expected) / (expected / np.sqrt(p["nmodes"]))
    assert not chi2_ok(z_amp)
    p_raw = stats.power_spectrum(delta, box, "None")
    z_raw = (p_raw["pk"] - expected) / (expected / np.sqrt(p_raw["nmodes"]))
    assert not chi2_ok(z_raw)


def test_gaussian_bispectrum_is_zero_within_its_gaussian_error():
    n, box = 32, 20.0
    theta = stats.angles(20)
    rng = np.random.default_rng(2)
    draws = [stats.bispectrum(gaussian_field(n, box, smooth_pk, rng), box, 1.0, 1.5, theta)
             for _ in range(12)]
    b = np.array([d["B"] for d in draws])
    err = draws[0]["B_err"]
    z = b / err
    assert np.all(np.abs(z) < 5), z
    assert abs(z.mean()) < 5 / np.sqrt(z.size) * 3  # angles are correlated: allow 3x
    # The analytic Gaussian error matches the scatter between realisations (12 draws: +-30%).
    ratio = b.std(axis=0, ddof=1) / err
    assert 0.6 < np.median(ratio) < 1.4, ratio


def test_quadratic_non_gaussianity_gives_the_right_sign_and_tree_level_amplitude():
    # delta = g + f_NL (g^2 - <g^2>): at tree level B = 2 f_NL [P1 P2 + P2 P3 + P3 P1].
    # No deposit window here (mas='None'), since squaring a windowed field is not a deposit.
    n, box, k1, k2, f_nl = 48, 30.0, 1.0, 1.5, 2.0
    pk = lambda k: smooth_pk(k, amp=0.2)  # sigma_g ~ 0.2: higher orders stay small
    g = gaussian_field(n, box, pk, np.random.default_rng(3), window=False)
    theta = stats.angles(20)
    b = {s: stats.bispectrum(g + s * f_nl * (g**2 - np.mean(g**2)), box, k1, k2, theta, mas="None")
         for s in (1, -1)}
    for s in (1, -1):
        assert np.all(np.sign(b[s]["B"]) == s), b[s]["B"]
        assert np.mean(b[s]["B"] / b[s]["B_err"]) * s > 3
    tree = 2 * f_nl * (pk(k1) * pk(k2) + (pk(k1) + pk(k2)) * pk(b[1]["k3"]))
    # The odd part in f_NL cancels the Gaussian terms <ggg> and f_NL^2 <g h h>.
    odd = (b[1]["B"] - b[-1]["B"]) / 2
    assert np.median(odd / tree) == pytest.approx(1.0, abs=0.2)


@pytest.mark.parametrize("n, mas", [(32, "CIC"), (33, "CIC"), (40, "None"), (35, "TSC")])
def test_fourier_bispectrum_equals_pylians_bk(n, mas):
    # dm2gal.bispectrum evaluates Pylians' estimator by Parseval instead of in real space;
    # on a sparse lognormal 'stellar-mass' field (even and odd n, three windows) every
    # output equals Pk_library.Bk to float32 rounding (a wrong shell width, window power
    # or half-grid weight is off by 1e-2 or more).
    import Pk_library as PKL

    from dm2gal import bispectrum

    rng = np.random.default_rng(n)
    mass = np.where(rng.random((n,) * 3) < 0.05, rng.lognormal(20, 2, (n,) * 3), 0)
    delta = stats.overdensity(mass)
    theta = stats.angles(7)
    ref = PKL.Bk(delta, 20.0, 3.0, 4.0, theta, mas, 1)
    got = bispectrum.bispectrum(delta, 20.0, 3.0, 4.0, theta, mas)
    for key, value in (("B", ref.B), ("Q", ref.Q), ("triangles", ref.triangles), ("pk", ref.Pk),
                       ("k3", np.asarray(ref.k)[2:])):
        np.testing.assert_allclose(got[key], np.asarray(value, dtype=np.float64), rtol=2e-6, err_msg=key)


def test_unresolved_triangle_is_refused():
    delta = gaussian_field(16, 20.0, smooth_pk, np.random.default_rng(0))
    assert not stats.resolved(3.0, 4.0, 20.0, 16)  # k_Nyq = 2.5 h/Mpc
    with pytest.raises(ValueError, match="not resolved"):
        stats.bispectrum(delta, 20.0, 3.0, 4.0, stats.angles(4))


def test_cross_correlation_coefficient_and_transfer_function():
    n, box = 48, 30.0
    rng = np.random.default_rng(4)
    a = gaussian_field(n, box, smooth_pk, rng)
    b = gaussian_field(n, box, smooth_pk, rng)
    self_ = stats.cross_statistics(a, a, box)
    np.testing.assert_allclose(self_["r"], 1.0, atol=1e-5)
    np.testing.assert_allclose(stats.cross_statistics(2 * a, a, box)["transfer"], 2.0, rtol=1e-5)
    nmodes = stats.power_spectrum(a, box)["nmodes"]
    indep = stats.cross_statistics(a, b, box)
    # r of independent fields scatters as 1 / sqrt(2 N_modes): Re(a b*) carries half of |a||b|.
    z = indep["r"] * np.sqrt(2 * nmodes)
    assert np.all(np.abs(z) < 5), z
    assert chi2_ok(z)
    # A noisy copy: r = sqrt(P / (P + N)) for white noise N of known power.
    noise_power = 20.0
    noisy = a + gaussian_field(n, box, lambda k: np.full_like(k, noise_power), rng)
    mixed = stats.cross_statistics(noisy, a, box)
    expected = np.sqrt(smooth_pk(mixed["k"]) / (smooth_pk(mixed["k"]) + noise_power))
    high = nmodes > 500
    np.testing.assert_allclose(mixed["r"][high], expected[high], atol=0.05)


def test_pdf_counts_are_unnormalised_voxel_counts_in_log_bins():
    field = np.zeros((4, 4, 4))
    field.flat[:5] = [1e7, 2e7, 5e9, 1e11, 1e13]  # 1e13 is beyond the last edge
    counts = stats.pdf_counts(field, np.linspace(6.0, 12.0, 7))
    np.testing.assert_array_equal(counts, [0, 2, 0, 1, 0, 1])


def test_summarise_round_trip_and_truth_cut(tmp_path):
    from dm2gal.fields import field_attrs, write_field

    rng = np.random.default_rng(5)
    parent = rng.lognormal(18, 2.0, (40, 40, 40)).astype(np.float32) * (rng.random((40,) * 3) < 0.2)
    write_field(tmp_path / "hydro.zarr", parent, field_attrs(box_size=20.0, n_grid=40, source="hydro",
                                                          snapshot=99, mas="CIC", quantity="stellar_mass"))
    (tmp_path / "cubes.json").write_text(json.dumps({"validation": {"start": [0, 0, 0], "size": 8},
                                                            "test": {"start": [30, 5, 0], "size": 24},
                                                            "min_stellar_mass": 1e8}))
    truth, attrs = stats.read_truth(tmp_path / "hydro.zarr", tmp_path / "cubes.json")
    assert truth.shape == (24, 24, 24) and attrs["box_size"] == pytest.approx(12.0)
    np.testing.assert_array_equal(truth[:10], parent[30:40, 5:29, :24])
    np.testing.assert_array_equal(truth[10:], parent[:14, 5:29, :24])  # periodic wrap

    s = stats.summarise(truth, attrs["box_size"], CFG, truth=truth)
    stats.save_stats(tmp_path / "truth.npz", s)
    back = stats.load_stats(tmp_path / "truth.npz")
    assert back["mas"] == "CIC" and back["n_grid"] == 24
    assert back["B"].shape == (2, 20) and back["triangles"].shape == (2, 2)
    logm = np.log10(truth[truth > 0])
    assert back["pdf_counts"].sum() == np.count_nonzero((logm >= 6) & (logm < 12))
    np.testing.assert_allclose(back["r"], 1.0, atol=1e-5)

    write_field(tmp_path / "model.zarr", truth, dict(attrs, origin=[0, 0, 0]))
    with pytest.raises(ValueError, match="test cube"):
        stats.read_model_cube(tmp_path / "model.zarr", [30, 5, 0], 24)


def write_synthetic_run(root, n=48, box=15.0, start=(40, 3, 10), size=32, seed=6):
    """Stand-ins for the upstream stages on a 48^3 box of 15 Mpc/h (the mini-universe's voxel):
    clustered 'galaxies' (hydro truth), dm2gal = truth with 0.3 dex scatter, oracle = truth with
    0.2 dex, HOD = truth with galaxies moved at random within the cube, dark fields,
    cubes.json and occupancy.json."""
    from dm2gal.fields import field_attrs, write_field

    rng = np.random.default_rng(seed)
    g = gaussian_field(n, box, lambda k: smooth_pk(k, amp=5.0), rng)
    dm = np.exp(g / g.std()).astype(np.float32) * 1e10
    galaxies = rng.random((n,) * 3) < 0.05 * (dm / dm.mean()) ** 2
    hydro = np.where(galaxies, 10 ** rng.normal(9.0, 0.3, (n,) * 3), 0).astype(np.float32)
    base = dict(box_size=box, n_grid=n, snapshot=99, mas="CIC")
    paths = {"hydro": root / "fields/hydro/stellar_mass.zarr", "dm": root / "fields/dark/dm_mass.zarr",
             "subhalos": root / "fields/dark/subhalo_mass.zarr", "dm2gal": root / "paint/test/stellar_mass.zarr",
             "dm2gal_oracle": root / "paint/test_oracle/stellar_mass.zarr", "hod": root / "hod/stellar_mass.zarr"}
    write_field(paths["hydro"], hydro, field_attrs(source="hydro", quantity="stellar_mass", **base))
    write_field(paths["dm"], dm, field_attrs(source="dark", quantity="dm_mass", **base))
    write_field(paths["subhalos"], np.where(galaxies, 50 * dm, 0).astype(np.float32),
                field_attrs(source="dark", quantity="subhalo_mass", **base))
    (root / "split").mkdir(parents=True, exist_ok=True)
    (root / "split/cubes.json").write_text(json.dumps({"validation": {"start": [0, 0, 0], "size": 1},
                                                                 "test": {"start": list(start), "size": size},
                                                                 "min_stellar_mass": 1e8}))
    truth, attrs = stats.read_truth(paths["hydro"], root / "split/cubes.json")
    cube = dict(attrs, box_size=box * size / n, n_grid=size, origin=list(start), parent_n_grid=n)
    painted = np.where(truth > 0, truth * 10 ** rng.normal(0, 0.3, truth.shape), 0).astype(np.float32)
    write_field(paths["dm2gal"], painted, dict(cube, source="dm2gal"))
    oracle = np.where(truth > 0, truth * 10 ** rng.normal(0, 0.2, truth.shape), 0).astype(np.float32)
    write_field(paths["dm2gal_oracle"], oracle, dict(cube, source="dm2gal", mode="oracle"))
    write_field(paths["hod"], rng.permutation(truth.ravel()).reshape(truth.shape), dict(cube, source="hod"))
    (root / "paint/test/occupancy.json").write_text(json.dumps(OCCUPANCY))
    return paths


def test_metrics_on_synthetic_models(tmp_path):
    from dm2gal.metrics import compute_metrics, write_metrics

    paths = write_synthetic_run(tmp_path)
    cubes = tmp_path / "split/cubes.json"
    all_stats = {m: stats.model_statistics(m, paths["hydro"], cubes, CFG, field=paths.get(m))
                 for m in ("truth", "dm2gal", "hod")}
    all_stats["dm2gal_oracle"] = all_stats["truth"] | {"r": np.ones_like(all_stats["truth"]["k"]),
                                                       "transfer": np.ones_like(all_stats["truth"]["k"])}
    m = compute_metrics({"test": all_stats}, CFG, OCCUPANCY)
    for key in ("pk.dm2gal.mean_abs_rel_err", "pk.hod.mean_abs_rel_err", "bk.dm2gal.mean_abs_rel_err",
                "bk.hod.mean_abs_rel_err", "pdf.dm2gal.mean_abs_rel_err", "pdf.hod.mean_abs_rel_err",
                "r.dm2gal.at_k", "r.hod.at_k", "occupancy.precision", "occupancy.recall"):
        assert isinstance(m[key], float) and np.isfinite(m[key]), key
    assert m["pk.k_range"] == [0.5, 4.0] and m["bk.triangles"] == CFG["bk"]["triangles"]
    # A model identical to the truth scores zero; right positions beat shuffled ones.
    assert m["pk.dm2gal_oracle.mean_abs_rel_err"] == 0 and m["r.dm2gal_oracle.at_k"] == 1
    assert m["r.dm2gal.at_k"] > 0.5 > abs(m["r.hod.at_k"])
    assert m["pk.dm2gal.mean_abs_rel_err"] < m["pk.hod.mean_abs_rel_err"]
    assert m["bk.dm2gal.mean_abs_rel_err"] < m["bk.hod.mean_abs_rel_err"]
    # The shuffled HOD keeps the truth's PDF exactly.
    assert m["pdf.hod.mean_abs_rel_err"] == 0 < m["pdf.dm2gal.mean_abs_rel_err"]
    write_metrics(tmp_path / "metrics.json", m)
    assert json.loads((tmp_path / "metrics.json").read_text()) == m


def test_figures_are_written(tmp_path):
    from dm2gal.figures import make_figures

    paths = write_synthetic_run(tmp_path)
    cubes = tmp_path / "split/cubes.json"
    stats_paths = {}
    for m in ("truth", "dm2gal", "hod"):
        stats_paths[m] = tmp_path / f"stats/{m}.npz"
        stats.save_stats(stats_paths[m], stats.model_statistics(m, paths["hydro"], cubes, CFG,
                                                                field=paths.get(m)))
    fig_cfg = dict(dpi=60, figure1=dict(region_voxels=16, centre="most_massive"))
    written = make_figures({"test": stats_paths}, {k: str(v) for k, v in paths.items()}, cubes,
                           tmp_path / "figures", CFG, fig_cfg)
    names = {f"{stem}.{ext}" for stem in ("figure1", "pk", "bk", "pdf", "r") for ext in ("png", "pdf")}
    assert {p.rsplit("/", 1)[1] for p in map(str, written)} == names
    for name in names:
        head = (tmp_path / "figures" / name).read_bytes()[:8]
        assert head.startswith(b"\x89PNG" if name.endswith("png") else b"%PDF")


@pytest.mark.slow
def test_stats_figures_and_metrics_rules_and_report(tmp_path, repo):
    """The stage's rules alone (common + stats + figures, with the report's summary tables) on
    synthetic upstream outputs, then `snakemake --report`. The Snakefile sits in a view of the repository (links to
    rules/, scripts/, workflow/, src/) so that no upstream rule can run."""
    import os
    import shutil
    import subprocess
    import sys

    import yaml

    view = tmp_path / "repo"
    view.mkdir()
    for name in ("rules", "scripts", "workflow", "src"):
        (view / name).symlink_to(repo / name)
    (view / "Snakefile").write_text(
        'configfile: "config.yaml"\n'
        'report: "workflow/report/workflow.rst"\n'
        + "".join(f'include: "rules/{name}.smk"\n' for name in ("common", "stats", "figures"))
        + "rule all:\n    input: FINAL_TARGETS\n")
    run = tmp_path / "run"
    paths = write_synthetic_run(run / "results")
    cfg = yaml.safe_load((repo / "config.yaml").read_text())
    # the test cube only (no held-out universe), two HOD realisations, the ideal painter's field
    cfg["evaluation"] = {"universes": []}
    cfg["hod"]["realisations"] = 2
    cfg.setdefault("paint", {})["realisations"] = 0  # no dm2gal realisations in this hand-built layout
    cfg["train"]["target"] = "voxels"  # a voxel painter's layout: its occupancy.json enters the metrics
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    for i in range(2):
        shutil.copytree(paths["hod"], run / f"results/hod/test/realisation_{i}.zarr")
    shutil.copytree(paths["hydro"], run / "results/fields/hydro/stellar_mass_ideal.zarr")
    # what select writes, for its summary table in the report
    (run / "results/select").mkdir(parents=True)
    (run / "results/select/summary.tsv").write_text("point\tselection\tselected\nlr0.002\t0.02\t1\nlr0.004\t0.03\t0\n")
    env = dict(os.environ, PYTHONPATH=str(repo / "src"))
    smk = [os.path.join(os.path.dirname(sys.executable), "snakemake"), "--snakefile", str(view / "Snakefile"),
           "--cores", "2"]
    for args in (["all"], ["--report", "results/report.html", "all"]):
        proc = subprocess.run(smk + args, cwd=run, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-5000:]
    metrics = json.loads((run / "results/metrics.json").read_text())
    assert metrics["occupancy.recall"] == 0.7 and metrics["bk.triangles"] == cfg["stats"]["bk"]["triangles"]
    for stem in ("figure1", "pk", "bk", "pdf", "r"):
        assert (run / f"results/figures/{stem}.png").stat().st_size > 0
        assert (run / f"results/figures/{stem}.pdf").stat().st_size > 0
    models = ["dm2gal", "hod", "ideal", "truth"] + (["dm2gal_oracle"] if cfg["paint"].get("oracle") else [])
    assert sorted(p.name for p in (run / "results/stats/test").iterdir()) == sorted(f"{m}.npz" for m in models)
    assert (run / "results/report.html").stat().st_size > 0
    assert "<table>" in (run / "results/verdicts.html").read_text()
    assert set(metrics["verdicts"]) == {"pk", "pk_large", "pk_small", "bk", "pdf", "r", "total_mass"}
