"""Training one hyper-parameter point with Lightning, and choosing its epoch by the test metric.

Patches are drawn by weight with a random cube rotation each (`dm2gal.sampler`) and
cut on the device that holds the fields; the loss is the objective's
(`dm2gal.objective`: by default an importance-weighted Gaussian likelihood of the
normalised log10 stellar mass of the centre voxel, whose optimum is the unweighted
conditional mean; `paper`: plain MSE). Adam with weight decay; the learning rate
follows a cosine from its value to 1 % of it over the run (`schedule: cosine`), or
drops by 10 after `patience` epochs without a better validation MSE (`plateau`, the
paper). An exponential moving average of the weights (EMA, BatchNorm buffers too) is
what is validated and kept.

Each epoch ends by painting the validation cube with the EMA network the way the test
cube is painted: honestly, at the candidate voxels of the occupancy threshold, with
the mean mass of the predicted distribution. Its power spectrum against the truth's
(Pylians, the stats stage's mass-assignment correction, k in `stats.k_range`) gives
the selection error mean_k |log10(P_painted / P_true)|; its mean over the last
`selection_window` epochs is the selection statistic (or that of the validation MSE, with
`selection_statistic: val_mse`), and the checkpoint kept is the epoch where that is
smallest. Beside it the history logs the validation MSE of the
predicted mean at the true galaxy voxels, the MSE of predicting the training mean,
and, for the mini-universe, the floor: the MSE of the generator's noise-free mean.
`best.ckpt` and `history.csv` are written once, when training ends. On GPU: bf16
autocast and channels-last-3d; with several devices, DDP.

The galaxy painter (`train.target: galaxies`, `load_galaxy_training_data`) trains the same
way on other samples: patches centred on gravity-only subhalos with query channels
(`dm2gal.sampler.with_query`), the target the matched hydro galaxy's log10 M*; its
validation painting deposits the predicted galaxies by CIC, and its calibration is a line in
log mass, scatter factors per mass bin and a mass factor (`dm2gal.calibration.fit_galaxy_painter`).
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.plugins.environments import LightningEnvironment, SLURMEnvironment
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.strategies import DDPStrategy
from torch.optim.swa_utils import AveragedModel

from .atomic import atomic_path
from .inference import NORMALISATION_KEYS, Prediction, checkpoint_dict, input_scale, predict, standardised_query
from .model import build_model, head_outputs, n_parameters
from .objective import loss
from .occupancy import candidates
from .sampler import DrawnBatches, PatchSource, WeightedDraws, fits_on_gpu, with_query
from .split import read_cubes

log = logging.getLogger("dm2gal.train")

HISTORY_COLUMNS = ("epoch", "step", "lr", "train_loss", "val_mse", "val_mse_mean_predictor", "val_mse_floor",
                   "val_mass_ratio", "pk_error", "selection", "best", "seconds")
"""history.csv: val_mse* are MSEs of normalised log10 M* at the validation galaxy voxels (the
predicted mean, the training mean, the generator's noise-free mean; NaN without one);
val_mass_ratio is the painted over the true stellar mass at those voxels; pk_error the
P(k) error of this epoch's validation painting; selection the mean over the window of the
selection statistic (pk_error, or val_mse with `selection_statistic`)."""
SCHEDULES = ("cosine", "plateau")
SELECTION_STATISTICS = ("pk_error", "val_mse")
"""What `History` averages over its window to choose the kept epoch (history.csv columns)."""
LAST_CHECKPOINT = "last.ckpt"
"""The resumable checkpoint's name in a run's resume folder (never a Snakemake output: Snakemake
deletes the outputs of a failed job, and this file is what survives it)."""


@dataclass
class TrainingData:
    """What one training run needs, held in memory.

    dm, subhalo: (n, n, n) input fields [Msun/h] (arrays or anything sliceable along
    axis 0); coords (N, 3), log_mstar (N,) [log10 Msun/h], weights (N,) (sampling),
    importance (N,) (loss factors of the unbiased objective): training voxels; val_coords (M, 3), val_log_mstar (M,): the validation galaxy voxels;
    val_candidates (K, 3): the validation cube's voxels the honest painter paints;
    val_start [3], val_truth (s, s, s) [Msun/h]: the true validation cube;
    val_ideal_log_mstar (M,) or None: log10 of the noise-free mean at val_coords;
    cal_coords (C, 3), cal_truth (C,) [Msun/h]: the calibration voxels (the honest painter's
    candidates in the split's calibration blocks and the validation cube) and their truth;
    cal_hosts (C,) or None: the gravity-only subhalo hosting each (as the realisations group
    voxels into galaxies, `dm2gal.realisations.host_subhalos`; -1: none);
    n_grid, box_size [Mpc/h]: the parent grid; normalisation: see `dm2gal.inference.NORMALISATION_KEYS`;
    extra_inputs: (dm, subhalo) fields of the other training boxes (`training_universes`), whose
    voxels coords addresses on the stacked grid (box b: coords[:, 0] in [b n, (b + 1) n)); the
    validation and calibration voxels are the first box's.

    The galaxy painter (`target` "galaxies", `load_galaxy_training_data`) reads the same
    fields with other samples: coords, val_coords and cal_coords are the voxels of
    gravity-only subhalos (training and validation ones with a galaxy; calibration ones all),
    their targets and truth the matched hydro galaxies, `query`, `val_query`, `cal_query`
    (., Q) their raw queries (`dm2gal.galaxy_samples`); val_candidates (K, 3), val_query_painted
    (K, Q) and val_positions (K, 3) [Mpc/h] are the subhalos whose CIC clouds reach the
    validation cube, which its painting deposits.
    """

    dm: object
    subhalo: object
    coords: np.ndarray
    log_mstar: np.ndarray
    weights: np.ndarray
    importance: np.ndarray
    val_coords: np.ndarray
    val_log_mstar: np.ndarray
    val_candidates: np.ndarray
    val_start: np.ndarray
    val_truth: np.ndarray
    n_grid: int
    box_size: float
    normalisation: dict
    val_ideal_log_mstar: np.ndarray | None = None
    cal_coords: np.ndarray | None = None
    cal_truth: np.ndarray | None = None
    cal_hosts: np.ndarray | None = None
    min_mass: float = 0.0
    extra_inputs: tuple = ()
    target: str = "voxels"
    query: np.ndarray | None = None
    val_query: np.ndarray | None = None
    cal_query: np.ndarray | None = None
    val_query_painted: np.ndarray | None = None
    val_positions: np.ndarray | None = None

    def normalised(self, log_mstar: np.ndarray) -> np.ndarray:
        n = self.normalisation
        return ((log_mstar - n["target_mean"]) / n["target_std"]).astype(np.float32)

    @property
    def val_side(self) -> float:
        """Edge of the validation cube [Mpc/h]."""
        return self.val_truth.shape[0] * self.box_size / self.n_grid


def load_training_data(dm_path, subhalo_path, stellar_path, train_npz, cubes_json, occupancy_json,
                       ideal_path=None, dark_catalogue=None, extra_inputs=()) -> TrainingData:
    """TrainingData from the grid fields (opened lazily; `PatchSource` reads them in slabs), the
    split outputs, the occupancy threshold, optionally the noise-free mean stellar-mass field
    and the gravity-only subhalo catalogue (`dark_catalogue`: illustris_python's base and
    snapshot) that groups the calibration voxels into galaxies. `extra_inputs`: (dm_path,
    subhalo_path) of the other training universes, in the split's order."""
    # Zarr, illustris_python: not needed to train from arrays (GPU nodes)
    from .fields import open_field, read_periodic
    from .cic import host_subhalos
    from .tng import load_subhalos

    split = np.load(train_npz)
    boxes = int(split["training_boxes"]) if "training_boxes" in split else 1
    if boxes != 1 + len(extra_inputs):
        raise ValueError(f"{train_npz} holds training voxels of {boxes} boxes, but {1 + len(extra_inputs)} were given "
                         f"(the training pair and training_universes); rerun the split")
    val = read_cubes(cubes_json).validation
    start, size = val.start, val.size
    dm, sub = open_field(dm_path), open_field(subhalo_path)
    attrs = dict(dm.attrs)
    n = int(attrs["n_grid"])
    stellar = open_field(stellar_path)
    truth = read_periodic(stellar, start, (size,) * 3)
    threshold = float(json.loads(Path(occupancy_json).read_text())["threshold"])
    local = np.argwhere(candidates(read_periodic(sub, start, (size,) * 3), threshold))
    val_coords = split["val_coords"]
    ideal = None
    if ideal_path is not None:
        cube = read_periodic(open_field(ideal_path), start, (size,) * 3)
        ideal = np.log10(cube[tuple(((val_coords - np.asarray(start)) % n).T)])
    cal_coords, cal_truth = [(local + np.asarray(start)) % n], [truth[tuple(local.T)]]
    for *first, edge in split["calibration_blocks"] if "calibration_blocks" in split else []:
        shape = (int(edge),) * 3
        inside = np.argwhere(candidates(read_periodic(sub, first, shape), threshold))
        cal_coords.append((inside + np.asarray(first)) % n)
        cal_truth.append(read_periodic(stellar, first, shape)[tuple(inside.T)])
    cal_coords, hosts = np.concatenate(cal_coords), None
    if dark_catalogue is not None:
        subs = load_subhalos(*dark_catalogue, ["SubhaloPos", "SubhaloMass"])
        hosts = host_subhalos(cal_coords, (0, 0, 0), n, float(attrs["box_size"]), subs["SubhaloPos"],
                              subs["SubhaloMass"]) if subs["count"] else np.full(len(cal_coords), -1)
    return TrainingData(
        dm=dm, subhalo=sub, coords=split["coords"], log_mstar=split["log_mstar"], weights=split["weights"],
        importance=split["importance"],
        val_coords=val_coords, val_log_mstar=split["val_log_mstar"],
        val_candidates=(local + np.asarray(start)) % n, val_start=np.asarray(start),
        val_truth=truth.astype(np.float64), n_grid=n, box_size=float(attrs["box_size"]),
        normalisation={k: split[k] for k in NORMALISATION_KEYS if k in split},
        val_ideal_log_mstar=ideal, cal_coords=cal_coords, cal_hosts=hosts,
        cal_truth=np.concatenate(cal_truth).astype(np.float64), min_mass=float(split["min_stellar_mass"]),
        extra_inputs=tuple((open_field(dm_p), open_field(sub_p)) for dm_p, sub_p in extra_inputs),
    )


def load_galaxy_training_data(dm_path, subhalo_path, stellar_path, train_npz, galaxies_npz, cubes_json, query: str,
                              weight_bins: int, weight_power: float, extra_inputs=()) -> TrainingData:
    """The galaxy painter's TrainingData: the input fields and normalisation of the split
    (train.npz), the samples of `galaxies_npz` (`dm2gal.galaxy_samples`), of which the network
    reads the first QUERIES[`query`] query columns; training galaxies are drawn with weights
    counted in `weight_bins` bins of log10 SubhaloMass to the -`weight_power` (an input, so the
    optimum stays the unweighted mean); the target and query normalisation are the training
    galaxies'. The floor is the matched noise-free mean where the generator wrote one."""
    from .fields import open_field, read_periodic  # Zarr: not needed to train from arrays (GPU nodes)
    from .galaxy_samples import QUERIES, ROLES, reaching
    from .split import input_weights

    split, samples = np.load(train_npz), np.load(galaxies_npz)
    boxes = int(samples["box"].max()) + 1
    if boxes != 1 + len(extra_inputs):
        raise ValueError(f"{galaxies_npz} holds galaxies of {boxes} boxes, but {1 + len(extra_inputs)} were given "
                         f"(the training pair and training_universes); rerun the split")
    q = samples["query"][:, :QUERIES[query]]
    role, mass, voxel = samples["role"], samples["stellar_mass"], samples["voxel"]
    train = (role == ROLES["train"]) & (mass > 0)
    val = (role == ROLES["validation"]) & (mass > 0)
    cal = role == ROLES["calibration"]
    if train.sum() == 0 or val.sum() == 0:
        raise ValueError(f"{galaxies_npz}: {int(train.sum())} training and {int(val.sum())} validation galaxies; "
                         f"the galaxy painter needs both")
    log_m = np.log10(mass[train])
    weights, _ = input_weights(10.0 ** q[train, 0], int(weight_bins), float(weight_power))
    normalisation = {k: split[k] for k in ("input_scale", "input_mean", "input_std") if k in split}
    normalisation.update(target_mean=log_m.mean(), target_std=log_m.std(), query_mean=q[train].mean(0),
                         query_std=np.maximum(q[train].std(0), 1e-6))
    cube = read_cubes(cubes_json).validation
    dm, sub, stellar = open_field(dm_path), open_field(subhalo_path), open_field(stellar_path)
    n, box = int(dm.attrs["n_grid"]), float(dm.attrs["box_size"])
    reach = reaching(voxel, cube.start, cube.size, n) & (samples["box"] == 0)  # the pair's subhalos it deposits
    ideal = samples["ideal"][val]
    return TrainingData(
        dm=dm, subhalo=sub, coords=voxel[train], log_mstar=log_m, weights=weights, importance=np.ones(len(log_m)),
        val_coords=voxel[val], val_log_mstar=np.log10(mass[val]), val_candidates=voxel[reach],
        val_start=np.asarray(cube.start), val_truth=read_periodic(stellar, cube.start, (cube.size,) * 3).astype(float),
        n_grid=n, box_size=box, normalisation=normalisation,
        val_ideal_log_mstar=np.log10(ideal) if np.all(np.isfinite(ideal) & (ideal > 0)) else None,
        cal_coords=voxel[cal], cal_truth=mass[cal], min_mass=float(split["min_stellar_mass"]),
        extra_inputs=tuple((open_field(dm_p), open_field(sub_p)) for dm_p, sub_p in extra_inputs),
        target="galaxies", query=q[train], val_query=q[val], cal_query=q[cal], val_query_painted=q[reach],
        val_positions=samples["position"][reach])


def paint_cube(coords: np.ndarray, mass: np.ndarray, start, size: int, n_grid: int) -> np.ndarray:
    """(size^3) cube [Msun/h] holding `mass` (N,) at voxels `coords` (N, 3) of the periodic
    n_grid^3 parent grid, for the cube whose first voxel is `start`; other voxels 0."""
    local = (np.asarray(coords, dtype=np.int64) - np.asarray(start, dtype=np.int64)) % n_grid
    if (local >= size).any():
        raise ValueError("a painted voxel lies outside the cube")
    cube = np.zeros((size,) * 3)
    np.add.at(cube, tuple(local.T), np.asarray(mass, dtype=np.float64))
    return cube


def pk_error(painted: np.ndarray, truth: np.ndarray, side: float, mas: str, k_range) -> float:
    """mean over k bins in `k_range` [h/Mpc] of |log10(P_painted / P_true)| for two cubes of
    side `side` [Mpc/h] (Pylians, as the stats stage computes P(k)); inf for an empty painting."""
    from .stats import overdensity, power_spectrum  # Pylians: absent on the GPU machine (benchmarks stub it)

    if not painted.sum() > 0:
        return math.inf
    p = power_spectrum(overdensity(painted), side, mas)
    t = power_spectrum(overdensity(truth), side, mas)
    in_k = (t["k"] >= k_range[0]) & (t["k"] <= k_range[1])
    if not in_k.any():
        raise ValueError(f"stats.k_range {list(k_range)} h/Mpc holds no P(k) bin of the {side:.3g} Mpc/h "
                         f"validation cube")
    ratio = p["pk"][in_k] / t["pk"][in_k]
    ratio = np.where(ratio > 0, ratio, 1e-2)  # a bin of the wrong sign counts as 2 dex, as in metrics
    return float(np.mean(np.abs(np.log10(ratio))))


def validation_scores(data: TrainingData, at_galaxies: Prediction, at_candidates: Prediction,
                      selection: dict) -> dict:
    """The per-epoch validation numbers of HISTORY_COLUMNS (val_mse ... pk_error)."""
    z, target = data.normalised(at_galaxies.mu), data.normalised(data.val_log_mstar)
    floor = math.nan
    if data.val_ideal_log_mstar is not None:
        floor = float(np.mean((data.normalised(data.val_ideal_log_mstar) - target) ** 2))
    size = data.val_truth.shape[0]
    if data.target == "galaxies":  # the painting deposits the subhalos' galaxies as the truth was deposited
        from .cic import deposit_cube  # Pylians, as pk_error

        painted = deposit_cube(data.val_positions, at_candidates.mean_mass(), data.box_size, data.n_grid,
                               tuple(data.val_start), size)
    else:
        painted = paint_cube(data.val_candidates, at_candidates.mean_mass(), data.val_start, size, data.n_grid)
    return dict(val_mse=float(np.mean((z - target) ** 2)), val_mse_mean_predictor=float(np.mean(target ** 2)),
                val_mse_floor=floor,
                val_mass_ratio=float(at_galaxies.mean_mass().sum() / (10.0 ** data.val_log_mstar).sum()),
                pk_error=pk_error(painted, data.val_truth, data.val_side, selection["mas"], selection["k_range"]))


def calibrate(net: torch.nn.Module, data: TrainingData, source: PatchSource, batch_size: int, bin_voxels: int):
    """The `dm2gal.calibration.Calibration` of `net`'s painting at the calibration voxels (bins of
    `bin_voxels` occupied voxels), or None when there are none (a TrainingData without them);
    its galaxy scatter factor is fitted where the voxels' hosts are known."""
    # scipy (isotonic regression): kept out of the import of the training module on GPU machines
    from .calibration import fit as fit_calibration
    from .calibration import fit_galaxies

    if data.cal_coords is None or len(data.cal_coords) == 0:
        return None
    pred = predict(net, source, data.cal_coords, data.normalisation, batch_size=batch_size, query=data.cal_query)
    if data.target == "galaxies":
        from .calibration import fit_galaxy_painter

        cal = fit_galaxy_painter(pred.mu, pred.sigma, data.cal_truth, min_galaxies=bin_voxels)
        log.info("calibration on %d subhalos (%d with a galaxy): mu' = %.3f + %.3f mu, mass x %.3f, scatter x %.3f "
                 "(x %s at log10 m %s)", len(data.cal_coords), int((data.cal_truth > 0).sum()), *cal.log10_line,
                 10.0 ** cal.log10_ratio[0],
                 cal.scatter_factor, np.round(cal.scatter_factors, 2).tolist(),
                 np.round(cal.scatter_log10_mass, 2).tolist())
        return cal
    cal = fit_calibration(pred.mean_mass(), pred.mu, pred.sigma, data.cal_truth, data.min_mass,
                          min_galaxies=bin_voxels)
    if data.cal_hosts is not None:
        calibrated = Prediction(*cal.apply(pred.mu, pred.sigma))
        cal = replace(cal, **fit_galaxies(calibrated.mean_mass(), calibrated.sigma, data.cal_truth, data.cal_hosts,
                                          data.min_mass, min_galaxies=bin_voxels))
    log.info("calibration on %d voxels (%d occupied): log10 true/painted %s at log10 m %s; scatter x %.3f; "
             "galaxies: log10 true/painted %s, scatter x %s at log10 m %s", len(data.cal_coords),
             int((data.cal_truth > data.min_mass).sum()), np.round(cal.log10_ratio, 3).tolist(),
             np.round(cal.log10_mass, 2).tolist(), cal.scatter_factor, np.round(cal.galaxy_log10_ratio, 3).tolist(),
             np.round(cal.galaxy_scatter_factor, 2).tolist(), np.round(cal.galaxy_log10_mass, 2).tolist())
    return cal


def ema_update(decay: float):
    """AveragedModel's avg_fn for an EMA whose decay warms up as min(decay, (1 + n) / (10 + n))
    after n updates, so that a short run is not averaged towards its initial weights."""
    def avg_fn(averaged: torch.Tensor, current: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))
        return averaged * d + current * (1.0 - d)
    return avg_fn


class Dm2GalModule(L.LightningModule):
    """The network, its EMA, its optimiser, and the data paths of one training run."""

    def __init__(self, model_cfg: dict, data: TrainingData, hparams: dict, selection: dict):
        super().__init__()
        self.net = build_model(model_cfg)
        self.ema = AveragedModel(self.net, avg_fn=ema_update(hparams["ema_decay"]), use_buffers=True)
        self.ema.requires_grad_(False)  # updated by averaging, never by the optimiser (and DDP must not wait for it)
        self.data = data
        self.hp = hparams
        self.selection = selection
        self.patch = int(model_cfg["patch"])
        self.source: PatchSource | None = None
        self.batches: DrawnBatches | None = None
        self.step_net: torch.nn.Module = self.net  # torch.compile'd in on_fit_start with hparams['compile']
        self._train_sum = torch.zeros(())
        self._train_count = 0
        self.last_val: dict = {}
        self.fingerprint = ""
        self._sampler_state: dict | None = None

    @property
    def ema_net(self) -> torch.nn.Module:
        return self.ema.module

    # --- data ---------------------------------------------------------------------
    def on_fit_start(self) -> None:
        n = self.data.normalisation
        n_grid = int(self.data.dm.shape[0])
        boxes = [[self.data.dm, self.data.subhalo], *(list(pair) for pair in self.data.extra_inputs)]
        on_gpu = self.device.type == "cuda" and fits_on_gpu(len(boxes) * 2 * 2 * n_grid ** 3)  # float16 channels
        self.source = PatchSource.from_boxes(boxes, n["input_mean"], n["input_std"],
                                             device=self.device if on_gpu else "cpu", scale=input_scale(n))
        if self.device.type == "cuda":  # every convolution, BatchNorm and ReLU then runs channels-last
            self.net.to(memory_format=torch.channels_last_3d)
            self.ema_net.to(memory_format=torch.channels_last_3d)
        if self.hp.get("compile"):
            self.step_net = torch.compile(self.net)
        log.info("network: %d parameters, patch %d^3, objective %s; fields on %s as %s%s", n_parameters(self.net),
                 self.patch, self.hp["objective"], self.source.device, self.source.data.dtype,
                 " (torch.compile)" if self.hp.get("compile") else "")

    def train_dataloader(self):
        d = self.data
        draws = WeightedDraws(d.coords, d.normalised(d.log_mstar), d.weights,
                              seed=self.hp["seed"] + 1000 * self.global_rank, importance=d.importance,
                              query=standardised_query(d.query, d.normalisation))
        self.batches = DrawnBatches(draws, self.hp["batch_size"], self.hp["steps_per_epoch"])
        if self._sampler_state is not None:  # resumed: carry on with the interrupted stream of draws
            self.batches.load_state_dict(self._sampler_state)
            self._sampler_state = None
        return ResumableLoader(self.batches, batch_size=None, num_workers=0)

    def val_dataloader(self):
        # one dummy batch: the validation painting is done whole in on_validation_epoch_end
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(1)), batch_size=1)

    # --- steps --------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        self.batches.take()
        centres, rotations, target, importance, *query = batch
        x = self.source.cut(centres, rotations, self.patch).to(self.device, non_blocking=True)
        if self.device.type == "cpu":
            x = x.float()
        x = with_query(x, query[0] if query else None)
        out = self.step_net(x).float()
        value = loss(out, target, importance, self.hp["objective"], self.hp["beta_nll"])
        self._train_sum = self._train_sum.to(value.device) + value.detach()
        self._train_count += 1
        self.log("train_loss", value, prog_bar=True, batch_size=len(target))
        return value

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        # the EMA follows every step before any callback sees it, so a checkpoint saved at a batch's end holds it
        self.ema.update_parameters(self.net)

    def validation_step(self, batch, batch_idx):
        return None

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        # Global rank 0 paints and scores, and every rank takes its numbers, so that all ranks make the same
        # best-epoch (and plateau-schedule) decisions: the EMA's BatchNorm buffers average each rank's own
        # batch statistics, so the ranks' EMA networks agree only as far as DDP happens to broadcast buffers.
        scores = None
        if self.trainer.is_global_zero:
            d, bs = self.data, self.hp["val_batch_size"]
            at_galaxies = predict(self.ema_net, self.source, d.val_coords, d.normalisation, batch_size=bs,
                                  query=d.val_query)
            at_candidates = predict(self.ema_net, self.source, d.val_candidates, d.normalisation, batch_size=bs,
                                    query=d.val_query_painted)
            scores = validation_scores(d, at_galaxies, at_candidates, self.selection)
        self.last_val = self.trainer.strategy.broadcast(scores, src=0)
        self.log_dict({k: self.last_val[k] for k in ("val_mse", "pk_error")}, prog_bar=True, sync_dist=False,
                      rank_zero_only=False)

    def epoch_train_loss(self) -> float:
        value = float(self._train_sum) / max(1, self._train_count)
        self._train_sum, self._train_count = torch.zeros(()), 0
        return value

    # --- resuming -----------------------------------------------------------------
    # Lightning restores a resumable train loader's state itself only when it restarts mid-epoch (not
    # from a checkpoint saved at an epoch's end), so the sampler's state also travels here, and
    # train_dataloader hands it to the new DrawnBatches in either case.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["dm2gal"] = {"fingerprint": self.fingerprint, "train_sum": self._train_sum.detach().cpu(),
                                "train_count": self._train_count, "last_val": dict(self.last_val),
                                "sampler": self.batches.state_dict()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["dm2gal"]
        self._sampler_state = state["sampler"]
        self._train_sum, self._train_count = state["train_sum"].clone(), int(state["train_count"])
        self.last_val = dict(state["last_val"])

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.net.parameters(), lr=self.hp["learning_rate"],
                               weight_decay=self.hp["weight_decay"], fused=self.hp.get("fused") or None)
        if self.hp["schedule"] == "cosine":
            total = self.hp["max_epochs"] * self.hp["steps_per_epoch"]
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=0.01 * self.hp["learning_rate"])
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.1, patience=self.hp["patience"])
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_mse", "interval": "epoch"}}


class ResumableLoader(torch.utils.data.DataLoader):
    """The training loader, resumable mid-epoch: its state is its `DrawnBatches`' (Lightning saves a
    train loader's `state_dict` in the checkpoint and hands it back to `load_state_dict` on resume)."""

    def state_dict(self) -> dict:
        return self.dataset.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.dataset.load_state_dict(state)


class History(L.Callback):
    """At the end of each epoch: a row of HISTORY_COLUMNS, and a copy of the EMA weights when the
    selection statistic (the selection error averaged over the last `window` epochs) is the best.
    An epoch is eligible only once its window is full: a mean of fewer noisy errors would win by
    its noise alone, which picked epoch 1 of 16 on the mini-universe. A run that ends before
    any window is full (fewer epochs than the window, or `max_minutes`) keeps its last epoch.
    Its state travels in last.ckpt."""

    def __init__(self, window: int, statistic: str = "pk_error"):
        self.window, self.statistic = window, statistic
        self.rows: list[dict] = []
        self.best = math.inf
        self.best_state: dict | None = None
        self.best_row: dict | None = None
        self.t0 = time.time()

    def on_train_epoch_end(self, trainer, module: Dm2GalModule) -> None:
        val = module.last_val
        recent = [r[self.statistic] for r in self.rows[-(self.window - 1):]] if self.window > 1 else []
        selection = float(np.mean(recent + [val[self.statistic]]))
        best = len(recent) + 1 == self.window and selection < self.best
        row = dict(epoch=trainer.current_epoch, step=trainer.global_step,
                   lr=trainer.optimizers[0].param_groups[0]["lr"], train_loss=module.epoch_train_loss(), **val,
                   selection=selection, best=int(best), seconds=round(time.time() - self.t0, 1))
        self.rows.append(row)
        if best:
            self.best, self.best_row = selection, row
            self.best_state = copy.deepcopy(module.ema_net.state_dict())
        if trainer.is_global_zero:
            log.info("epoch %d: loss %.4f, val MSE %.4f (mean predictor %.4f, floor %.4f), mass ratio %.3f, "
                     "P(k) error %.4f, selection %.4f%s", row["epoch"], row["train_loss"], row["val_mse"],
                     row["val_mse_mean_predictor"], row["val_mse_floor"], row["val_mass_ratio"], row["pk_error"],
                     selection, " (best)" if best else "")

    def on_train_end(self, trainer, module: Dm2GalModule) -> None:
        if self.best_state is None and self.rows:
            self.best_row = self.rows[-1]
            self.best_row["best"] = 1
            self.best, self.best_state = self.best_row["selection"], copy.deepcopy(module.ema_net.state_dict())

    def state_dict(self) -> dict:
        return {"rows": self.rows, "best": self.best, "best_state": self.best_state, "best_row": self.best_row,
                "elapsed": time.time() - self.t0}

    def load_state_dict(self, state: dict) -> None:
        self.rows, self.best, self.best_row = list(state["rows"]), float(state["best"]), state["best_row"]
        self.best_state, self.t0 = state["best_state"], time.time() - float(state["elapsed"])


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints (last.ckpt, and the HPC checkpoint of a SLURM requeue) written through
    `dm2gal.atomic.atomic_path`: a job killed while saving leaves the previous checkpoint whole."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


class Resume(L.Callback):
    """Writes `last.ckpt` in `directory` every `minutes` of training (at a batch's end) and at the end
    of every epoch: weights, EMA, optimiser, scheduler, loop progress, the sampler's position and
    generator state (`ResumableLoader`), the epoch's running loss and the `History`."""

    def __init__(self, directory, minutes: float):
        self.path = Path(directory) / LAST_CHECKPOINT
        self.minutes = float(minutes)
        self.saved = time.monotonic()
        self.at_epoch_end = False  # saved at an epoch's end: a plateau schedule's step for it is still to come
        self.plateau_pending = False

    def _save(self, trainer, at_epoch_end: bool) -> None:
        self.at_epoch_end = at_epoch_end
        trainer.save_checkpoint(self.path)
        self.saved = time.monotonic()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.current.ready >= trainer.num_training_batches:
            return  # the epoch's last batch: the epoch-end checkpoint follows its validation
        due = time.monotonic() - self.saved >= 60 * self.minutes
        if trainer.world_size > 1:  # every rank must take part in save_checkpoint
            due = trainer.strategy.broadcast(due, src=0)
        if due:
            self._save(trainer, at_epoch_end=False)

    def on_train_epoch_end(self, trainer, module) -> None:
        self._save(trainer, at_epoch_end=True)

    def state_dict(self) -> dict:
        return {"at_epoch_end": self.at_epoch_end}

    def load_state_dict(self, state: dict) -> None:
        self.plateau_pending = bool(state["at_epoch_end"])

    def on_train_start(self, trainer, module: Dm2GalModule) -> None:
        # Lightning steps epoch-interval plateau schedulers after on_train_epoch_end, where the
        # checkpoint was saved, and not again on resume: take that step here
        for config in trainer.lr_scheduler_configs if self.plateau_pending else ():
            if config.interval == "epoch" and isinstance(config.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                config.scheduler.step(torch.tensor(module.last_val[config.monitor], dtype=torch.float32))
        self.plateau_pending = False


def write_history(path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=HISTORY_COLUMNS)
        w.writeheader()
        w.writerows(rows)


def run_fingerprint(data: TrainingData, model_cfg: dict, hparams: dict) -> str:
    """A digest of what a training run computes from (architecture, hyper-parameters, training
    voxels, normalisation): a last.ckpt with another is not resumed."""
    h = hashlib.sha256(json.dumps({"model": model_cfg, "hparams": hparams,
                                   "normalisation": {k: np.asarray(v).tolist() for k, v in data.normalisation.items()},
                                   "n_grid": data.n_grid}, sort_keys=True, default=str).encode())
    for a in (data.coords, data.log_mstar, data.weights, data.importance,
              *(() if data.query is None else (data.query,))):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def resume_checkpoint(directory, fingerprint: str) -> str | None:
    """The newest checkpoint in `directory` (last.ckpt, or Lightning's hpc_ckpt_N.ckpt of a SLURM
    requeue) written by a run of this fingerprint, or None; others are removed."""
    directory = Path(directory)
    found = sorted(list(directory.glob(LAST_CHECKPOINT)) + list(directory.glob("hpc_ckpt_*.ckpt")),
                   key=lambda p: p.stat().st_mtime, reverse=True) if directory.is_dir() else []
    for path in found:
        try:
            theirs = torch.load(path, map_location="cpu", weights_only=False).get("dm2gal", {}).get("fingerprint")
        except Exception as err:  # noqa: BLE001 - an unreadable checkpoint is only not resumed
            log.warning("cannot read %s (%s): not resuming from it", path, err)
            theirs = None
        if theirs == fingerprint:
            log.info("resuming from %s", path)
            return str(path)
        log.warning("%s belongs to another training run (config or data changed): removed", path)
        path.unlink()
    return None


def _check_fit(data: TrainingData, model_cfg: dict, objective: str, schedule: str, calibration_bin_voxels: int,
               selection_statistic: str):
    if int(model_cfg.get("outputs", 1)) != head_outputs(objective):
        raise ValueError(f"objective {objective!r} needs a head of {head_outputs(objective)} outputs, "
                         f"the model has {model_cfg.get('outputs', 1)}")
    if schedule not in SCHEDULES:
        raise ValueError(f"train.schedule must be one of {SCHEDULES}, got {schedule!r}")
    if selection_statistic not in SELECTION_STATISTICS:
        raise ValueError(f"train.selection_statistic must be one of {SELECTION_STATISTICS}, "
                         f"got {selection_statistic!r}")
    if data.cal_truth is not None and (data.cal_truth > data.min_mass).sum() < calibration_bin_voxels:
        raise ValueError(f"the calibration voxels hold {int((data.cal_truth > data.min_mass).sum())} occupied "
                         f"voxels, fewer than one bin of train.calibration_bin_voxels = {calibration_bin_voxels}: "
                         f"raise split.calibration.fraction")


def _trainer(hp: dict, callbacks: list, *, on_gpu: bool, devices, strategy, max_minutes, progress: bool,
             root_dir) -> L.Trainer:
    """The Lightning Trainer of `fit`: bf16-mixed, cuDNN autotuning and (under SLURM, one device) the
    requeue signal handler on GPU; deterministic on CPU."""
    n_dev = devices if isinstance(devices, int) else (torch.cuda.device_count() if on_gpu else 1)
    plugins = [AtomicCheckpointIO()]
    if strategy is None:
        strategy = DDPStrategy(cluster_environment=LightningEnvironment()) if n_dev > 1 else "auto"
        if n_dev == 1 and SLURMEnvironment.detect():  # SIGUSR1 before the time limit: checkpoint, requeue
            plugins.append(SLURMEnvironment(auto_requeue=True, requeue_signal=signal.SIGUSR1))
    if progress:
        callbacks = callbacks + [TQDMProgressBar(refresh_rate=max(1, hp["steps_per_epoch"] // 10))]
    return L.Trainer(
        accelerator="gpu" if on_gpu else "cpu", devices=devices, strategy=strategy, plugins=plugins,
        precision="bf16-mixed" if on_gpu else "32-true", max_epochs=hp["max_epochs"],
        max_time={"minutes": max_minutes} if max_minutes else None, default_root_dir=root_dir,
        logger=False, enable_checkpointing=False, num_sanity_val_steps=0, enable_model_summary=False,
        sync_batchnorm=on_gpu and n_dev > 1, enable_progress_bar=progress, callbacks=callbacks,
        # CPU kernels are deterministic; on GPU some (e.g. index_select's CUDA backward) may not be, and
        # cuDNN's autotuner picks kernels by timing, so there Lightning only warns instead of refusing to train
        deterministic="warn" if on_gpu else True, benchmark=on_gpu,
    )


def _write_outputs(module: Dm2GalModule, history: History, hparams: dict, ckpt_path, history_path) -> None:
    """best.ckpt (the best epoch's EMA weights, calibrated) and history.csv, atomically."""
    data, row = module.data, history.best_row
    module.ema_net.load_state_dict(history.best_state)
    cal = calibrate(module.ema_net, data, module.source, hparams["val_batch_size"], hparams["calibration_bin_voxels"])
    ckpt = checkpoint_dict(module.ema_net, data.normalisation, hparams, epoch=row["epoch"],
                           calibration=cal.as_dict() if cal is not None else None,
                           metrics={k: row[k] for k in ("val_mse", "val_mse_mean_predictor", "val_mse_floor",
                                                        "val_mass_ratio", "pk_error", "selection")})
    with atomic_path(ckpt_path) as tmp:
        torch.save(ckpt, tmp)
    write_history(history_path, history.rows)


def fit(data: TrainingData, model_cfg: dict, *, learning_rate: float, weight_decay: float, batch_size: int,
        steps_per_epoch: int, max_epochs: int, ckpt_path, history_path, selection: dict, seed: int = 0,
        objective: str = "unbiased", beta_nll: float = 0.5, schedule: str = "cosine", ema_decay: float = 0.995,
        selection_window: int = 3, selection_statistic: str = "pk_error", calibration_bin_voxels: int = 50,
        patience: int = 5, val_batch_size: int = 256,
        max_minutes: float | None = None, resume_dir=None, checkpoint_minutes: float = 10.0, compile: bool = False,
        devices: int | str = "auto", accelerator: str = "auto", strategy: str | None = None,
        progress: bool = True, extra_hparams: dict | None = None) -> dict:
    """Train one hyper-parameter point; returns {'best_selection', 'epochs', 'history', 'world_size'}.

    `model_cfg` must have the objective's number of head outputs. `selection` holds the
    stats stage's `mas` and `k_range` [h/Mpc]. When training ends, `best.ckpt` (the EMA
    weights of the epoch of smallest selection statistic: `selection_statistic`, a
    history.csv column, averaged over `selection_window` epochs) and `history.csv` (one row
    per epoch, HISTORY_COLUMNS) are written atomically by global rank 0. Several
    devices run DDP with processes launched by Lightning itself. `extra_hparams` (e.g.
    the sweep point's capacity) are stored in the checkpoint beside the others.

    With `resume_dir`, `last.ckpt` is written there every `checkpoint_minutes` and at each
    epoch's end (`Resume`), a run finds it (or the HPC checkpoint of a SLURM requeue) and
    continues from it, as if never stopped, and the folder is removed once the outputs are
    written. `compile` runs the training step's network through torch.compile.
    """
    _check_fit(data, model_cfg, objective, schedule, calibration_bin_voxels, selection_statistic)
    L.seed_everything(seed, workers=True, verbose=False)
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpu:  # cuBLAS needs this for deterministic matrix products
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    hparams = dict(learning_rate=learning_rate, weight_decay=weight_decay, batch_size=batch_size,
                   steps_per_epoch=steps_per_epoch, max_epochs=max_epochs, patience=patience, seed=seed,
                   objective=objective, beta_nll=beta_nll, schedule=schedule, ema_decay=ema_decay,
                   selection_window=selection_window, selection_statistic=selection_statistic,
                   calibration_bin_voxels=calibration_bin_voxels, val_batch_size=val_batch_size,
                   **(extra_hparams or {}))
    module = Dm2GalModule(model_cfg, data, {**hparams, "compile": compile, "fused": on_gpu}, selection)
    history, callbacks, resume_from = History(selection_window, selection_statistic), [], None
    callbacks.append(history)
    if resume_dir is not None:
        module.fingerprint = run_fingerprint(data, model_cfg, hparams)
        resume_from = resume_checkpoint(resume_dir, module.fingerprint)
        callbacks.append(Resume(resume_dir, checkpoint_minutes))
    trainer = _trainer(hparams, callbacks, on_gpu=on_gpu, devices=devices, strategy=strategy,
                       max_minutes=max_minutes, progress=progress, root_dir=resume_dir)
    trainer.fit(module, ckpt_path=resume_from)
    if trainer.is_global_zero and history.best_state is not None:
        _write_outputs(module, history, hparams, ckpt_path, history_path)
        if resume_dir is not None:  # deliberately removed: the outputs hold all that is kept of the run
            shutil.rmtree(resume_dir, ignore_errors=True)
    # under DDP the other ranks leave trainer.fit with nothing left to wait for; hold them until rank 0
    # has written best.ckpt and history.csv, so that on no rank fit returns before its outputs exist
    trainer.strategy.barrier("fit outputs written")
    return {"best_selection": history.best, "epochs": len(history.rows), "history": history.rows,
            "world_size": trainer.world_size}
