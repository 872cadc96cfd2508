# The stats stage (see docs/pipeline.md, docs/evaluation.md): P(k), B(k1, k2, theta),
# the voxel stellar-mass PDF, r(k) and T(k) of the hydro truth and of every model,
# with Pylians' Pk_library: {results}/stats/{universe}/{model}.npz. Universe "test"
# is the training universe's test cube; a held-out universe is measured over its
# whole box. The HOD's file stacks its realisations (dm2gal.stats.stack_realisations).
# Its input functions (stats_inputs, stats_models, stats_files) are in rules/common.smk.

STATS_CFG = {key: value for key, value in config["stats"].items() if key not in ("threads", "k_range", "r_at_k")}
STATS_CFG["pdf"] = {k: v for k, v in config["stats"]["pdf"].items() if not k.startswith("metric_")}
"""What the statistics depend on: not the thread count, nor what the metrics rule scores them
over (k_range, r_at_k, the PDF metric's bins), so changing those recomputes no statistic."""


rule stats:
    input:
        unpack(stats_inputs),
    output:
        results("stats", "{universe}", "{model}.npz"),
    wildcard_constraints:
        universe="|".join(["test", *EVAL_UNIVERSES]),
    params:
        cfg=STATS_CFG,
    threads: config["stats"]["threads"]
    resources:
        mem_mb=stats_mem_mb,
        runtime=60,
    log:
        logs("stats", "{universe}_{model}"),
    benchmark:
        results("benchmarks", "stats", "{universe}_{model}.tsv")
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/stats.py"


FINAL_TARGETS.extend(path for files in stats_files().values() for path in files.values())
