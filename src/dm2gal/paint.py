"""Paint a gravity-only volume with the selected model: stellar mass field and mock catalogue.

Modes. `honest`: the voxels painted are chosen from the gravity-only run alone
(`dm2gal.occupancy`: subhalo mass above a threshold calibrated on the training
region). `oracle`: the paper's procedure, painting only voxels where the *hydro truth*
has M* > min_mass; kept to reproduce the paper's figure and labelled as such in the
field's attributes.

Methods. `dense`: the network in shift-and-stitch form evaluated tile by tile over
the region by `dm2gal.dense.predict_region` (tiles without a voxel to paint are
skipped; inputs normalised by `dm2gal.sampler.normalise_channels`). `per_voxel`: one
patch per candidate voxel, batched (`dm2gal.inference.predict` on a
`dm2gal.sampler.PatchSource`), the paper's way. On a GPU both run in bf16 autocast
with the convolutions in channels-last-3d layout. Raw outputs become masses through
`dm2gal.inference.decode` either way, so the checkpoint's calibration is applied; its
galaxy part then multiplies the voxels of each galaxy (the voxels one gravity-only
subhalo hosts) by one factor of the galaxy's painted mass (`calibrate_galaxies`).
Both read inputs from memory when the region and its halo fit in `max_memory_gb`,
else tile by tile from Zarr; the output is written to Zarr tile by tile, so painting
a whole 2048^3 box never holds it in memory (dense method).

The painted value of a voxel is the mean stellar mass of the distribution the head
predicts there [Msun/h] (`dm2gal.inference.Prediction.mean_mass`: 10^(mu + ln10 sigma^2/2)
for the probabilistic head, 10^mu for the paper's), 0 elsewhere.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass
from functools import partial

import numpy as np

from .calibration import Calibration, galaxy_groups
from .cic import host_subhalos
from .fields import create_field, cube_attrs, open_field, read_periodic
from .inference import decode, input_scale, predict
from .sampler import PatchSource, normalise_channels
from .split import read_cubes

log = logging.getLogger("dm2gal.paint")

MODES = ("honest", "oracle")
METHODS = ("dense", "per_voxel")
ORACLE_LABEL = ("oracle positions (the paper's procedure, Kasmanoff et al. 2020): painted only where the "
                "hydro truth has a galaxy; NOT a gravity-only prediction")


class PatchMismatchError(ValueError):
    """The model cannot paint these fields (patch size or voxel size differ)."""


def check_model(config: dict, expected_patch: int | None, n_grid: int, voxel_size: float,
                trained_voxel_size: float | None) -> int:
    """The model's patch size P, after refusing a model that does not fit the fields/config.

    `config` is the checkpoint's model_config; `expected_patch` the patch of the run's
    model config; `voxel_size` [Mpc/h] that of the fields to paint and
    `trained_voxel_size` that of the fields the model was trained on.
    """
    patch = int(config["patch"])
    if expected_patch is not None and patch != int(expected_patch):
        raise PatchMismatchError(
            f"the selected model reads {patch}^3-voxel patches but the configuration asks for "
            f"{expected_patch}^3 (model section of config.yaml): retrain, or set the model patch to {patch}")
    if patch > n_grid:
        raise PatchMismatchError(f"the model's {patch}^3 patch is larger than the {n_grid}^3 fields to paint")
    if trained_voxel_size is not None and not math.isclose(voxel_size, trained_voxel_size, rel_tol=1e-3):
        raise PatchMismatchError(
            f"the fields to paint have {voxel_size:.5g} Mpc/h voxels but the model was trained on "
            f"{trained_voxel_size:.5g} Mpc/h voxels: its {patch}^3 patch would cover "
            f"{patch * voxel_size:.4g} instead of {patch * trained_voxel_size:.4g} Mpc/h; grid the run "
            f"with the training voxel size")
    return patch


def configured_patch(model_section: dict) -> int:
    """The patch edge the config's `model` section describes (preset plus overrides)."""
    from .model import model_config

    return int(model_config(model_section.get("preset", "small"),
                            **{k: v for k, v in model_section.items() if k != "preset"})["patch"])


@dataclass
class Inputs:
    """The raw input fields [Msun/h] around a region, readable by (first voxel, shape).

    Holds the region plus its halo in memory (`cache`) when it fits, else reads the
    Zarr fields (periodically) on each call.
    """

    fields: list  # Zarr arrays: dm_mass, subhalo_mass
    start: tuple[int, int, int]
    halo: int
    cache: np.ndarray | None = None

    @classmethod
    def open(cls, paths, start, size: int, patch: int, max_bytes: float) -> "Inputs":
        fields = [open_field(p) for p in paths]
        half = patch // 2
        first = tuple(int(s) - half for s in start)
        side = size + patch - 1
        inp = cls(fields, first, 0)
        if len(fields) * side ** 3 * 4 <= max_bytes:
            log.info("reading the %d^3 input region (with its %d-voxel halo) into memory", side, half)
            inp.cache = np.stack([read_periodic(f, first, (side,) * 3) for f in fields]).astype(np.float32)
        return inp

    def read(self, first, shape) -> np.ndarray:
        """(C, *shape) raw masses whose first voxel is `first` (parent-grid indices)."""
        if self.cache is not None:
            local = [int(f) - int(s) for f, s in zip(first, self.start)]
            if all(a >= 0 and a + b <= n for a, b, n in zip(local, shape, self.cache.shape[1:])):
                return self.cache[:, local[0]:local[0] + shape[0], local[1]:local[1] + shape[1],
                                  local[2]:local[2] + shape[2]]
        return np.stack([read_periodic(f, first, shape) for f in self.fields]).astype(np.float32)


def occupancy_mask(mode: str, sub_block: np.ndarray, threshold: float | None, truth_block: np.ndarray | None,
                   min_mass: float) -> np.ndarray:
    """The voxels to paint in a block: honest candidates, or (oracle) true galaxies."""
    from .occupancy import candidates

    if mode == "honest":
        return candidates(sub_block, threshold)
    if mode == "oracle":
        return truth_block > min_mass
    raise ValueError(f"paint mode must be one of {MODES}, got {mode!r}")


def paint(net, normalisation: dict, dm_path, sub_path, out_path, *, start, size: int, attrs: dict,
          mode: str = "honest", threshold: float | None = None, truth_path=None, min_mass: float = 1e8,
          method: str = "dense", tile: int = 64, batch: int = 256, device: str = "cpu",
          max_memory_gb: float = 8.0, scatter_path=None) -> dict:
    """Paint the region [start, start + size)^3 of the input fields into a Zarr field at `out_path`.

    `attrs` are the output field's attributes (see `painted_attrs`); with `scatter_path`
    the predicted log10 scatter [dex] of the painted voxels goes to a second field there
    (0 for the paper's head). `threshold`
    [Msun/h] is needed in honest mode, `truth_path` (hydro stellar mass) in oracle
    mode. Write through `dm2gal.atomic.atomic_path`. Returns a summary (voxels painted,
    seconds, voxels per second).
    """
    import time

    import torch
    from tqdm import tqdm

    if method not in METHODS:
        raise ValueError(f"paint method must be one of {METHODS}, got {method!r}")
    if mode == "honest" and threshold is None:
        raise ValueError("honest painting needs the occupancy threshold")
    if mode == "oracle" and truth_path is None:
        raise ValueError("oracle painting needs the hydro stellar-mass field")
    from .dense import output_tiles, predict_region, to_dense

    patch = int(net.config["patch"])
    half = patch // 2
    device = torch.device(device)
    net = net.to(device).eval()
    dense = to_dense(net)
    if dense.patch != patch:
        raise PatchMismatchError(f"the network's receptive field is {dense.patch}^3, not its {patch}^3 patch")
    if device.type == "cuda":  # bf16 autocast (in predict and predict_region) and channels-last-3d
        torch.backends.cudnn.benchmark = True
        net = net.to(memory_format=torch.channels_last_3d)
    # dense tiles are rounded up to a multiple of the network's stride: keep that margin in memory too
    inputs = Inputs.open([dm_path, sub_path], start, size + dense.stride - 1, patch, max_memory_gb * 2 ** 30)
    truth = open_field(truth_path) if mode == "oracle" else None
    out = create_field(out_path, attrs)
    scatter = None
    if scatter_path is not None:
        scatter = create_field(scatter_path, dict(attrs, quantity="stellar_mass_log10_scatter", units="dex"))
    n_painted = 0
    t0 = time.perf_counter()
    painted_mass = 0.0
    if method == "dense":
        def select(first, centre):  # centre: the raw inputs at the tile's voxels
            truth_block = read_periodic(truth, first, centre.shape[1:]) if truth is not None else None
            return occupancy_mask(mode, centre[1], threshold, truth_block, min_mass)

        tiles = predict_region(dense, inputs.read, start, size, tile=tile, device=device, select=select,
                               transform=partial(normalise_channels, mean=normalisation["input_mean"],
                                                 std=normalisation["input_std"], scale=input_scale(normalisation)))
        for t in tqdm(tiles, total=len(output_tiles(size, tile, dense.stride)), desc=f"paint ({mode}, dense)",
                      mininterval=10):
            if t.outputs is None:
                continue  # no voxel to paint: the store's fill value is 0
            pred = decode(t.outputs[:, t.mask], normalisation)
            block = np.zeros(t.shape, np.float32)
            block[t.mask] = pred.mean_mass()
            n_painted += int(t.mask.sum())
            painted_mass += float(block.sum(dtype=np.float64))
            where = tuple(slice(o, o + n) for o, n in zip(t.offset, t.shape))
            out[where] = block
            if scatter is not None:
                block[t.mask] = pred.sigma
                scatter[where] = block
    else:
        if inputs.cache is None:
            raise MemoryError(f"per-voxel painting holds the region and its halo in memory; raise "
                              f"paint.max_memory_gb or use the dense method")
        side = size + patch - 1
        cache = inputs.cache[:, :side, :side, :side]
        sub = cache[1, half:half + size, half:half + size, half:half + size]
        truth_block = read_periodic(truth, start, (size,) * 3) if truth is not None else None
        mask = occupancy_mask(mode, sub, threshold, truth_block, min_mass)
        coords = np.argwhere(mask)
        source = PatchSource.from_arrays(list(cache), normalisation["input_mean"],
                                         normalisation["input_std"], device=device, scale=input_scale(normalisation))
        pred = predict(net, source, coords + half, normalisation, batch_size=batch, progress=True)
        block = np.zeros((size,) * 3, np.float32)
        block[mask] = pred.mean_mass()
        out[...] = block
        if scatter is not None:
            block[mask] = pred.sigma
            scatter[...] = block
        n_painted = len(coords)
        painted_mass = float(block.sum(dtype=np.float64))
    seconds = time.perf_counter() - t0
    summary = dict(mode=mode, method=method, device=str(device), voxels=size ** 3, painted_voxels=n_painted,
                   seconds=seconds, voxels_per_second=size ** 3 / seconds, painted_mass=painted_mass)
    log.info("painted %d of %d voxels in %.1f s (%s, %s)", n_painted, size ** 3, seconds, mode, method)
    return summary


def calibrate_galaxies(path, calibration: Calibration, origin, n_grid: int, box_size: float, subs: dict) -> float:
    """Multiply, in the painted field at `path` (first voxel `origin` of the n_grid^3 parent
    grid of side `box_size` [Mpc/h]), the voxels of each galaxy (hosted by one subhalo of
    `subs`: SubhaloPos [Mpc/h], SubhaloMass [Msun/h]) by `calibration.galaxy_mass_factor`,
    block by block of the store's chunks (only the painted voxels are held); returns the
    painted total mass after over before."""
    import zarr

    field = zarr.open_array(str(path), mode="r+")
    blocks = [tuple(slice(i, min(i + c, n)) for i, c, n in zip(first, field.chunks, field.shape))
              for first in itertools.product(*(range(0, n, c) for n, c in zip(field.shape, field.chunks)))]
    coords, mean = [], []
    for block in blocks:
        data = np.asarray(field[block])
        local = np.argwhere(data > 0)
        coords.append(local + [b.start for b in block])
        mean.append(data[tuple(local.T)].astype(np.float64))
    counts = [len(m) for m in mean]
    coords, mean = np.concatenate(coords), np.concatenate(mean)
    galaxies = galaxy_groups(host_subhalos(coords, origin, n_grid, box_size, subs["SubhaloPos"], subs["SubhaloMass"]))
    calibrated = calibration.calibrate_galaxies(mean, galaxies)
    for block, part, local in zip(blocks, np.split(calibrated, np.cumsum(counts)[:-1]),
                                  np.split(coords, np.cumsum(counts)[:-1])):
        if len(part):
            data = np.asarray(field[block])
            data[tuple((local - [b.start for b in block]).T)] = part
            field[block] = data
    ratio = float(calibrated.sum() / mean.sum()) if mean.sum() > 0 else 1.0
    log.info("galaxy calibration: %d galaxies, total painted mass x %.4f", int(galaxies.max()) + 1 if len(mean) else 0,
             ratio)
    return ratio


def painted_attrs(dark_attrs: dict, start, size: int, mode: str, source: str, **extra) -> dict:
    """Attributes of a painted cube field: a cube of the parent grid of `dark_attrs`."""
    label = ORACLE_LABEL if mode == "oracle" else "honest: positions from the gravity-only run alone"
    return cube_attrs(dark_attrs, start, size, source=source, quantity="stellar_mass", units="Msun/h", mode=mode,
                      label=label, **extra)


def painting_settings(paint_cfg: dict) -> dict:
    """`run`'s keyword arguments for how a painting is computed (tile, batch, device,
    max_memory_gb) from the `paint` config section: the scripts read them from the config, not
    from rule params, so that changing them repaints nothing (the field is the same)."""
    return dict(tile=paint_cfg["tile"], batch=paint_cfg["batch_size"], device=paint_cfg["device"],
                max_memory_gb=paint_cfg["max_memory_gb"])


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("paint.device is 'cuda' but no GPU is visible")
    return device


def run(ckpt, dm_path, sub_path, reference_dm_path, base: str, snapshot: int, out_field, out_catalogue=None, *,
        source: str, cubes_json, whole_box: bool = False, mode: str = "honest", occupancy_json=None, truth_path=None,
        expected_patch: int | None = None, method: str = "dense", tile: int = 64, batch: int = 256,
        device: str = "auto", max_memory_gb: float = 8.0, threads: int | None = None, out_scatter=None,
        galaxy_calibration: bool = True) -> dict:
    """The paint stage for one run: the test cube of `cubes_json`, or the whole box (`whole_box`).

    The split's `min_stellar_mass` (cubes.json) is the oracle's threshold either way.
    `reference_dm_path` is the dark-matter field the model was trained on (its voxel
    size must match); honest mode reads the occupancy threshold from `occupancy_json`,
    oracle mode the truth from `truth_path`. Writes the painted field and, if
    `out_catalogue`, the mock catalogue (HDF5), and if `out_scatter` the predicted
    log10 scatter field (for `dm2gal.realisations`). `threads` caps torch's CPU
    threads. With `galaxy_calibration` the checkpoint's galaxy calibration is applied
    (`calibrate_galaxies`). Returns the painting summary.
    """
    import contextlib
    import json

    import torch
    import zarr

    from .atomic import atomic_path
    from .catalogue import galaxies, write_catalogue
    from .inference import load_model
    from .tng import load_subhalos

    if threads:
        torch.set_num_threads(int(threads))
    device = resolve_device(device)
    dm_attrs = dict(open_field(dm_path).attrs)
    ref_attrs = dict(open_field(reference_dm_path).attrs)
    n, box = int(dm_attrs["n_grid"]), float(dm_attrs["box_size"])
    net, normalisation = load_model(ckpt, device)
    check_model(net.config, expected_patch, n, box / n, float(ref_attrs["box_size"]) / int(ref_attrs["n_grid"]))
    cubes = read_cubes(cubes_json)
    min_mass, threshold = cubes.min_stellar_mass, None
    start, size = ((0, 0, 0), n) if whole_box else (cubes.test.start, cubes.test.size)
    if mode == "honest":
        with open(occupancy_json) as f:
            threshold = float(json.load(f)["threshold"])
    extra = dict(model=str(ckpt), method=method, min_stellar_mass=min_mass)
    if threshold is not None:
        extra["occupancy_threshold"] = threshold
    attrs = painted_attrs(dm_attrs, start, size, mode, source, **extra)
    scatter_tmp = atomic_path(out_scatter) if out_scatter is not None else contextlib.nullcontext()
    subs = load_subhalos(base, snapshot, ["SubhaloPos", "SubhaloMass"])
    if subs["count"] == 0:
        subs = dict(SubhaloPos=np.zeros((0, 3)), SubhaloMass=np.zeros(0))
    with atomic_path(out_field) as tmp, scatter_tmp as tmp_scatter:
        summary = paint(net, normalisation, dm_path, sub_path, tmp, start=start, size=size, attrs=attrs, mode=mode,
                        threshold=threshold, truth_path=truth_path, min_mass=min_mass, method=method, tile=tile,
                        batch=batch, device=device, max_memory_gb=max_memory_gb, scatter_path=tmp_scatter)
        if normalisation.get("calibration"):
            cal = Calibration.from_dict(normalisation["calibration"])
            if galaxy_calibration:
                summary["galaxy_calibration"] = calibrate_galaxies(tmp, cal, start, n, box, subs)
            if tmp_scatter is not None:  # what the realisations look a galaxy's scatter factor up in
                knots, factors = cal.galaxy_scatter_knots(calibrated=galaxy_calibration)
                zarr.open_array(str(tmp_scatter), mode="r+").attrs.update(
                    galaxy_scatter_log10_mass=knots, galaxy_scatter_factor=factors)
    if out_catalogue is not None:
        gal = galaxies(open_field(out_field), start, n, box, subs["SubhaloPos"], subs["SubhaloMass"])
        write_catalogue(out_catalogue, attrs=dict(box_size=box, source=source, mode=mode, origin=list(start),
                                                  cube_size=size, model=str(ckpt)), **gal)
        log.info("catalogue: %d galaxies, %.4g Msun/h", int((gal["stellar_mass"] > 0).sum()),
                 float(gal["stellar_mass"].sum()))
    return summary
