"""The "hydro" twin: galaxies and baryonic effects painted onto the gravity-only catalogue.

Every dark subhalo i (host mass M_i [Msun/h]: GroupMass for centrals, SubhaloMass
for satellites) gets a stellar mass

    log10 M*_i = log10[ h * M_h * 2N / ((M_h/M1)^-beta + (M_h/M1)^gamma) ] + alpha_env * e_i + sigma * g_i,

with M_h = M_i / h in Msun (the Moster et al. 2013 form of the stellar-to-halo
mass ratio), g_i ~ N(0, 1), and e_i the environment residual: the dark-matter
overdensity 1 + delta_R within a sphere of radius R around the subhalo, in dex,
minus its mean at the same halo mass (a quadratic fit of log10(1 + delta_R)
against log10 M_i over all subhalos). e_i is, by construction, information that
the halo mass alone does not carry.

Baryonic effects: the hydro mass of every halo and subhalo is
r(M) M with r(M) = 1 - (1 - r_min) / (1 + (M / M_r)^mu) (lowered at low mass,
-> 1 for clusters); each satellite is lost with probability `satellite_loss`
(its mass and stars go to nobody: the central keeps the hydro group mass);
hydro positions are the dark ones plus a Gaussian offset of `position_offset`
[Mpc/h] per axis. Per-type masses: stars M*, dark matter (1 - f_b) M_hydro, gas
the rest (>= 0); the Len fields of types 0 and 1 are these masses over the
particle masses. Star particles of mass ~ `star_particle_mass` follow a Plummer
profile of half-mass radius r_half = r_half0 (M* / 1e10 Msun/h)^0.25 about the
hydro subhalo position (truncated at 10 r_half), so their masses sum to M* per
subhalo exactly.

The noise-free mean each stellar mass was drawn about, E[M*_i] = 10^(mu_i + ln(10)
sigma^2 / 2) with mu_i the relation plus the environment term (a lognormal's mean
in linear mass), is written beside every hydro subhalo as `SubhaloStellarMassMean`
(synthetic-only field): the best any deterministic painter can do. Satellite loss
and position offsets are drawn independently of g_i, so the survivors' draws stay
centred on it.
"""

from __future__ import annotations

import numpy as np

from .cosmology import TNG_COSMOLOGY


def moster_stellar_mass(m_halo: np.ndarray, h: float, log_m1: float, n: float, beta: float,
                        gamma: float) -> np.ndarray:
    """Mean stellar mass [Msun/h] of halos of mass m_halo [Msun/h] (Moster et al. 2013 form)."""
    m = np.asarray(m_halo, dtype=np.float64) / h
    x = m / 10.0**log_m1
    return h * m * 2.0 * n / (x**-beta + x**gamma)


def lognormal_mean(log10_median: np.ndarray, scatter_dex: float) -> np.ndarray:
    """E[10^X] for X ~ N(log10_median, scatter_dex^2): 10^(log10_median + ln(10) scatter^2 / 2)."""
    return 10.0 ** (np.asarray(log10_median, dtype=np.float64) + np.log(10.0) * scatter_dex**2 / 2.0)


def overdensity(tree, centres: np.ndarray, radius: float, n_particles: int, box: float) -> np.ndarray:
    """1 + delta of the particles in `tree` within `radius` [Mpc/h] of each centre."""
    counts = tree.query_ball_point(centres, radius, return_length=True)
    return counts / (n_particles * 4.0 / 3.0 * np.pi * radius**3 / box**3)


def environment_residual(log_mass: np.ndarray, log_env: np.ndarray) -> np.ndarray:
    """log_env minus its quadratic least-squares fit against log_mass (the part mass does not predict)."""
    coeffs = np.polyfit(log_mass, log_env, 2)
    return log_env - np.polyval(coeffs, log_mass)


def mass_ratio(m: np.ndarray, r_min: float, log_m_r: float, mu: float) -> np.ndarray:
    """Hydro / gravity-only mass ratio r(M) = 1 - (1 - r_min) / (1 + (M / M_r)^mu)."""
    return 1.0 - (1.0 - r_min) / (1.0 + (np.asarray(m) / 10.0**log_m_r) ** mu)


def plummer_offsets(rng: np.random.Generator, n: int, r_half: np.ndarray) -> np.ndarray:
    """n isotropic offsets [Mpc/h, (n, 3)] from Plummer spheres of half-mass radii r_half (n,)."""
    u = rng.uniform(0.0, 0.995, n)  # 0.995 of the mass: r < ~10 r_half
    r = r_half / 1.305 / np.sqrt(u ** (-2.0 / 3.0) - 1.0)
    direction = rng.standard_normal((n, 3))
    direction /= np.linalg.norm(direction, axis=1)[:, None]
    return r[:, None] * direction


def _stellar_masses(host_mass: np.ndarray, positions: np.ndarray, tree, n_particles: int, box: float, gal: dict,
                    h: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(drawn M* (n,), its noise-free mean E[M*] (n,)) [Msun/h] of subhalos with host masses
    `host_mass` [Msun/h] at `positions` [Mpc/h]: the Moster relation, the environment term and
    a log-normal scatter (`gal`: the `galaxies` config section); draws n normals from `rng`."""
    env = overdensity(tree, positions, gal["env_radius"], n_particles, box)
    residual = environment_residual(np.log10(host_mass), np.log10(env))
    log_mu = (np.log10(moster_stellar_mass(host_mass, h, gal["log_m1"], gal["n"], gal["beta"], gal["gamma"]))
              + gal["env_slope"] * residual)
    mstar = 10.0 ** (log_mu + gal["scatter"] * rng.standard_normal(len(host_mass)))
    return mstar, lognormal_mean(log_mu, gal["scatter"])


def _ratio(m: np.ndarray, bar: dict) -> np.ndarray:
    """`mass_ratio` with the parameters of the `baryons` config section `bar`."""
    return mass_ratio(m, bar["mass_ratio_min"], bar["log_mass_ratio_pivot"], bar["mass_ratio_slope"])


def _hydro_subhalo_masses(halos: dict, subhalos: dict, is_central: np.ndarray, keep: np.ndarray,
                          bar: dict) -> np.ndarray:
    """(n_subs,) hydro mass [Msun/h] of every dark subhalo: r(M) M for satellites; for centrals
    the hydro group mass less that of the surviving satellites (`keep`), at least 0."""
    grnr = subhalos["SubhaloGrNr"]
    group_mass = _ratio(halos["GroupMass"], bar) * halos["GroupMass"]
    sub_mass = _ratio(subhalos["SubhaloMass"], bar) * subhalos["SubhaloMass"]
    sat_sum = np.bincount(grnr[keep & ~is_central], weights=sub_mass[keep & ~is_central],
                          minlength=len(halos["GroupMass"]))
    sub_mass[is_central] = np.maximum(group_mass - sat_sum, 0.0)
    return sub_mass


def _mass_types(mass: np.ndarray, mstar: np.ndarray, f_b: float) -> np.ndarray:
    """(n, 6) masses per particle type [Msun/h] of subhalos of hydro mass `mass` and stellar
    mass `mstar`: stars M*, dark matter (1 - f_b) M, gas the rest (>= 0)."""
    mass_type = np.zeros((len(mass), 6))
    mass_type[:, 4] = mstar
    mass_type[:, 1] = (1.0 - f_b) * mass
    mass_type[:, 0] = np.maximum(mass - mass_type[:, 1] - mstar, 0.0)
    return mass_type


def _star_particles(pos: np.ndarray, mstar: np.ndarray, gal: dict, box: float,
                    rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """(particles per subhalo (n,), {Coordinates [Mpc/h], Masses [Msun/h]}): Plummer spheres about
    the subhalo positions `pos` (n, 3) whose masses sum to each `mstar` [Msun/h], sorted by subhalo."""
    n_star = np.maximum(1, np.round(mstar / gal["star_particle_mass"])).astype(np.int64)
    owner = np.repeat(np.arange(len(mstar)), n_star)
    r_half = gal["stellar_half_mass_radius"] * (mstar / 1e10) ** 0.25
    star_pos = np.mod(pos[owner] + plummer_offsets(rng, len(owner), r_half[owner]), box)
    star_pos[star_pos >= box] = 0.0
    return n_star, {"Coordinates": star_pos, "Masses": (mstar / n_star)[owner]}


def _len_types(mass_type: np.ndarray, n_star: np.ndarray, dm_particle_mass: float, f_b: float) -> np.ndarray:
    """(n, 6) int64 particle counts per type: gas and dark-matter masses over the particle masses
    [Msun/h], and the star particles."""
    len_type = np.zeros((len(mass_type), 6), dtype=np.int64)
    gas_particle_mass = dm_particle_mass * f_b / (1.0 - f_b)
    len_type[:, 0] = np.round(mass_type[:, 0] / gas_particle_mass)
    len_type[:, 1] = np.round(mass_type[:, 1] / dm_particle_mass)
    len_type[:, 4] = n_star
    return len_type


def _hydro_halo_fields(halos: dict, grnr: np.ndarray, pos: np.ndarray, mass_type: np.ndarray,
                       len_type: np.ndarray, bar: dict) -> dict:
    """TNG Group* fields of the hydro groups from their surviving subhalos (group `grnr`, position
    `pos`, per-type masses and counts), in the dark catalogue's group order."""
    n_groups = len(halos["GroupMass"])
    nsubs = np.bincount(grnr, minlength=n_groups)
    first_sub = np.r_[0, np.cumsum(nsubs)[:-1]]

    def group_sum(values):
        return np.stack([np.bincount(grnr, weights=values[:, t], minlength=n_groups) for t in range(6)], 1)

    g_mass_type = group_sum(mass_type)
    g_len_type = group_sum(len_type).round().astype(np.int32)
    return {
        "GroupPos": pos[first_sub],
        "GroupMass": g_mass_type.sum(1),
        "GroupMassType": g_mass_type,
        "GroupLen": g_len_type.sum(1).astype(np.int32),
        "GroupLenType": g_len_type,
        "GroupNsubs": nsubs.astype(np.int32),
        "GroupFirstSub": first_sub.astype(np.int32),
        "Group_M_Crit200": _ratio(halos["Group_M_Crit200"], bar) * halos["Group_M_Crit200"],
    }


def hydro_twin(halos: dict, subhalos: dict, tree, n_particles: int, box: float, dm_particle_mass: float,
               params: dict, rng: np.random.Generator, cosmology: dict = TNG_COSMOLOGY):
    """The hydro run's catalogue and star particles from the dark catalogue (library units).

    `tree` holds the dark particles (for the environment), `params` the `galaxies`
    and `baryons` config sections. Returns (halos, subhalos, stars, dark_index):
    Group*/Subhalo* fields, star particles {Coordinates, Masses} sorted by
    subhalo, and for every hydro subhalo the index of its dark twin.
    """
    gal, bar = params["galaxies"], params["baryons"]
    f_b = cosmology["OmegaBaryon"] / cosmology["Omega0"]
    n_subs = len(subhalos["SubhaloMass"])
    grnr = subhalos["SubhaloGrNr"]
    is_central = np.zeros(n_subs, dtype=bool)
    is_central[halos["GroupFirstSub"]] = True

    host_mass = np.where(is_central, halos["GroupMass"][grnr], subhalos["SubhaloMass"])
    mstar, mstar_mean = _stellar_masses(host_mass, subhalos["SubhaloPos"], tree, n_particles, box, gal,
                                        cosmology["HubbleParam"], rng)
    # which subhalos survive, where they sit, and their hydro masses (rng: after the stellar masses)
    keep = is_central | (rng.uniform(size=n_subs) >= bar["satellite_loss"])
    offsets = bar["position_offset"] * rng.standard_normal((n_subs, 3))
    sub_mass = _hydro_subhalo_masses(halos, subhalos, is_central, keep, bar)

    idx = np.flatnonzero(keep)  # dark order: by group, central first, then satellites
    mstar_h = mstar[idx]
    mass_type = _mass_types(sub_mass[idx], mstar_h, f_b)
    pos_h = np.mod(subhalos["SubhaloPos"][idx] + offsets[idx], box)
    n_star, stars = _star_particles(pos_h, mstar_h, gal, box, rng)
    len_type = _len_types(mass_type, n_star, dm_particle_mass, f_b)
    grnr_h = grnr[idx]
    hydro_halos = _hydro_halo_fields(halos, grnr_h, pos_h, mass_type, len_type, bar)
    hydro_subhalos = {
        "SubhaloPos": pos_h,
        "SubhaloVel": subhalos["SubhaloVel"][idx],
        "SubhaloMass": mass_type.sum(1),
        "SubhaloMassType": mass_type,
        "SubhaloLen": len_type.sum(1).astype(np.int32),
        "SubhaloLenType": len_type.astype(np.int32),
        "SubhaloGrNr": grnr_h.astype(np.int32),
        "SubhaloVmax": subhalos["SubhaloVmax"][idx] * np.sqrt(mass_type.sum(1) / subhalos["SubhaloMass"][idx]),
        "SubhaloStellarMassMean": mstar_mean[idx],
    }
    return hydro_halos, hydro_subhalos, stars, idx
