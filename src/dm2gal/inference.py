"""Batched prediction of log10 stellar mass at voxels of fields held in memory, and checkpoint loading.

Validation painting during training and the paint stage both call `predict`; patches
come from `dm2gal.sampler.PatchSource.cut` (the training code path, unrotated).
Checkpoints are plain dicts (see `checkpoint_dict`): the architecture, the weights,
the normalisation statistics and the training hyper-parameters, so one file
rebuilds the model. `decode` turns the network's raw outputs into a `Prediction`
in physical units, whichever head the checkpoint holds: what is painted is its
`mean_mass`. Imports only numpy and torch.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from .model import build_model
from .sampler import PatchSource, with_query

CHECKPOINT_FORMAT = "dm2gal-checkpoint-1"
NORMALISATION_KEYS = ("input_scale", "input_mean", "input_std", "target_mean", "target_std", "query_mean", "query_std")
"""input_scale: (2,) mass unit [Msun/h] of the inputs (the mean matter mass per voxel; 1 in
older checkpoints); input_mean/std: (2,) mean/std of log10(1 + M / input_scale) for
[dm_mass, subhalo_mass]; target_*: mean/std of log10 M* [Msun/h] over the training voxels (the training galaxies for the
galaxy painter); query_*: (Q,) mean/std of the galaxy painter's query columns
(`dm2gal.galaxy_samples.QUERY_COLUMNS`), absent for the voxel painter."""


def standardised_query(query, normalisation: dict) -> np.ndarray | None:
    """(N, Q) float32 raw queries `query` standardised as the checkpoint's training queries; None for None."""
    if query is None:
        return None
    mean, std = np.asarray(normalisation["query_mean"]), np.asarray(normalisation["query_std"])
    return ((np.asarray(query, np.float64)[:, :len(mean)] - mean) / std).astype(np.float32)


def input_scale(normalisation: dict) -> list[float]:
    """The (2,) input mass unit of a normalisation dict (1, 1 where it predates the key)."""
    return [float(v) for v in normalisation.get("input_scale", [1.0, 1.0])]


LOG_SCATTER_RANGE = (-7.0, 3.0)
"""Clamp of the probabilistic head's log scatter, in units of the target std (sigma from
about 1e-3 to 20 target stds): keeps the likelihood finite early in training."""


@dataclass
class Prediction:
    """The painted distribution of log10 M* [Msun/h] at N voxels (arrays of one shape).

    mu: mean of log10 M*; sigma: its scatter [dex], 0 for the paper's one-output head.
    The log-normal's mean mass is 10^(mu + ln(10) sigma^2 / 2): what P(k), B and the
    total stellar mass need, where 10^mu (the paper) underestimates it.
    """

    mu: np.ndarray
    sigma: np.ndarray

    def mean_mass(self) -> np.ndarray:
        """E[M*] [Msun/h] under the predicted log-normal."""
        return 10.0 ** (self.mu + 0.5 * math.log(10.0) * self.sigma ** 2)


def decode(y, normalisation: dict, axis: int = 0) -> Prediction:
    """A Prediction from raw network outputs `y` (numpy or torch) whose `axis` holds the head's
    1 or 2 outputs: normalised mean, and the log of the scatter in normalised units; calibrated
    when `normalisation` holds a 'calibration' (`load_model` puts the checkpoint's there)."""
    y = y.detach().float().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    y = np.moveaxis(y.astype(np.float64), axis, 0)
    mean, std = float(normalisation["target_mean"]), float(normalisation["target_std"])
    mu = y[0] * std + mean
    sigma = np.zeros_like(mu) if len(y) == 1 else np.exp(np.clip(y[1], *LOG_SCATTER_RANGE)) * std
    if normalisation.get("calibration"):
        from .calibration import Calibration  # scipy: this module imports only numpy and torch

        mu, sigma = Calibration.from_dict(normalisation["calibration"]).apply(mu, sigma)
    return Prediction(mu, sigma)


def checkpoint_dict(net: torch.nn.Module, normalisation: dict, hparams: dict, **extra) -> dict:
    """Everything needed to rebuild and use the model, in plain types (loads with weights_only)."""
    return {"format": CHECKPOINT_FORMAT, "model_config": dict(net.config),
            "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "normalisation": {k: np.asarray(normalisation[k], dtype=float).tolist() for k in NORMALISATION_KEYS
                              if k in normalisation},
            "hparams": dict(hparams), **extra}


def load_model(ckpt_path, device: str | torch.device = "cpu") -> tuple[torch.nn.Sequential, dict]:
    """(network in eval mode on `device`, normalisation dict) from a dm2gal checkpoint; the dict
    also holds the checkpoint's 'calibration' (None where training fitted none), which
    `decode` applies."""
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{ckpt_path} is not a {CHECKPOINT_FORMAT} checkpoint")
    net = build_model(ckpt["model_config"])
    net.load_state_dict(ckpt["state_dict"])
    return net.to(device).eval(), {**ckpt["normalisation"], "calibration": ckpt.get("calibration")}


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def predict(net: torch.nn.Module, source: PatchSource, coords, normalisation: dict,
            batch_size: int = 256, progress: bool = False, query=None) -> Prediction:
    """The Prediction at voxels `coords` (N, 3) of `source` ((N,) arrays); for the galaxy
    painter, of the subhalos there whose raw queries are `query` (N, Q).

    The network runs on its own device (bf16 autocast on GPU) in eval mode; patches
    are cut on the source's device and moved over. The caller restores train mode.
    """
    net.eval()
    device = next(net.parameters()).device
    patch = int(net.config["patch"])
    coords = torch.as_tensor(np.asarray(coords), dtype=torch.int64)
    z = standardised_query(query, normalisation)
    out = np.empty((int(net.config.get("outputs", 1)), len(coords)), dtype=np.float64)
    starts = range(0, len(coords), batch_size)
    if progress:
        from tqdm import tqdm
        starts = tqdm(starts, desc="predict", mininterval=10)
    for a in starts:
        x = source.cut(coords[a:a + batch_size], None, patch).to(device, non_blocking=True)
        x = with_query(x, None if z is None else torch.from_numpy(z[a:a + batch_size]))
        with _autocast(device):
            y = net(x.float() if device.type == "cpu" else x).float()
        out[:, a:a + len(y)] = y.T.cpu().numpy()
    return decode(out, normalisation)
