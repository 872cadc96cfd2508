"""A painter of galaxy totals, measured: one network value per galaxy instead of one per voxel.

The pipeline's network paints voxels, and a galaxy's mass is the sum over its CIC footprint,
which the network smooths (docs/training.md, session 27: the centrals of massive groups come
out 20-40 % heavy, their satellites 30 % light). This benchmark trains the same `small` CNN
on another target and paints with it, so that the idea could be judged before it was built
into the stages (it now is: `train.target: galaxies`, `dm2gal.galaxy_samples`,
`dm2gal.paint_galaxies`; this benchmark keeps the variants measured in sessions 28 and 29):

- a sample is a gravity-only subhalo of the training box with a galaxy. `--target voxels`:
  the subhalo hosts true stellar mass (the voxels it hosts, `dm2gal.cic.host_subhalos`), and
  its target is log10 of the truth summed over those voxels [Msun/h]. `--target catalogue`:
  the target is the stellar mass of the hydro subhalos matched to it (`matched_totals`: the
  nearest gravity-only subhalo), the catalogue the truth field is deposited from;
- the input is the 21^3 patch of the two input fields (normalised as the selected
  checkpoint's) centred on the subhalo's voxel, rotated as in training, plus query
  channels that are zero but at the centre voxel, where they hold what the network is told
  about the subhalo asked about (`query_features`, standardised): `--query subhalo`, its
  log10 SubhaloMass; `--query group`, also its FoF group's log10 GroupMass and whether it
  is the group's central (the catalogue the HOD reads);
- the head gives mu and sigma of log10 M*, fitted by the beta-NLL of `dm2gal.objective`;
  draws are weighted by the count of their log10 SubhaloMass bin to the power -1/2 (an input,
  so the optimum is unweighted); one-cycle learning rate;
- galaxies in the validation and test cubes are left out; those in the calibration blocks
  (`split/train.npz`) fit two numbers: a mass factor sum T / sum G and a scatter factor k
  such that the drawn galaxies' expected sum of squared masses, sum G^2 exp((ln10 k sigma)^2),
  equals the truth's sum T^2 (the shot noise the realisations must carry).

With --write the held-out paintings of RESULTS (paint/universes/*/stellar_mass.zarr and
stellar_mass_scatter.zarr) are overwritten, and the scatter field holds each galaxy's k sigma
(no galaxy scatter factor). `--target voxels`: every galaxy of the voxel painting (its hosts,
as the realisations group them) gets the predicted total, deposited by CIC at its subhalo
(`dm2gal.galaxy_deposit.deposit`). `--target catalogue`: every gravity-only subhalo gets its
predicted mass, deposited the same way; with --galaxy-draws the realisations are written
too, each galaxy drawn on its own and deposited at its subhalo, as the ideal painter draws.
Run it on a copy of a results folder, then rescore with Snakemake (`--rerun-triggers mtime`:
the realisations, the statistics and metrics.json follow) and `benchmarks/galaxy_ranks.py`
(the galaxies against the noise-free mean). With --train-universes, the whole boxes of more
gridded mini-universes (RESULTS/fields/universes/NAME, their catalogues under
DATA/universes/NAME) join the training galaxies. Usage:

    python benchmarks/galaxy_totals.py COPY/results DATA [--steps 4000] [--seed 0]
        [--query subhalo|group] [--target voxels|catalogue] [--galaxy-draws]
        [--train-universes heldout3 heldout4] [--write]
"""

import argparse
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
import zarr

from dm2gal.calibration import galaxy_groups
from dm2gal.cic import deposit_cube, host_subhalos
from dm2gal.fields import open_field
from dm2gal.galaxy_samples import QUERIES, load_dark_catalogue, matched_masses, subhalo_voxels
from dm2gal.galaxy_samples import query_features as catalogue_query
from dm2gal.galaxy_deposit import deposit
from dm2gal.ideal import draw_masses
from dm2gal.inference import input_scale, load_model
from dm2gal.model import build_model, model_config
from dm2gal.objective import gaussian_nll
from dm2gal.sampler import PatchSource
from dm2gal.split import Cube, read_cubes
from dm2gal.tng import load_subhalos

BATCH = 32
LEARNING_RATE = 2e-3
MASS_BINS = 30


def query_features(subs: dict, index: np.ndarray, query: str) -> np.ndarray:
    """(G, Q) what the network is told about the subhalos `index` (`dm2gal.galaxy_samples.query_features`):
    log10 SubhaloMass [Msun/h] ("subhalo"), and its group's log10 GroupMass and the central flag ("group")."""
    return catalogue_query(subs)[index, :QUERIES[query]]


def hosted_totals(truth: np.ndarray, subs: dict, n: int, box: float, query: str) -> dict[str, np.ndarray]:
    """{index, voxel, query, T} of the gravity-only subhalos hosting true stellar mass in the
    whole-box field `truth` (n^3) [Msun/h]: T (G,) the truth summed over the voxels each hosts,
    query (G, Q) their `query_features`."""
    coords = np.argwhere(truth > 0)
    hosts = host_subhalos(coords, (0, 0, 0), n, box, subs["SubhaloPos"], subs["SubhaloMass"])
    ok = hosts >= 0
    total = np.bincount(hosts[ok], weights=truth[tuple(coords[ok].T)], minlength=len(subs["SubhaloMass"]))
    index = np.flatnonzero(total > 0)
    return dict(index=index, voxel=subhalo_voxels(subs["SubhaloPos"][index], n, box),
                query=query_features(subs, index, query), T=total[index])


class GalaxyPainter:
    """The small CNN with Q query channels: (mu, sigma) of log10 M* [dex] of the galaxy of the
    subhalo at the centre of a patch; `standard` holds the target's and the queries' mean and std."""

    def __init__(self, seed: int, query: str):
        torch.manual_seed(seed)
        self.config = dict(model_config("small", outputs=2), in_channels=2 + QUERIES[query])
        self.net = build_model(self.config)
        self.centre = self.config["patch"] // 2
        self.standard = {}

    def inputs(self, source: PatchSource, voxels: np.ndarray, query: np.ndarray, rotations=None) -> torch.Tensor:
        """(B, 2 + Q, P, P, P) patches at `voxels` (B, 3), the standardised `query` (B, Q) at the centre voxel."""
        x = source.cut(torch.as_tensor(voxels), rotations, self.config["patch"]).float()
        channels = torch.zeros((len(x), query.shape[1]) + tuple(x.shape[2:]))
        c = self.centre
        channels[:, :, c, c, c] = torch.as_tensor((query - self.standard["query_mean"]) / self.standard["query_std"],
                                                  dtype=torch.float32)
        return torch.cat([x, channels], 1)

    def fit(self, source: PatchSource, galaxies: dict, steps: int, seed: int) -> list[float]:
        """Train on `galaxies` (hosted_totals); returns the running loss every 500 steps."""
        y, query = np.log10(galaxies["T"]), galaxies["query"]
        self.standard = dict(target_mean=y.mean(), target_std=y.std(), query_mean=query.mean(0),
                             query_std=np.maximum(query.std(0), 1e-6))
        counts, edges = np.histogram(query[:, 0], bins=MASS_BINS)
        p = counts[np.clip(np.digitize(query[:, 0], edges) - 1, 0, MASS_BINS - 1)] ** -0.5
        p /= p.sum()
        target = torch.as_tensor((y - self.standard["target_mean"]) / self.standard["target_std"], dtype=torch.float32)
        rng = np.random.default_rng(seed)
        opt = torch.optim.AdamW(self.net.parameters(), lr=LEARNING_RATE, weight_decay=1e-5)
        schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LEARNING_RATE, total_steps=steps)
        self.net.train()
        running, history = 0.0, []
        for step in range(steps):
            i = rng.choice(len(y), BATCH, p=p)
            rotations = torch.as_tensor(rng.integers(0, 24, BATCH))
            out = self.net(self.inputs(source, galaxies["voxel"][i], query[i], rotations))
            loss = gaussian_nll(out, target[i], 0.5).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
            running = 0.98 * running + 0.02 * loss.item()
            if (step + 1) % 500 == 0:
                history.append(round(running, 4))
        self.net.eval()
        return history

    @torch.no_grad()
    def predict(self, source: PatchSource, voxels: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(G,) log-normal mean mass [Msun/h] and sigma [dex] of the galaxies at `voxels` with `query` (G, Q)."""
        out = np.concatenate([self.net(self.inputs(source, voxels[a:a + 1024], query[a:a + 1024])).numpy()
                              for a in range(0, len(voxels), 1024)])
        s = self.standard
        mu = out[:, 0] * s["target_std"] + s["target_mean"]
        sigma = np.exp(np.clip(out[:, 1], -7.0, 3.0)) * s["target_std"]
        return 10.0 ** (mu + 0.5 * math.log(10.0) * sigma ** 2), sigma


def scatter_factor(mean: np.ndarray, sigma: np.ndarray, truth: np.ndarray) -> float:
    """k such that sum mean^2 exp((ln10 k sigma)^2) = sum truth^2 (0 where the means alone exceed it)."""
    target, lo, hi = (truth ** 2).sum(), 0.0, 4.0
    for _ in range(60):
        k = 0.5 * (lo + hi)
        lo, hi = (lo, k) if (mean ** 2 * np.exp((math.log(10.0) * k * sigma) ** 2)).sum() > target else (k, hi)
    return 0.5 * (lo + hi)


def input_source(fields: list[Path], norm: dict) -> PatchSource:
    """The two input fields of each run's `fields` folder (box b: rows b n to (b + 1) n of the
    stacked grid), normalised as the checkpoint's `norm`."""
    boxes = [[open_field(f / f"dark/{name}.zarr") for name in ("dm_mass", "subhalo_mass")] for f in fields]
    return PatchSource.from_boxes(boxes, norm["input_mean"], norm["input_std"], device="cpu", scale=input_scale(norm))


def matched_totals(hydro_base: Path, snapshot: int, subs: dict, n: int, box: float,
                   query: str) -> dict[str, np.ndarray]:
    """hosted_totals' fields, T (G,) now the stellar mass [Msun/h] of the hydro subhalos whose
    nearest gravity-only subhalo (periodic) is each one: a match by position, right on the
    mini-universe (hydro galaxies sit 0.02 Mpc/h from their twins); TNG publishes its own
    (SubhaloMatchingToDark)."""
    hydro = load_subhalos(str(hydro_base), snapshot, ["SubhaloPos", "SubhaloMassType"])
    (total,), _ = matched_masses(subs["SubhaloPos"], hydro["SubhaloPos"], [hydro["SubhaloMassType"][:, 4]], box)
    index = np.flatnonzero(total > 0)
    return dict(index=index, voxel=subhalo_voxels(subs["SubhaloPos"][index], n, box),
                query=query_features(subs, index, query), T=total[index])


def box_galaxies(truth_path: Path, data: Path, snapshot: int, n: int, box: float, query: str,
                 target: str) -> dict[str, np.ndarray]:
    """The galaxy samples of one box (`hosted_totals` of the gridded truth at `truth_path`, or
    `matched_totals`), from the catalogues under `data` (dark/output, hydro/output)."""
    subs = load_dark_catalogue(data / "dark/output", snapshot)
    if target == "catalogue":
        return matched_totals(data / "hydro/output", snapshot, subs, n, box, query)
    return hosted_totals(np.asarray(open_field(truth_path)[...], np.float64), subs, n, box, query)


def touch(path: Path) -> None:
    """Mark `path` (a file, or a directory output with Snakemake's .snakemake_timestamp) as new,
    so that Snakemake's mtime trigger reruns what reads it and keeps what made it."""
    os.utime(path)
    if (path / ".snakemake_timestamp").exists():
        os.utime(path / ".snakemake_timestamp")


def write_cubes(painted: Path, coords: np.ndarray, mass: np.ndarray, scatter: np.ndarray) -> float:
    """Overwrite the painting in `painted` (stellar_mass.zarr, stellar_mass_scatter.zarr) with
    `mass` [Msun/h] and `scatter` [dex] at `coords` (M, 3), zero elsewhere, and touch both for
    Snakemake's mtime trigger; returns the painted mass ratio new / old."""
    field_path, scatter_path = painted / "stellar_mass.zarr", painted / "stellar_mass_scatter.zarr"
    field = zarr.open_array(str(field_path), mode="r+")
    old = float(np.asarray(field[...], np.float64).sum())
    new_mean, new_scatter = np.zeros(field.shape, field.dtype), np.zeros(field.shape, field.dtype)
    new_mean[tuple(coords.T)], new_scatter[tuple(coords.T)] = mass, scatter
    field[...] = new_mean
    out = zarr.open_array(str(scatter_path), mode="r+")
    out[...] = new_scatter
    out.attrs.update(galaxy_scatter_log10_mass=[], galaxy_scatter_factor=[], painted_by="benchmarks/galaxy_totals.py")
    for path in (field_path, scatter_path):
        touch(path)
    return float(new_mean.sum(dtype=np.float64) / old)


def write_painting(painted: Path, painter: GalaxyPainter, source: PatchSource, subs: dict, query: str,
                   mass_factor: float, k: float, n: int, box: float) -> dict:
    """Overwrite the voxel painting in `painted` with its galaxies' predicted totals deposited at
    their subhalos (module docstring); returns the galaxy count and the painted mass ratio new / old."""
    mean_cube = np.asarray(open_field(painted / "stellar_mass.zarr")[...])
    coords = np.argwhere(mean_cube > 0)
    mean = mean_cube[tuple(coords.T)].astype(np.float64)
    hosts = host_subhalos(coords, (0, 0, 0), n, box, subs["SubhaloPos"], subs["SubhaloMass"])
    galaxies = galaxy_groups(hosts)
    host_of = np.full(galaxies.max() + 1, -1)
    host_of[galaxies] = hosts
    hosted = np.flatnonzero(host_of >= 0)
    total, sigma = painter.predict(source, subhalo_voxels(subs["SubhaloPos"][host_of[hosted]], n, box),
                                   query_features(subs, host_of[hosted], query))
    factor, galaxy_sigma = np.ones(len(host_of)), np.zeros(len(host_of))
    factor[hosted] = mass_factor * total / np.bincount(galaxies, weights=mean)[hosted]
    galaxy_sigma[hosted] = k * sigma
    old_sigma = np.asarray(open_field(painted / "stellar_mass_scatter.zarr")[...])[tuple(coords.T)]
    voxel_sigma = np.where(hosts >= 0, galaxy_sigma[galaxies], old_sigma)
    keys, mass, scatter = deposit(coords, mean * factor[galaxies], voxel_sigma, hosts, subs["SubhaloPos"],
                                  (0, 0, 0), n, box, n)
    return dict(galaxies=int(len(hosted)), mass_new_over_old=write_cubes(painted, keys, mass, scatter))


def write_catalogue_painting(painted: Path, painter: GalaxyPainter, source: PatchSource, subs: dict, query: str,
                             mass_factor: float, k: float, n: int, box: float, galaxy_draws: bool) -> dict:
    """Overwrite the painting in `painted` with a galaxy at every gravity-only subhalo: its
    predicted stellar mass deposited by CIC at its SubhaloPos, the scatter field its k sigma;
    with `galaxy_draws`, the realisations too (`write_galaxy_draws`)."""
    every = np.arange(len(subs["SubhaloMass"]))
    voxels = subhalo_voxels(subs["SubhaloPos"], n, box)
    total, sigma = painter.predict(source, voxels, query_features(subs, every, query))
    mass, sigma = mass_factor * total, k * sigma
    keys, cube_mass, scatter = deposit(voxels, mass, sigma, every, subs["SubhaloPos"], (0, 0, 0), n, box, n)
    report = dict(galaxies=int(len(every)), mass_new_over_old=write_cubes(painted, keys, cube_mass, scatter))
    if galaxy_draws:
        write_galaxy_draws(painted, subs["SubhaloPos"], mass, sigma, n, box)  # after the painting: newer
    return report


def write_galaxy_draws(painted: Path, pos: np.ndarray, mass: np.ndarray, sigma: np.ndarray, n: int, box: float) -> None:
    """Overwrite the realisations in `painted` (realisation_*.zarr) with the galaxies at `pos`
    (S, 3) [Mpc/h] drawn one by one, as the ideal painter draws (`dm2gal.ideal.draw_masses`,
    each galaxy with its own sigma (S,) [dex] about its mean `mass` (S,) [Msun/h]), deposited
    with the painting's mass assignment; touched after the painting, so that Snakemake keeps them."""
    paths = sorted(painted.glob("realisation_*.zarr"), key=lambda p: int(p.stem.split("_")[1]))
    for path, child in zip(paths, np.random.SeedSequence(20261206).spawn(len(paths))):
        out = zarr.open_array(str(path), mode="r+")
        drawn = draw_masses(mass, sigma, np.random.default_rng(child))
        out[...] = deposit_cube(pos, drawn, box, n, (0, 0, 0), n, mas=out.attrs["mas"])
        out.attrs.update(drawn="one z per gravity-only subhalo, deposited by CIC (benchmarks/galaxy_totals.py)")
        touch(path)
    # the rule's benchmark: file is one of its outputs too (RESULTS/benchmarks/paint_realisations/universes/NAME.tsv)
    touch(painted.parents[2] / "benchmarks/paint_realisations" / painted.parent.name / f"{painted.name}.tsv")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--snapshot", type=int, default=99)
    ap.add_argument("--train-universes", nargs="*", default=[],
                    help="gridded universes under RESULTS/fields/universes whose whole boxes also train")
    ap.add_argument("--query", choices=sorted(QUERIES), default="subhalo",
                    help="what the network is told about the subhalo asked about (query_features)")
    ap.add_argument("--target", choices=["voxels", "catalogue"], default="voxels",
                    help="a galaxy's total: the truth in the voxels its subhalo hosts, or its matched hydro mass")
    ap.add_argument("--galaxy-draws", action="store_true",
                    help="with --target catalogue: write realisations drawn galaxy by galaxy (write_galaxy_draws)")
    ap.add_argument("--write", action="store_true", help="overwrite the held-out paintings (use a copy)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    _, norm = load_model(args.results / "select" / "best.ckpt")
    truth_field = open_field(args.results / "fields/hydro/stellar_mass.zarr")
    n, box = int(truth_field.attrs["n_grid"]), float(truth_field.attrs["box_size"])
    galaxies = box_galaxies(args.results / "fields/hydro/stellar_mass.zarr", args.data, args.snapshot, n, box,
                            args.query, args.target)
    cubes = read_cubes(args.results / "split/cubes.json")
    held = cubes.validation.contains(galaxies["voxel"], n) | cubes.test.contains(galaxies["voxel"], n)
    blocks = np.load(args.results / "split/train.npz")["calibration_blocks"]
    if not len(blocks):
        raise SystemExit("the split has no calibration blocks (split.calibration.fraction 0): nothing to calibrate on")
    calibration = np.any([Cube(tuple(b[:3]), int(b[3])).contains(galaxies["voxel"], n) for b in blocks], axis=0) & ~held
    universes = [args.results / "fields/universes" / u for u in args.train_universes]
    extra = [box_galaxies(fields / "hydro/stellar_mass.zarr", args.data / "universes" / fields.name, args.snapshot, n,
                          box, args.query, args.target) for fields in universes]
    for b, more in enumerate(extra, start=1):
        more["voxel"][:, 0] += b * n  # box b of the stacked source
    train = {k: np.concatenate([v[~held & ~calibration]] + [more[k] for more in extra]) for k, v in galaxies.items()}
    calib = {k: v[calibration] for k, v in galaxies.items()}
    source = input_source([args.results / "fields", *universes], norm)
    painter = GalaxyPainter(args.seed, args.query)
    history = painter.fit(source, train, args.steps, args.seed)
    total, sigma = painter.predict(source, calib["voxel"], calib["query"])
    mass_factor = float(calib["T"].sum() / total.sum())
    k = scatter_factor(mass_factor * total, sigma, calib["T"])
    report = dict(training_galaxies=len(train["T"]), calibration_galaxies=len(calib["T"]), loss_every_500=history,
                  mass_factor=mass_factor, scatter_factor=k)
    if args.write:
        for painted in sorted((args.results / "paint/universes").iterdir()):
            base = args.data / "universes" / painted.name / "dark/output"
            universe_subs = load_dark_catalogue(base, args.snapshot)
            universe_source = input_source([args.results / "fields/universes" / painted.name], norm)
            if args.target == "catalogue":
                report[painted.name] = write_catalogue_painting(painted, painter, universe_source, universe_subs,
                                                                args.query, mass_factor, k, n, box, args.galaxy_draws)
            else:
                report[painted.name] = write_painting(painted, painter, universe_source, universe_subs, args.query,
                                                      mass_factor, k, n, box)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
