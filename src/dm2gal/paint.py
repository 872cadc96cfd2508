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

Slabs. A whole box too large for one job (`paint.slabs` > 1) is painted as one job per
x-slab (`SlabPlan`, `paint_slab`: the slab's region with its periodic receptive halo),
then `assemble` links the slabs' Zarr chunks into the field (the slab gridder's
`dm2gal.fields.link_chunks`), which appears atomically. Slab edges fall on the dense
tiles' and the Zarr chunks' edges, so every tile is the single job's tile: the field
is the single job's, bit for bit.

The painted value of a voxel is the mean stellar mass of the distribution the head
predicts there [Msun/h] (`dm2gal.inference.Prediction.mean_mass`: 10^(mu + ln10 sigma^2/2)
for the probabilistic head, 10^mu for the paper's), 0 elsewhere.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .atomic import atomic_path
from .calibration import Calibration, galaxy_groups
from .catalogue import galaxies, write_catalogue
from .cic import host_subhalos
from .dense import output_tiles, predict_region, to_dense
from .fields import DEFAULT_CHUNK, create_field, cube_attrs, link_chunks, open_field, read_periodic
from .galaxy_deposit import deposit
from .inference import decode, input_scale, load_model, predict
from .occupancy import candidates
from .paint_galaxies import is_galaxy_painter, paint_galaxies
from .paint_plan import SlabPlan
from .sampler import PatchSource, normalise_channels
from .split import read_cubes
from .tng import load_subhalos

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


@dataclass(frozen=True)
class Settings:
    """How a painting is computed: `method` (METHODS), dense `tile` edge, per-voxel `batch`, `device`,
    and `max_memory_gb` for the inputs held in memory. Only the method changes the field beyond
    float rounding, so the scripts read the rest from the config, never from rule params."""

    method: str = "dense"
    tile: int = 64
    batch: int = 256
    device: str = "cpu"
    max_memory_gb: float = 8.0

    @classmethod
    def from_config(cls, paint_cfg: dict, method: str) -> "Settings":
        """From the `paint` config section (tile, batch_size, device, max_memory_gb) and the method."""
        return cls(method=method, tile=paint_cfg["tile"], batch=paint_cfg["batch_size"], device=paint_cfg["device"],
                   max_memory_gb=paint_cfg["max_memory_gb"])


@dataclass(frozen=True)
class Occupancy:
    """Which voxels are painted: `honest` (gravity-only subhalo mass >= `threshold` [Msun/h]) or
    `oracle` (the hydro truth at `truth_path` above `min_mass` [Msun/h])."""

    mode: str = "honest"
    threshold: float | None = None
    truth_path: object = None
    min_mass: float = 1e8

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"paint mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "honest" and self.threshold is None:
            raise ValueError("honest painting needs the occupancy threshold")
        if self.mode == "oracle" and self.truth_path is None:
            raise ValueError("oracle painting needs the hydro stellar-mass field")

    def selector(self):
        """select(first, inputs) -> the bool mask of the voxels to paint, for the (C, *shape) raw
        inputs whose first voxel is `first` (parent-grid indices)."""
        truth = open_field(self.truth_path) if self.mode == "oracle" else None

        def select(first, centre: np.ndarray) -> np.ndarray:
            if truth is None:
                return candidates(centre[1], self.threshold)
            return read_periodic(truth, first, centre.shape[1:]) > self.min_mass
        return select


@dataclass
class Inputs:
    """The raw input fields [Msun/h] around a region, readable by (first voxel, shape).

    Holds the region plus its receptive halo in memory (`cache`, whose first voxel is
    `start`) when it fits, else reads the Zarr fields (periodically) on each call.
    """

    fields: list  # Zarr arrays: dm_mass, subhalo_mass
    start: tuple[int, int, int]
    cache: np.ndarray | None = None

    @classmethod
    def open(cls, paths, start, shape, patch: int, max_bytes: float) -> "Inputs":
        fields = [open_field(p) for p in paths]
        first = tuple(int(s) - patch // 2 for s in start)
        sides = tuple(int(s) + patch - 1 for s in shape)
        inp = cls(fields, first)
        if len(fields) * math.prod(sides) * 4 <= max_bytes:
            log.info("reading the %s input region (with its %d-voxel halo) into memory", sides, patch // 2)
            inp.cache = np.stack([read_periodic(f, first, sides) for f in fields]).astype(np.float32)
        return inp

    def read(self, first, shape) -> np.ndarray:
        """(C, *shape) raw masses whose first voxel is `first` (parent-grid indices)."""
        if self.cache is not None:
            local = [int(f) - int(s) for f, s in zip(first, self.start)]
            if all(a >= 0 and a + b <= n for a, b, n in zip(local, shape, self.cache.shape[1:])):
                return self.cache[:, local[0]:local[0] + shape[0], local[1]:local[1] + shape[1],
                                  local[2]:local[2] + shape[2]]
        return np.stack([read_periodic(f, first, shape) for f in self.fields]).astype(np.float32)


def _region_shape(size) -> tuple[int, int, int]:
    return (int(size),) * 3 if np.isscalar(size) else tuple(int(s) for s in size)


def _paint_dense(net, normalisation: dict, inputs: Inputs, start, shape, occupancy: Occupancy,
                 settings: Settings, device, out, scatter) -> tuple[int, float]:
    """Paint tile by tile through `dm2gal.dense.predict_region`; (voxels painted, mass painted)."""
    dense = to_dense(net)
    if dense.patch != int(net.config["patch"]):
        raise PatchMismatchError(f"the network's receptive field is {dense.patch}^3, not its "
                                 f"{net.config['patch']}^3 patch")
    tiles = predict_region(dense, inputs.read, start, shape, tile=settings.tile, device=device,
                           select=occupancy.selector(),
                           transform=partial(normalise_channels, mean=normalisation["input_mean"],
                                             std=normalisation["input_std"], scale=input_scale(normalisation)))
    n_painted, painted_mass = 0, 0.0
    for t in tqdm(tiles, total=len(output_tiles(shape, settings.tile, dense.stride)),
                  desc=f"paint ({occupancy.mode}, dense)", mininterval=10):
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
    return n_painted, painted_mass


def _paint_per_voxel(net, normalisation: dict, inputs: Inputs, start, shape, occupancy: Occupancy,
                     settings: Settings, device, out, scatter) -> tuple[int, float]:
    """Paint the candidate voxels through `dm2gal.inference.predict`; (voxels painted, mass painted)."""
    if inputs.cache is None:
        raise MemoryError("per-voxel painting holds the region and its halo in memory; raise "
                          "paint.max_memory_gb or use the dense method")
    half = int(net.config["patch"]) // 2
    cache = inputs.cache[(slice(None), *(slice(0, s + 2 * half) for s in shape))]
    inner = cache[(slice(None), *(slice(half, half + s) for s in shape))]
    mask = occupancy.selector()(tuple(start), inner)
    coords = np.argwhere(mask)
    source = PatchSource.from_arrays(list(np.pad(cache, [(0, 0)] + [(0, max(shape) - s) for s in shape])),
                                     normalisation["input_mean"], normalisation["input_std"], device=device,
                                     scale=input_scale(normalisation))
    pred = predict(net, source, coords + half, normalisation, batch_size=settings.batch, progress=True)
    block = np.zeros(shape, np.float32)
    block[mask] = pred.mean_mass()
    out[...] = block
    if scatter is not None:
        block[mask] = pred.sigma
        scatter[...] = block
    return len(coords), float(block.sum(dtype=np.float64))


def paint(net, normalisation: dict, dm_path, sub_path, out_path, *, start, size, attrs: dict,
          occupancy: Occupancy, settings: Settings = Settings(), scatter_path=None,
          chunk: int = DEFAULT_CHUNK) -> dict:
    """Paint the region [start, start + size) of the input fields into a Zarr field at `out_path`.

    `size` is the cube's edge or the region's (3,) shape (a slab); `attrs` are the output
    field's attributes (see `painted_attrs`) and `chunk` its Zarr chunk edge. With
    `scatter_path` the predicted log10 scatter [dex] of the painted voxels goes to a second
    field there (0 for the paper's head). Write through `dm2gal.atomic.atomic_path`.
    Returns a summary (voxels painted, seconds, voxels per second).
    """
    if settings.method not in METHODS:
        raise ValueError(f"paint method must be one of {METHODS}, got {settings.method!r}")
    shape, patch = _region_shape(size), int(net.config["patch"])
    device = torch.device(settings.device)
    net = net.to(device).eval()
    if device.type == "cuda":  # bf16 autocast (in predict and predict_region) and channels-last-3d
        torch.backends.cudnn.benchmark = True
        net = net.to(memory_format=torch.channels_last_3d)
    stride = math.prod(int(s) for s in net.config["strides"])
    # dense tiles are rounded up to a multiple of the network's stride: keep that margin in memory too
    inputs = Inputs.open([dm_path, sub_path], start, tuple(s + stride - 1 for s in shape), patch,
                         settings.max_memory_gb * 2 ** 30)
    out = create_field(out_path, attrs, chunk=chunk, shape=shape)
    scatter = None
    if scatter_path is not None:
        scatter = create_field(scatter_path, dict(attrs, quantity="stellar_mass_log10_scatter", units="dex"),
                               chunk=chunk, shape=shape)
    t0 = time.perf_counter()
    step = _paint_dense if settings.method == "dense" else _paint_per_voxel
    n_painted, painted_mass = step(net, normalisation, inputs, start, shape, occupancy, settings, device, out, scatter)
    seconds = time.perf_counter() - t0
    voxels = math.prod(shape)
    log.info("painted %d of %d voxels in %.1f s (%s, %s)", n_painted, voxels, seconds, occupancy.mode, settings.method)
    return dict(mode=occupancy.mode, method=settings.method, device=str(device), voxels=voxels,
                painted_voxels=n_painted, seconds=seconds, voxels_per_second=voxels / seconds,
                painted_mass=painted_mass)


def painted_attrs(dark_attrs: dict, start, size: int, mode: str, source: str, **extra) -> dict:
    """Attributes of a painted cube field: a cube of the parent grid of `dark_attrs`."""
    label = ORACLE_LABEL if mode == "oracle" else "honest: positions from the gravity-only run alone"
    return cube_attrs(dark_attrs, start, size, source=source, quantity="stellar_mass", units="Msun/h", mode=mode,
                      label=label, **extra)


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("paint.device is 'cuda' but no GPU is visible")
    return device


@dataclass(frozen=True)
class Job:
    """What one painting reads: the checkpoint, the gravity-only fields to paint (`dm_path`,
    `sub_path`), the training dark-matter field (`reference_dm_path`: its voxel size must
    match), the split's `cubes_json` (test cube, and `min_stellar_mass` for the oracle),
    honest mode's `occupancy_json` or oracle mode's `truth_path`; `source` names the run.
    `whole_box` paints the whole box instead of the test cube; `expected_patch` is the patch
    of the config's model (`dm2gal.model.configured_patch`); `subhalos` the gravity-only
    run's (base, snapshot) whose subhalos the mock catalogue is made of and the galaxies
    are grouped by; `galaxy_calibration` applies the checkpoint's galaxy calibration; `deposit`
    = galaxies deposits each painted galaxy at its subhalo (`deposit_galaxies`), voxels keeps
    the network's voxels."""

    ckpt: object
    dm_path: object
    sub_path: object
    reference_dm_path: object
    cubes_json: object
    source: str
    whole_box: bool = False
    mode: str = "honest"
    occupancy_json: object = None
    truth_path: object = None
    expected_patch: int | None = None
    subhalos: tuple | None = None
    galaxy_calibration: bool = True
    deposit: str = "voxels"


@dataclass
class Prepared:
    """A `Job` made ready on a device: the checked network, its normalisation, the region
    (first voxel, edge) of the n_grid^3 box of side box [Mpc/h], the occupancy (None for the
    galaxy painter, which paints every subhalo), the attributes."""

    net: torch.nn.Module
    normalisation: dict
    start: tuple
    size: int
    n_grid: int
    box: float
    occupancy: Occupancy | None
    attrs: dict


def prepare(job: Job, device: str) -> Prepared:
    """Load and check the model, read the region, the thresholds and the output attributes."""
    dm_attrs = dict(open_field(job.dm_path).attrs)
    ref_attrs = dict(open_field(job.reference_dm_path).attrs)
    n, box = int(dm_attrs["n_grid"]), float(dm_attrs["box_size"])
    net, normalisation = load_model(job.ckpt, device)
    check_model(net.config, job.expected_patch, n, box / n, float(ref_attrs["box_size"]) / int(ref_attrs["n_grid"]))
    cubes = read_cubes(job.cubes_json)
    start, size = ((0, 0, 0), n) if job.whole_box else (tuple(cubes.test.start), cubes.test.size)
    extra = dict(model=str(job.ckpt), min_stellar_mass=cubes.min_stellar_mass)
    occupancy = None
    if not is_galaxy_painter(normalisation):
        threshold = None
        if job.mode == "honest":
            if job.occupancy_json is None:
                raise ValueError("the selected model paints voxels and needs the occupancy threshold "
                                 "(paint/test/occupancy.json): is train.target voxels in the config that trained it?")
            threshold = float(json.loads(Path(job.occupancy_json).read_text())["threshold"])
            extra["occupancy_threshold"] = threshold
        occupancy = Occupancy(job.mode, threshold, job.truth_path, cubes.min_stellar_mass)
    return Prepared(net, normalisation, start, size, n, box, occupancy,
                    painted_attrs(dm_attrs, start, size, job.mode, job.source, **extra))


def _start(job: Job, settings: Settings, threads: int | None) -> tuple[Prepared, Settings]:
    if threads:
        torch.set_num_threads(int(threads))
    settings = Settings(**{**settings.__dict__, "device": resolve_device(settings.device)})
    prep = prepare(job, settings.device)
    prep.attrs["method"] = settings.method
    return prep, settings


@functools.lru_cache(maxsize=1)
def job_subhalos(job: Job) -> dict:
    """SubhaloPos [Mpc/h] and SubhaloMass [Msun/h] of the job's gravity-only run (empty arrays for none),
    read once per job: the galaxy calibration and the mock catalogue both group by them."""
    subs = load_subhalos(*job.subhalos, ["SubhaloPos", "SubhaloMass"])
    return subs if subs["count"] else dict(SubhaloPos=np.zeros((0, 3)), SubhaloMass=np.zeros(0))


def _blocks(field) -> list[tuple[slice, ...]]:
    """The chunk-aligned blocks of a Zarr field."""
    return [tuple(slice(i, min(i + c, n)) for i, c, n in zip(first, field.chunks, field.shape))
            for first in itertools.product(*(range(0, n, c) for n, c in zip(field.shape, field.chunks)))]


def _painted_voxels(field) -> tuple[np.ndarray, np.ndarray]:
    """(coords (K, 3), values (K,) float64) of the voxels > 0 of `field`, block by block of its
    chunks (only those voxels are held)."""
    coords, values = [], []
    for block in _blocks(field):
        data = np.asarray(field[block])
        local = np.argwhere(data > 0)
        coords.append(local + [b.start for b in block])
        values.append(data[tuple(local.T)].astype(np.float64))
    return np.concatenate(coords), np.concatenate(values)


def _by_block(field, coords: np.ndarray):
    """Yield (block, its first voxel (3,), indices into `coords` (K, 3) of the voxels inside it) for
    the blocks of `_blocks(field)` that hold any: the coordinates are sorted by block once."""
    blocks = _blocks(field)
    chunks = np.asarray(field.chunks)
    per_axis = -(-np.asarray(field.shape) // chunks)
    index = np.ravel_multi_index(tuple((np.asarray(coords, np.int64) // chunks).T), per_axis) if len(coords) else \
        np.zeros(0, np.int64)
    order = np.argsort(index, kind="stable")
    bounds = np.searchsorted(index[order], np.arange(len(blocks) + 1))
    for b, block in enumerate(blocks):
        if bounds[b + 1] > bounds[b]:
            yield block, np.array([s.start for s in block]), order[bounds[b]:bounds[b + 1]]


def _values_at(field, coords: np.ndarray) -> np.ndarray:
    """(K,) float64 values of `field` at `coords` (K, 3), block by block of its chunks."""
    out = np.zeros(len(coords))
    for block, lo, sel in _by_block(field, coords):
        out[sel] = np.asarray(field[block])[tuple((coords[sel] - lo).T)]
    return out


def _write_voxels(field, coords: np.ndarray, values: np.ndarray, clear: np.ndarray | None = None) -> None:
    """Set `field` at `coords` (K, 3) to `values` (K,), block by block of its chunks, after zeroing
    the voxels `clear` (L, 3); blocks holding neither are not touched."""
    clear = np.zeros((0, 3), np.int64) if clear is None else np.asarray(clear, np.int64)
    both = np.concatenate([clear, np.asarray(coords, np.int64)])
    for block, lo, sel in _by_block(field, both):
        data = np.asarray(field[block])
        wipe, put = sel[sel < len(clear)], sel[sel >= len(clear)] - len(clear)
        data[tuple((clear[wipe] - lo).T)] = 0
        data[tuple((coords[put] - lo).T)] = values[put]
        field[block] = data


def _calibrated(calibration: Calibration, mean: np.ndarray, galaxies: np.ndarray) -> tuple[np.ndarray, float]:
    """(voxel means `mean` (K,) [Msun/h] with each galaxy scaled by `calibration.galaxy_mass_factor`,
    the total painted mass after over before), logged."""
    calibrated = calibration.calibrate_galaxies(mean, galaxies)
    ratio = float(calibrated.sum() / mean.sum()) if mean.sum() > 0 else 1.0
    log.info("galaxy calibration: %d galaxies, total painted mass x %.4f", int(galaxies.max()) + 1 if len(mean) else 0,
             ratio)
    return calibrated, ratio


def calibrate_galaxies(path, calibration: Calibration, origin, n_grid: int, box_size: float, subs: dict) -> float:
    """Multiply, in the painted field at `path` (first voxel `origin` of the n_grid^3 parent
    grid of side `box_size` [Mpc/h]), the voxels of each galaxy (hosted by one subhalo of
    `subs`: SubhaloPos [Mpc/h], SubhaloMass [Msun/h]) by `calibration.galaxy_mass_factor`,
    block by block of the store's chunks (only the painted voxels are held); returns the
    painted total mass after over before."""
    import zarr  # as dm2gal.fields: the store is not needed to import the painter

    field = zarr.open_array(str(path), mode="r+")
    coords, mean = _painted_voxels(field)
    galaxies = galaxy_groups(host_subhalos(coords, origin, n_grid, box_size, subs["SubhaloPos"], subs["SubhaloMass"]))
    calibrated, ratio = _calibrated(calibration, mean, galaxies)
    _write_voxels(field, coords, calibrated)
    return ratio


def deposit_galaxies(path, scatter_path, origin, n_grid: int, box_size: float, subs: dict,
                     scatter_knots=((), ()), calibration: Calibration | None = None) -> dict:
    """Rewrite the painted field at `path` (and its scatter field at `scatter_path`, if any) as
    its galaxies deposited at their subhalos (`dm2gal.galaxy_deposit.deposit`; arguments as
    `calibrate_galaxies`, `scatter_knots` the galaxy scatter factor's), each galaxy first
    scaled by `calibration`'s galaxy calibration when one is given (in the same pass), block
    by block of the store's chunks. Returns {galaxy_deposit_voxels: voxels painted after, and
    with a calibration galaxy_calibration: the total mass after over before it}."""
    import zarr  # as dm2gal.fields: the store is not needed to import the painter

    field = zarr.open_array(str(path), mode="r+")
    coords, mean = _painted_voxels(field)
    scatter = None if scatter_path is None else zarr.open_array(str(scatter_path), mode="r+")
    sigma = np.zeros(len(mean)) if scatter is None else _values_at(scatter, coords)
    hosts = host_subhalos(coords, origin, n_grid, box_size, subs["SubhaloPos"], subs["SubhaloMass"])
    done = {}
    if calibration is not None:
        mean, done["galaxy_calibration"] = _calibrated(calibration, mean, galaxy_groups(hosts))
    new_coords, new_mass, new_scatter = deposit(coords, mean, sigma, hosts, subs["SubhaloPos"], origin, n_grid,
                                                box_size, field.shape, scatter_knots)
    _write_voxels(field, new_coords, new_mass, clear=coords)
    if scatter is not None:
        _write_voxels(scatter, new_coords, new_scatter, clear=coords)
        scatter.attrs.update(deposit="galaxies", galaxy_scatter_log10_mass=[], galaxy_scatter_factor=[])
    field.attrs.update(deposit="galaxies")
    log.info("galaxies deposited at their subhalos: %d painted voxels became %d, total mass x %.6f", len(mean),
             len(new_mass), float(new_mass.sum() / mean.sum()) if mean.sum() > 0 else 1.0)
    return dict(done, galaxy_deposit_voxels=len(new_mass))


def finish_galaxies(job: Job, prep: Prepared, field_path, scatter_path=None) -> dict:
    """The galaxy part of a painting, on the painted field (and its scatter field): the
    checkpoint's galaxy calibration when `job.galaxy_calibration`, and with `job.deposit` =
    galaxies the galaxies deposited at their subhalos in the same pass (`deposit_galaxies`,
    their scatter, factor included, into the scatter field); else the calibration alone
    (`calibrate_galaxies`) and the knots the realisations look a galaxy's scatter factor up in,
    as attributes of the scatter field. Returns what it did."""
    calibration = prep.normalisation.get("calibration")
    cal = Calibration.from_dict(calibration) if calibration else None
    galaxy_cal = cal if cal is not None and job.galaxy_calibration and cal.galaxy_log10_mass else None
    knots = cal.galaxy_scatter_knots(calibrated=job.galaxy_calibration) if cal is not None else ([], [])
    if job.deposit == "galaxies":
        return deposit_galaxies(field_path, scatter_path, prep.start, prep.n_grid, prep.box, job_subhalos(job), knots,
                                galaxy_cal)
    done = {}
    if galaxy_cal is not None:
        done["galaxy_calibration"] = calibrate_galaxies(field_path, galaxy_cal, prep.start, prep.n_grid, prep.box,
                                                        job_subhalos(job))
    if scatter_path is not None and cal is not None:
        import zarr  # as dm2gal.fields: the store is not needed to import the painter

        zarr.open_array(str(scatter_path), mode="r+").attrs.update(galaxy_scatter_log10_mass=knots[0],
                                                                   galaxy_scatter_factor=knots[1])
    return done


def write_mock_catalogue(job: Job, prep: Prepared, field_path, out) -> None:
    """The mock catalogue (HDF5) of a painted field: its mass shared among the gravity-only subhalos."""
    subs = job_subhalos(job)
    gal = galaxies(open_field(field_path), prep.start, prep.n_grid, prep.box, subs["SubhaloPos"], subs["SubhaloMass"])
    write_catalogue(out, attrs=dict(box_size=prep.box, source=job.source, mode=job.mode, origin=list(prep.start),
                                    cube_size=prep.size, model=str(job.ckpt)), **gal)
    log.info("catalogue: %d galaxies, %.4g Msun/h", int((gal["stellar_mass"] > 0).sum()),
             float(gal["stellar_mass"].sum()))


def run(job: Job, out_field, *, out_scatter=None, out_catalogue=None, settings: Settings = Settings(device="auto"),
        threads: int | None = None) -> dict:
    """The paint stage for one run in one job: the test cube, or the whole box (`job.whole_box`);
    a galaxy painter's checkpoint paints by `dm2gal.paint_galaxies`.

    Writes the painted field (galaxy-calibrated, `finish_galaxies`) and, if asked, the
    predicted log10 scatter field (for `dm2gal.realisations`) and the mock catalogue
    (`job.subhalos` is needed for both). `threads` caps torch's CPU threads. Returns the
    painting summary.
    """
    prep, settings = _start(job, settings, threads)
    if is_galaxy_painter(prep.normalisation):
        oracle = (job.truth_path, float(prep.attrs["min_stellar_mass"])) if job.mode == "oracle" else None
        return paint_galaxies(prep.net, prep.normalisation, job.dm_path, job.sub_path, job.subhalos,
                              start=prep.start, size=prep.size, attrs=dict(prep.attrs, method="galaxies"),
                              out_field=out_field, out_scatter=out_scatter, out_catalogue=out_catalogue,
                              oracle=oracle, device=settings.device, batch_size=settings.batch, source_name=job.source)
    scatter_tmp = atomic_path(out_scatter) if out_scatter is not None else contextlib.nullcontext()
    with atomic_path(out_field) as tmp, scatter_tmp as tmp_scatter:
        summary = paint(prep.net, prep.normalisation, job.dm_path, job.sub_path, tmp, start=prep.start,
                        size=prep.size, attrs=prep.attrs, occupancy=prep.occupancy, settings=settings,
                        scatter_path=tmp_scatter)
        summary.update(finish_galaxies(job, prep, tmp, tmp_scatter))
    if out_catalogue is not None:
        write_mock_catalogue(job, prep, out_field, out_catalogue)
    return summary


# --- slab jobs ------------------------------------------------------------------------


def paint_slab(job: Job, plan: SlabPlan, slab: int, out_field, out_scatter, *,
               settings: Settings = Settings(device="auto"), threads: int | None = None) -> dict:
    """Paint slab `slab` of the region of `job` into slab stores of the field's chunks (for `assemble`)."""
    prep, settings = _start(job, settings, threads)
    if is_galaxy_painter(prep.normalisation):
        raise ValueError("the selected model is the galaxy painter, which paints a box in one job: set paint.slabs: 1")
    if plan.size != prep.size:
        raise ValueError(f"a slab plan of a {plan.size}-voxel region for the {prep.size}-voxel region of {job.source}")
    x0, planes = plan.slab(slab)
    start = (prep.start[0] + x0, *prep.start[1:])
    attrs = dict(prep.attrs, slab=slab, slab_x0=x0)
    with atomic_path(out_field) as tmp, atomic_path(out_scatter) as tmp_scatter:
        return paint(prep.net, prep.normalisation, job.dm_path, job.sub_path, tmp, start=start,
                     size=(planes, prep.size, prep.size), attrs=attrs, occupancy=prep.occupancy, settings=settings,
                     scatter_path=tmp_scatter, chunk=plan.chunk)


def assemble(job: Job, plan: SlabPlan, slab_fields, slab_scatters, out_field, out_scatter, out_catalogue=None) -> dict:
    """Link the slab stores (in slab order) into the painted field and its scatter field, apply the
    galaxy calibration (`finish_galaxies`), let both appear atomically, then write the mock
    catalogue; returns the field's attributes."""
    if not len(slab_fields) == len(slab_scatters) == plan.n_slabs:
        raise ValueError(f"{len(slab_fields)} slab fields, {len(slab_scatters)} scatter slabs for a plan of "
                         f"{plan.n_slabs} slabs")
    prep = prepare(job, "cpu")
    with atomic_path(out_field) as tmp_field, atomic_path(out_scatter) as tmp_scatter:
        for tmp, slabs in ((tmp_field, slab_fields), (tmp_scatter, slab_scatters)):
            attrs = {k: v for k, v in dict(open_field(slabs[0]).attrs).items() if k not in ("slab", "slab_x0")}
            if [int(open_field(p).attrs["slab"]) for p in slabs] != list(range(plan.n_slabs)):
                raise ValueError(f"slab stores {slabs} are not slabs 0..{plan.n_slabs - 1} in order")
            create_field(tmp, dict(attrs, n_slabs=plan.n_slabs), chunk=plan.chunk)
            meta = json.loads((tmp / "zarr.json").read_text())
            for s, path in enumerate(slabs):
                link_chunks(Path(path), tmp, plan.slab(s)[0] // plan.chunk, meta)
        # galaxies cross slab edges: calibrated on the whole field (zarr rewrites a chunk as a new
        # file, so the slab stores linked in keep their own)
        finish_galaxies(job, prep, tmp_field, tmp_scatter)
    if out_catalogue is not None:
        write_mock_catalogue(job, prep, out_field, out_catalogue)
    return dict(open_field(out_field).attrs)
