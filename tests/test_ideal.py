"""The ideal painter's realisations: the generator's log-normal drawn again, deposited as the truth is."""

from __future__ import annotations

import math

import numpy as np

from dm2gal import tng
from dm2gal.fields import read_field
from dm2gal.grid import FieldSource, build_box
from dm2gal.ideal import draw_masses, write_ideal_realisations

BOX, SNAP, N = 20.0, 99, 32
HEADER = dict(BoxSize=BOX, MassTable=np.zeros(6), Omega0=0.3089, OmegaLambda=0.6911, HubbleParam=0.6774,
              Redshift=0.0, Time=1.0)


def test_draws_keep_the_mean_and_have_the_scatter():
    rng = np.random.default_rng(1)
    mean = np.full(200_000, 1e10)
    m = draw_masses(mean, 0.2, rng)
    err = math.sqrt(math.exp((math.log(10) * 0.2) ** 2) - 1) / math.sqrt(len(m))
    assert abs(m.mean() / 1e10 - 1) < 4 * err
    assert np.isclose(np.log10(m).std(), 0.2, rtol=0.01)
    assert np.array_equal(draw_masses(mean[:5], 0.0, rng), mean[:5])


def write_catalogue(tmp_path, rng, n_sub=400):
    base = tmp_path / "output"
    mean = 10 ** rng.uniform(8, 11, n_sub)
    subhalos = {"SubhaloPos": rng.random((n_sub, 3)) * BOX, "SubhaloMass": 100 * mean,
                "SubhaloMassType": np.zeros((n_sub, 6)), "SubhaloStellarMassMean": mean}
    tng.write_groupcat(base, SNAP, HEADER, {"GroupPos": np.zeros((1, 3)), "GroupMass": np.ones(1)}, subhalos,
                       n_chunks=1)
    return base, mean


def test_realisations_are_the_ideal_field_redrawn(tmp_path):
    """With no scatter a realisation is the slab gridder's noise-free mean field (an independent
    deposit path); with scatter the draws differ from each other, keep the total mass within the
    scatter's error, and repeat for the same seed."""
    base, mean = write_catalogue(tmp_path, np.random.default_rng(2))
    ideal = tmp_path / "ideal.zarr"
    build_box(FieldSource("hydro", str(base), SNAP, "stellar_mass_ideal"), N, ideal)
    reference, _ = read_field(ideal)
    write_ideal_realisations([tmp_path / "flat.zarr"], ideal, str(base), SNAP, 0.0, seed=3)
    flat, attrs = read_field(tmp_path / "flat.zarr")
    np.testing.assert_allclose(flat, reference, rtol=0, atol=1e-5 * reference.max())
    assert attrs["quantity"] == "stellar_mass_ideal_realisation" and attrs["n_grid"] == N
    paths = [tmp_path / f"r{i}.zarr" for i in range(3)]
    write_ideal_realisations(paths, ideal, str(base), SNAP, 0.2, seed=3)
    drawn = [read_field(p)[0] for p in paths]
    assert not np.allclose(drawn[0], drawn[1])
    spread = math.sqrt(math.exp((math.log(10) * 0.2) ** 2) - 1) * math.sqrt(np.sum(mean ** 2))
    assert all(abs(d.sum(dtype=np.float64) - mean.sum()) < 4 * spread for d in drawn)
    write_ideal_realisations([tmp_path / "again.zarr"], ideal, str(base), SNAP, 0.2, seed=3)
    assert np.array_equal(read_field(tmp_path / "again.zarr")[0], drawn[0])


def test_a_mean_painter_misses_the_shot_noise_of_the_scatter():
    """Why the `ideal` mean is not the floor of P(k) where shot noise dominates (docs/evaluation.md):
    galaxies of one mean mass at random (Poisson) positions have a pure shot-noise P(k), and
    drawing each mass from the generator's log-normal raises it by <M^2> / <M>^2 =
    exp((ln10 sigma)^2) = 1.236 for sigma = 0.2 dex, in every k bin; so the mean field's P(k)
    is 1 / 1.236 = 0.81 of the drawn fields'. Averaged over 16 draws of 4000 galaxies (each
    draw's sum m^2 / (sum m)^2 scatters by 2 %) and the k bins, within 1.5 %."""
    from dm2gal.cic import deposit_cube
    from dm2gal.stats import overdensity, power_spectrum

    rng = np.random.default_rng(3)
    box, n = 32.0, 48
    pos = rng.uniform(0.0, box, (4000, 3)).astype(np.float32)
    mean = np.full(len(pos), 1e10)

    def pk(mass):
        return power_spectrum(overdensity(deposit_cube(pos, mass, box, n, (0, 0, 0), n)), box)

    mean_pk = pk(mean)
    k_f = 2.0 * math.pi / box
    bins = (mean_pk["k"] > 1.5 * k_f) & (mean_pk["k"] <= math.pi * n / box)  # tens of modes, up to Nyquist
    drawn_pk = np.mean([pk(draw_masses(mean, 0.2, rng))["pk"] for _ in range(16)], axis=0)
    ratio = (drawn_pk / mean_pk["pk"])[bins]
    expected = math.exp((math.log(10.0) * 0.2) ** 2)
    assert abs(np.mean(ratio) / expected - 1) < 0.015, (np.mean(ratio), expected)
    assert np.all(np.abs(ratio / expected - 1) < 0.06), ratio
