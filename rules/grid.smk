# The grid stage (see docs/pipeline.md): CIC mass fields [Msun/h per voxel] on an
# n_grid^3 grid, as chunked Zarr under {results}/fields/{run}/{quantity}.zarr.
# Small grids (method box, or auto with n_grid <= box_max_n_grid): one grid_box job
# per field holds the whole grid and calls Pylians' MAS_library.MA once per chunk.
# Large grids (slabs): grid_scatter (one job per input chunk: a snapshot file, or
# the whole subhalo catalogue) -> grid_gather (one job per x-slab) -> grid_assemble
# (links the slabs' Zarr chunks into the field, which appears atomically).
# mem_mb comes from dm2gal.grid.memory_mb (slab size, particles per chunk file) and
# grows with each retry; runtime from dm2gal.grid.runtime_min.
# Its input functions are in rules/common.smk.


GRID_FIELDS = [results("fields", "dark", f"{q}.zarr") for q in ("dm_mass", "subhalo_mass")]
GRID_FIELDS.append(results("fields", "hydro", "stellar_mass.zarr"))
if SYNTHETIC:  # the mini-universe's noise-free mean M* (the ideal painter; the lead's MSE floor)
    GRID_FIELDS.append(results("fields", "hydro", "stellar_mass_ideal.zarr"))
GRID_FIELDS += [results("fields", r["name"], f"{q}.zarr") for r in config["extra_runs"]
                for q in ("dm_mass", "subhalo_mass")]
FINAL_TARGETS.extend(GRID_FIELDS)


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
        priority: 1  # seconds each, and the training universe's fields gate training
        conda:
            "../envs/sim.yaml"
        resources:
            **grid_resources("box", GRID["n_grid"]),
        script:
            "../scripts/grid_box.py"

else:
    GRID_PLAN = SlabPlan.from_config(GRID["n_grid"], GRID["slab_thickness"], GRID["chunk"])

    rule grid_scatter:
        input:
            grid_run_input,
        output:
            temp(f"{GRID_WORK}/scatter_{{chunk}}.h5"),
        params:
            source=lambda w: asdict(grid_source(w)),
            plan=asdict(GRID_PLAN),
        log:
            logs("grid_scatter", "{run}_{quantity}_{chunk}"),
        benchmark:
            results("benchmarks", "grid_scatter", "{run}_{quantity}_{chunk}.tsv")
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
        benchmark:
            results("benchmarks", "grid_assemble", "{run}_{quantity}.tsv")
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
