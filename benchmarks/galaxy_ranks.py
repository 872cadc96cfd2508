"""Are the painted galaxies calibrated? True over painted stellar mass by rank of painted galaxy mass.

A galaxy is what the realisations draw as one object: the painted voxels one gravity-only
subhalo hosts (`dm2gal.cic.host_subhalos`, `dm2gal.calibration.galaxy_groups`). Per
galaxy: P, its painted mass; T, the hydro truth's stellar mass in the same voxels; s, its
galaxy scatter (as `dm2gal.realisations` draws it). Galaxies are ranked by P within each
painted region (a held-out universe: the whole box; the test cube), and for each rank bin
the benchmark prints sum(T) / sum(P) per region (mean +- std over regions) and the
z-scores z = (log10(T / P) + ln10 s^2 / 2) / s of the galaxies with T > 0 (mean, std).
A painter whose galaxies are E[T | P] has sum(T) / sum(P) = 1 in every bin, whatever the
ranking; a painter of noisy galaxy masses shows regression to the mean: below 1 at the top
ranks (the heaviest painted are partly those painted too heavy), above 1 below. The
top ranks are the few galaxies that set the small-scale P(k) and B. A second table splits
the galaxies into centrals (hosted by their FoF group's first subhalo) and satellites and
gives sum(T) / sum(P) per bin of the group's gravity-only GroupMass (pooled over regions,
and the range over regions), and sum(P) / sum(E) (E below): what a painter does with the
mass of one halo. A third table measures the galaxies' distance from the floor: E, the
generator's noise-free mean (the mini-universe's `stellar_mass_ideal` field) in the same
voxels, is the best any painter of means can paint; by rank of E (a ranking that does not
select on the painter's errors) it gives log10(P / E) (mean, std over galaxies), sum(P) /
sum(E) per region, and the truth's own log10(T / E) std (the intrinsic scatter a drawn
painter adds). Usage (pairs of
a results folder and its data folder, e.g. the seeds of benchmarks/seeds.py):

    python benchmarks/galaxy_ranks.py results data/mini [OUT/seed2000/results OUT/seed2000/data ...]
        [--test] [--ranks 0 10 30 100 300 1000] [--snapshot 99]
"""

import argparse
import json
import math
from pathlib import Path

import numpy as np

from dm2gal.calibration import drawn_galaxy_scatter, galaxy_groups
from dm2gal.cic import host_subhalos
from dm2gal.fields import open_field, read_periodic
from dm2gal.tng import load_halos, load_subhalos

GROUP_MASS_EDGES = (11.0, 11.5, 12.0, 12.5, 13.0, 13.5, 15.0)
"""log10 GroupMass [Msun/h] bins of the central/satellite table."""


def galaxy_table(painted_dir: Path, truth_path: Path, dark_base: Path, snapshot: int) -> dict[str, np.ndarray]:
    """{P, T, E, s, central, log_group_mass} (G,) of the galaxies (hosted ones) of the painting in
    `painted_dir` against the truth field and the noise-free mean field beside it (E: NaN where a
    run has none)."""
    field, scatter = open_field(painted_dir / "stellar_mass.zarr"), open_field(painted_dir / "stellar_mass_scatter.zarr")
    attrs = dict(field.attrs)
    origin, n, box = tuple(attrs["origin"]), int(attrs["parent_n_grid"]), float(attrs["parent_box_size"])
    mean_cube = np.asarray(field[...])
    truth = np.asarray(read_periodic(open_field(truth_path), origin, mean_cube.shape), np.float64)
    ideal_path = truth_path.with_name("stellar_mass_ideal.zarr")
    ideal = (np.asarray(read_periodic(open_field(ideal_path), origin, mean_cube.shape), np.float64)
             if ideal_path.exists() else np.full(mean_cube.shape, np.nan))
    subs = load_subhalos(str(dark_base), snapshot, ["SubhaloPos", "SubhaloMass", "SubhaloGrNr"])
    groups = load_halos(str(dark_base), snapshot, ["GroupMass", "GroupFirstSub"])
    painted = np.argwhere(mean_cube > 0)
    mean = mean_cube[tuple(painted.T)].astype(np.float64)
    sigma = np.asarray(scatter[...])[tuple(painted.T)].astype(np.float64)
    hosts = host_subhalos(painted, origin, n, box, subs["SubhaloPos"], subs["SubhaloMass"])
    galaxies = galaxy_groups(hosts)
    p = np.bincount(galaxies, weights=mean)
    knots = (list(scatter.attrs.get("galaxy_scatter_log10_mass", [])), list(scatter.attrs.get("galaxy_scatter_factor", [])))
    host = np.full(len(p), -1)
    host[galaxies] = hosts
    hosted = host >= 0
    group = subs["SubhaloGrNr"][host[hosted]]
    table = dict(P=p, T=np.bincount(galaxies, weights=truth[tuple(painted.T)]),
                 E=np.bincount(galaxies, weights=ideal[tuple(painted.T)]),
                 s=drawn_galaxy_scatter(mean, sigma, galaxies, knots))
    return dict({k: v[hosted] for k, v in table.items()}, central=groups["GroupFirstSub"][group] == host[hosted],
                log_group_mass=np.log10(groups["GroupMass"][group]))


def regions(results: Path, data: Path, test: bool):
    """(name, painted folder, truth field, gravity-only catalogue base) of each painted region."""
    if test:
        yield "test", results / "paint" / "test", results / "fields" / "hydro" / "stellar_mass.zarr", data / "dark" / "output"
        return
    for folder in sorted((results / "paint" / "universes").iterdir()):
        yield (folder.name, folder, results / "fields" / "universes" / folder.name / "hydro" / "stellar_mass.zarr",
               data / "universes" / folder.name / "dark" / "output")


def rank_rows(tables: list[dict], edges: list[int]) -> list[dict]:
    """Per rank bin [edges[i], edges[i+1]): sum(T)/sum(P) mean and std over the tables (regions), and
    the z-scores' mean and std over all their galaxies with T > 0, and the median scatter s [dex]."""
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        ratios, z, s = [], [], []
        for t in tables:
            idx = np.argsort(-t["P"])[lo:hi]
            if len(idx) == 0:
                continue
            ratios.append(t["T"][idx].sum() / t["P"][idx].sum())
            ok = idx[t["T"][idx] > 0]
            z.append((np.log10(t["T"][ok] / t["P"][ok]) + 0.5 * math.log(10.0) * t["s"][ok] ** 2) / t["s"][ok])
            s.append(t["s"][idx])
        z, s = np.concatenate(z), np.concatenate(s)
        rows.append(dict(ranks=[lo, hi], regions=len(ratios), ratio_mean=float(np.mean(ratios)),
                         ratio_std=float(np.std(ratios)), z_mean=float(z.mean()), z_std=float(z.std()), n=len(z),
                         median_scatter=float(np.median(s))))
    return rows


def central_satellite_rows(tables: list[dict]) -> list[dict]:
    """Per kind (central, satellite) and GROUP_MASS_EDGES bin: sum(T) / sum(P) pooled over the
    tables (regions) and its range over them, and sum(P) / sum(E) pooled (NaN without E)."""
    rows = []
    for kind in ("central", "satellite"):
        for lo, hi in zip(GROUP_MASS_EDGES[:-1], GROUP_MASS_EDGES[1:]):
            sums = np.array([[t[q][sel].sum() for q in ("T", "P", "E")] for t in tables
                             for sel in [(t["central"] == (kind == "central")) & (t["log_group_mass"] >= lo)
                                         & (t["log_group_mass"] < hi)]])
            per_region = sums[sums[:, 1] > 0, 0] / sums[sums[:, 1] > 0, 1]
            if len(per_region):
                rows.append(dict(kind=kind, log_group_mass=[lo, hi], ratio=float(sums[:, 0].sum() / sums[:, 1].sum()),
                                 ratio_min=float(per_region.min()), ratio_max=float(per_region.max()),
                                 painted_over_floor=float(sums[:, 1].sum() / sums[:, 2].sum())))
    return rows


def floor_rows(tables: list[dict], edges: list[int]) -> list[dict]:
    """Per bin [edges[i], edges[i+1]) of rank by E (the noise-free mean): log10(P / E) mean and
    std over the galaxies with E > 0, sum(P) / sum(E) mean and std over the tables (regions),
    and the std of log10(T / E) over those with T > 0; [] where no table holds E."""
    tables = [t for t in tables if np.isfinite(t["E"]).all()]
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        log_pe, log_te, ratios = [], [], []
        for t in tables:
            idx = np.argsort(-t["E"])[lo:hi]
            idx = idx[t["E"][idx] > 0]
            if len(idx) == 0:
                continue
            ratios.append(t["P"][idx].sum() / t["E"][idx].sum())
            log_pe.append(np.log10(t["P"][idx] / t["E"][idx]))
            drawn = idx[t["T"][idx] > 0]
            log_te.append(np.log10(t["T"][drawn] / t["E"][drawn]))
        if ratios:
            log_pe, log_te = np.concatenate(log_pe), np.concatenate(log_te)
            rows.append(dict(ranks=[lo, hi], regions=len(ratios), log_pe_mean=float(log_pe.mean()),
                             log_pe_std=float(log_pe.std()), ratio_mean=float(np.mean(ratios)),
                             ratio_std=float(np.std(ratios)), log_te_std=float(log_te.std()), n=len(log_pe)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path, help="pairs: a results folder, then its data folder")
    ap.add_argument("--test", action="store_true", help="the test cube instead of the held-out universes")
    ap.add_argument("--ranks", nargs="+", type=int, default=[0, 10, 30, 100, 300, 1000])
    ap.add_argument("--snapshot", type=int, default=99)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if len(args.folders) % 2:
        ap.error("give the folders in pairs: results, data")
    tables = [galaxy_table(painted, truth, base, args.snapshot)
              for results, data in zip(args.folders[::2], args.folders[1::2])
              for _, painted, truth, base in regions(results, data, args.test)]
    rows, split, floor = rank_rows(tables, args.ranks), central_satellite_rows(tables), floor_rows(tables, args.ranks)
    print("ranks of painted mass | regions | sum T / sum P (mean +- std over regions) | z mean | z std | galaxies "
          "| median s [dex]")
    for r in rows:
        print(f"{r['ranks'][0]}-{r['ranks'][1]} | {r['regions']} | {r['ratio_mean']:.3f} +- {r['ratio_std']:.3f} | "
              f"{r['z_mean']:+.2f} | {r['z_std']:.2f} | {r['n']} | {r['median_scatter']:.3f}")
    print("\nkind | log10 GroupMass | sum T / sum P (pooled) | range over regions | sum P / sum E (pooled)")
    for r in split:
        print(f"{r['kind']} | {r['log_group_mass'][0]}-{r['log_group_mass'][1]} | {r['ratio']:.3f} | "
              f"{r['ratio_min']:.2f}-{r['ratio_max']:.2f} | {r['painted_over_floor']:.3f}")
    if floor:
        print("\nranks of noise-free mean E | regions | log10 P/E mean | log10 P/E std | sum P / sum E (mean +- std "
              "over regions) | log10 T/E std | galaxies")
    for r in floor:
        print(f"{r['ranks'][0]}-{r['ranks'][1]} | {r['regions']} | {r['log_pe_mean']:+.3f} | {r['log_pe_std']:.3f} | "
              f"{r['ratio_mean']:.3f} +- {r['ratio_std']:.3f} | {r['log_te_std']:.3f} | {r['n']}")
    if args.json:
        args.json.write_text(json.dumps({"ranks": rows, "central_satellite": split, "floor": floor}, indent=1))


if __name__ == "__main__":
    main()
