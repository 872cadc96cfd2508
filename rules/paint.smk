# The paint stage (see docs/pipeline.md and docs/painting.md): the selected model
# paints the test cube of the gravity-only run ("test"), and every extra gravity-only
# run whole, from gravity-only inputs alone; where galaxies go is decided by the
# occupancy threshold calibrated on the training region (paint_occupancy). With
# paint.oracle, paint_oracle also paints the paper's "oracle positions" diagnostic;
# paint_realisations draws paint.realisations stellar-mass fields from the predicted
# scatter (one draw per gravity-only subhalo) for the test cube and every held-out universe.

from dm2gal.model import configured, total_stride
from dm2gal.paint_plan import SlabPlan as PaintSlabPlan

PAINT = config["paint"]
PAINT_EXTRA = {r["name"]: (r["base"], r.get("snapshot", SNAPSHOT)) for r in config["extra_runs"]}
PAINT_GPU = 1 if PAINT["device"] == "cuda" or (
    PAINT["device"] == "auto" and config["train"]["accelerator"] != "cpu" and config["train"]["gpus_per_job"] > 0) else 0
"""A GPU for every painting job when paint.device is cuda, or auto on a cluster that trains on GPUs
(auto then finds the GPU on the node; the login node that plans the jobs has none to find)."""
PAINT_SLABS = PaintSlabPlan.for_region(config["grid"]["n_grid"], PAINT["slabs"], PAINT["tile"],
                                       total_stride(configured(config["model"])))
"""The x-slab jobs of a whole extra run (paint.slabs > 1: paint_slab, then paint_assemble)."""
PAINT_SLABBED = list(PAINT_EXTRA) if PAINT_SLABS.n_slabs > 1 else []
PAINT_MEM_MB = int(PAINT["max_memory_gb"] * 1024) + 4000
"""The in-memory input region (at most paint.max_memory_gb) plus working tiles and catalogues."""
PAINT_COMMON = dict(
    model=config["model"],  # the architecture asked for: a selected model with another patch is refused
    method=PAINT["method"],
    galaxy_calibration=PAINT["galaxy_calibration"],
    deposit=PAINT["deposit"],
)
"""What a painting depends on. How it is computed (paint.tile, batch_size, device,
max_memory_gb: the same field to float rounding) is read by the scripts from the config
(`painting_settings`), so changing it repaints nothing."""


rule paint_occupancy:
    input:
        stellar=results("fields", "hydro", "stellar_mass.zarr"),
        subhalo=results("fields", "dark", "subhalo_mass.zarr"),
        cubes=results("split", "cubes.json"),
    output:
        OCCUPANCY,
    params:
        criterion=PAINT["occupancy"]["criterion"],
    log:
        logs("paint_occupancy"),
    benchmark:
        results("benchmarks", "paint_occupancy.tsv")
    threads: 1
    priority: 2  # training waits for the threshold
    conda:
        "../envs/torch.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    script:
        "../scripts/paint_occupancy.py"


rule paint:
    input:
        # the gravity-only fields painted: the dark run's for the test cube, else the extra run's
        unpack(lambda w: {q: results("fields", "dark" if w.painting == "test" else w.painting, f"{q}.zarr")
                          for q in ("dm_mass", "subhalo_mass")}),
        model=results("select", "best.ckpt"),
        reference_dm=results("fields", "dark", "dm_mass.zarr"),
        **occupancy_input(),
        cubes=results("split", "cubes.json"),
    output:
        field=directory(results("paint", "{painting}", "stellar_mass.zarr")),
        scatter=directory(results("paint", "{painting}", "stellar_mass_scatter.zarr")),
        catalogue=results("paint", "{painting}", "catalogue.hdf5"),
    wildcard_constraints:
        painting="|".join(["test", *(r for r in PAINT_EXTRA if r not in PAINT_SLABBED)]),
    params:
        base=lambda w: PAINT_EXTRA[w.painting][0] if w.painting in PAINT_EXTRA else sim_base("dark"),
        snapshot=lambda w: PAINT_EXTRA[w.painting][1] if w.painting in PAINT_EXTRA else SNAPSHOT,
        source=lambda w: w.painting if w.painting in PAINT_EXTRA else "dark",
        whole_box=lambda w: w.painting in PAINT_EXTRA,
        **PAINT_COMMON,
    log:
        logs("paint", "{painting}"),
    benchmark:
        results("benchmarks", "paint", "{painting}.tsv")
    threads: 2
    conda:
        "../envs/torch.yaml"
    resources:
        mem_mb=PAINT_MEM_MB,
        runtime=240,
        gpu=PAINT_GPU,
    script:
        "../scripts/paint.py"


rule paint_slab:
    input:
        dm_mass=results("fields", "{painting}", "dm_mass.zarr"),
        subhalo_mass=results("fields", "{painting}", "subhalo_mass.zarr"),
        model=results("select", "best.ckpt"),
        reference_dm=results("fields", "dark", "dm_mass.zarr"),
        **occupancy_input(),
        cubes=results("split", "cubes.json"),
    output:
        field=temp(directory(results("paint", ".work", "{painting}", "slab_{slab}.zarr"))),
        scatter=temp(directory(results("paint", ".work", "{painting}", "scatter_{slab}.zarr"))),
    wildcard_constraints:
        painting="|".join(PAINT_SLABBED) or "^$",
        slab=r"\d+",
    params:
        source=lambda w: w.painting,
        plan=asdict(PAINT_SLABS),
        **PAINT_COMMON,
    log:
        logs("paint_slab", "{painting}_{slab}"),
    benchmark:
        results("benchmarks", "paint_slab", "{painting}_{slab}.tsv")
    threads: 2
    conda:
        "../envs/torch.yaml"
    resources:
        mem_mb=PAINT_MEM_MB,
        runtime=240,
        gpu=PAINT_GPU,
    script:
        "../scripts/paint_slab.py"


rule paint_assemble:
    input:
        slabs=expand(results("paint", ".work", "{{painting}}", "slab_{slab}.zarr"), slab=range(PAINT_SLABS.n_slabs)),
        scatters=expand(results("paint", ".work", "{{painting}}", "scatter_{slab}.zarr"),
                        slab=range(PAINT_SLABS.n_slabs)),
        dm_mass=results("fields", "{painting}", "dm_mass.zarr"),
        subhalo_mass=results("fields", "{painting}", "subhalo_mass.zarr"),
        model=results("select", "best.ckpt"),
        reference_dm=results("fields", "dark", "dm_mass.zarr"),
        **occupancy_input(),
        cubes=results("split", "cubes.json"),
    output:
        field=directory(results("paint", "{painting}", "stellar_mass.zarr")),
        scatter=directory(results("paint", "{painting}", "stellar_mass_scatter.zarr")),
        catalogue=results("paint", "{painting}", "catalogue.hdf5"),
    wildcard_constraints:
        painting="|".join(PAINT_SLABBED) or "^$",
    params:
        base=lambda w: PAINT_EXTRA[w.painting][0],
        snapshot=lambda w: PAINT_EXTRA[w.painting][1],
        source=lambda w: w.painting,
        plan=asdict(PAINT_SLABS),
        **PAINT_COMMON,
    log:
        logs("paint_assemble", "{painting}"),
    benchmark:
        results("benchmarks", "paint_assemble", "{painting}.tsv")
    threads: 1
    conda:
        "../envs/torch.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    script:
        "../scripts/paint_assemble.py"


rule paint_oracle:
    input:
        dm_mass=results("fields", "dark", "dm_mass.zarr"),
        subhalo_mass=results("fields", "dark", "subhalo_mass.zarr"),
        truth=results("fields", "hydro", "stellar_mass.zarr"),
        model=results("select", "best.ckpt"),
        cubes=results("split", "cubes.json"),
    output:
        field=directory(results("paint", "test_oracle", "stellar_mass.zarr")),
    params:
        base=sim_base("dark"),
        snapshot=SNAPSHOT,
        **PAINT_COMMON,
    log:
        logs("paint_oracle"),
    benchmark:
        results("benchmarks", "paint", "test_oracle.tsv")
    threads: 2
    conda:
        "../envs/torch.yaml"
    resources:
        mem_mb=PAINT_MEM_MB,
        runtime=240,
        gpu=PAINT_GPU,
    script:
        "../scripts/paint_oracle.py"


rule paint_realisations:
    input:
        field=results("paint", "{painted}", "stellar_mass.zarr"),
        scatter=results("paint", "{painted}", "stellar_mass_scatter.zarr"),
        catalogue=results("paint", "{painted}", "catalogue.hdf5"),  # the galaxy painter's galaxies
        dark=lambda w: dark_catalogue_input(painted_universe(w.painted)),
    output:
        [directory(results("paint", "{painted}", f"realisation_{i}.zarr")) for i in range(PAINT["realisations"])],
    wildcard_constraints:
        painted="|".join(painted_dir(u) for u in ["test", *EVAL_UNIVERSES]),
    params:
        base=lambda w: universe_base(painted_universe(w.painted), "dark"),
        snapshot=lambda w: universe_snapshot(painted_universe(w.painted)),
        seed=lambda w: stage_seed("paint_realisations", painted_universe(w.painted)),
    log:
        logs("paint_realisations", "{painted}"),
    benchmark:
        results("benchmarks", "paint_realisations", "{painted}.tsv")
    threads: 1
    conda:
        "../envs/sim.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/paint_realisations.py"


FINAL_TARGETS.extend(results("paint", p, f) for p in ["test", *PAINT_EXTRA]
                     for f in ("stellar_mass.zarr", "catalogue.hdf5"))
if VOXEL_PAINTER:
    FINAL_TARGETS.append(OCCUPANCY)
FINAL_TARGETS.extend(dm2gal_realisation_fields("test"))
if PAINT["oracle"]:
    FINAL_TARGETS.append(results("paint", "test_oracle", "stellar_mass.zarr"))
