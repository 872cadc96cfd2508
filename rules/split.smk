# The split stage (see docs/pipeline.md): the validation and test cubes with a report
# of each, the training voxels (stellar mass above a threshold outside both cubes),
# their sampling weights and the input normalisation statistics; and the galaxy
# painter's samples (every gravity-only subhalo, its query and matched hydro galaxy,
# dm2gal.galaxy_samples), assigned to the same cubes and calibration blocks.

SPLIT_PARAMS = {key: value for key, value in config["split"].items() if key not in SPLIT_REPORT_KEYS}
"""What the split computes with: not split.halo_mass_field, which only labels the cubes' "most
massive halo" report; the script reads it from the config, so changing it retrains nothing."""


rule split:
    input:
        dm=results("fields", "dark", "dm_mass.zarr"),
        subhalo=results("fields", "dark", "subhalo_mass.zarr"),
        stellar=results("fields", "hydro", "stellar_mass.zarr"),
        dark=manifest("dark"),
        hydro=manifest("hydro"),
        extra_dm=training_universe_fields("dark", "dm_mass"),
        extra_subhalo=training_universe_fields("dark", "subhalo_mass"),
        extra_stellar=training_universe_fields("hydro", "stellar_mass"),
        extra_catalogues=[f for u in TRAINING_UNIVERSES for sim in tng.SIMS for f in acquired_input(u, sim)],
    output:
        cubes=results("split", "cubes.json"),
        train=results("split", "train.npz"),
        galaxies=results("split", "galaxies.npz"),
    params:
        split=SPLIT_PARAMS,
        dark_base=sim_base("dark"),
        hydro_base=sim_base("hydro"),
        extra_runs=[(universe_base(u, "dark"), universe_base(u, "hydro"), universe_snapshot(u))
                    for u in TRAINING_UNIVERSES],
        snapshot=SNAPSHOT,
        seed=stage_seed("split"),
    log:
        logs("split"),
    benchmark:
        results("benchmarks", "split.tsv")
    threads: 1
    priority: 2  # on the way to training, the longest jobs
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../envs/sim.yaml"
    script:
        "../scripts/split.py"


FINAL_TARGETS.extend(rules.split.output)
