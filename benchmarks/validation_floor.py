"""How far the trained network is from the best a gravity-only painter can do, per voxel.

The train job logs `val_mse_floor`: the validation MSE (normalised log10 M* at the validation
galaxy voxels) of the generator's noise-free mean deposited at the *hydro* positions. A
painter reads only the gravity-only run, whose subhalos sit `position_offset` (0.02 Mpc/h per
axis, 0.05 of a default voxel) from their hydro twins, and a galaxy's CIC shares in its
fringe voxels depend on that offset. This benchmark scores, on the same voxels and scale:

- the noise-free mean at the hydro positions (the logged floor);
- the noise-free mean at the gravity-only twins' positions;
- the drawn (true) masses at the gravity-only positions;
- the noise-free mean at the gravity-only positions averaged over `--draws` offsets drawn as
  the generator draws them: E[M* | the gravity-only run], a deterministic painter that knows
  the generator and reads only the gravity-only run (an upper bound on that painter's floor:
  the MSE in log is smallest for E[log10 M*], which this does not compute);
- the selected network (its checkpoint's `val_mse`).

Hydro subhalos are joined to their gravity-only twins by SubhaloVel (the generator copies it).
Usage (a default run, or one seed of `benchmarks/seeds.py`):

    python benchmarks/validation_floor.py results data/mini [--draws 64] [--config config.yaml]
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

from dm2gal.cic import deposit_cube
from dm2gal.fields import open_field, read_periodic
from dm2gal.split import read_cubes
from dm2gal.tng import load_subhalos

sys.path.insert(0, str(Path(__file__).resolve().parent))
from painter_gap import dark_twins  # noqa: E402 - the benchmarks' shared join

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--draws", type=int, default=64)
    parser.add_argument("--snapshot", type=int, default=99)
    parser.add_argument("--config", type=Path, default=REPO / "config.yaml",
                        help="the run's config, for acquire.synthetic.baryons.position_offset")
    args = parser.parse_args()

    offset = yaml.safe_load(args.config.read_text())["acquire"]["synthetic"]["baryons"]["position_offset"]
    split = np.load(args.results / "split" / "train.npz")
    n, box = int(split["n_grid"]), float(split["box_size"])
    val = read_cubes(args.results / "split" / "cubes.json").validation
    dark = load_subhalos(str(args.data / "dark" / "output"), args.snapshot, ["SubhaloPos", "SubhaloVel"])
    hydro = load_subhalos(str(args.data / "hydro" / "output"), args.snapshot,
                          ["SubhaloPos", "SubhaloVel", "SubhaloStellarMassMean", "SubhaloMassType"])
    at_dark = dark["SubhaloPos"][dark_twins(dark["SubhaloVel"], hydro["SubhaloVel"])]
    mean, drawn = hydro["SubhaloStellarMassMean"], hydro["SubhaloMassType"][:, 4]
    voxels = tuple(((split["val_coords"] - np.asarray(val.start)) % n).T)
    truth = read_periodic(open_field(str(args.results / "fields" / "hydro" / "stellar_mass.zarr")),
                          val.start, (val.size,) * 3)[voxels]

    def score(painted):
        """(normalised-log MSE against the truth over the voxels painted non-empty, voxels left empty)."""
        full = painted > 0
        z = (np.log10(painted[full]) - np.log10(truth[full])) / float(split["target_std"])
        return float(np.mean(z ** 2)), int((~full).sum())

    def deposit(pos, mass):
        return deposit_cube(pos, mass, box, n, val.start, val.size, mas="CIC")[voxels]

    rng = np.random.default_rng(0)
    smeared = np.mean([deposit(at_dark + rng.normal(0.0, offset, at_dark.shape), mean) for _ in range(args.draws)],
                      axis=0)
    rows = [("noise-free mean at the hydro positions (val_mse_floor)", *score(deposit(hydro["SubhaloPos"], mean))),
            ("noise-free mean at the gravity-only positions", *score(deposit(at_dark, mean))),
            ("drawn masses at the gravity-only positions", *score(deposit(at_dark, drawn))),
            (f"noise-free mean, gravity-only positions, {args.draws} offsets averaged", *score(smeared))]
    metrics = torch.load(args.results / "select" / "best.ckpt", map_location="cpu", weights_only=True)["metrics"]
    rows.append(("the selected network (val_mse)", float(metrics["val_mse"]), 0))
    print(f"{len(truth)} validation galaxy voxels; MSE of normalised log10 M* (target std "
          f"{float(split['target_std']):.3f} dex)\n")
    print("painter | val MSE (voxels painted non-empty) | voxels left empty\n---|---|---")
    for name, mse, empty in rows:
        print(f"{name} | {mse:.4f} | {empty}")


if __name__ == "__main__":
    main()
