# dm2gal: paint galaxy stellar masses onto gravity-only simulations.
# `snakemake --cores 2 all` runs the built-in mini-universe;
# `snakemake --profile slurm all --configfile configs/tng100.yaml` runs the paper.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "rules/common.smk"
include: "rules/acquire.smk"
include: "rules/grid.smk"
include: "rules/split.smk"
include: "rules/train.smk"
include: "rules/paint.smk"
include: "rules/hod.smk"
include: "rules/stats.smk"
include: "rules/figures.smk"
include: "rules/evaluate.smk"


rule all:
    input:
        FINAL_TARGETS,
    default_target: True
