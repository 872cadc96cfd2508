# The train stage (see docs/pipeline.md): one training job per hyper-parameter point
# (train.learning_rate x train.weight_decay x train.capacity, wildcard {point}), each
# asking SLURM for train.gpus_per_job GPUs; then `select` keeps the point whose
# honest validation painting best matches the true stellar-mass power spectrum.
import itertools

TRAIN = config["train"]
TRAIN_POINTS = {
    f"lr{lr:g}_wd{wd:g}_cap{cap:g}": dict(learning_rate=lr, weight_decay=wd, capacity=cap)
    for lr, wd, cap in itertools.product(TRAIN["learning_rate"], TRAIN["weight_decay"], TRAIN["capacity"])
}
TRAIN_PARAMS = {
    k: v for k, v in TRAIN.items() if k not in ("learning_rate", "weight_decay", "capacity", "threads", "mem_mb", "runtime",
                                     "checkpoint_minutes")
}
"""What a training job computes with: not the sweep's other points, nor what SLURM is asked for
or how often it checkpoints (so adding a point or a longer runtime does not retrain the points
already trained)."""
TRAIN_REQUEUE_SECONDS = 300
"""SLURM sends SIGUSR1 this long before a training job's time limit: Lightning writes a checkpoint
into the job's resume folder and requeues the job, which resumes from it (docs/training.md)."""


rule train:
    input:
        dm=results("fields", "dark", "dm_mass.zarr"),
        subhalo=results("fields", "dark", "subhalo_mass.zarr"),
        stellar=results("fields", "hydro", "stellar_mass.zarr"),
        cubes=results("split", "cubes.json"),
        split=results("split", "train.npz"),
        galaxies=results("split", "galaxies.npz"),
        **occupancy_input(),
        dark=dark_catalogue_input("test"),  # groups the calibration voxels into galaxies
        extra_dm=training_universe_fields("dark", "dm_mass"),
        extra_subhalo=training_universe_fields("dark", "subhalo_mass"),
        **train_floor_input(),
    output:
        ckpt=results("train", "{point}", "best.ckpt"),
        history=results("train", "{point}", "history.csv"),
    wildcard_constraints:
        point="|".join(TRAIN_POINTS),
    params:
        point=lambda w: TRAIN_POINTS[w.point],
        model=config["model"],
        train=TRAIN_PARAMS,
        weights={key: config["split"][key] for key in ("weight_bins", "weight_power")},  # the galaxy painter's draws
        selection={key: config["stats"][key] for key in ("mas", "k_range")},
        seed=stage_seed("train"),
        dark_base=sim_base("dark"),
        snapshot=SNAPSHOT,
    log:
        logs("train", "{point}"),
    benchmark:
        results("benchmarks", "train", "{point}.tsv")
    threads: TRAIN["threads"]
    priority: 2  # the longest jobs: before the held-out universes' synthesis and statistics
    resources:
        gpu=TRAIN["gpus_per_job"],
        mem_mb=TRAIN["mem_mb"],
        runtime=TRAIN["runtime"],
        slurm_extra=f"'--signal=USR1@{TRAIN_REQUEUE_SECONDS}'",
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/train.py"


rule select:
    input:
        ckpts=expand(results("train", "{point}", "best.ckpt"), point=TRAIN_POINTS),
        histories=expand(results("train", "{point}", "history.csv"), point=TRAIN_POINTS),
    output:
        ckpt=results("select", "best.ckpt"),
        summary=results("select", "summary.tsv"),
    params:
        points=list(TRAIN_POINTS),
    log:
        logs("select"),
    benchmark:
        results("benchmarks", "select.tsv")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/select.py"


FINAL_TARGETS.extend(rules.select.output)


# The sweep's training curves (a report figure): they read select's outputs, so they live here.
rule training_curves:
    """Loss, learning rate and selection statistic per epoch of every sweep point (dm2gal.figures)."""
    input:
        histories=rules.select.input.histories,
        summary=rules.select.output.summary,
    output:
        png=report(
            results("figures", "training_curves.png"),
            caption="../workflow/report/training_curves.rst",
            category="Training",
            labels={"figure": "training curves", "format": "PNG"},
        ),
        pdf=results("figures", "training_curves.pdf"),
    params:
        dpi=config["figures"]["dpi"],
    resources:
        mem_mb=1000,
        runtime=10,
    log:
        logs("training_curves"),
    benchmark:
        results("benchmarks", "training_curves.tsv")
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/training_curves.py"


FINAL_TARGETS.extend(results("figures", f"training_curves.{ext}") for ext in ("png", "pdf"))
