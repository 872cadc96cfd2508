"""Mass fields on an n_grid^3 periodic grid [Msun/h per voxel], stored as chunked Zarr.

Two paths give the same field:

* whole box (`build_box`): one float32 n^3 grid in memory, Pylians'
  `MAS_library.MA` called once per input chunk (MA adds in place; one thread; its
  OpenMP C variants index with 32-bit ints and are never used here).
* slabs (`scatter`, `gather`, `assemble`): no process holds the grid. One scatter
  job per input chunk buckets its particles by x-slab (a particle whose lower CIC
  point is a slab's last plane goes to the next slab too); one gather job per slab
  deposits its buckets with `dm2gal.cic.deposit` (MA's weights and float32
  arithmetic in a numba loop, at MA's rate; held equal to MA by the tests) and writes the slab's Zarr chunks; `assemble` hard-links those chunk
  files into the final store (`dm2gal.fields.link_chunks`), which appears atomically.

A field's input is a `FieldSource`: a run's particles (one chunk per snapshot
file) or its subhalo catalogue (a single chunk).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from . import tng
from .atomic import atomic_path
from .cic import deposit, slab_of_particles, wrap_positions
from .fields import DEFAULT_CHUNK, create_field, field_attrs, link_chunks, write_field

log = logging.getLogger("dm2gal.grid")

QUANTITIES = ("dm_mass", "subhalo_mass", "stellar_mass", "stellar_mass_ideal")
CATALOGUE_MASS = {
    "subhalo_mass": ("SubhaloMass", None),
    "stellar_mass": ("SubhaloMassType", 4),
    "stellar_mass_ideal": ("SubhaloStellarMassMean", None),
}
"""Catalogue fields: quantity -> (Subhalo dataset deposited at SubhaloPos, column or None)."""
STELLAR_SOURCES = ("subhalos", "particles")
MAS = "CIC"


@dataclass(frozen=True)
class FieldSource:
    """What one field deposits: `quantity` of run `run` (TNG layout under `base`, snapshot `snapshot`).

    dm_mass: PartType1 particles (mass from the header MassTable).
    subhalo_mass: SubhaloMass at SubhaloPos.
    stellar_mass: SubhaloMassType[:, 4] at SubhaloPos, or with
    stellar_source='particles' the PartType4 star particles (wind cells, which
    TNG stores as PartType4 with GFM_StellarFormationTime <= 0, are skipped).
    stellar_mass_ideal: SubhaloStellarMassMean at SubhaloPos, the noise-free mean
    stellar mass of the mini-universe's galaxy model (synthetic runs only; always
    from the catalogue).
    """

    run: str
    base: str
    snapshot: int
    quantity: str
    stellar_source: str = "subhalos"

    def __post_init__(self):
        if self.quantity not in QUANTITIES:
            raise ValueError(f"unknown field quantity {self.quantity!r}; allowed: {QUANTITIES}")
        if self.stellar_source not in STELLAR_SOURCES:
            raise ValueError(f"stellar_source {self.stellar_source!r} not in {STELLAR_SOURCES}")

    @property
    def part_type(self) -> int | None:
        """Particle type deposited, or None for a catalogue field."""
        if self.quantity == "dm_mass":
            return 1
        if self.quantity == "stellar_mass" and self.stellar_source == "particles":
            return 4
        return None

    @property
    def description(self) -> str:
        if self.part_type == 1:
            return "PartType1 particles, mass Header/MassTable[1]"
        if self.part_type == 4:
            return "PartType4 star particles (GFM_StellarFormationTime > 0), Masses"
        name, column = CATALOGUE_MASS[self.quantity]
        return f"Subhalo/{name}{'' if column is None else f'[:, {column}]'} at SubhaloPos"

    def box_size(self) -> float:
        """Box side [Mpc/h] from the header of the files this field is read from.

        Catalogue fields read the group-catalogue header: archive sources fetch no
        hydro snapshot when the stellar field comes from the catalogue.
        """
        if self.part_type is None:
            header = tng.groupcat_header(self.base, self.snapshot, 0)
            return float(tng.to_library_units("BoxSize", header["BoxSize"]))
        return float(tng.snapshot_header(self.base, self.snapshot, 0)["BoxSize"])

    def n_chunks(self) -> int:
        """Input chunks: snapshot files for particle fields, 1 for catalogue fields."""
        if self.part_type is None:
            return 1
        return int(tng.snapshot_header(self.base, self.snapshot, 0)["NumFilesPerSnapshot"])

    def read(self, chunk: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions [Mpc/h, (m, 3)] and masses [Msun/h, (m,)] of input chunk `chunk`."""
        if self.part_type is None:
            if chunk != 0:
                raise ValueError(f"a catalogue field has one input chunk, not chunk {chunk}")
            return self._read_catalogue()
        pos, mass = tng.read_particle_chunk(self.base, self.snapshot, chunk, self.part_type)
        if self.part_type == 4 and len(mass):
            stars = _formed_stars(tng.snapshot_path(self.base, self.snapshot, chunk), len(mass))
            pos, mass = pos[stars], mass[stars]
        return pos, mass

    def _read_catalogue(self) -> tuple[np.ndarray, np.ndarray]:
        mass_key, column = CATALOGUE_MASS[self.quantity]
        for chunk in range(int(tng.groupcat_header(self.base, self.snapshot)["NumFiles"])):
            tng.groupcat_header(self.base, self.snapshot, chunk)  # a bad file raises, naming itself
        # an archive run has no SubhaloStellarMassMean: illustris_python raises, naming the field
        cat = tng.load_subhalos(self.base, self.snapshot, ["SubhaloPos", mass_key])
        if cat["count"] == 0:
            return np.zeros((0, 3)), np.zeros(0)
        mass = cat[mass_key] if column is None else cat[mass_key][:, column]
        return cat["SubhaloPos"], mass

    def attrs(self, n_grid: int, **extra) -> dict:
        """The Zarr attributes of this field on an n_grid^3 grid."""
        return field_attrs(box_size=self.box_size(), n_grid=n_grid, source=self.run,
                           snapshot=self.snapshot, mas=MAS, quantity=self.quantity,
                           input=self.description, base=str(self.base), **extra)


def _formed_stars(path: Path, n: int) -> np.ndarray:
    """Mask of real stars among the n PartType4 entries of one chunk (all True if no formation times)."""
    try:
        with h5py.File(path, "r") as f:
            ds = f.get("PartType4/GFM_StellarFormationTime")
            if ds is None:
                return np.ones(n, dtype=bool)
            t = ds[()]
    except OSError as err:
        raise tng.CorruptChunkError(f"cannot read PartType4/GFM_StellarFormationTime from {path}: {err}") from err
    if t.shape != (n,):
        raise tng.CorruptChunkError(f"{path}: GFM_StellarFormationTime has shape {t.shape}, expected ({n},)")
    return t > 0


# --- whole-box path ------------------------------------------------------------------


def deposit_box(source: FieldSource, n_grid: int) -> tuple[np.ndarray, float]:
    """The whole field (n_grid^3 float32 [Msun/h]) via one MASL.MA call per chunk, and the mass read [Msun/h]."""
    import MAS_library as MASL  # Pylians: ~1 s to import; the Snakefile imports this module on every job

    box = source.box_size()
    grid = np.zeros((n_grid,) * 3, dtype=np.float32)
    total = 0.0
    for chunk in tqdm(range(source.n_chunks()), desc=f"{source.run}/{source.quantity} MA", mininterval=10):
        pos, mass = source.read(chunk)
        if len(mass) == 0:
            continue
        MASL.MA(wrap_positions(pos, box), grid, box, MAS=MAS, W=mass.astype(np.float32), verbose=False)
        total += float(mass.sum(dtype=np.float64))
    return grid, total


def build_box(source: FieldSource, n_grid: int, out: str | os.PathLike, chunk: int = DEFAULT_CHUNK) -> dict:
    """Deposit the whole box with MA and write the Zarr field at `out` atomically; returns its attributes."""
    grid, total = deposit_box(source, n_grid)
    _check_mass(grid.sum(dtype=np.float64), total, out)
    attrs = source.attrs(n_grid, total_mass=total, path="box")
    write_field(out, grid, attrs, chunk=chunk)
    return attrs


def _check_mass(deposited: float, read: float, where) -> None:
    rel = abs(deposited - read) / read if read else abs(deposited)
    log.info("%s: deposited %.6e Msun/h of %.6e read (relative difference %.1e)", where, deposited, read, rel)
    if rel > 1e-5:
        raise RuntimeError(f"{where}: deposited mass {deposited:.6e} differs from {read:.6e} read (rel {rel:.1e})")


# --- slab path -----------------------------------------------------------------------


@dataclass(frozen=True)
class SlabPlan:
    """The x-slabs of an n_grid^3 grid: `thickness` planes each, a multiple of the Zarr chunk edge."""

    n_grid: int
    thickness: int
    chunk: int

    def __post_init__(self):
        if self.n_grid % self.thickness or self.thickness % self.chunk:
            raise ValueError(f"slab thickness {self.thickness} must divide n_grid={self.n_grid} "
                             f"and be a multiple of the Zarr chunk edge {self.chunk}")

    @classmethod
    def from_config(cls, n_grid: int, slab_thickness: int, chunk: int) -> "SlabPlan":
        """Clip the configured chunk edge and slab thickness to the grid, then validate."""
        c = min(chunk, n_grid)
        return cls(n_grid, min(slab_thickness, n_grid), c)

    @property
    def n_slabs(self) -> int:
        return self.n_grid // self.thickness


def scatter(source: FieldSource, chunk: int, plan: SlabPlan, out: str | os.PathLike) -> np.ndarray:
    """Bucket input chunk `chunk` by slab into the HDF5 file `out`; returns the count per slab.

    Group slab_{s} holds pos (m, 3) [Mpc/h, wrapped] and mass (m,) [Msun/h], both
    float32. Particles on a slab's last plane are written to the next slab as well
    (counts include them).
    """
    box = source.box_size()
    pos, mass = source.read(chunk)
    pos = wrap_positions(pos, box)
    mass = mass.astype(np.float32)
    slab, reaches_next = slab_of_particles(pos[:, 0], plan.n_grid, box, plan.thickness)
    if plan.n_slabs > 1:
        extra = np.flatnonzero(reaches_next)
        index = np.concatenate([np.arange(len(slab)), extra])
        slab = np.concatenate([slab, (slab[extra] + 1) % plan.n_slabs])
    else:
        index = np.arange(len(slab))
    order = np.argsort(slab, kind="stable")
    index, counts = index[order], np.bincount(slab, minlength=plan.n_slabs)
    edges = np.concatenate([[0], np.cumsum(counts)])
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update(n_grid=plan.n_grid, thickness=plan.thickness, box_size=box, chunk=chunk,
                       source=json.dumps(asdict(source)), mass_read=float(mass.sum(dtype=np.float64)))
        for s in range(plan.n_slabs):
            sel = index[edges[s]:edges[s + 1]]
            g = f.create_group(f"slab_{s}")
            g.create_dataset("pos", data=pos[sel])
            g.create_dataset("mass", data=mass[sel])
    return counts


def gather(buckets: list[str | os.PathLike], slab: int, plan: SlabPlan, out: str | os.PathLike) -> dict:
    """Deposit slab `slab` from every scatter file and write it as a Zarr array (thickness, n, n) at `out`.

    The slab store has the field's chunking and codecs, so `assemble` can link
    its chunk files into the whole field. Its attributes (returned) hold the mass
    deposited in the slab and the mass all scatter jobs read [Msun/h].
    """
    import zarr  # ~1 s to import; the Snakefile imports this module on every job

    x0 = slab * plan.thickness
    data = np.zeros((plan.thickness, plan.n_grid, plan.n_grid), dtype=np.float32)
    box = None
    mass_read = 0.0
    for path in tqdm(buckets, desc=f"slab {slab}", mininterval=10):
        with h5py.File(path, "r") as f:
            if (int(f.attrs["n_grid"]), int(f.attrs["thickness"])) != (plan.n_grid, plan.thickness):
                raise ValueError(f"{path} was scattered for n_grid={f.attrs['n_grid']}, "
                                 f"thickness={f.attrs['thickness']}, not {plan}")
            box = float(f.attrs["box_size"])
            mass_read += float(f.attrs["mass_read"])
            g = f[f"slab_{slab}"]
            pos, mass = g["pos"][()], g["mass"][()]
        deposit(data, pos, mass, box, x0=x0)
    attrs = dict(slab=slab, x0=x0, box_size=box, mass=float(data.sum(dtype=np.float64)), mass_read=mass_read)
    with atomic_path(out) as tmp:
        arr = zarr.create_array(store=str(tmp), shape=data.shape, chunks=(plan.chunk,) * 3, dtype="float32",
                                fill_value=0, attributes=attrs)
        arr[...] = data
    return attrs


def assemble(slabs: list[str | os.PathLike], source: FieldSource, plan: SlabPlan, out: str | os.PathLike) -> dict:
    """Make the field at `out` from the slab stores (in slab order); returns its attributes.

    Chunk files are hard-linked (copied where linking fails), not re-encoded: the
    field store is built under a temporary name and moved into place, so it
    appears only when complete. The mass deposited in all slabs must equal the
    mass the scatter jobs read.
    """
    import zarr  # ~1 s to import; the Snakefile imports this module on every job

    if len(slabs) != plan.n_slabs:
        raise ValueError(f"{len(slabs)} slab stores for a plan of {plan.n_slabs} slabs")
    slab_attrs = [dict(zarr.open_array(str(p), mode="r").attrs) for p in slabs]
    if [a["slab"] for a in slab_attrs] != list(range(plan.n_slabs)):
        raise ValueError(f"slab stores {slabs} are not slabs 0..{plan.n_slabs - 1} in order")
    mass_read = slab_attrs[0]["mass_read"]
    _check_mass(sum(a["mass"] for a in slab_attrs), mass_read, out)
    attrs = source.attrs(plan.n_grid, total_mass=mass_read, path="slabs", n_slabs=plan.n_slabs)
    with atomic_path(out) as tmp:
        create_field(tmp, attrs, chunk=plan.chunk)
        meta = json.loads((tmp / "zarr.json").read_text())
        for s, path in enumerate(slabs):
            link_chunks(Path(path), tmp, s * plan.thickness // plan.chunk, meta)
    return attrs


# --- resources ----------------------------------------------------------------------


def memory_mb(step: str, n_grid: int, thickness: int, particles_per_chunk: float) -> int:
    """Memory to declare for one job [MB], from the grid and the largest input chunk.

    box: the n^3 float32 grid plus one chunk's arrays (~100 B per particle: float64
    reads, float32 copies, MA's temporaries). scatter: ~80 B per particle of one
    chunk (float64 read, float32 copy, slab ids, sort order, bucket copies; 65 B
    measured by benchmarks/grid.py). gather: the float32
    slab, ~400 MB for numba's compiler and the deposit (~120 MB measured; the
    deposit itself allocates nothing for float32 buckets) and one bucket (16 B per
    particle; at worst a whole chunk, since TNG chunks are ordered by halo, hence
    clustered).
    Includes ~300 MB for the interpreter and libraries (numpy, h5py, zarr).
    """
    base = 300e6
    if step == "box":
        need = 4 * n_grid ** 3 + 100 * particles_per_chunk
    elif step == "scatter":
        need = 80 * particles_per_chunk
    elif step == "gather":
        need = 4 * thickness * n_grid ** 2 + 400e6 + 16 * particles_per_chunk
    elif step == "assemble":
        need = 100e6
    else:
        raise ValueError(f"unknown grid step {step!r}")
    return int(np.ceil(1.2 * (base + need) / 1e6))


RATE = {"box": 1e6, "scatter": 3e6, "gather": 2e6, "write": 50e6}
"""Throughputs on one core [particles/s; 'write': field bytes/s into compressed Zarr], rounded
down from benchmarks/grid.py on a 2-core dev box (reading included)."""


def runtime_min(step: str, n_grid: int, thickness: int, objects: float) -> int:
    """Minutes to declare for one job: 3x the time at `RATE`, plus 10 minutes.

    `objects`: particles of the whole field for box and gather (a slab gets its
    share plus the margin plane), of the largest chunk for scatter.
    """
    if step == "box":
        seconds = objects / RATE["box"] + 4 * n_grid ** 3 / RATE["write"]
    elif step == "scatter":
        seconds = objects / RATE["scatter"]
    elif step == "gather":
        seconds = objects * (thickness + 1) / n_grid / RATE["gather"] + 4 * thickness * n_grid ** 2 / RATE["write"]
    else:
        raise ValueError(f"unknown grid step {step!r}")
    return int(np.ceil(3 * seconds / 60)) + 10
