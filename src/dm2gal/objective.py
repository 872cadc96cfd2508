"""Training objectives: what the network's head means and the loss that fits it.

Patches are drawn by the split's weights w (`dm2gal.sampler.WeightedDraws`: rare
massive galaxies are seen as often as common ones). Weights counted in the target's
own mass (the paper's, the default `split.weight_by`) make a plain MSE's optimum the
*w-weighted* conditional mean of y = log10 M*, which sits above the plain one wherever
the stellar-mass function falls; weights counted in an input (gravity-only subhalo
mass) leave the optimum where it is.

- `unbiased` (the default): the head gives the mean mu and the log scatter of y
  (normalised units), fitted by a Gaussian negative log-likelihood whose every sample
  is multiplied by its importance weight (`split`: 1 for input weights, mean(w) / w_i
  for target weights, so that the expected loss is the loss over the training voxels
  drawn uniformly): the optimum is the unweighted conditional mean and variance. `beta` > 0 is the beta-NLL of Seitzer et al. (2022):
  each sample's NLL is multiplied by the (not differentiated) sigma^(2 beta), which
  keeps the mean's gradient from vanishing where sigma is large; the optimum is the
  same. The painted mass is the log-normal mean 10^(mu + ln10 sigma^2 / 2)
  (`dm2gal.inference.Prediction`).
- `paper`: one output, plain MSE under weighted draws, painted as 10^y.

Imports only torch.
"""

from __future__ import annotations

import torch

from .inference import LOG_SCATTER_RANGE
from .model import OBJECTIVES


def gaussian_nll(out: torch.Tensor, target: torch.Tensor, beta: float = 0.0) -> torch.Tensor:
    """(B,) per-sample Gaussian NLL (up to a constant) of targets (B,) under out (B, 2) =
    (mean, log scatter), both in the target's units; beta-NLL weighting for beta > 0."""
    mu, log_sigma = out[:, 0], out[:, 1].clamp(*LOG_SCATTER_RANGE)
    nll = 0.5 * ((target - mu) * torch.exp(-log_sigma)) ** 2 + log_sigma
    if beta:
        nll = nll * torch.exp(2.0 * beta * log_sigma).detach()
    return nll


def loss(out: torch.Tensor, target: torch.Tensor, importance: torch.Tensor, objective: str,
         beta: float = 0.5) -> torch.Tensor:
    """Scalar training loss of one batch: out (B, outputs), target and importance (B,)."""
    if objective == "paper":
        return torch.mean((out[:, 0] - target) ** 2)
    if objective == "unbiased":
        return torch.mean(importance * gaussian_nll(out, target, beta))
    raise ValueError(f"train.objective must be one of {OBJECTIVES}, got {objective!r}")
