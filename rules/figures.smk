# The figures stage (see docs/pipeline.md): the paper's Figure 1, one figure per
# statistic with a ratio-to-truth panel ({results}/figures/*.png|pdf, in the
# Snakemake report), and {results}/metrics.json.

FIGURES = {
    "figure1": "Figure 1",
    "pk": "Power spectrum",
    "bk": "Bispectrum",
    "pdf": "Stellar-mass PDF",
    "r": "Cross-correlation and transfer function",
}
"""Figure file stem -> report category."""


rule figures:
    input:
        stats=list(stats_files()["test"].values()),
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
        models=list(stats_files()["test"]),
        stats_cfg=STATS_CFG,
        fig_cfg=config["figures"],
    resources:
        mem_mb=4000,
        runtime=30,
    log:
        logs("figures"),
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/figures.py"


rule metrics:
    input:
        stats=list(stats_files()["test"].values()),
        occupancy=results("paint", "test", "occupancy.json"),
    output:
        report(
            results("metrics.json"),
            caption="../workflow/report/metrics.rst",
            category="Metrics",
            labels={"figure": "metrics.json", "format": "JSON"},
        ),
    params:
        models=list(stats_files()["test"]),
        stats_cfg=STATS_CFG,
    resources:
        mem_mb=1000,
        runtime=10,
    log:
        logs("metrics"),
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/metrics.py"


FINAL_TARGETS.extend(results("figures", f"{name}.{ext}") for name in FIGURES for ext in ("png", "pdf"))
FINAL_TARGETS.append(results("metrics.json"))
