"""Make the mini-universe: initial conditions -> particle-mesh -> FoF/subhalos -> hydro twin -> TNG files.

`synthesize(params, seed, dark_base, hydro_base)` writes both runs (each base is an
illustris_python basePath, `.../output`) and returns a summary; `make` gives the
runs in memory and `write` writes one. `params` is the validated
`acquire.synthetic` config section (workflow/schemas/acquire_synthetic.schema.yaml).
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

from ... import tng
from ...atomic import atomic_path
from . import galaxies, ics, pm, subhalos
from .cosmology import RHO_CRIT, TNG_COSMOLOGY, Growth
from .fof import periodic_tree, wrap

log = logging.getLogger(__name__)

VELOCITY_UNIT = 100.0
"""km/s per unit of p = a^3 E dx/da [Mpc/h] at a = 1 (H0 = 100 h km/s/Mpc)."""


def particle_mass(box: float, n: int, cosmology: dict = TNG_COSMOLOGY) -> float:
    """Gravity-only particle mass Omega_m rho_crit box^3 / n^3 [Msun/h]."""
    return cosmology["Omega0"] * RHO_CRIT * box**3 / n**3


def seeds(seed: int, seed_offset: int) -> tuple[np.random.SeedSequence, np.random.SeedSequence]:
    """Independent seeds of the initial conditions and of the galaxy model."""
    ic, gal = np.random.SeedSequence([seed, seed_offset]).spawn(2)
    return ic, gal


def header(box: float, mass_table: np.ndarray, cosmology: dict = TNG_COSMOLOGY) -> dict:
    """A z=0 TNG header in library units."""
    return {"BoxSize": box, "MassTable": mass_table, "Omega0": cosmology["Omega0"],
            "OmegaLambda": cosmology["OmegaLambda"], "HubbleParam": cosmology["HubbleParam"],
            "Redshift": 0.0, "Time": 1.0}


def gravity_only(params: dict, seed: int, workers: int = 2, progress: bool = True):
    """Evolved particles of the gravity-only run: positions [Mpc/h] and velocities [km/s], (n^3, 3)."""
    n, box = params["n_particles"], params["box_size"]
    growth = Growth()
    a_init = 1.0 / (1.0 + params["z_init"])
    pos, mom = ics.initial_conditions(n, box, a_init, growth, seeds(seed, params["seed_offset"])[0],
                                      params["lpt_order"], workers)
    pos, mom = pm.evolve(pos, mom, a_init, params["pm_steps"], params["pm_mesh_factor"] * n, box,
                         growth, workers=workers, progress=progress)
    return wrap(pos, box), mom * VELOCITY_UNIT


def make(params: dict, seed: int, workers: int = 2, progress: bool = True) -> dict[str, dict]:
    """Both runs in memory, library units: {'dark': run, 'hydro': run}.

    Each run holds 'header' (as `tng.write_snapshot` takes it), 'particles'
    ({1: dark matter, 4: stars in the hydro run}), 'halos' and 'subhalos' (TNG
    Group*/Subhalo* fields). Particles are sorted as TNG sorts them (by group,
    then subhalo); the hydro run's DM particles are the gravity-only ones with
    mass (Omega_m - Omega_b) / Omega_m m_p.
    """
    if params["subhalo_b"] >= params["fof_b"]:
        raise ValueError(f"acquire.synthetic.subhalo_b ({params['subhalo_b']}) must be smaller than "
                         f"fof_b ({params['fof_b']}): subhalos are clumps inside FoF groups")
    n, box = params["n_particles"], params["box_size"]
    m_p = particle_mass(box, n)
    t0 = time.perf_counter()
    pos, vel = gravity_only(params, seed, workers, progress)
    log.info("particle-mesh: %d^3 particles, %d steps, %d^3 mesh, %.1f s", n, params["pm_steps"],
             params["pm_mesh_factor"] * n, time.perf_counter() - t0)

    tree = periodic_tree(pos, box)
    halos, subs, order = subhalos.dark_catalogue(
        pos, vel, m_p, box, params["fof_b"], params["fof_min_particles"], params["subhalo_b"],
        params["subhalo_min_particles"], r_min=box / (params["pm_mesh_factor"] * n), tree=tree)
    log.info("gravity-only: %d FoF groups, %d subhalos", len(halos["GroupMass"]), len(subs["SubhaloMass"]))

    rng = np.random.default_rng(seeds(seed, params["seed_offset"])[1])
    m_dm = m_p * (1.0 - TNG_COSMOLOGY["OmegaBaryon"] / TNG_COSMOLOGY["Omega0"])
    h_halos, h_subs, stars, _ = galaxies.hydro_twin(halos, subs, tree, n**3, box, m_dm, params, rng)
    del tree
    mstar = h_subs["SubhaloMassType"][:, 4]
    log.info("hydro: %d subhalos, %d with M* > 1e8 Msun/h, %d star particles",
             len(mstar), int((mstar > 1e8).sum()), len(stars["Masses"]))

    dm = {"Coordinates": pos[order], "Velocities": vel[order],
          "ParticleIDs": np.arange(1, n**3 + 1, dtype=np.int64)[order]}
    stars["ParticleIDs"] = np.arange(n**3 + 1, n**3 + 1 + len(stars["Masses"]), dtype=np.int64)
    return {
        "dark": {"header": header(box, np.array([0, m_p, 0, 0, 0, 0], dtype=np.float64)),
                 "particles": {1: dm}, "halos": halos, "subhalos": subs},
        "hydro": {"header": header(box, np.array([0, m_dm, 0, 0, 0, 0], dtype=np.float64)),
                  "particles": {1: dm, 4: stars}, "halos": h_halos, "subhalos": h_subs},
    }


def write(run: dict, base: str | os.PathLike, snapshot: int, n_chunks: int) -> None:
    """Write one run from `make` under `base` (an illustris_python basePath), all or nothing."""
    with atomic_path(base) as tmp:
        tng.write_snapshot(tmp, snapshot, run["header"], run["particles"], n_chunks)
        tng.write_groupcat(tmp, snapshot, run["header"], run["halos"], run["subhalos"], n_chunks)
    log.info("wrote %s", base)


def synthesize(params: dict, seed: int, dark_base: str | os.PathLike, hydro_base: str | os.PathLike,
               snapshot: int = 99, workers: int = 2, progress: bool = True) -> dict:
    """Generate and write the gravity-only and hydro runs; returns counts for the log.

    Each base directory appears only once complete (written under a temporary
    name and moved into place).
    """
    t0 = time.perf_counter()
    runs = make(params, seed, workers, progress)
    write(runs["dark"], dark_base, snapshot, params["n_chunks"])
    write(runs["hydro"], hydro_base, snapshot, params["n_chunks"])
    mstar = runs["hydro"]["subhalos"]["SubhaloMassType"][:, 4]
    return {"groups": len(runs["dark"]["halos"]["GroupMass"]),
            "subhalos": len(runs["dark"]["subhalos"]["SubhaloMass"]),
            "hydro_subhalos": len(mstar), "galaxies_above_1e8": int((mstar > 1e8).sum()),
            "star_particles": len(runs["hydro"]["particles"][4]["Masses"]),
            "seconds": round(time.perf_counter() - t0, 1)}
