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


def stats_models():
    """The models compared: truth, dm2gal, the oracle painting when paint makes it, HOD."""
    oracle = ["dm2gal_oracle"] if config["paint"]["oracle"] else []
    return ["truth", "dm2gal", *oracle, "hod"]


def stats_field(wildcards):
    """The model's test-cube field as a named input (none for the truth)."""
    return {"field": STATS_FIELDS[wildcards.model]} if wildcards.model in STATS_FIELDS else {}


def stats_mem_mb(wildcards, input):
    """About 16 float32 copies of the test cube (fields, overdensities, FFTs, bispectrum shells)."""
    from dm2gal.paint import read_cube

    try:
        size = read_cube(input.cubes, "test")[1]
    except FileNotFoundError:  # before split has run
        return 2000
    return max(1000, 16 * 4 * size**3 // 2**20 + 500)


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
