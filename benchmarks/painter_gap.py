"""Where dm2gal's held-out error comes from: occupancy or per-halo mass.

On a held-out mini-universe, compares dm2gal's whole-box painting with the generator's
noise-free mean (`SubhaloStellarMassMean` of each hydro subhalo, linear Msun/h). Each hydro
subhalo is joined to its gravity-only twin by their shared SubhaloVel (the generator copies
it). Two tables:

- **Per halo.** Bins are 0.5 dex of gravity-only GroupMass. For each: the number of FoF groups;
  the painted stellar mass summed over the voxels the group's subhalos host (largest CIC share
  of SubhaloMass, as the realisations group them) over the group's summed noise-free mean;
  the same for the drawn hydro masses (a control, 1 within the draws' noise); the rms of
  log10(painted / mean) over the groups [dex]; and the true stellar-mass field summed over the
  same voxels over the painted mass there, what the field's statistics see. The two ratios
  differ where a group's voxels also hold neighbours' galaxies (painted and true alike): the
  first compares those voxels with the group's own galaxies, the second like with like.
- **Occupancy.** mean |log10(X/T)| of P(k) and B (the pipeline's `stats` settings and bins)
  for the noise-free mean deposited at the gravity-only subhalo positions. It is scored
  everywhere and masked to the voxels dm2gal paints, as a mean field and as `--draws`
  realisations (each subhalo redrawn with the generator's scatter). If masking costs
  nothing, dm2gal's occupancy is not what separates it from the floor.

Usage (one seed of `benchmarks/seeds.py`, or a default run):

    python benchmarks/painter_gap.py OUT/seed1234/results OUT/seed1234/data [--json gap.json]
    python benchmarks/painter_gap.py results data/mini
"""

import argparse
import json
from pathlib import Path

import numpy as np
import yaml

from dm2gal.cic import deposit_cube, host_subhalos
from dm2gal.fields import open_field
from dm2gal.ideal import draw_masses
from dm2gal.metrics import bin_masks, field_scores
from dm2gal.stats import summarise
from dm2gal.tng import load_halos, load_subhalos

REPO = Path(__file__).resolve().parents[1]
HALO_EDGES = np.arange(11.0, 15.01, 0.5)
"""log10 GroupMass [Msun/h] bin edges of the per-halo table."""


def dark_twins(dark_vel: np.ndarray, hydro_vel: np.ndarray) -> np.ndarray:
    """(N_hydro,) index of each hydro subhalo's gravity-only twin, by exactly equal SubhaloVel."""
    index = {v.tobytes(): j for j, v in enumerate(np.ascontiguousarray(dark_vel))}
    if len(index) != len(dark_vel):
        raise ValueError("gravity-only subhalos share a SubhaloVel: no unique twins")
    return np.array([index[v.tobytes()] for v in np.ascontiguousarray(hydro_vel)])


def per_halo(painted: np.ndarray, truth: np.ndarray, box: float, dark: dict, groups: dict, mean: np.ndarray,
             drawn: np.ndarray) -> list[dict]:
    """Rows of the per-halo table of the painted and true fields (n^3); `mean` and `drawn`
    (N_dark,) are per gravity-only subhalo [Msun/h], 0 where the hydro run lost it."""
    n = painted.shape[0]
    voxels = np.argwhere(painted > 0)
    host = host_subhalos(voxels, (0, 0, 0), n, box, dark["SubhaloPos"], dark["SubhaloMass"])
    hosted = host >= 0
    n_groups = len(groups["GroupMass"])
    grnr = dark["SubhaloGrNr"]
    group, at = grnr[host[hosted]], tuple(voxels[hosted].T)
    p = np.bincount(group, weights=painted[at], minlength=n_groups)
    at_voxels = np.bincount(group, weights=truth[at], minlength=n_groups)
    m = np.bincount(grnr, weights=mean, minlength=n_groups)
    t = np.bincount(grnr, weights=drawn, minlength=n_groups)
    log_mass = np.log10(groups["GroupMass"])
    rows = []
    for lo, hi in zip(HALO_EDGES[:-1], HALO_EDGES[1:]):
        sel = (log_mass >= lo) & (log_mass < hi) & (m > 0)
        if sel.sum() < 3:
            continue
        both = sel & (p > 0)
        rows.append(dict(log10_group_mass=[float(lo), float(hi)], n_groups=int(sel.sum()),
                         unpainted=float(1 - both.sum() / sel.sum()),
                         painted_over_mean=float(p[sel].sum() / m[sel].sum()),
                         drawn_over_mean=float(t[sel].sum() / m[sel].sum()),
                         rms_dex=float(np.std(np.log10(p[both] / m[both]))),
                         true_over_painted_voxels=float(at_voxels[sel].sum() / p[sel].sum())))
    return rows


def occupancy(painted: np.ndarray, truth: np.ndarray, box: float, pos: np.ndarray, mean: np.ndarray,
              scatter_dex: float, draws: int, cfg: dict) -> dict:
    """{field: [P score, B score]} for the noise-free mean at the gravity-only positions,
    everywhere and masked to `painted > 0`, as a mean field and over `draws` redraws."""
    n = painted.shape[0]
    reference = summarise(truth, box, cfg)
    masks = bin_masks(reference, cfg)

    def score(field):
        s = field_scores(summarise(field, box, cfg, truth=truth), reference, masks, cfg["r_at_k"])
        return [s["pk"]["mean_abs_log10"], s["bk"]["mean_abs_log10"]]

    def deposit(mass):
        return deposit_cube(pos, mass, box, n, (0, 0, 0), n, mas=cfg["mas"])

    occupied = painted > 0
    at_dark = deposit(mean)
    rng = np.random.default_rng(0)
    redrawn = [deposit(draw_masses(mean, scatter_dex, rng)) for _ in range(draws)]
    return {"dm2gal": score(painted),
            "mean_at_dark": score(at_dark), "mean_at_dark_masked": score(at_dark * occupied),
            "draws_at_dark": np.mean([score(f) for f in redrawn], axis=0).tolist(),
            "draws_at_dark_masked": np.mean([score(f * occupied) for f in redrawn], axis=0).tolist()}


def universe_gap(results: Path, data: Path, name: str, cfg: dict, draws: int) -> dict:
    """Both tables for held-out universe `name`."""
    painted = np.asarray(open_field(results / "paint" / "universes" / name / "stellar_mass.zarr")[...])
    truth_field = open_field(results / "fields" / "universes" / name / "hydro" / "stellar_mass.zarr")
    truth, box = np.asarray(truth_field[...]), float(truth_field.attrs["box_size"])
    base = data / "universes" / name
    snap = cfg["snapshot"]
    dark = load_subhalos(base / "dark" / "output", snap, ["SubhaloPos", "SubhaloVel", "SubhaloMass", "SubhaloGrNr"])
    groups = load_halos(base / "dark" / "output", snap, ["GroupMass"])
    hydro = load_subhalos(base / "hydro" / "output", snap, ["SubhaloVel", "SubhaloStellarMassMean", "SubhaloMassType"])
    twin = dark_twins(dark["SubhaloVel"], hydro["SubhaloVel"])
    mean, drawn = np.zeros(len(dark["SubhaloMass"])), np.zeros(len(dark["SubhaloMass"]))
    mean[twin], drawn[twin] = hydro["SubhaloStellarMassMean"], hydro["SubhaloMassType"][:, 4]
    return {"per_halo": per_halo(painted, truth, box, dark, groups, mean, drawn),
            "occupancy": occupancy(painted, truth, box, np.asarray(dark["SubhaloPos"], np.float64), mean,
                                   cfg["scatter_dex"], draws, cfg["stats"]),
            "painted_over_true_total": float(painted.sum() / truth.sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path)
    ap.add_argument("data", type=Path, help="the run's data_dir (holds universes/NAME/{dark,hydro}/output)")
    ap.add_argument("--universe", action="append", help="default: every painted held-out universe")
    ap.add_argument("--draws", type=int, default=4)
    ap.add_argument("--config", type=Path, default=REPO / "config.yaml", help="for stats, snapshot and scatter")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    config = yaml.safe_load(args.config.read_text())
    cfg = {"stats": config["stats"], "snapshot": config["snapshot"],
           "scatter_dex": config["acquire"]["synthetic"]["galaxies"]["scatter"]}
    names = args.universe or sorted(p.name for p in (args.results / "paint" / "universes").iterdir())
    out = {}
    for name in names:
        gap = out[name] = universe_gap(args.results, args.data, name, cfg, args.draws)
        print(f"{name}: painted / true total mass {gap['painted_over_true_total']:.3f}")
        print("  log10 GroupMass | groups | unpainted | painted/mean | drawn/mean | rms dex | true/painted (voxels)")
        for r in gap["per_halo"]:
            lo, hi = r["log10_group_mass"]
            print(f"  {lo:4.1f}-{hi:4.1f}       | {r['n_groups']:6d} | {r['unpainted']:9.2f} | "
                  f"{r['painted_over_mean']:12.2f} | {r['drawn_over_mean']:10.2f} | {r['rms_dex']:7.2f} | "
                  f"{r['true_over_painted_voxels']:.2f}")
        print("  mean |log10(X/T)|: " + "; ".join(f"{k} P {v[0]:.3f} B {v[1]:.3f}" for k, v in gap["occupancy"].items()))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
