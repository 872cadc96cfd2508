"""Rule train: one hyper-parameter point (dm2gal.train.fit) of the voxel or the galaxy painter (train.target),
resumable from {output folder}/resume/."""
import sys
from pathlib import Path

import torch

from dm2gal.logs import log_to_file
from dm2gal.model import head_outputs, model_config
from dm2gal.galaxy_samples import QUERIES
from dm2gal.train import fit, load_galaxy_training_data, load_training_data

log_to_file(snakemake.log[0])
sys.stdout = sys.stderr  # Lightning's progress bar writes to stdout: send it to the log too
torch.set_num_threads(snakemake.threads)
cfg, point = snakemake.params.train, snakemake.params.point
model = {k: v for k, v in snakemake.params.model.items() if k != "preset"}
extra = list(zip(snakemake.input.extra_dm, snakemake.input.extra_subhalo))
if cfg["target"] == "galaxies":
    data = load_galaxy_training_data(snakemake.input.dm, snakemake.input.subhalo, snakemake.input.stellar,
                                     snakemake.input.split, snakemake.input.galaxies, snakemake.input.cubes,
                                     cfg["query"], snakemake.params.weights["weight_bins"],
                                     snakemake.params.weights["weight_power"], extra)
else:
    data = load_training_data(snakemake.input.dm, snakemake.input.subhalo, snakemake.input.stellar,
                              snakemake.input.split, snakemake.input.cubes, snakemake.input.occupancy,
                              snakemake.input.get("ideal"), (snakemake.params.dark_base, snakemake.params.snapshot),
                              extra)
queries = QUERIES[cfg["query"]] if cfg["target"] == "galaxies" else 0
fit(data, model_config(snakemake.params.model["preset"], capacity=point["capacity"],
                       outputs=head_outputs(cfg["objective"]), query_channels=queries, **model),
    learning_rate=point["learning_rate"], weight_decay=point["weight_decay"], batch_size=cfg["batch_size"],
    steps_per_epoch=cfg["steps_per_epoch"], max_epochs=cfg["max_epochs"], max_minutes=cfg["max_minutes"],
    objective=cfg["objective"], beta_nll=cfg["beta_nll"], schedule=cfg["schedule"], ema_decay=cfg["ema_decay"],
    selection_window=cfg["selection_window"], selection_statistic=cfg["selection_statistic"],
    calibration_bin_voxels=cfg["calibration_bin_voxels"],
    selection=snakemake.params.selection,
    patience=cfg["patience"], val_batch_size=cfg["val_batch_size"], seed=snakemake.params.seed,
    accelerator=cfg["accelerator"], devices=max(1, cfg["gpus_per_job"]) if cfg["accelerator"] != "cpu" else 1,
    ckpt_path=snakemake.output.ckpt, history_path=snakemake.output.history, compile=cfg["compile"],
    resume_dir=Path(snakemake.output.ckpt).parent / "resume",
    checkpoint_minutes=snakemake.config["train"]["checkpoint_minutes"],
    extra_hparams={"capacity": point["capacity"], "target": cfg["target"], "query": cfg["query"] if queries else None})
