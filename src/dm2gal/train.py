"""Training one hyper-parameter point with Lightning, and choosing its epoch by the power spectrum.

The loss is the MSE on the normalised log10 stellar mass of the centre voxel; patches
are drawn by weight with a random cube rotation each (`dm2gal.sampler`) and cut on
the device that holds the fields. Adam with weight decay; the learning rate drops by
10 after `patience` epochs without a better validation MSE. Each validation epoch
paints the validation cube at its true galaxy voxels (the paper's procedure),
deposits the predictions into the cube and logs the distance between the painted and
true stellar-mass power spectra beside the MSE. The checkpoint kept is the epoch with
the smallest power-spectrum distance, not the smallest MSE. On GPU: bf16 autocast and
channels-last-3d; with several devices, DDP (each process draws its own batches).
"""

from __future__ import annotations

import csv
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch

from .atomic import atomic_path
from .inference import checkpoint_dict, predict
from .model import build_model, n_parameters
from .sampler import DrawnBatches, PatchSource, WeightedDraws, fits_on_gpu

log = logging.getLogger("dm2gal.train")

HISTORY_COLUMNS = ("epoch", "step", "lr", "train_mse", "val_mse", "val_mse_mean_predictor", "pk_distance",
                   "best", "seconds")


@dataclass
class TrainingData:
    """What one training run needs, held in memory.

    dm, subhalo: (n, n, n) input fields [Msun/h] (arrays or anything sliceable along
    axis 0); coords (N, 3), log_mstar (N,) [log10 Msun/h], weights (N,): training
    voxels; val_coords (M, 3), val_log_mstar (M,): validation voxels to paint;
    val_start [3], val_truth (s, s, s) [Msun/h]: the true validation cube;
    n_grid, box_size [Mpc/h]: the parent grid; normalisation: see `dm2gal.inference.NORMALISATION_KEYS`.
    """

    dm: object
    subhalo: object
    coords: np.ndarray
    log_mstar: np.ndarray
    weights: np.ndarray
    val_coords: np.ndarray
    val_log_mstar: np.ndarray
    val_start: np.ndarray
    val_truth: np.ndarray
    n_grid: int
    box_size: float
    normalisation: dict

    def normalised(self, log_mstar: np.ndarray) -> np.ndarray:
        n = self.normalisation
        return ((log_mstar - n["target_mean"]) / n["target_std"]).astype(np.float32)


def load_training_data(dm_path, subhalo_path, stellar_path, train_npz, cubes_json) -> TrainingData:
    """TrainingData from the grid fields (opened lazily; `PatchSource` reads them in slabs) and the
    split outputs."""
    import json

    from .fields import open_field, read_periodic

    split = np.load(train_npz)
    cubes = json.loads(Path(cubes_json).read_text())
    val = cubes["validation"]
    dm, sub = open_field(dm_path), open_field(subhalo_path)  # read slab by slab into the PatchSource
    attrs = dict(dm.attrs)
    truth = read_periodic(open_field(stellar_path), val["start"], (val["size"],) * 3)
    return TrainingData(
        dm=dm, subhalo=sub, coords=split["coords"], log_mstar=split["log_mstar"], weights=split["weights"],
        val_coords=split["val_coords"], val_log_mstar=split["val_log_mstar"],
        val_start=np.asarray(val["start"]), val_truth=truth.astype(np.float64),
        n_grid=int(attrs["n_grid"]), box_size=float(attrs["box_size"]),
        normalisation={k: split[k] for k in ("input_mean", "input_std", "target_mean", "target_std")},
    )


def power_spectrum(field: np.ndarray, side: float, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(k [h/Mpc], P(k) [(Mpc/h)^3]) of the overdensity of a cubic mass field of side `side` [Mpc/h].

    Pylians `Pk_library.Pk` on delta = M / mean(M) - 1, no mass-assignment correction
    (the values are voxel masses, painted and true alike), monopole.
    """
    import Pk_library as PKL

    delta = (field / field.mean() - 1.0).astype(np.float32)
    pk = PKL.Pk(delta, float(side), axis=0, MAS="None", threads=threads, verbose=False)
    return np.asarray(pk.k3D), np.asarray(pk.Pk[:, 0])


def pk_distance(painted: np.ndarray, truth: np.ndarray, side: float) -> float:
    """RMS over k bins of log10(P_painted / P_true): 0 for a perfect match, 0.1 ~ 26 % off.

    Returns inf when the painted field is empty.
    """
    if painted.sum() <= 0:
        return math.inf
    _, p_paint = power_spectrum(painted, side)
    _, p_true = power_spectrum(truth, side)
    ok = (p_paint > 0) & (p_true > 0)
    return float(np.sqrt(np.mean(np.log10(p_paint[ok] / p_true[ok]) ** 2)))


class Dm2GalModule(L.LightningModule):
    """The network, its optimiser, and the data paths of one training run."""

    def __init__(self, model_cfg: dict, data: TrainingData, *, learning_rate: float, weight_decay: float,
                 batch_size: int, steps_per_epoch: int, val_batch_size: int, patience: int, seed: int):
        super().__init__()
        self.net = build_model(model_cfg)
        self.data = data
        self.hparams_dict = dict(learning_rate=learning_rate, weight_decay=weight_decay, batch_size=batch_size,
                                 steps_per_epoch=steps_per_epoch, patience=patience, seed=seed)
        self.val_batch_size = val_batch_size
        self.patch = int(model_cfg["patch"])
        self.source: PatchSource | None = None
        self.val_targets = torch.as_tensor(data.normalised(data.val_log_mstar))  # normalised log10 M*
        self._val_idx: list[torch.Tensor] = []
        self._val_pred: list[torch.Tensor] = []
        self._train_sum = torch.zeros(())
        self._train_count = 0
        self.last_val: dict = {}

    # --- data ---------------------------------------------------------------------
    def on_fit_start(self) -> None:
        n = self.data.normalisation
        n_grid = int(self.data.dm.shape[0])
        on_gpu = self.device.type == "cuda" and fits_on_gpu(2 * 2 * n_grid ** 3)  # two float16 channels
        self.source = PatchSource.from_arrays([self.data.dm, self.data.subhalo], n["input_mean"], n["input_std"],
                                              device=self.device if on_gpu else "cpu")
        if self.device.type == "cuda":
            self.net.to(memory_format=torch.channels_last_3d)
        log.info("network: %d parameters, patch %d^3; fields on %s as %s", n_parameters(self.net), self.patch,
                 self.source.device, self.source.data.dtype)

    def train_dataloader(self):
        d = self.data
        draws = WeightedDraws(d.coords, d.normalised(d.log_mstar), d.weights,
                              seed=self.hparams_dict["seed"] + 1000 * self.global_rank)
        batches = DrawnBatches(draws, self.hparams_dict["batch_size"], self.hparams_dict["steps_per_epoch"])
        return torch.utils.data.DataLoader(batches, batch_size=None, num_workers=0)

    def val_dataloader(self):
        idx = torch.utils.data.TensorDataset(torch.arange(len(self.data.val_coords)))
        return torch.utils.data.DataLoader(idx, batch_size=self.val_batch_size, shuffle=False)

    # --- steps --------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        centres, rotations, target = batch
        x = self.source.cut(centres, rotations, self.patch).to(self.device, non_blocking=True)
        if self.device.type == "cpu":
            x = x.float()
        pred = self.net(x).squeeze(1).float()
        loss = torch.nn.functional.mse_loss(pred, target)
        self._train_sum = self._train_sum.to(loss.device) + loss.detach()
        self._train_count += 1
        self.log("train_mse", loss, prog_bar=True, batch_size=len(target))
        return loss

    def validation_step(self, batch, batch_idx):
        (idx,) = batch
        log_m = predict(self.net, self.source, self.data.val_coords[idx.cpu().numpy()], self.data.normalisation,
                        batch_size=len(idx))
        self._val_idx.append(idx)
        self._val_pred.append(torch.as_tensor(log_m, device=self.device))

    def on_validation_epoch_end(self) -> None:
        idx, pred = torch.cat(self._val_idx), torch.cat(self._val_pred)
        self._val_idx.clear()
        self._val_pred.clear()
        if self.trainer.world_size > 1:  # every rank sees every prediction (DistributedSampler pads evenly)
            idx, pred = self.all_gather(idx).reshape(-1), self.all_gather(pred).reshape(-1)
        log_m = np.empty(len(self.data.val_coords))
        log_m[idx.cpu().numpy()] = pred.cpu().numpy()
        z, target = self.data.normalised(log_m), self.val_targets.numpy()
        mse = float(np.mean((z - target) ** 2))
        mse_mean = float(np.mean(target ** 2))  # predicting the training mean: 0 in normalised units
        size = self.data.val_truth.shape[0]
        painted = paint_cube(self.data.val_coords, log_m, self.data.val_start, size, self.data.n_grid)
        dist = pk_distance(painted, self.data.val_truth, size * self.data.box_size / self.data.n_grid)
        self.last_val = dict(val_mse=mse, val_mse_mean_predictor=mse_mean, pk_distance=dist)
        self.log_dict({"val_mse": mse, "pk_distance": dist}, prog_bar=True, sync_dist=False, rank_zero_only=False)

    def epoch_train_mse(self) -> float:
        value = float(self._train_sum) / max(1, self._train_count)
        self._train_sum, self._train_count = torch.zeros(()), 0
        return value

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.net.parameters(), lr=self.hparams_dict["learning_rate"],
                               weight_decay=self.hparams_dict["weight_decay"])
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.1,
                                                           patience=self.hparams_dict["patience"])
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_mse", "interval": "epoch"}}


def paint_cube(coords: np.ndarray, log_mstar: np.ndarray, start, size: int, n_grid: int) -> np.ndarray:
    """(size^3) cube [Msun/h] holding 10**log_mstar at voxels `coords` (N, 3) of the periodic
    n_grid^3 parent grid, for the cube whose first voxel is `start`; other voxels 0."""
    local = (np.asarray(coords, dtype=np.int64) - np.asarray(start, dtype=np.int64)) % n_grid
    if (local >= size).any():
        raise ValueError("a painted voxel lies outside the cube")
    cube = np.zeros((size,) * 3)
    np.add.at(cube, tuple(local.T), 10.0 ** np.asarray(log_mstar, dtype=np.float64))
    return cube


class History(L.Callback):
    """At the end of each epoch: append a row to history.csv, and when the power-spectrum
    distance is the best so far, write best.ckpt (atomically, global rank 0 only)."""

    def __init__(self, ckpt_path, history_path, model_cfg: dict, hparams: dict):
        self.ckpt_path, self.history_path = Path(ckpt_path), Path(history_path)
        self.model_cfg, self.hparams = model_cfg, hparams
        self.rows: list[dict] = []
        self.best = math.inf
        self.t0 = time.time()

    def on_train_epoch_end(self, trainer, module: Dm2GalModule) -> None:
        val = module.last_val
        best = val["pk_distance"] < self.best
        row = dict(epoch=trainer.current_epoch, step=trainer.global_step,
                   lr=trainer.optimizers[0].param_groups[0]["lr"], train_mse=module.epoch_train_mse(), **val,
                   best=int(best), seconds=round(time.time() - self.t0, 1))
        self.rows.append(row)
        if best:
            self.best = val["pk_distance"]
        if not trainer.is_global_zero:
            return
        log.info("epoch %d: train MSE %.4f, val MSE %.4f (mean predictor %.4f), P(k) distance %.4f%s",
                 row["epoch"], row["train_mse"], row["val_mse"], row["val_mse_mean_predictor"],
                 row["pk_distance"], " (best)" if best else "")
        if best:
            ckpt = checkpoint_dict(module.net, module.data.normalisation, self.hparams, epoch=row["epoch"],
                                   metrics={k: row[k] for k in ("val_mse", "val_mse_mean_predictor", "pk_distance")})
            with atomic_path(self.ckpt_path) as tmp:
                torch.save(ckpt, tmp)
        write_history(self.history_path, self.rows)


def write_history(path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=HISTORY_COLUMNS)
        w.writeheader()
        w.writerows(rows)


def fit(data: TrainingData, model_cfg: dict, *, learning_rate: float, weight_decay: float, batch_size: int,
        steps_per_epoch: int, max_epochs: int, ckpt_path, history_path, seed: int = 0, patience: int = 5,
        val_batch_size: int = 256, max_minutes: float | None = None, devices: int | str = "auto",
        accelerator: str = "auto", strategy: str | None = None, progress: bool = True,
        extra_hparams: dict | None = None) -> dict:
    """Train one hyper-parameter point; returns {'best_pk_distance', 'epochs', 'history', 'world_size'}.

    `best.ckpt` (the epoch of smallest power-spectrum distance) and `history.csv`
    (one row per epoch, columns HISTORY_COLUMNS) are written as training goes.
    Several devices run DDP with processes launched by Lightning itself (also inside
    a single SLURM task). `extra_hparams` (e.g. the sweep point's capacity) are stored
    in the checkpoint beside the training hyper-parameters.
    """
    from lightning.pytorch.callbacks import TQDMProgressBar
    from lightning.pytorch.plugins.environments import LightningEnvironment
    from lightning.pytorch.strategies import DDPStrategy

    L.seed_everything(seed, workers=True, verbose=False)
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    hparams = dict(learning_rate=learning_rate, weight_decay=weight_decay, batch_size=batch_size,
                   steps_per_epoch=steps_per_epoch, max_epochs=max_epochs, patience=patience, seed=seed,
                   **(extra_hparams or {}))
    module = Dm2GalModule(model_cfg, data, learning_rate=learning_rate, weight_decay=weight_decay,
                          batch_size=batch_size, steps_per_epoch=steps_per_epoch, val_batch_size=val_batch_size,
                          patience=patience, seed=seed)
    history = History(ckpt_path, history_path, model_cfg, hparams)
    n_dev = devices if isinstance(devices, int) else (torch.cuda.device_count() if on_gpu else 1)
    if strategy is None:
        strategy = DDPStrategy(cluster_environment=LightningEnvironment()) if n_dev > 1 else "auto"
    trainer = L.Trainer(
        accelerator="gpu" if on_gpu else "cpu", devices=devices, strategy=strategy,
        precision="bf16-mixed" if on_gpu else "32-true", max_epochs=max_epochs,
        max_time={"minutes": max_minutes} if max_minutes else None,
        logger=False, enable_checkpointing=False, num_sanity_val_steps=0, enable_model_summary=False,
        sync_batchnorm=on_gpu and n_dev > 1, enable_progress_bar=progress,
        callbacks=[history] + ([TQDMProgressBar(refresh_rate=max(1, steps_per_epoch // 10))] if progress else []),
        deterministic=False,
    )
    trainer.fit(module)
    return {"best_pk_distance": history.best, "epochs": len(history.rows), "history": history.rows,
            "world_size": trainer.world_size}
