# The grid stage (see docs/pipeline.md): CIC mass fields [Msun/h per voxel] on an
# n_grid^3 grid, as chunked Zarr under {results}/fields/{run}/{quantity}.zarr.
# Small grids (method box, or auto with n_grid <= box_max_n_grid): one grid_box job
# per field holds the whole grid and calls Pylians' MAS_library.MA once per chunk.
# Large grids (slabs): grid_scatter (one job per input chunk: a snapshot file, or
# the whole subhalo catalogue) -> grid_gather (one job per x-slab) -> grid_assemble
# (links the slabs' Zarr chunks into the field, which appears atomically).
# mem_mb comes from dm2gal.grid.memory_mb (slab size, particles per chunk file) and
# grows with each retry; runtime from dm2gal.grid.runtime_min.
import glob
import json
from dataclasses import asdict

from dm2gal import tng
from dm2gal.grid import QUANTITIES, FieldSource, SlabPlan, memory_mb, runtime_min

GRID = config["grid"]
GRID_METHOD = GRID["method"]
if GRID_METHOD == "auto":
    GRID_METHOD = "box" if GRID["n_grid"] <= GRID["box_max_n_grid"] else "slabs"
GRID_CHUNK = min(GRID["chunk"], GRID["n_grid"])
GRID_RUNS = {sim: (sim_base(sim), SNAPSHOT) for sim in tng.SIMS}
GRID_RUNS.update({r["name"]: (r["base"], r.get("snapshot", SNAPSHOT)) for r in config["extra_runs"]})
if len(GRID_RUNS) != len(tng.SIMS) + len(config["extra_runs"]):
    raise ValueError(f"extra_runs names must be unique and differ from {tng.SIMS}: {config['extra_runs']}")
GRID_WORK = results("fields", ".work", "{run}", "{quantity}")

GRID_FIELDS = [results("fields", "dark", f"{q}.zarr") for q in ("dm_mass", "subhalo_mass")]
GRID_FIELDS.append(results("fields", "hydro", "stellar_mass.zarr"))
GRID_FIELDS += [results("fields", r["name"], f"{q}.zarr") for r in config["extra_runs"]
                for q in ("dm_mass", "subhalo_mass")]
FINAL_TARGETS.extend(GRID_FIELDS)


wildcard_constraints:
    run="|".join(GRID_RUNS),
    quantity="|".join(QUANTITIES),


def grid_source(wildcards):
    base, snap = GRID_RUNS[wildcards.run]
    return FieldSource(wildcards.run, base, snap, wildcards.quantity, GRID["stellar_source"])


def grid_run_input(wildcards):
    """What a field depends on: the pair's acquire manifest (a checkpoint), or an extra run's files."""
    if wildcards.run in tng.SIMS:
        return checkpoints.acquired.get(sim=wildcards.run).output[0]
    src = grid_source(wildcards)
    folder = "snapdir" if src.part_type is not None else "groups"
    return sorted(glob.glob(f"{src.base}/{folder}_{src.snapshot:03d}/*.hdf5"))


def grid_per_chunk(wildcards):
    """Objects in the largest input chunk, for mem_mb: twice the mean particles per snapshot file
    (TNG splits each type roughly evenly), or the whole subhalo catalogue; 0 before acquisition."""
    src = grid_source(wildcards)
    try:
        if src.part_type is None:
            h = tng.groupcat_header(src.base, src.snapshot)
            return int(h.get("Nsubgroups_Total", h.get("Nsubhalos_Total", 0)))
        h = tng.snapshot_header(src.base, src.snapshot)
        return 2 * tng.total_particles(h, src.part_type) / int(h["NumFilesPerSnapshot"])
    except tng.CorruptChunkError:
        return 0


def grid_objects(wildcards):
    """Objects deposited into one field (particles or subhalos; 0 before acquisition), for runtime."""
    src = grid_source(wildcards)
    try:
        if src.part_type is None:
            return grid_per_chunk(wildcards)
        return tng.total_particles(tng.snapshot_header(src.base, src.snapshot), src.part_type)
    except tng.CorruptChunkError:
        return 0


def grid_resources(step, thickness):
    """mem_mb (growing with each retry) and runtime [min] of one grid job, from dm2gal.grid."""
    n = GRID["n_grid"]
    objects = grid_objects if step in ("box", "gather") else grid_per_chunk
    return dict(
        mem_mb=lambda wildcards, attempt: attempt * memory_mb(step, n, thickness, grid_per_chunk(wildcards)),
        runtime=lambda wildcards: runtime_min(step, n, thickness, objects(wildcards)),
    )


if GRID_METHOD == "box":

    rule grid_box:
        input:
            grid_run_input,
        output:
            directory(results("fields", "{run}", "{quantity}.zarr")),
        params:
            source=lambda w: asdict(grid_source(w)),
            n_grid=GRID["n_grid"],
            chunk=GRID_CHUNK,
        log:
            logs("grid_box", "{run}_{quantity}"),
        benchmark:
            results("benchmarks", "grid_box", "{run}_{quantity}.tsv")
        threads: 1
        conda:
            "../envs/sim.yaml"
        resources:
            **grid_resources("box", GRID["n_grid"]),
        script:
            "../scripts/grid_box.py"

else:
    GRID_PLAN = SlabPlan.from_config(GRID["n_grid"], GRID["slab_thickness"], GRID["chunk"])

    def grid_n_chunks(wildcards):
        """Input chunks of a field: snapshot files (from the manifest for the pair), or 1 for a catalogue."""
        src = grid_source(wildcards)
        if src.part_type is None:
            return 1
        if wildcards.run in tng.SIMS:
            with open(checkpoints.acquired.get(sim=wildcards.run).output[0]) as f:
                return len(json.load(f)["snapshot_chunks"])
        return src.n_chunks()

    def grid_buckets(wildcards):
        return expand(f"{GRID_WORK}/scatter_{{chunk}}.h5", run=wildcards.run, quantity=wildcards.quantity,
                      chunk=range(grid_n_chunks(wildcards)))

    rule grid_scatter:
        input:
            grid_run_input,
        output:
            temp(f"{GRID_WORK}/scatter_{{chunk}}.h5"),
        wildcard_constraints:
            chunk=r"\d+",
        params:
            source=lambda w: asdict(grid_source(w)),
            plan=asdict(GRID_PLAN),
        log:
            logs("grid_scatter", "{run}_{quantity}_{chunk}"),
        threads: 1
        conda:
            "../envs/sim.yaml"
        resources:
            **grid_resources("scatter", GRID_PLAN.thickness),
        script:
            "../scripts/grid_scatter.py"

    rule grid_gather:
        input:
            grid_buckets,
        output:
            temp(directory(f"{GRID_WORK}/slab_{{slab}}.zarr")),
        wildcard_constraints:
            slab=r"\d+",
        params:
            plan=asdict(GRID_PLAN),
        log:
            logs("grid_gather", "{run}_{quantity}_{slab}"),
        benchmark:
            results("benchmarks", "grid_gather", "{run}_{quantity}_{slab}.tsv")
        threads: 1
        conda:
            "../envs/sim.yaml"
        resources:
            **grid_resources("gather", GRID_PLAN.thickness),
        script:
            "../scripts/grid_gather.py"

    rule grid_assemble:
        input:
            expand(f"{GRID_WORK}/slab_{{slab}}.zarr", slab=range(GRID_PLAN.n_slabs), allow_missing=True),
        output:
            directory(results("fields", "{run}", "{quantity}.zarr")),
        params:
            source=lambda w: asdict(grid_source(w)),
            plan=asdict(GRID_PLAN),
        log:
            logs("grid_assemble", "{run}_{quantity}"),
        threads: 1
        conda:
            "../envs/sim.yaml"
        resources:
            mem_mb=lambda wildcards, attempt: attempt * memory_mb("assemble", GRID["n_grid"], GRID_PLAN.thickness, 0),
            runtime=30,
        script:
            "../scripts/grid_assemble.py"


rule grid:
    """All fields of the grid stage (`snakemake grid`)."""
    input:
        GRID_FIELDS,
    localrule: True
