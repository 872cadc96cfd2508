"""The galaxy painter against the truth and the floor, galaxy by galaxy.

For a results folder of the galaxy painter (`train.target: galaxies`) on the mini-universe:

- the training box's calibration, validation and test galaxies (`split/galaxies.npz`),
  predicted by the selected checkpoint without its calibration (what the calibration is
  fitted to) and with it (what is painted), in bins of painted mass: sum T / sum P (the truth
  over the painted mean), sum E / sum P (the generator's noise-free mean over it: the floor),
  and the z-scores z = (log10 T - mu) / sigma (standard deviation 1 for a calibrated scatter);
- every held-out universe's painted catalogue (`paint/universes/NAME/catalogue.hdf5`,
  calibrated, as painted) against its matched hydro galaxies, in bins of painted mass, then
  centrals and satellites in bins of their FoF group's mass: sum P / sum T and sum P / sum E.

Usage (one seed's folders, as `make run` or benchmarks/seeds.py leave them):

    python benchmarks/galaxy_painter.py RESULTS DATA
"""

import argparse
import itertools
from pathlib import Path

import numpy as np

from dm2gal.catalogue import read_catalogue
from dm2gal.fields import open_field
from dm2gal.galaxy_samples import ROLES, box_samples
from dm2gal.calibration import Calibration
from dm2gal.inference import Prediction, input_scale, load_model, predict
from dm2gal.sampler import PatchSource

MASS_EDGES = (8.0, 9.0, 9.5, 10.0, 10.5, 11.0, 13.0)
GROUP_EDGES = (11, 12, 13, 14, 15)


def training_box_rows(results: Path) -> list[str]:
    """Per role and bin of log10 painted mass: counts, sum T / sum P, sum E / sum P, z mean and std."""
    net, norm = load_model(results / "select/best.ckpt")
    calibration = Calibration.from_dict(norm.pop("calibration"))  # predict gives the network's own
    samples = np.load(results / "split/galaxies.npz")
    fields = [open_field(results / f"fields/dark/{q}.zarr") for q in ("dm_mass", "subhalo_mass")]
    source = PatchSource.from_boxes([fields], norm["input_mean"], norm["input_std"], device="cpu",
                                    scale=input_scale(norm))
    rows = ["calibrated | role | log10 P | galaxies | T/P | E/P | z mean | z std", "---|---|---|---|---|---|---|---"]
    raw = {}
    for role in ("calibration", "validation", "test"):
        sel = (samples["role"] == ROLES[role]) & (samples["stellar_mass"] > 0)
        raw[role] = sel, predict(net, source, samples["voxel"][sel], norm, query=samples["query"][sel])
    for calibrated, role in itertools.product(("no", "yes"), raw):
        sel, pred = raw[role]
        pred = Prediction(*calibration.apply(pred.mu, pred.sigma)) if calibrated == "yes" else pred
        truth, ideal, painted = samples["stellar_mass"][sel], samples["ideal"][sel], pred.mean_mass()
        z = (np.log10(truth) - pred.mu) / pred.sigma
        bins = np.digitize(np.log10(painted), MASS_EDGES) - 1
        for b in [*range(len(MASS_EDGES) - 1), None]:
            i = np.ones(len(z), bool) if b is None else bins == b
            if i.sum() >= 5:
                label = "all" if b is None else f"{MASS_EDGES[b]:g}-{MASS_EDGES[b + 1]:g}"
                rows.append(f"{calibrated} | {role} | {label} | {int(i.sum())} | {truth[i].sum() / painted[i].sum():.3f} | "
                            f"{ideal[i].sum() / painted[i].sum():.3f} | {z[i].mean():+.2f} | {z[i].std():.2f}")
    return rows


def universe_rows(results: Path, data: Path, n_grid: int, box: float) -> list[str]:
    """Per held-out universe, by bin of painted mass, then centrals and satellites by log10
    GroupMass: sum P / sum T, sum P / sum E."""
    rows = ["universe | galaxies | log10 group mass | subhalos | P/T | P/E", "---|---|---|---|---|---"]
    for painted in sorted((results / "paint/universes").iterdir()):
        run = data / "universes" / painted.name
        samples = box_samples(run / "dark/output", run / "hydro/output", 99, n_grid, box)
        columns, _ = read_catalogue(painted / "catalogue.hdf5")
        mass = np.zeros(len(samples["stellar_mass"]))
        mass[columns["host_subhalo"]] = columns["stellar_mass"]
        truth, ideal, query = samples["stellar_mass"], samples["ideal"], samples["query"]
        rows.append(f"{painted.name} | all | | {len(mass)} | {mass.sum() / truth.sum():.3f} | "
                    f"{mass.sum() / ideal.sum():.3f}")
        bins = np.digitize(np.log10(np.maximum(mass, 1.0)), MASS_EDGES) - 1
        for b in range(len(MASS_EDGES) - 1):
            i = bins == b
            if i.sum() >= 5:
                rows.append(f"{painted.name} | painted log10 M* {MASS_EDGES[b]:g}-{MASS_EDGES[b + 1]:g} | | "
                            f"{int(i.sum())} | {mass[i].sum() / truth[i].sum():.3f} | {mass[i].sum() / ideal[i].sum():.3f}")
        for central, kind in ((1.0, "centrals"), (0.0, "satellites")):
            for lo, hi in zip(GROUP_EDGES, GROUP_EDGES[1:]):
                i = (query[:, 2] == central) & (query[:, 1] >= lo) & (query[:, 1] < hi)
                if i.any():
                    rows.append(f"{painted.name} | {kind} | {lo}-{hi} | {int(i.sum())} | "
                                f"{mass[i].sum() / truth[i].sum():.3f} | {mass[i].sum() / ideal[i].sum():.3f}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("data", type=Path)
    args = ap.parse_args()
    truth = open_field(args.results / "fields/hydro/stellar_mass.zarr")
    print("\n".join(training_box_rows(args.results)))
    print()
    print("\n".join(universe_rows(args.results, args.data, int(truth.attrs["n_grid"]),
                                  float(truth.attrs["box_size"]))))


if __name__ == "__main__":
    main()
