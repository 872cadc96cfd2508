"""A monotone calibration of the painted mass, fitted on voxels the network never trained on.

The network's mean mass 10^(mu + ln10 sigma^2 / 2) is unbiased only where the network
is: on new volumes its errors make the most massive predictions too heavy (a voxel
predicted heavy is as often one whose prediction scattered up as one that is heavy).
What P(k), B and the total mass need is E[M* | painted m] over the voxels the honest
painter paints, empty ones included. `fit` measures it on calibration voxels (the
split's calibration blocks and the validation cube: candidates of the occupancy
threshold, never trained on): in bins of log10 m holding `min_galaxies` occupied voxels
each, the ratio sum(true) / sum(painted), made monotone in m by an isotonic regression
of the calibrated log mass. Between bins the log ratio is interpolated linearly (the
calibrated mass stays monotone); below the lightest bin it is held constant, and a
painted mass above the heaviest the calibration voxels hold is calibrated as that one
(the calibration is only known where it was fitted): on held-out mini-universes the
network painted a few cluster voxels 10-40 times heavier than the truth, beyond
anything training or calibration saw, and they alone made P(k) and B wrong.

The predicted scatter is rescaled by one factor, the standard deviation of z = (log10 M_true -
mu_cal) / sigma over the occupied calibration voxels. That is a voxel's scatter, and it
holds how a galaxy's mass is split among its CIC voxels as well as the galaxy's own
scatter; the realisations draw one factor per galaxy (the voxels one gravity-only
subhalo hosts, `galaxy_groups`), whose scatter is the mass-weighted rms of its voxels'
(`galaxy_scatter`) times a factor of the galaxy's painted mass: the standard deviation of
the same z over the calibration galaxies (summed true over summed painted mass) in bins
of painted galaxy mass, fitted by `fit_galaxy_scatter`. On the mini-universe it is about
0.9 below 10^10 Msun/h and 0.4-0.75 above: the network's scatter of a massive galaxy is
too wide, and the heaviest galaxies carry the small-scale power of a realisation.
Imports only numpy and scipy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import isotonic_regression


@dataclass(frozen=True)
class Calibration:
    """log10_mass (B,): knots in log10 painted mean mass [Msun/h]; log10_ratio (B,): log10 of
    true over painted mass there; scatter_factor: what the predicted scatter is multiplied by;
    log10_max_painted: the heaviest painted mass of the calibration voxels [log10 Msun/h];
    galaxy_log10_mass (G,), galaxy_scatter_factor (G,): knots in log10 painted galaxy mass
    [Msun/h] and what a galaxy's scatter (`galaxy_scatter` of the calibrated voxels) is
    multiplied by there in the realisations (none: 1)."""

    log10_mass: tuple
    log10_ratio: tuple
    scatter_factor: float
    log10_max_painted: float
    galaxy_log10_mass: tuple = ()
    galaxy_scatter_factor: tuple = ()

    def mean_mass(self, painted: np.ndarray) -> np.ndarray:
        """Calibrated mean mass [Msun/h] of painted mean masses `painted` (any shape, > 0)."""
        x = np.minimum(np.log10(painted), self.log10_max_painted)
        return 10.0 ** (x + np.interp(x, self.log10_mass, self.log10_ratio))

    def apply(self, mu: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mu, sigma) [log10 Msun/h, dex] of the calibrated log-normal: its mean is the
        calibrated mean mass, its scatter sigma times scatter_factor."""
        painted = 10.0 ** (mu + 0.5 * math.log(10.0) * sigma ** 2)
        s = sigma * self.scatter_factor
        return np.log10(self.mean_mass(painted)) - 0.5 * math.log(10.0) * s ** 2, s

    def galaxy_factor(self, painted_galaxy: np.ndarray) -> np.ndarray:
        """The factor of galaxies' scatter at painted galaxy masses `painted_galaxy` [Msun/h] (> 0),
        interpolated in log mass and held beyond the knots."""
        return galaxy_factor(painted_galaxy, self.galaxy_log10_mass, self.galaxy_scatter_factor)

    def as_dict(self) -> dict:
        return {"log10_mass": list(map(float, self.log10_mass)), "log10_ratio": list(map(float, self.log10_ratio)),
                "scatter_factor": float(self.scatter_factor), "log10_max_painted": float(self.log10_max_painted),
                "galaxy_log10_mass": list(map(float, self.galaxy_log10_mass)),
                "galaxy_scatter_factor": list(map(float, self.galaxy_scatter_factor))}

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        """The Calibration of `as_dict`; checkpoints older than the galaxy scatter factor have none."""
        return cls(tuple(d["log10_mass"]), tuple(d["log10_ratio"]), float(d["scatter_factor"]),
                   float(d["log10_max_painted"]), tuple(d.get("galaxy_log10_mass", ())),
                   tuple(d.get("galaxy_scatter_factor", ())))


def mass_bins(log_painted: np.ndarray, occupied: np.ndarray, min_galaxies: int) -> np.ndarray:
    """(N,) bin index of each voxel, increasing with its log10 painted mass `log_painted` (N,):
    counted from the heaviest down, each bin holds `min_galaxies` occupied voxels
    (`occupied` (N,) bool), the lightest bin the remainder as well."""
    order = np.argsort(log_painted, kind="stable")[::-1]
    n_bins = max(1, int(occupied.sum()) // min_galaxies)
    seen = np.cumsum(occupied[order]) - 1  # occupied voxels heavier than or at each voxel, minus one
    from_top = np.clip(seen // min_galaxies, 0, n_bins - 1)
    bins = np.empty(len(order), np.int64)
    bins[order] = n_bins - 1 - from_top
    return bins


def fit(painted: np.ndarray, mu: np.ndarray, sigma: np.ndarray, truth: np.ndarray, min_mass: float = 0.0,
        min_galaxies: int = 100) -> Calibration:
    """The Calibration of painted mean masses `painted` (N,) [Msun/h], whose log-normal is
    (`mu`, `sigma`), against the true stellar masses `truth` (N,) [Msun/h] (0: an empty
    voxel the painter painted) at N calibration voxels; voxels whose truth exceeds
    `min_mass` [Msun/h] count as occupied (they fix the bins and the scatter factor)."""
    painted, truth = np.asarray(painted, np.float64), np.asarray(truth, np.float64)
    keep = painted > 0
    painted, mu, sigma, truth = painted[keep], mu[keep], sigma[keep], truth[keep]
    occupied = truth > min_mass
    if occupied.sum() < min_galaxies:
        raise ValueError(f"calibration needs at least {min_galaxies} occupied voxels, it has {int(occupied.sum())}: "
                         f"enlarge split.calibration.fraction")
    x = np.log10(painted)
    b = mass_bins(x, occupied, min_galaxies)
    n_bins = int(b.max()) + 1
    p_sum = np.bincount(b, weights=painted, minlength=n_bins)
    t_sum = np.bincount(b, weights=truth, minlength=n_bins)
    n_occ = np.bincount(b, weights=occupied, minlength=n_bins)
    knot = np.bincount(b, weights=painted * x, minlength=n_bins) / p_sum  # mass-weighted mean log m
    log_cal = knot + np.log10(np.maximum(t_sum, 1e-30 * p_sum) / p_sum)
    log_cal = isotonic_regression(log_cal, weights=np.maximum(n_occ, 1.0)).x
    ratio = log_cal - knot
    cal = Calibration(tuple(knot), tuple(ratio), 1.0, float(x.max()))
    mu_cal, _ = cal.apply(mu[occupied], sigma[occupied])
    z = (np.log10(truth[occupied]) - mu_cal) / np.maximum(sigma[occupied], 1e-6)
    return replace(cal, scatter_factor=float(np.std(z)) if np.any(sigma > 0) else 1.0)


def galaxy_groups(hosts: np.ndarray) -> np.ndarray:
    """(K,) galaxy index 0..G-1 of each voxel: the voxels of one host (`hosts` (K,), a
    gravity-only subhalo index) share one; a voxel of no host (-1) is a galaxy alone."""
    hosts = np.asarray(hosts, np.int64)
    key = np.where(hosts >= 0, hosts, -1 - np.arange(len(hosts)))
    return np.unique(key, return_inverse=True)[1].reshape(-1)


def galaxy_scatter(mean: np.ndarray, sigma: np.ndarray, galaxies: np.ndarray) -> np.ndarray:
    """(G,) log10 scatter [dex] of each galaxy: the rms of its voxels' `sigma` (K,) [dex]
    weighted by their mean mass `mean` (K,) [Msun/h]; `galaxies` (K,) from `galaxy_groups`."""
    w = np.bincount(galaxies, weights=mean)
    s2 = np.bincount(galaxies, weights=mean * np.asarray(sigma, np.float64) ** 2)
    return np.sqrt(s2 / np.where(w > 0, w, 1.0))


def galaxy_factor(painted_galaxy: np.ndarray, knots, factors) -> np.ndarray:
    """`factors` (G,) at log10 painted galaxy masses `knots` (G,) [Msun/h], interpolated to the
    painted galaxy masses `painted_galaxy` [Msun/h] (> 0) and held beyond them; 1 without knots."""
    if len(knots) == 0:
        return np.ones(np.shape(painted_galaxy))
    return np.interp(np.log10(painted_galaxy), knots, factors)


def fit_galaxy_scatter(mean: np.ndarray, sigma: np.ndarray, truth: np.ndarray, hosts: np.ndarray,
                       min_mass: float = 0.0, min_galaxies: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """(knots, factors): in bins of log10 painted galaxy mass [Msun/h] holding `min_galaxies`
    galaxies each (from the heaviest down; knots at the mass-weighted mean log mass), the
    factor a galaxy's scatter is multiplied by so that z = (log10(T / P) + ln10 s^2 / 2) / s
    has unit standard deviation. P and T are the summed calibrated mean `mean` (K,) and true
    `truth` (K,) masses [Msun/h] of a galaxy's voxels (`hosts` (K,), as for `galaxy_groups`),
    s its `galaxy_scatter` of the calibrated `sigma` (K,) [dex]; galaxies whose T exceeds
    `min_mass` [Msun/h] and whose P and s are positive count. Empty where none does."""
    g = galaxy_groups(hosts)
    painted = np.bincount(g, weights=mean)
    true = np.bincount(g, weights=truth)
    s = galaxy_scatter(mean, sigma, g)
    keep = (painted > 0) & (true > min_mass) & (s > 0)
    if not keep.any():
        return np.zeros(0), np.zeros(0)
    painted, true, s = painted[keep], true[keep], s[keep]
    z = (np.log10(true / painted) + 0.5 * math.log(10.0) * s ** 2) / s
    x = np.log10(painted)
    b = mass_bins(x, np.ones(len(x), bool), min_galaxies)
    n = np.bincount(b)
    knots = np.bincount(b, weights=painted * x) / np.bincount(b, weights=painted)
    z_mean = np.bincount(b, weights=z) / n
    factors = np.sqrt(np.bincount(b, weights=(z - z_mean[b]) ** 2) / n)
    return knots, factors
