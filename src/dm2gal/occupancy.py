"""Where galaxies go, decided from the gravity-only run alone.

A voxel is *occupied* in the truth when its hydro stellar mass exceeds `min_mass`
[Msun/h] (the split's training threshold: the network only ever learned voxels
above it). The honest painter cannot see that field. Its candidates are the voxels
whose gravity-only subhalo mass field (CIC of SubhaloMass at SubhaloPos) is at least
a threshold [Msun/h]; the threshold is calibrated once on the training region
(the box minus the validation and test cubes), where truth may be used, by
maximising F1 (`criterion='f1'`) or by matching the number of occupied voxels
(`criterion='count'`, an unbiased galaxy-voxel density). Precision and recall are
then measured on the test cube, which calibration never saw.

Fields are read in x-slabs, so calibration on a 2048^3 box holds one slab plus the
(few tens of millions of) voxels that contain any subhalo mass.
"""

from __future__ import annotations

import json
import logging

import numpy as np
from tqdm import tqdm

from .atomic import atomic_path
from .fields import open_field, read_periodic
from .split import Cube, read_cubes, slab_mask

log = logging.getLogger("dm2gal.occupancy")

CRITERIA = ("f1", "count")


def scores(candidate: np.ndarray, occupied: np.ndarray) -> dict:
    """Precision, recall, F1 and counts of a candidate mask against the true occupied mask."""
    tp = int(np.count_nonzero(candidate & occupied))
    n_cand, n_true = int(np.count_nonzero(candidate)), int(np.count_nonzero(occupied))
    return dict(precision=tp / n_cand if n_cand else 0.0, recall=tp / n_true if n_true else 0.0,
                f1=2 * tp / (n_cand + n_true) if n_cand + n_true else 0.0,
                n_candidates=n_cand, n_occupied=n_true, n_true_positive=tp)


def best_threshold(values: np.ndarray, occupied: np.ndarray, n_occupied: int, criterion: str) -> float:
    """The subhalo-mass threshold t (candidates: value >= t) that optimises `criterion`.

    `values` (m,) are the subhalo masses of the voxels where it is > 0 and `occupied`
    (m,) their truth; `n_occupied` counts every occupied voxel, including those with
    no subhalo mass (which no threshold can find).
    """
    if criterion not in CRITERIA:
        raise ValueError(f"occupancy criterion must be one of {CRITERIA}, got {criterion!r}")
    if len(values) == 0 or n_occupied == 0:
        raise ValueError("the training region has no subhalo mass or no occupied voxel: cannot calibrate")
    order = np.argsort(values, kind="stable")[::-1]
    v = values[order]
    tp = np.cumsum(occupied[order])
    n_cand = np.arange(1, len(v) + 1)
    last = np.r_[v[1:] != v[:-1], True]  # a threshold takes all tied values at once
    if criterion == "f1":
        score = np.where(last, 2 * tp / (n_cand + n_occupied), -1.0)
    else:
        score = np.where(last, -np.abs(n_cand - n_occupied), -np.inf)
    return float(v[int(np.argmax(score))])


def calibrate(stellar, subhalo, cubes: list[Cube], min_mass: float, criterion: str = "f1",
              slab: int = 64) -> dict:
    """Calibrate the threshold on the training region of two (n, n, n) fields [Msun/h].

    `stellar` and `subhalo` are arrays or Zarr arrays; `cubes` are excluded. Returns
    threshold [Msun/h] and the training-region scores at that threshold.
    """
    n = int(stellar.shape[0])
    values, truth = [], []
    n_occupied = 0
    for x0 in tqdm(range(0, n, slab), desc="occupancy: calibrating", mininterval=5):
        x1 = min(x0 + slab, n)
        region = np.ones((x1 - x0, n, n), dtype=bool)
        for cube in cubes:
            region &= ~slab_mask(cube, x0, x1, n)
        occ = (np.asarray(stellar[x0:x1]) > min_mass) & region
        sub = np.asarray(subhalo[x0:x1])
        has = (sub > 0) & region
        values.append(sub[has].astype(np.float64))
        truth.append(occ[has])
        n_occupied += int(occ.sum())
    values, truth = np.concatenate(values), np.concatenate(truth)
    threshold = best_threshold(values, truth, n_occupied, criterion)
    cand = values >= threshold
    tp = int(np.count_nonzero(cand & truth))
    n_cand = int(cand.sum())
    out = dict(threshold=threshold, criterion=criterion, min_mass=float(min_mass),
               training=dict(precision=tp / n_cand, recall=tp / n_occupied, f1=2 * tp / (n_cand + n_occupied),
                             n_candidates=n_cand, n_occupied=n_occupied, n_true_positive=tp,
                             n_occupied_without_subhalo_mass=int(n_occupied - truth.sum())))
    log.info("occupancy threshold %.4g Msun/h (%s): training precision %.3f, recall %.3f",
             threshold, criterion, out["training"]["precision"], out["training"]["recall"])
    return out


def candidates(subhalo: np.ndarray, threshold: float) -> np.ndarray:
    """Bool mask of candidate voxels: subhalo mass >= threshold (and > 0)."""
    return (subhalo >= threshold) & (subhalo > 0)


def run(stellar_path, subhalo_path, cubes_json, out_json, criterion: str, slab: int = 64) -> dict:
    """Calibrate on the training region, score on the test cube, write `out_json` atomically.

    Occupied voxels are those above the split's `min_stellar_mass` (from cubes.json).
    """
    stellar, subhalo = open_field(stellar_path), open_field(subhalo_path)
    cubes = read_cubes(cubes_json)
    min_mass = cubes.min_stellar_mass
    out = calibrate(stellar, subhalo, [cubes.validation, cubes.test], min_mass, criterion, slab)
    start, size = cubes.test.start, cubes.test.size
    test_sub = read_periodic(subhalo, start, (size,) * 3)
    occupied = read_periodic(stellar, start, (size,) * 3) > min_mass
    out["test"] = scores(candidates(test_sub, out["threshold"]), occupied)
    out["test"]["n_occupied_without_subhalo_mass"] = int(np.count_nonzero(occupied & (test_sub <= 0)))
    out["design"] = ("candidate voxels: gravity-only subhalo mass >= threshold [Msun/h], calibrated on the "
                     f"training region ({criterion}); occupied: hydro stellar mass > min_mass [Msun/h]")
    log.info("test cube: precision %.3f, recall %.3f, F1 %.3f", out["test"]["precision"], out["test"]["recall"],
             out["test"]["f1"])
    with atomic_path(out_json) as tmp:
        tmp.write_text(json.dumps(out, indent=2) + "\n")
    return out
