# The figures stage (see docs/pipeline.md, docs/scores.md): the paper's Figure 1, one
# figure per statistic with ratio-to-truth panels and bands over HOD draws and held-out
# universes ({results}/figures/*.png|pdf, in the Snakemake report), {results}/metrics.json
# and the verdict table {results}/verdicts.html (in the report); the training curves of the
# sweep, and the summary tables of the split, the occupancy and the selection
# ({results}/tables/*.html) in the report.

STATS_LAYOUT = [[u, m] for u, files in stats_files().items() for m in files]
"""[universe, model] of every stats file, in the order of STATS_INPUTS (the scripts rebuild
the {universe: {model: path}} structure of stats_files() from the two)."""
STATS_INPUTS = [p for files in stats_files().values() for p in files.values()]
METRICS_CFG = {"k_range": config["stats"]["k_range"], "k_split": config["stats"]["k_split"],
               "r_at_k": config["stats"]["r_at_k"],
               "pdf": {key: config["stats"]["pdf"][key] for key in ("metric_log10_mass_min", "metric_min_voxels")}}
"""The stats keys that change metrics.json (the bins scored)."""


rule figures:
    input:
        stats=STATS_INPUTS,
        cubes=results("split", "cubes.json"),
        hydro=results("fields", "hydro", "stellar_mass.zarr"),
        dm2gal=STATS_FIELDS["dm2gal"],
        hod=STATS_FIELDS["hod"],
        dm=results("fields", "dark", "dm_mass.zarr"),
        subhalos=results("fields", "dark", "subhalo_mass.zarr"),
    output:
        **{f"{name}_png": figure_png(name) for name in FIGURES},
        **{f"{name}_pdf": results("figures", f"{name}.pdf") for name in FIGURES},
    params:
        layout=STATS_LAYOUT,
        stats_cfg=METRICS_CFG,
        fig_cfg=config["figures"],
    resources:
        mem_mb=4000,
        runtime=30,
    log:
        logs("figures"),
    benchmark:
        results("benchmarks", "figures.tsv")
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/figures.py"


rule metrics:
    input:
        stats=STATS_INPUTS,
        **occupancy_input(),
    output:
        metrics=report(
            results("metrics.json"),
            caption="../workflow/report/metrics.rst",
            category="Metrics",
            labels={"figure": "metrics.json", "format": "JSON"},
        ),
        verdicts=report(
            results("verdicts.html"),
            caption="../workflow/report/verdicts.rst",
            category="Metrics",
            labels={"figure": "verdicts", "format": "HTML"},
        ),
    params:
        layout=STATS_LAYOUT,
        cfg=METRICS_CFG,
    resources:
        mem_mb=1000,
        runtime=10,
    log:
        logs("metrics"),
    benchmark:
        results("benchmarks", "metrics.tsv")
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/metrics.py"


# The files a reviewer opens first, as tables in the report (dm2gal.tables.TABLES).
for _table, _source in SUMMARY_TABLES.items():

    rule:
        name:
            f"table_{_table}"
        input:
            _source,
        output:
            report(
                results("tables", f"{_table}.html"),
                caption=f"../workflow/report/table_{_table}.rst",
                category="Summary tables",
                labels={"table": str(Path(_source).relative_to(RESULTS_DIR)), "format": "HTML"},
            ),
        params:
            table=_table,
        resources:
            mem_mb=500,
            runtime=5,
        log:
            logs(f"table_{_table}"),
        benchmark:
            results("benchmarks", f"table_{_table}.tsv")
        conda:
            "../envs/stats.yaml"
        script:
            "../scripts/summary_table.py"


FINAL_TARGETS.extend(results("figures", f"{name}.{ext}") for name in FIGURES for ext in ("png", "pdf"))
FINAL_TARGETS.extend(results("tables", f"{table}.html") for table in SUMMARY_TABLES)
FINAL_TARGETS.extend([results("metrics.json"), results("verdicts.html")])
