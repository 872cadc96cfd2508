"""Bias of the painted stellar mass per bin of predicted mass.

By default reads the test cube's oracle painting (the model evaluated at the voxels where
the hydro truth has M* > min_stellar_mass, `{results}/paint/test_oracle/stellar_mass.zarr`)
and the truth cut from `{results}/fields/hydro/stellar_mass.zarr`; with `--universe NAME`
the honest painting of a whole held-out universe (`{results}/paint/universes/NAME/`)
against its hydro twin, every painted voxel counted (empty ones in the truth too). Prints,
per 0.5-dex bin of painted mass, the number of painted voxels, mean(log10 painted - log10
true) [dex] over those whose truth exceeds min_stellar_mass, and sum(painted) / sum(true)
over all of them (the linear-mass bias that P(k), B and the total mass feel), with its
sampling error. Usage:

    python benchmarks/bias_curve.py results [--universe heldout1] [--json out.json]
"""

import argparse
import json
from pathlib import Path

import numpy as np

from dm2gal.fields import open_field, read_periodic
from dm2gal.split import read_cubes


def bias_curve(painted: np.ndarray, truth: np.ndarray, min_mass: float, edges: np.ndarray) -> list[dict]:
    """Rows {log10_lo, log10_hi, n, dex, linear, linear_err} over the painted voxels (painted > 0);
    dex is the mean log ratio over those with truth > min_mass."""
    sel = painted > 0
    p, t = painted[sel].astype(np.float64), truth[sel].astype(np.float64)
    b = np.digitize(np.log10(p), edges) - 1
    rows = []
    for i in range(len(edges) - 1):
        m = b == i
        occupied = m & (t > min_mass)
        if m.sum() < 2 or t[m].sum() <= 0:
            continue
        ratio = p[m].sum() / t[m].sum()
        rows.append(dict(log10_lo=float(edges[i]), log10_hi=float(edges[i + 1]), n=int(m.sum()),
                         dex=float(np.mean(np.log10(p[occupied] / t[occupied]))) if occupied.any() else float("nan"),
                         linear=float(ratio), linear_err=float(ratio * t[m].std() * np.sqrt(m.sum()) / t[m].sum())))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path)
    ap.add_argument("--universe", help="a held-out universe of evaluation.universes (honest, whole box)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    cubes = args.results / "split" / "cubes.json"
    min_mass = float(json.loads(cubes.read_text())["min_stellar_mass"])
    if args.universe:
        painted = np.asarray(open_field(args.results / "paint" / "universes" / args.universe / "stellar_mass.zarr")[...])
        truth = np.asarray(open_field(args.results / "fields" / "universes" / args.universe / "hydro"
                                      / "stellar_mass.zarr")[...])
    else:
        test = read_cubes(cubes).test
        start, size = test.start, test.size
        painted = np.asarray(open_field(args.results / "paint" / "test_oracle" / "stellar_mass.zarr")[...])
        truth = read_periodic(open_field(args.results / "fields" / "hydro" / "stellar_mass.zarr"), start, (size,) * 3)
    rows = bias_curve(painted, truth, min_mass, np.arange(8.0, 12.01, 0.5))
    print(f"{'log10 M* painted':>18} {'n':>5} {'dex':>7} {'sum ratio':>14}")
    for r in rows:
        print(f"{r['log10_lo']:8.1f}-{r['log10_hi']:<8.1f} {r['n']:5d} {r['dex']:+7.3f} "
              f"{r['linear']:7.3f}+-{r['linear_err']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
