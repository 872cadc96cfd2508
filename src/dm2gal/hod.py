"""The paper's HOD benchmark (Kasmanoff et al. 2020, sec. 2.3), built from the hydro run
and applied to the gravity-only run's own halos and subhalos.

1. Halos of the hydro run are binned by halo mass (log-spaced edges).
2. In each bin, the stellar masses [Msun/h] of the hydro centrals (a halo's
   `GroupFirstSub`) and of its satellites (every other subhalo) form two
   empirical distributions. Subhalos without stars are kept (as zeros), so the
   sampled catalogue also reproduces the fraction of dark subhalos.
3. Every gravity-only halo is binned the same way; its central and its
   satellites draw stellar masses (with replacement) from the distributions of
   that bin.
4. Satellite masses are multiplied, per bin, by the ratio of the mean number of
   satellites per halo (hydro / gravity-only) and by the ratio of the mean halo
   mass (hydro / gravity-only): the baryonic corrections of the paper.

Baryons also shift the halo mass function (feedback makes hydro halos lighter), so a
gravity-only halo binned by its own mass lands in a heavier bin than its hydro twin
and draws too massive a central. With `match_halo_masses` (the default of the hod
stage) the gravity-only halos are first given the hydro mass of equal abundance
(rank in the paired box), which corrects the halo mass function itself; the paper's
satellite corrections then act on what remains.

Halos outside the bin range are put in the nearest edge bin; a bin without a
hydro central (or satellite) draws from the nearest bin that has one.

Held-out universes (`fit_training`, `prepare_target`): the HOD, its satellite
corrections and the abundance-matching relation (gravity-only -> hydro halo mass)
are all fitted on the training pair (and the training universes, when
split.training_universes lists some: their halos join the pools and the statistics,
each box abundance-matched in itself), then applied to another gravity-only run
alone; its hydro twin is never read. The draws are an ensemble: realisation i of
universe u is seeded by the i-th child of SeedSequence([seed, crc32(u)])
(`realisation_seeds`), so the realisations of one universe, and the universes,
are independent and each is reproducible.
"""

from __future__ import annotations

import json
import logging
import zlib
from dataclasses import dataclass

import numpy as np

from .atomic import atomic_path
from .catalogue import write_catalogue
from .cic import deposit_cube
from .fields import cube_attrs, open_field, write_field
from .split import read_cubes
from .tng import load_halos, load_subhalos

log = logging.getLogger("dm2gal.hod")


@dataclass
class Catalogue:
    """A halo catalogue reduced to what the HOD needs (library units).

    halo_mass [Msun/h, (n_halo,)]; first_sub (n_halo,) index of each halo's central
    subhalo or -1; sub_halo (n_sub,) the host halo of each subhalo (SubhaloGrNr);
    sub_pos [Mpc/h, (n_sub, 3)]; sub_stellar [Msun/h, (n_sub,)] (hydro run only).
    """

    halo_mass: np.ndarray
    first_sub: np.ndarray
    sub_halo: np.ndarray
    sub_pos: np.ndarray | None = None
    sub_stellar: np.ndarray | None = None


def concatenate(cats: list[Catalogue]) -> Catalogue:
    """The halos and subhalos of several boxes as one Catalogue (halo indices offset box by box;
    positions stay each box's own, so only position-free uses are meaningful: the fit's pools
    and statistics)."""
    if len(cats) == 1:
        return cats[0]
    halo_offsets = np.cumsum([0] + [len(c.halo_mass) for c in cats[:-1]])
    sub_offsets = np.cumsum([0] + [len(c.sub_halo) for c in cats[:-1]])

    def joined(name):
        parts = [getattr(c, name) for c in cats]
        return None if any(p is None for p in parts) else np.concatenate(parts)

    return Catalogue(
        halo_mass=np.concatenate([c.halo_mass for c in cats]),
        first_sub=np.concatenate([np.where(c.first_sub >= 0, c.first_sub + o, -1) for c, o in zip(cats, sub_offsets)]),
        sub_halo=np.concatenate([c.sub_halo + o for c, o in zip(cats, halo_offsets)]),
        sub_pos=joined("sub_pos"), sub_stellar=joined("sub_stellar"))


def load_catalogue(base: str, snap: int, halo_mass_field: str, stellar: bool) -> Catalogue:
    """Read a TNG-layout group catalogue into a `Catalogue` (stellar masses if `stellar`)."""
    halos = load_halos(base, snap, [halo_mass_field, "GroupFirstSub"])
    fields = ["SubhaloGrNr", "SubhaloPos"] + (["SubhaloMassType"] if stellar else [])
    subs = load_subhalos(base, snap, fields)
    if halos["count"] == 0 or subs["count"] == 0:
        raise ValueError(f"{base} snapshot {snap}: the group catalogue has no halos or no subhalos")
    return Catalogue(
        halo_mass=np.asarray(halos[halo_mass_field], np.float64),
        first_sub=np.asarray(halos["GroupFirstSub"], np.int64),
        sub_halo=np.asarray(subs["SubhaloGrNr"], np.int64),
        sub_pos=np.asarray(subs["SubhaloPos"], np.float64),
        sub_stellar=np.asarray(subs["SubhaloMassType"][:, 4], np.float64) if stellar else None,
    )


def is_central(cat: Catalogue) -> np.ndarray:
    """(n_sub,) bool: the subhalo is its host halo's `GroupFirstSub`."""
    idx = np.arange(len(cat.sub_halo))
    return cat.first_sub[cat.sub_halo] == idx


def satellite_counts(cat: Catalogue) -> np.ndarray:
    """(n_halo,) number of satellites (subhalos other than the central) in each halo."""
    n_sub = np.bincount(cat.sub_halo, minlength=len(cat.halo_mass))
    return np.where(cat.first_sub >= 0, n_sub - 1, n_sub)


def bin_edges(halo_mass: np.ndarray, n_bins: int, mass_min: float | None, mass_max: float | None) -> np.ndarray:
    """(n_bins + 1,) log10 halo-mass edges [log10 Msun/h]; None ends take the sample's range."""
    m = halo_mass[halo_mass > 0]
    lo = np.log10(mass_min) if mass_min else np.log10(m.min())
    hi = np.log10(mass_max) if mass_max else np.log10(m.max())
    if not hi > lo:
        raise ValueError(f"HOD mass range is empty: [{10**lo:.3g}, {10**hi:.3g}] Msun/h")
    return np.linspace(lo, hi, n_bins + 1)


def assign_bins(halo_mass: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of each halo; masses beyond the edges go to the first / last bin."""
    logm = np.log10(np.maximum(halo_mass, np.finfo(np.float64).tiny))
    return np.clip(np.searchsorted(edges, logm, side="right") - 1, 0, len(edges) - 2)


@dataclass
class HOD:
    """Per-bin stellar-mass pools of the hydro run and the statistics behind the corrections.

    edges: (n_bins + 1,) log10 halo mass; centrals[b], satellites[b]: stellar masses
    [Msun/h] of the hydro centrals / satellites in bin b; n_halo[b]: hydro halos with a
    central; n_sat[b]: their satellites; mass_sum[b]: their summed halo mass [Msun/h].
    """

    edges: np.ndarray
    centrals: list[np.ndarray]
    satellites: list[np.ndarray]
    n_halo: np.ndarray
    n_sat: np.ndarray
    mass_sum: np.ndarray


def _occupied(cat: Catalogue) -> np.ndarray:
    """Halos that host at least one subhalo (hence a central)."""
    return cat.first_sub >= 0


def halo_statistics(cat: Catalogue, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin: number of occupied halos, their satellites, their summed mass [Msun/h]."""
    n = len(edges) - 1
    occ = _occupied(cat)
    b = assign_bins(cat.halo_mass[occ], edges)
    n_halo = np.bincount(b, minlength=n)
    n_sat = np.bincount(b, weights=satellite_counts(cat)[occ], minlength=n).astype(np.int64)
    mass_sum = np.bincount(b, weights=cat.halo_mass[occ], minlength=n)
    return n_halo, n_sat, mass_sum


def fit(hydro: Catalogue, n_bins: int, mass_min: float | None = None, mass_max: float | None = None) -> HOD:
    """Bin the hydro halos and collect the central and satellite stellar-mass pools."""
    if hydro.sub_stellar is None:
        raise ValueError("the hydro catalogue needs subhalo stellar masses")
    occ = _occupied(hydro)
    edges = bin_edges(hydro.halo_mass[occ], n_bins, mass_min, mass_max)
    sub_bin = assign_bins(hydro.halo_mass[hydro.sub_halo], edges)
    cen = is_central(hydro)
    centrals = [hydro.sub_stellar[cen & (sub_bin == b)] for b in range(n_bins)]
    satellites = [hydro.sub_stellar[~cen & (sub_bin == b)] for b in range(n_bins)]
    return HOD(edges, centrals, satellites, *halo_statistics(hydro, edges))


def corrections(hod: HOD, dark: Catalogue) -> dict[str, np.ndarray]:
    """Per-bin satellite corrections and the gravity-only statistics behind them.

    sat_ratio[b] = (n_sat / n_halo)_hydro / (n_sat / n_halo)_dark and
    mass_ratio[b] = (mass_sum / n_halo)_hydro / (mass_sum / n_halo)_dark; a ratio whose
    denominator or numerator bin is empty is 1 (nothing to correct, or no information).
    """
    n_halo, n_sat, mass_sum = halo_statistics(dark, hod.edges)
    with np.errstate(divide="ignore", invalid="ignore"):
        sat_h = hod.n_sat / hod.n_halo
        sat_d = n_sat / n_halo
        mass_h = hod.mass_sum / hod.n_halo
        mass_d = mass_sum / n_halo
        sat_ratio = np.where((hod.n_halo > 0) & (n_sat > 0), sat_h / sat_d, 1.0)
        mass_ratio = np.where((hod.n_halo > 0) & (n_halo > 0), mass_h / mass_d, 1.0)
    return dict(n_halo=n_halo, n_sat=n_sat, mass_sum=mass_sum, sat_ratio=sat_ratio, mass_ratio=mass_ratio)


def match_halo_masses(dark: Catalogue, hydro: Catalogue) -> Catalogue:
    """A copy of `dark` whose occupied halos carry the hydro halo mass of equal abundance.

    Both runs share the box, so equal abundance is equal rank: the k-th heaviest
    gravity-only halo (with a subhalo) gets the k-th heaviest hydro halo mass; halos
    ranked beyond the hydro count keep their mass times the ratio at the last rank.
    """
    occ = np.flatnonzero(_occupied(dark))
    order = occ[np.argsort(-dark.halo_mass[occ], kind="stable")]
    target = np.sort(hydro.halo_mass[_occupied(hydro)])[::-1]
    k = min(len(order), len(target))
    mass = dark.halo_mass.astype(np.float64).copy()
    if k == 0:
        return dark
    mass[order[:k]] = target[:k]
    mass[order[k:]] = dark.halo_mass[order[k:]] * (target[k - 1] / dark.halo_mass[order[k - 1]])
    return Catalogue(mass, dark.first_sub, dark.sub_halo, dark.sub_pos, dark.sub_stellar)


def mass_relation(pairs: list[tuple[Catalogue, Catalogue]]) -> tuple[np.ndarray, np.ndarray]:
    """The abundance matching of (gravity-only, hydro) pairs as one function: (distinct log10
    gravity-only halo masses, increasing; the mean log10 hydro mass `match_halo_masses` gives
    the halos of each, every pair matched in its own box)."""
    x, y = [], []
    for dark, hydro in pairs:
        occ = _occupied(dark)
        x.append(np.log10(dark.halo_mass[occ]))
        y.append(np.log10(match_halo_masses(dark, hydro).halo_mass[occ]))
    x, y = np.concatenate(x), np.concatenate(y)
    ux, inverse = np.unique(x, return_inverse=True)
    return ux, np.bincount(inverse, weights=y) / np.bincount(inverse)


def transfer_halo_masses(target: Catalogue, relation: tuple[np.ndarray, np.ndarray]) -> Catalogue:
    """A copy of `target` (another gravity-only run) whose occupied halos carry the hydro mass
    that a training pair's `mass_relation` gives their mass: log-log interpolation, and the
    end points' mass ratio beyond them."""
    x, y = relation
    occ = _occupied(target)
    logm = np.log10(target.halo_mass[occ])
    matched = np.interp(logm, x, y)
    matched = np.where(logm < x[0], logm + (y[0] - x[0]), np.where(logm > x[-1], logm + (y[-1] - x[-1]), matched))
    mass = target.halo_mass.astype(np.float64).copy()
    mass[occ] = 10.0**matched
    return Catalogue(mass, target.first_sub, target.sub_halo, target.sub_pos, target.sub_stellar)


@dataclass
class Fitted:
    """The HOD fitted on the training pair: stellar-mass pools, the satellite corrections
    (hydro against the training gravity-only run) and, with mass matching, the halo-mass
    relation that `prepare_target` applies to another gravity-only run."""

    hod: HOD
    corrections: dict
    relation: tuple[np.ndarray, np.ndarray] | None


def fit_training(dark: Catalogue, hydro: Catalogue, n_bins: int, mass_min: float | None = None,
                 mass_max: float | None = None, match_masses: bool = True,
                 extra_pairs: list[tuple[Catalogue, Catalogue]] = ()) -> tuple[Fitted, Catalogue]:
    """Fit on the training pair and `extra_pairs` (the training universes' (gravity-only, hydro)
    catalogues); returns the fit and the training gravity-only catalogue as the HOD paints it
    (abundance-matched by rank in its own box when `match_masses`)."""
    pairs = [(dark, hydro), *extra_pairs]
    model = fit(concatenate([h for _, h in pairs]), n_bins, mass_min, mass_max)
    painted = [match_halo_masses(d, h) if match_masses else d for d, h in pairs]
    if match_masses:
        log.info("abundance matching: gravity-only halo masses x %.4f overall",
                 painted[0].halo_mass[_occupied(dark)].sum() / dark.halo_mass[_occupied(dark)].sum())
    relation = mass_relation(pairs) if match_masses else None
    return Fitted(model, corrections(model, concatenate(painted)), relation), painted[0]


def prepare_target(fitted: Fitted, target: Catalogue) -> Catalogue:
    """Another gravity-only run's catalogue as the fitted HOD paints it (its halo masses through
    the training relation when the fit matched masses)."""
    return target if fitted.relation is None else transfer_halo_masses(target, fitted.relation)


def realisation_seeds(seed: int, universe: str, n: int) -> list[np.random.SeedSequence]:
    """The seeds of the n independent HOD draws on `universe` ('test' or a held-out name):
    the children of SeedSequence([seed, crc32(universe)]) (a longer ensemble keeps the first draws)."""
    return np.random.SeedSequence([int(seed), zlib.crc32(universe.encode())]).spawn(int(n))


def draw(fitted: Fitted, target: Catalogue, seeds: list[np.random.SeedSequence]) -> list[dict[str, np.ndarray]]:
    """One `sample` of the fitted HOD on `target` per seed (the training corrections throughout)."""
    return [sample(fitted.hod, target, np.random.default_rng(s), fitted.corrections) for s in seeds]


def _nearest_nonempty(pools: list[np.ndarray]) -> np.ndarray:
    """For each bin, the index of the nearest bin whose pool is non-empty."""
    full = np.flatnonzero([len(p) > 0 for p in pools])
    if len(full) == 0:
        raise ValueError("no HOD bin has any hydro subhalo of this kind")
    b = np.arange(len(pools))
    return full[np.abs(b[:, None] - full[None, :]).argmin(axis=1)]


def sample(hod: HOD, dark: Catalogue, rng: np.random.Generator, corr: dict | None = None) -> dict[str, np.ndarray]:
    """Stellar masses [Msun/h] for every gravity-only subhalo, with central flag and bin.

    `corr`: the satellite corrections to apply (`corrections` of the training pair);
    None computes them against `dark` itself. Returns stellar_mass, central (bool),
    bin (n_sub,), plus the `corrections` arrays.
    """
    if corr is None:
        corr = corrections(hod, dark)
    sub_bin = assign_bins(dark.halo_mass[dark.sub_halo], hod.edges)
    cen = is_central(dark)
    mass = np.zeros(len(dark.sub_halo))
    for central, pools in ((True, hod.centrals), (False, hod.satellites)):
        source = _nearest_nonempty(pools)
        for b in range(len(pools)):
            idx = np.flatnonzero((cen == central) & (sub_bin == b))
            if len(idx) == 0:
                continue
            pool = pools[source[b]]
            draw = pool[rng.integers(0, len(pool), size=len(idx))]
            if not central:
                draw = draw * corr["sat_ratio"][b] * corr["mass_ratio"][b]
            mass[idx] = draw
    return dict(stellar_mass=mass, central=cen, bin=sub_bin, **corr)


def stellar_mass_function(mass: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Number of galaxies per log10 stellar-mass bin (edges in log10 Msun/h)."""
    m = mass[mass > 0]
    return np.histogram(np.log10(m), bins=edges)[0]


SMF_EDGES = np.arange(7.0, 13.01, 0.25)
"""log10 stellar-mass edges [Msun/h] of the stellar mass function written to bins.json."""


def run(dark_base: str, hydro_base: str, snap: int, target_base: str, target_snap: int, truth_attrs: dict,
        cube_start, cube_size: int, n_bins: int, mass_min: float | None, mass_max: float | None,
        halo_mass_field: str, seeds: list[np.random.SeedSequence], match_masses: bool = True,
        same_box: bool = True, extra_bases: list[tuple[str, str, int]] = ()) -> tuple[list[np.ndarray], dict, dict]:
    """Fit the HOD on the training pair, draw it onto the gravity-only run at `target_base` once
    per seed, and deposit each draw on the region [cube_start, + cube_size)^3 of the grid.

    `same_box`: the target is the training gravity-only run itself (the test cube). Else it is
    a held-out universe, whose halo masses go through the training relation. `truth_attrs` are
    the attributes of the target universe's hydro stellar-mass field (box_size, n_grid, mas),
    so the HOD is deposited exactly like its truth. `extra_bases`: (dark_base, hydro_base,
    snapshot) of the training universes, fitted on beside the training pair. Returns (one
    float32 (size,)^3 cube [Msun/h per voxel] per seed, realisation 0's catalogue columns, bins
    report).
    """
    hydro = load_catalogue(hydro_base, snap, halo_mass_field, stellar=True)
    dark = load_catalogue(dark_base, snap, halo_mass_field, stellar=False)
    log.info("hydro: %d halos, %d subhalos; gravity-only: %d halos, %d subhalos",
             len(hydro.halo_mass), len(hydro.sub_halo), len(dark.halo_mass), len(dark.sub_halo))
    extra_pairs = [(load_catalogue(d, snap_e, halo_mass_field, stellar=False),
                    load_catalogue(h, snap_e, halo_mass_field, stellar=True)) for d, h, snap_e in extra_bases]
    if extra_pairs:
        log.info("training universes: %d more pairs, %d hydro halos", len(extra_pairs),
                 sum(len(h.halo_mass) for _, h in extra_pairs))
    fitted, painted_dark = fit_training(dark, hydro, n_bins, mass_min, mass_max, match_masses, extra_pairs)
    if same_box:
        target = painted_dark
    else:
        target = prepare_target(fitted, load_catalogue(target_base, target_snap, halo_mass_field, stellar=False))
        log.info("held-out gravity-only run %s: %d halos, %d subhalos", target_base, len(target.halo_mass),
                 len(target.sub_halo))
    draws = draw(fitted, target, seeds)
    cubes = [deposit_cube(target.sub_pos, d["stellar_mass"], truth_attrs["box_size"], truth_attrs["n_grid"],
                          cube_start, cube_size, truth_attrs["mas"]) for d in draws]
    for i, (d, cube) in enumerate(zip(draws, cubes)):
        log.info("HOD realisation %d: %d galaxies with M* > 0 in the box, %.4g Msun/h in the region",
                 i, int((d["stellar_mass"] > 0).sum()), float(cube.sum(dtype=np.float64)))
    first = draws[0]
    columns = dict(position=target.sub_pos, stellar_mass=first["stellar_mass"],
                   host_subhalo=np.arange(len(target.sub_halo)), central=first["central"])
    hod, corr = fitted.hod, fitted.corrections
    report = dict(
        halo_mass_field=halo_mass_field, match_halo_masses=match_masses, target=str(target_base),
        realisations=len(seeds), seed_entropy=[int(e) for e in np.atleast_1d(seeds[0].entropy)],
        log10_edges=hod.edges.tolist(),
        bins=[dict(n_halo_hydro=int(hod.n_halo[b]), n_halo_dark=int(corr["n_halo"][b]),
                   n_central_hydro=len(hod.centrals[b]), n_satellite_hydro=len(hod.satellites[b]),
                   n_satellite_dark=int(corr["n_sat"][b]),
                   sat_ratio=float(corr["sat_ratio"][b]), mass_ratio=float(corr["mass_ratio"][b]),
                   median_central_stellar_mass=float(np.median(hod.centrals[b])) if len(hod.centrals[b]) else None)
              for b in range(n_bins)],
        # truth: the training hydro run the HOD was fitted on; hod: realisation 0 on the target
        smf=dict(log10_edges=SMF_EDGES.tolist(),
                 truth=stellar_mass_function(hydro.sub_stellar, SMF_EDGES).tolist(),
                 hod=stellar_mass_function(first["stellar_mass"], SMF_EDGES).tolist()),
    )
    return cubes, columns, report


def run_stage(dark_base: str, hydro_base: str, snapshot: int, truth_path, cubes_json, out_fields, out_catalogue,
              out_bins, *, universe: str = "test", target_base: str | None = None, target_snapshot: int | None = None,
              source: str = "dark", n_bins: int, mass_min: float | None, mass_max: float | None,
              halo_mass_field: str, seed: int, match_masses: bool = True,
              extra_bases: list[tuple[str, str, int]] = ()) -> dict:
    """The hod rule for one universe: len(out_fields) realisations, realisation 0's catalogue, bins.json.

    universe 'test' paints the training gravity-only run over the test cube of `cubes_json`;
    a held-out universe paints the run at `target_base` whole (`cubes_json` None). Each field
    has the attributes of a painted cube, plus its realisation index and seed.
    """
    truth_attrs = dict(open_field(truth_path).attrs)
    if cubes_json is not None:
        test = read_cubes(cubes_json).test
        start, size = test.start, test.size
    else:
        start, size = (0, 0, 0), int(truth_attrs["n_grid"])
    seeds = realisation_seeds(seed, universe, len(out_fields))
    same_box = universe == "test"
    cubes, columns, report = run(dark_base, hydro_base, snapshot, target_base or dark_base,
                                 snapshot if target_snapshot is None else target_snapshot, truth_attrs, start, size,
                                 n_bins, mass_min, mass_max, halo_mass_field, seeds, match_masses, same_box,
                                 extra_bases)
    for i, (cube, path) in enumerate(zip(cubes, out_fields)):
        attrs = cube_attrs(truth_attrs, start, size, source=source, quantity="stellar_mass", mode="hod",
                           label="HOD benchmark: training hydro halo-mass bins sampled onto gravity-only subhalos",
                           model="HOD (Kasmanoff et al. 2020, sec. 2.3)", universe=universe, realisation=i, seed=seed)
        write_field(path, cube, attrs)
    write_catalogue(out_catalogue, attrs=dict(box_size=float(truth_attrs["box_size"]), source=source, mode="hod",
                                              seed=seed, universe=universe, realisation=0), **columns)
    report["universe"] = universe
    with atomic_path(out_bins) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    return report
