# The stats stage (see docs/pipeline.md): P(k), B(k1, k2, theta), the voxel
# stellar-mass PDF, r(k) and T(k) of the test cube, for the hydro truth and
# every model, with Pylians' Pk_library: {results}/stats/{model}.npz.

STATS_FIELDS = {
    "dm2gal": results("paint", "test", "stellar_mass.zarr"),
    "dm2gal_oracle": results("paint", "test_oracle", "stellar_mass.zarr"),
    "hod": results("hod", "stellar_mass.zarr"),
}
"""The test-cube stellar-mass field of each model (the truth is cut from the hydro field)."""

STATS_CFG = {key: value for key, value in config["stats"].items() if key != "threads"}
"""What the numbers depend on (so that changing the thread count reruns nothing)."""


rule stats:
    input:
        unpack(stats_field),
        hydro=results("fields", "hydro", "stellar_mass.zarr"),
        cubes=results("split", "cubes.json"),
    output:
        results("stats", "{model}.npz"),
    wildcard_constraints:
        model="truth|dm2gal|dm2gal_oracle|hod",
    params:
        cfg=STATS_CFG,
    threads: config["stats"]["threads"]
    resources:
        mem_mb=stats_mem_mb,
        runtime=60,
    log:
        logs("stats", "{model}"),
    benchmark:
        results("benchmarks", "stats", "{model}.tsv")
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/stats.py"
