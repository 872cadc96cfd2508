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
mu_cal) / sigma over the occupied calibration voxels.

A second calibration works on galaxies: the voxels one gravity-only subhalo hosts
(`galaxy_groups`), as the realisations draw them. The voxel calibration leaves the
heaviest painted galaxies too heavy as wholes (on the mini-universe the sum of squared
galaxy masses, which sets the small-scale power, was 1.4x the truth's), so in bins of
painted galaxy mass P (`fit_galaxies`) the ratio sum(T) / sum(P) of true to painted galaxy
mass is fitted as for voxels and applied to every voxel of a galaxy (`galaxy_mass_factor`).
A voxel's scatter also holds how a galaxy's mass is split among its CIC voxels, which
cancels in a galaxy's sum; the realisations draw one factor per galaxy, with the mass-
weighted rms of its voxels' scatter (`galaxy_scatter`) times a factor fitted per bin, the
standard deviation of z = (log10(T / P) + ln10 s^2 / 2) / s over the calibration galaxies.

The galaxy painter (`train.target: galaxies`) predicts whole galaxies, one per gravity-only
subhalo, and its calibration (`fit_galaxy_painter`) is fitted on the subhalos of the
calibration blocks in log space, where a few hundred galaxies pin it down:
- a straight line mu' = a + b mu, the least-squares regression of log10 T on the predicted mu
  over the subhalos with a galaxy: E[log10 T | mu], which undoes a network whose predictions
  are shrunk towards the mean mass (on held-out mini-universes the uncalibrated network
  painted galaxies below 10^9.5 Msun/h 1.2-1.36 times their noise-free mean in two of five
  seeds, and those above 10^10.5 about right);
- scatter factors, the standard deviation of z = (log10 T - mu') / sigma in bins of painted
  mass, so that the drawn galaxies scatter as the true ones do about the prediction at every
  mass (the network's scatter is flatter in mass than the truth's);
- a mass factor, the painted mass of the subhalos with a galaxy over that of all of them,
  which pays for the subhalos without one.
Each galaxy's mean mass is then 10^(mu' + ln10 s^2 / 2) times the mass factor, s its
rescaled scatter. (A mass factor sum(T) / sum(P) in linear mass, session 30's, rests on the
heaviest few galaxies of the blocks: from ~600 galaxies it scattered by 5 % from seed to seed,
and over-corrected one seed's held-out universes by 9 %. Matching the summed squared masses,
session 29's, gave scatter factors of 0.77-0.81 where the z-scores have a standard deviation
of 0.92, and realisations whose one-point PDF lost to the HOD's.)
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
    galaxy_log10_mass (G,), galaxy_log10_ratio (G,), galaxy_scatter_factor (G,): knots in log10
    painted galaxy mass [Msun/h] (after the voxel calibration), log10 of true over painted
    galaxy mass there, and what a galaxy's scatter (`galaxy_scatter` of the calibrated voxels)
    is multiplied by in the realisations (no knots: neither applies); scatter_log10_mass (K,),
    scatter_factors (K,): knots in log10 painted mean mass [Msun/h] and the scatter factors
    there, interpolated and held beyond them, used instead of scatter_factor where given;
    log10_line: (a, b), the galaxy painter's mu' = a + b mu, applied before everything else
    (no line: none; `fit_galaxy_painter`)."""

    log10_mass: tuple
    log10_ratio: tuple
    scatter_factor: float
    log10_max_painted: float
    galaxy_log10_mass: tuple = ()
    galaxy_log10_ratio: tuple = ()
    galaxy_scatter_factor: tuple = ()
    scatter_log10_mass: tuple = ()
    scatter_factors: tuple = ()
    log10_line: tuple = ()

    def mean_mass(self, painted: np.ndarray) -> np.ndarray:
        """Calibrated mean mass [Msun/h] of painted mean masses `painted` (any shape, > 0)."""
        x = np.minimum(np.log10(painted), self.log10_max_painted)
        return 10.0 ** (x + np.interp(x, self.log10_mass, self.log10_ratio))

    def apply(self, mu: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mu, sigma) [log10 Msun/h, dex] of the calibrated log-normal. The voxel painter's: its
        mean is the calibrated mean mass, its scatter sigma times scatter_factor. The galaxy
        painter's (a `log10_line`): centred on the line, its scatter sigma times the factor at its
        painted mass, shifted by the mass factor."""
        if self.log10_line:
            mu = self.log10_line[0] + self.log10_line[1] * mu
            return mu + self.log10_ratio[0], sigma * self.binned_scatter_factor(mu, sigma)
        painted = 10.0 ** (mu + 0.5 * math.log(10.0) * sigma ** 2)
        s = sigma * (self.binned_scatter_factor(mu, sigma) if self.scatter_log10_mass else self.scatter_factor)
        return np.log10(self.mean_mass(painted)) - 0.5 * math.log(10.0) * s ** 2, s

    def binned_scatter_factor(self, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        """The scatter factors interpolated to the painted mass 10^(mu + ln10 sigma^2 / 2) [Msun/h]."""
        return np.interp(mu + 0.5 * math.log(10.0) * sigma ** 2, self.scatter_log10_mass, self.scatter_factors)

    def galaxy_mass_factor(self, painted_galaxy: np.ndarray) -> np.ndarray:
        """True over painted mass of galaxies of voxel-calibrated painted masses `painted_galaxy`
        [Msun/h] (> 0), interpolated in log mass and held beyond the knots; 1 without knots."""
        return 10.0 ** at_knots(painted_galaxy, self.galaxy_log10_mass, self.galaxy_log10_ratio, 0.0)

    def calibrate_galaxies(self, mean: np.ndarray, galaxies: np.ndarray) -> np.ndarray:
        """(K,) voxel means [Msun/h] `mean` (K,) of voxel-calibrated paintings with each galaxy
        (`galaxies` (K,), from `galaxy_groups`) multiplied by its `galaxy_mass_factor`."""
        painted = np.bincount(galaxies, weights=mean)
        return mean * self.galaxy_mass_factor(np.where(painted > 0, painted, 1.0))[galaxies]

    def galaxy_scatter_knots(self, calibrated: bool = True) -> tuple[list, list]:
        """(knots in log10 painted galaxy mass [Msun/h], scatter factors): what the realisations
        look a painted galaxy's factor up in, the galaxy mass after `calibrate_galaxies` when
        `calibrated`, else before."""
        knots = np.add(self.galaxy_log10_mass, self.galaxy_log10_ratio) if calibrated else self.galaxy_log10_mass
        return list(map(float, knots)), list(map(float, self.galaxy_scatter_factor))

    def as_dict(self) -> dict:
        return {"log10_mass": list(map(float, self.log10_mass)), "log10_ratio": list(map(float, self.log10_ratio)),
                "scatter_factor": float(self.scatter_factor), "log10_max_painted": float(self.log10_max_painted),
                "galaxy_log10_mass": list(map(float, self.galaxy_log10_mass)),
                "galaxy_log10_ratio": list(map(float, self.galaxy_log10_ratio)),
                "galaxy_scatter_factor": list(map(float, self.galaxy_scatter_factor)),
                "scatter_log10_mass": list(map(float, self.scatter_log10_mass)),
                "scatter_factors": list(map(float, self.scatter_factors)),
                "log10_line": list(map(float, self.log10_line))}

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        """The Calibration of `as_dict`; checkpoints older than the galaxy factors, the binned scatter
        factors or the line have none."""
        return cls(tuple(d["log10_mass"]), tuple(d["log10_ratio"]), float(d["scatter_factor"]),
                   float(d["log10_max_painted"]), tuple(d.get("galaxy_log10_mass", ())),
                   tuple(d.get("galaxy_log10_ratio", ())), tuple(d.get("galaxy_scatter_factor", ())),
                   tuple(d.get("scatter_log10_mass", ())), tuple(d.get("scatter_factors", ())),
                   tuple(d.get("log10_line", ())))


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


def binned_log_ratio(painted: np.ndarray, truth: np.ndarray, occupied: np.ndarray,
                     b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(knots, log10 ratios) of painted masses `painted` (N,) > 0 and true masses `truth` (N,)
    [Msun/h] in bins `b` (N,) (`mass_bins`): the mass-weighted mean log10 painted mass and
    log10 sum(true) / sum(painted), made monotone in calibrated mass by an isotonic regression
    weighted by the count of `occupied` (N,) entries."""
    x = np.log10(painted)
    n_bins = int(b.max()) + 1
    p_sum = np.bincount(b, weights=painted, minlength=n_bins)
    t_sum = np.bincount(b, weights=truth, minlength=n_bins)
    n_occ = np.bincount(b, weights=occupied, minlength=n_bins)
    knot = np.bincount(b, weights=painted * x, minlength=n_bins) / p_sum
    log_cal = knot + np.log10(np.maximum(t_sum, 1e-30 * p_sum) / p_sum)
    log_cal = isotonic_regression(log_cal, weights=np.maximum(n_occ, 1.0)).x
    return knot, log_cal - knot


def binned_std(z: np.ndarray, b: np.ndarray, weights: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(weight per bin (n_bins,), standard deviation of `z` (N,) about its bin's mean per bin
    (n_bins,)) of the entries in bins `b` (N,) weighted by `weights` (N,) (0 leaves one out)."""
    count = np.bincount(b, weights=weights, minlength=n_bins)
    n = np.maximum(count, 1.0)
    z_mean = np.bincount(b, weights=z * weights, minlength=n_bins) / n
    return count, np.sqrt(np.bincount(b, weights=weights * (z - z_mean[b]) ** 2, minlength=n_bins) / n)


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
    knot, ratio = binned_log_ratio(painted, truth, occupied, mass_bins(x, occupied, min_galaxies))
    cal = Calibration(tuple(knot), tuple(ratio), 1.0, float(x.max()))
    mu_cal, _ = cal.apply(mu[occupied], sigma[occupied])
    z = (np.log10(truth[occupied]) - mu_cal) / np.maximum(sigma[occupied], 1e-6)
    return replace(cal, scatter_factor=float(np.std(z)) if np.any(sigma > 0) else 1.0)


def fit_galaxy_painter(mu: np.ndarray, sigma: np.ndarray, truth: np.ndarray, min_galaxies: int = 100) -> Calibration:
    """The galaxy painter's Calibration (module docstring) from the predicted log-normals of S
    calibration subhalos (`mu` (S,) [log10 Msun/h], `sigma` (S,) [dex]) and their true galaxies'
    `truth` (S,) [Msun/h] (0: none). Over those with a galaxy: the line mu' = a + b mu, least
    squares of log10 T on mu; the scatter factors, the standard deviation of z = (log10 T - mu')
    / sigma in bins of `min_galaxies` galaxies of painted mass 10^(mu' + ln10 sigma^2 / 2)
    (`mass_bins`; knots at the bins' mean log10 painted mass) and over all of them
    (`scatter_factor`). The mass factor: the calibrated painted mass of those with a galaxy over
    that of all S."""
    mu, sigma, truth = (np.asarray(a, np.float64) for a in (mu, sigma, truth))
    has = truth > 0
    if has.sum() < min_galaxies:
        raise ValueError(f"the calibration blocks hold {int(has.sum())} galaxies, fewer than "
                         f"train.calibration_bin_voxels = {min_galaxies}: raise split.calibration.fraction")
    log_t = np.log10(truth[has])
    slope, offset = np.polyfit(mu[has], log_t, 1)
    if not slope > 0:
        raise ValueError(f"the calibration galaxies' log10 stellar mass does not rise with the prediction "
                         f"(slope {slope:.3g}): the network has not learnt the mass; train longer")
    line = (float(offset), float(slope))
    mu_line = offset + slope * mu
    z = (log_t - mu_line[has]) / np.maximum(sigma[has], 1e-6)
    x = mu_line[has] + 0.5 * math.log(10.0) * sigma[has] ** 2
    b = mass_bins(x, np.ones(len(x), bool), min_galaxies)
    count, factors = binned_std(z, b, np.ones(len(z)), int(b.max()) + 1)
    knots = np.bincount(b, weights=x) / count
    scaled = Calibration((0.0,), (0.0,), float(np.std(z)), math.inf, scatter_log10_mass=tuple(map(float, knots)),
                         scatter_factors=tuple(map(float, factors)), log10_line=line)
    mu_cal, s_cal = scaled.apply(mu, sigma)
    painted = 10.0 ** (mu_cal + 0.5 * math.log(10.0) * s_cal ** 2)
    return replace(scaled, log10_ratio=(float(np.log10(painted[has].sum() / painted.sum())),))


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


def drawn_galaxy_scatter(mean: np.ndarray, sigma: np.ndarray, galaxies: np.ndarray, knots=((), ())) -> np.ndarray:
    """(G,) log10 scatter [dex] a galaxy is drawn with: its `galaxy_scatter` times the galaxy scatter
    factor that `knots` (log10 painted galaxy mass [Msun/h], factors; `at_knots`, 1 without knots)
    give at its painted mass, the sum of its voxels' `mean` (K,) [Msun/h]."""
    total = np.bincount(galaxies, weights=mean)
    return at_knots(np.where(total > 0, total, 1.0), *knots, 1.0) * galaxy_scatter(mean, sigma, galaxies)


def at_knots(painted_galaxy: np.ndarray, knots, values, default: float) -> np.ndarray:
    """`values` (G,) at log10 painted galaxy masses `knots` (G,) [Msun/h], interpolated to the
    painted galaxy masses `painted_galaxy` [Msun/h] (> 0) and held beyond them; `default`
    without knots."""
    if len(knots) == 0:
        return np.full(np.shape(painted_galaxy), default)
    return np.interp(np.log10(painted_galaxy), knots, values)


def fit_galaxies(mean: np.ndarray, sigma: np.ndarray, truth: np.ndarray, hosts: np.ndarray,
                 min_mass: float = 0.0, min_galaxies: int = 50) -> dict:
    """The galaxy part of a Calibration (`galaxy_log10_mass`, `galaxy_log10_ratio`,
    `galaxy_scatter_factor`) from calibration voxels: voxel-calibrated means `mean` (K,) and
    scatters `sigma` (K,) [dex], true masses `truth` (K,) [Msun/h], hosts `hosts` (K,) (as for
    `galaxy_groups`). Galaxies (P, T: summed painted and true mass) are binned by log10 P into
    `mass_bins` of `min_galaxies` occupied galaxies (T > `min_mass`); the ratio is
    `binned_log_ratio`'s, the scatter factor per bin the standard deviation of
    z = (log10(T / P_cal) + ln10 s^2 / 2) / s over its occupied galaxies, s their
    `galaxy_scatter`, made non-increasing in mass by an isotonic regression weighted by the
    bins' counts. Empty knots where no galaxy is occupied or too few for one bin."""
    g = galaxy_groups(hosts)
    painted, true = np.bincount(g, weights=mean), np.bincount(g, weights=truth)
    s = galaxy_scatter(mean, sigma, g)
    keep = painted > 0
    painted, true, s = painted[keep], true[keep], s[keep]
    occupied = true > min_mass
    if occupied.sum() < min_galaxies:
        return dict(galaxy_log10_mass=(), galaxy_log10_ratio=(), galaxy_scatter_factor=())
    b = mass_bins(np.log10(painted), occupied, min_galaxies)
    knots, ratio = binned_log_ratio(painted, true, occupied, b)
    z = (np.log10(np.where(occupied, true, 1.0) / (painted * 10.0 ** ratio[b])) + 0.5 * math.log(10.0) * s ** 2) \
        / np.where(s > 0, s, 1.0)
    count, factors = binned_std(z, b, (occupied & (s > 0)).astype(np.float64), len(knots))
    n = np.maximum(count, 1.0)
    factors = np.where(count > 1, factors, 1.0)
    # a heavier galaxy's painted mass is not relatively less certain: the factor does not rise
    # with mass (a bin of a few dozen galaxies otherwise lets one outlier widen the heaviest
    # galaxies' draws, and those set a realisation's small-scale power)
    factors = isotonic_regression(factors, weights=n, increasing=False).x
    return dict(galaxy_log10_mass=tuple(knots), galaxy_log10_ratio=tuple(ratio), galaxy_scatter_factor=tuple(factors))
