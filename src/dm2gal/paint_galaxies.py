"""The galaxy painter's paint stage: a galaxy at every gravity-only subhalo, deposited as the truth is.

A checkpoint of `train.target: galaxies` (its normalisation holds the query's) predicts,
for each gravity-only subhalo, the log-normal of its galaxy's stellar mass from the input
patch centred on the subhalo's voxel and its catalogue entry (`dm2gal.galaxy_samples`),
calibrated by the checkpoint's mass and scatter factors (`dm2gal.inference.decode`).
Every subhalo whose CIC cloud reaches the region (the test cube, or the whole box) is
painted: its mean mass 10^(mu + ln10 sigma^2 / 2) [Msun/h] is deposited by CIC at its
SubhaloPos (`dm2gal.cic.deposit_cube`, as the grid stage deposits the hydro galaxies into
the truth), and the scatter field holds, per voxel, the mass-weighted rms log10 scatter
[dex] of the galaxies deposited into it. The catalogue beside it lists those galaxies with
their mean mass and scatter, from which `dm2gal.realisations` draws each galaxy whole.

Oracle mode (the paper's diagnostic) paints only the subhalos whose CIC cloud holds more
than the split's minimum stellar mass in the hydro truth: where galaxies are is known,
their masses are not.

The input fields of the painted run are held whole in one `dm2gal.sampler.PatchSource`
(on the GPU when they fit): 2 n^3 float16 values there, 2 n^3 float32 on the CPU (64 GiB
for a 2048^3 TNG100 box).
"""

from __future__ import annotations

import logging

import numpy as np

from .atomic import atomic_path
from .catalogue import write_catalogue
from .cic import corners, deposit_cube
from .fields import create_field, open_field
from .galaxy_samples import load_dark_catalogue, query_features, reaching, subhalo_voxels
from .inference import input_scale, predict
from .sampler import PatchSource

log = logging.getLogger("dm2gal.paint_galaxies")


def is_galaxy_painter(normalisation: dict) -> bool:
    """Whether a checkpoint's normalisation (`dm2gal.inference.load_model`) is the galaxy painter's."""
    return "query_mean" in normalisation


def oracle_subhalos(truth_path, pos: np.ndarray, n_grid: int, box_size: float, min_mass: float) -> np.ndarray:
    """(S,) bool: the subhalos at `pos` (S, 3) [Mpc/h] whose CIC cloud's voxels hold more than
    `min_mass` [Msun/h] of true stellar mass in the whole-box field at `truth_path`."""
    truth = np.asarray(open_field(truth_path)[...])
    held = np.zeros(len(pos))
    for index, _ in corners(pos, n_grid, box_size):
        held += truth[tuple(index)]
    return held > min_mass


def rms_scatter(pos: np.ndarray, mass: np.ndarray, sigma: np.ndarray, box_size: float, n_grid: int, start,
                size: int) -> np.ndarray:
    """(size^3) float32 mass-weighted rms of the log10 scatters `sigma` (S,) [dex] of the galaxies
    of mean mass `mass` (S,) deposited by CIC at `pos` (S, 3) into each voxel; 0 where none is."""
    weight = deposit_cube(pos, mass, box_size, n_grid, start, size).astype(np.float64)
    moment = deposit_cube(pos, mass * sigma ** 2, box_size, n_grid, start, size).astype(np.float64)
    return np.sqrt(np.divide(moment, weight, out=np.zeros_like(weight), where=weight > 0)).astype(np.float32)


def paint_galaxies(net, normalisation: dict, dm_path, sub_path, subhalos: tuple, *, start, size: int, attrs: dict,
                   out_field, out_scatter=None, out_catalogue=None, oracle: tuple | None = None,
                   device: str = "cpu", batch_size: int = 256, source_name: str = "dark") -> dict:
    """Paint the cube of `size` voxels from `start` (the whole box: (0, 0, 0) and n) of the run
    whose input fields are `dm_path`, `sub_path` and whose gravity-only catalogue is `subhalos`
    (illustris_python's base, snapshot) with the galaxy painter `net`; writes the field (attrs
    `attrs`), and if asked the scatter field and the catalogue, each atomically. `oracle`:
    (truth_path, min_mass) of oracle mode. Returns the painting summary."""
    dm, sub = open_field(dm_path), open_field(sub_path)
    n, box = int(dm.attrs["n_grid"]), float(dm.attrs["box_size"])
    subs = load_dark_catalogue(*subhalos)
    pos = subs["SubhaloPos"]
    voxel = subhalo_voxels(pos, n, box)
    near = reaching(voxel, start, size, n)
    painted = near & oracle_subhalos(oracle[0], pos, n, box, oracle[1]) if oracle is not None else near
    index = np.flatnonzero(painted)
    source = PatchSource.from_boxes([[dm, sub]], normalisation["input_mean"], normalisation["input_std"],
                                    device=None if device == "cuda" else "cpu", scale=input_scale(normalisation))
    pred = predict(net, source, voxel[index], normalisation, batch_size=batch_size, progress=True,
                   query=query_features(subs)[index])
    mass, sigma = pred.mean_mass(), pred.sigma
    summary = dict(attrs, painter="galaxies", deposit="galaxies: CIC at SubhaloPos", galaxies=int(len(index)))
    with atomic_path(out_field) as tmp:
        create_field(tmp, summary)[...] = deposit_cube(pos[index], mass, box, n, tuple(start), size)
    if out_scatter is not None:
        with atomic_path(out_scatter) as tmp:
            create_field(tmp, dict(summary, quantity="stellar_mass_scatter", units="dex"))[...] = rms_scatter(
                pos[index], mass, sigma, box, n, tuple(start), size)
    if out_catalogue is not None:
        write_catalogue(out_catalogue, pos[index], mass, index, dict(
            box_size=box, source=source_name, mode=attrs.get("mode", "honest"), origin=list(start), cube_size=size,
            painter="galaxies", model=str(attrs.get("model", ""))), log10_scatter=sigma)
    log.info("%d subhalos painted (%d reach the region of %d voxels from %s): %.4g Msun/h, median scatter %.3f dex",
             len(index), int(near.sum()), size, list(start), float(mass.sum()),
             float(np.median(sigma)) if len(sigma) else 0.0)
    return summary
