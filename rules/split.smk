# The split stage (see docs/pipeline.md): the validation and test cubes with a report
# of each, the training voxels (stellar mass above a threshold outside both cubes),
# their sampling weights and the input normalisation statistics.


rule split:
    input:
        dm=results("fields", "dark", "dm_mass.zarr"),
        subhalo=results("fields", "dark", "subhalo_mass.zarr"),
        stellar=results("fields", "hydro", "stellar_mass.zarr"),
        dark=manifest("dark"),
        hydro=manifest("hydro"),
    output:
        cubes=results("split", "cubes.json"),
        train=results("split", "train.npz"),
    params:
        split=config["split"],
        dark_base=sim_base("dark"),
        hydro_base=sim_base("hydro"),
        snapshot=SNAPSHOT,
        seed=config["seed"],
    log:
        logs("split"),
    benchmark:
        results("benchmarks", "split.tsv")
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../envs/sim.yaml"
    script:
        "../scripts/split.py"


FINAL_TARGETS.extend(rules.split.output)
