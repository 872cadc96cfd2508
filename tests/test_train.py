"""Training: the selection error, learning on a toy universe, checkpoints, selection, DDP."""

import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from dm2gal.inference import input_scale, load_model, predict
from dm2gal.model import PRESETS, model_config
from dm2gal.occupancy import run as calibrate_occupancy
from dm2gal.sampler import PatchSource
from dm2gal.select import select
from dm2gal.split import run_split
from dm2gal.train import HISTORY_COLUMNS, History, fit, load_training_data, paint_cube, pk_error
from toy_universe import write_toy

SPLIT_CFG = dict(units="box", validation=dict(start=[0.0, 0.0, 0.0], size=0.41),
                 test=dict(start=[0.5, 0.5, 0.5], size=0.41), min_stellar_mass=1e8, weight_bins=100,
                 weight_max_mass=10 ** 11.5, halo_mass_field="GroupMass")
SELECTION = dict(mas="CIC", k_range=[0.5, 6.0])


def test_pk_error_is_zero_for_a_rescaled_field_and_log4_for_doubled_contrast():
    rng = np.random.default_rng(0)
    delta = 0.2 * rng.standard_normal((24, 24, 24))
    delta -= delta.mean()
    truth = 1e9 * (1 + delta)
    assert pk_error(3.0 * truth, truth, 10.0, "CIC", [0.5, 6.0]) < 1e-6
    # delta -> 2 delta multiplies P(k) by 4 in every bin: the mean |log ratio| is log10(4).
    assert np.isclose(pk_error(1e9 * (1 + 2 * delta), truth, 10.0, "CIC", [0.5, 6.0]), np.log10(4.0), atol=1e-5)
    assert pk_error(np.zeros_like(truth), truth, 10.0, "CIC", [0.5, 6.0]) == np.inf
    with pytest.raises(ValueError, match="k_range"):
        pk_error(truth, truth, 10.0, "CIC", [50.0, 60.0])


def test_paint_cube_deposits_at_periodic_local_voxels():
    cube = paint_cube(np.array([[30, 0, 1], [30, 0, 1], [2, 3, 31]]), np.array([1e9, 1e9, 1e10]),
                      start=[29, 30, 28], size=6, n_grid=32)
    assert cube[1, 2, 5] == 2e9 and cube[5, 5, 3] == 1e10 and cube.sum() == 1.2e10
    with pytest.raises(ValueError, match="outside"):
        paint_cube(np.array([[10, 10, 10]]), np.array([1e9]), start=[0, 0, 0], size=6, n_grid=32)


def _toy_split(tmp, n=40, n_sub=1800):
    write_toy(tmp / "results", tmp / "data", n=n, n_sub=n_sub, seed=5)
    f = tmp / "results" / "fields"
    paths = [f / "dark/dm_mass.zarr", f / "dark/subhalo_mass.zarr", f / "hydro/stellar_mass.zarr"]
    split = [tmp / "results/split/train.npz", tmp / "results/split/cubes.json",
             tmp / "results/paint/test/occupancy.json"]
    run_split(*paths, tmp / "data/dark/output", tmp / "data/hydro/output", 99, SPLIT_CFG, split[1], split[0])
    calibrate_occupancy(paths[2], paths[1], split[1], split[2], "f1")
    return paths, split


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    paths, split = _toy_split(tmp)
    data = load_training_data(*paths, *split)
    torch.set_num_threads(1)
    runs = {}
    for name, lr, epochs, objective in (("a", 3e-3, 4, "unbiased"), ("b", 1e-5, 1, "paper")):
        out = tmp / "results" / "train" / name
        runs[name] = (str(out / "best.ckpt"), str(out / "history.csv"))
        res = fit(data, model_config("small", outputs=2 if objective == "unbiased" else 1), learning_rate=lr,
                  weight_decay=1e-5, batch_size=32, steps_per_epoch=30, max_epochs=epochs, seed=1,
                  objective=objective, selection=SELECTION, ckpt_path=runs[name][0], history_path=runs[name][1],
                  progress=False, extra_hparams={"capacity": 1.0})
        assert res["epochs"] == epochs and res["world_size"] == 1
    return tmp, data, runs


def test_training_beats_the_mean_predictor_and_keeps_the_best_selection_epoch(trained):
    tmp, data, runs = trained
    with open(runs["a"][1], newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(HISTORY_COLUMNS) and len(rows) == 4
    last = rows[-1]
    assert float(last["val_mse"]) < 0.5 * float(last["val_mse_mean_predictor"])
    pk = np.array([float(r["pk_error"]) for r in rows])
    # the selection statistic is the P(k) error averaged over the last selection_window = 3 epochs
    smoothed = [pk[max(0, i - 2):i + 1].mean() for i in range(len(pk))]
    assert np.allclose([float(r["selection"]) for r in rows], smoothed)
    # eligible once the window is full: epochs 0 and 1 are never kept
    best = 2 + int(np.argmin(smoothed[2:]))
    assert [int(r["best"]) for r in rows][best] == 1 and not any(int(r["best"]) for r in rows[:2])
    ckpt = torch.load(runs["a"][0], weights_only=True)
    assert ckpt["epoch"] == best and np.isclose(ckpt["metrics"]["selection"], smoothed[best])
    assert ckpt["hparams"]["learning_rate"] == 3e-3 and ckpt["hparams"]["capacity"] == 1.0
    assert ckpt["hparams"]["objective"] == "unbiased" and ckpt["model_config"]["outputs"] == 2
    # the cosine schedule fires: the learning rate falls every epoch
    lrs = [float(r["lr"]) for r in rows]
    assert all(b < a for a, b in zip(lrs, lrs[1:]))


def _epochs_through_history(history: History, scores: list[dict]) -> list[dict]:
    """Feed `history` one epoch end per {val_mse, pk_error}, with stand-ins for Lightning's trainer
    and module; the EMA weights of epoch e are one tensor holding e."""
    from types import SimpleNamespace

    for epoch, val in enumerate(scores):
        weights = {"w": torch.tensor(float(epoch))}
        module = SimpleNamespace(last_val=val, epoch_train_loss=lambda: 0.0,
                                 ema_net=SimpleNamespace(state_dict=lambda w=weights: w))
        trainer = SimpleNamespace(current_epoch=epoch, global_step=10 * epoch, is_global_zero=False,
                                  optimizers=[SimpleNamespace(param_groups=[{"lr": 1e-3}])])
        history.on_train_epoch_end(trainer, module)
    return history.rows


@pytest.mark.parametrize("statistic", ["pk_error", "val_mse"])
def test_the_kept_epoch_is_the_smallest_windowed_selection_statistic(statistic):
    # the two statistics disagree: pk_error is smallest early, val_mse falls to the end
    scores = [dict(val_mse=m, pk_error=p) for m, p in
              zip([0.30, 0.25, 0.22, 0.20, 0.19, 0.185], [0.09, 0.05, 0.04, 0.06, 0.08, 0.07])]
    history = History(window=2, statistic=statistic)
    rows = _epochs_through_history(history, scores)
    values = np.array([s[statistic] for s in scores])
    windowed = np.r_[values[0], (values[1:] + values[:-1]) / 2]
    assert np.allclose([r["selection"] for r in rows], windowed)
    best = 1 + int(np.argmin(windowed[1:]))  # epoch 0's window is not full
    assert best == {"pk_error": 2, "val_mse": 5}[statistic]
    assert history.best_row["epoch"] == best and float(history.best_state["w"]) == best


def test_a_run_shorter_than_the_selection_window_keeps_its_last_epoch(trained):
    tmp, data, runs = trained  # run b: one epoch, selection_window 3
    with open(runs["b"][1], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and int(rows[0]["best"]) == 1
    assert torch.load(runs["b"][0], weights_only=True)["epoch"] == 0


def test_training_is_reproducible(trained, tmp_path):
    tmp, data, runs = trained
    again = tmp_path / "again"
    fit(data, model_config("small", outputs=2), learning_rate=3e-3, weight_decay=1e-5, batch_size=32,
        steps_per_epoch=30, max_epochs=4, seed=1, selection=SELECTION, ckpt_path=again / "best.ckpt",
        history_path=again / "history.csv", progress=False, extra_hparams={"capacity": 1.0})
    with open(runs["a"][1], newline="") as f, open(again / "history.csv", newline="") as g:
        first, second = list(csv.DictReader(f)), list(csv.DictReader(g))
    drop = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in first] == \
        [{k: v for k, v in r.items() if k not in drop} for r in second]
    a, b = (torch.load(p, weights_only=True)["state_dict"] for p in (runs["a"][0], again / "best.ckpt"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_checkpoint_alone_reproduces_the_validation_painting(trained):
    tmp, data, runs = trained
    net, calibrated = load_model(runs["a"][0])
    norm = {**calibrated, "calibration": None}  # the history's numbers are the network's own
    ckpt = torch.load(runs["a"][0], weights_only=True)
    assert np.allclose(norm["input_mean"], data.normalisation["input_mean"])
    source = PatchSource.from_arrays([data.dm, data.subhalo], norm["input_mean"], norm["input_std"], device="cpu",
                                     scale=input_scale(norm))
    at_candidates = predict(net, source, data.val_candidates, norm, batch_size=64)
    size = data.val_truth.shape[0]
    painted = paint_cube(data.val_candidates, at_candidates.mean_mass(), data.val_start, size, data.n_grid)
    d = pk_error(painted, data.val_truth, data.val_side, **SELECTION)
    assert np.isclose(d, ckpt["metrics"]["pk_error"], rtol=1e-4)
    z = (predict(net, source, data.val_coords, norm, batch_size=64).mu - norm["target_mean"]) / norm["target_std"]
    zt = (data.val_log_mstar - norm["target_mean"]) / norm["target_std"]
    assert np.isclose(np.mean((z - zt) ** 2), ckpt["metrics"]["val_mse"], rtol=1e-4)
    # the stored calibration paints the calibration voxels' total mass, and load_model applies it
    assert ckpt["calibration"] == calibrated["calibration"] and len(ckpt["calibration"]["log10_mass"]) >= 1
    at_cal = predict(net, source, data.cal_coords, calibrated, batch_size=64)
    assert at_cal.mean_mass().sum() / data.cal_truth.sum() == pytest.approx(1.0, abs=0.1)


def test_select_picks_the_smallest_selection_statistic_and_says_why(trained):
    tmp, _, runs = trained
    d = {k: torch.load(v[0], weights_only=True)["metrics"]["selection"] for k, v in runs.items()}
    winner = select(runs, tmp / "select" / "best.ckpt", tmp / "select" / "summary.tsv")
    assert winner == min(d, key=d.get)
    with open(tmp / "select" / "summary.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert [r["point"] for r in rows][0] == winner and rows[0]["selected"] == "1"
    assert "smallest validation P(k) selection statistic" in rows[0]["reason"]
    assert torch.load(tmp / "select" / "best.ckpt", weights_only=True)["selected_point"] == winner
    net, _ = load_model(tmp / "select" / "best.ckpt")
    assert net.config["patch"] == PRESETS["small"]["patch"]


DDP_SCRIPT = """
import json, sys, torch
from dm2gal.model import PRESETS, model_config
from dm2gal.train import fit, load_training_data
torch.set_num_threads(1)
paths, split, out = json.loads(sys.argv[1])
data = load_training_data(*paths, *split)
res = fit(data, model_config("small", capacity=0.5, outputs=2), learning_rate=3e-3, weight_decay=0.0, batch_size=16,
          steps_per_epoch=8, max_epochs=2, seed=2, selection=dict(mas="CIC", k_range=[0.5, 6.0]),
          ckpt_path=out + "/best.ckpt",
          history_path=out + "/history.csv", accelerator="cpu", devices=2, strategy="ddp", progress=False)
import torch.distributed as dist
with open(out + f"/rank{dist.get_rank()}.json", "w") as f:
    json.dump({"world_size": res["world_size"], "epochs": res["epochs"],
               "selection": [(r["selection"], r["best"]) for r in res["history"]]}, f)
"""


@pytest.mark.slow
def test_training_draws_patches_from_every_training_universe(tmp_path):
    """split.training_universes: the train job stacks the other boxes' inputs behind the pair's,
    so voxels of box 1 (coords[:, 0] >= n) are cut from box 1's fields, and a split made with
    another number of boxes than the job is given is refused."""
    paths, split = _toy_split(tmp_path / "pair", n=24, n_sub=500)
    write_toy(tmp_path / "other", tmp_path / "other_data", n=24, n_sub=500, seed=6)
    f = tmp_path / "other" / "fields"
    extra = (f / "dark/dm_mass.zarr", f / "dark/subhalo_mass.zarr")
    run_split(*paths, tmp_path / "pair/data/dark/output", tmp_path / "pair/data/hydro/output", 99, SPLIT_CFG,
              split[1], split[0], extra_boxes=[(*extra, f / "hydro/stellar_mass.zarr")])
    with pytest.raises(ValueError, match="2 boxes, but 1 were given"):
        load_training_data(*paths, *split)
    data = load_training_data(*paths, *split, extra_inputs=[extra])
    assert (data.coords[:, 0] >= 24).sum() > 0
    norm = data.normalisation
    source = PatchSource.from_boxes([[data.dm, data.subhalo], list(data.extra_inputs[0])], norm["input_mean"],
                                    norm["input_std"], device="cpu", scale=input_scale(norm))
    alone = PatchSource.from_arrays(list(data.extra_inputs[0]), norm["input_mean"], norm["input_std"], device="cpu",
                                    scale=input_scale(norm))
    centres = torch.as_tensor(data.coords[data.coords[:, 0] >= 24][:8], dtype=torch.int64)
    assert torch.equal(source.cut(centres, None, 21), alone.cut(centres - torch.tensor([24, 0, 0]), None, 21))
    torch.set_num_threads(1)
    out = tmp_path / "train"
    res = fit(data, model_config("small", outputs=2), learning_rate=3e-3, weight_decay=1e-5, batch_size=32,
              steps_per_epoch=10, max_epochs=1, seed=1, selection=SELECTION, ckpt_path=str(out / "best.ckpt"),
              history_path=str(out / "history.csv"), progress=False)
    assert res["epochs"] == 1 and (out / "best.ckpt").exists()


def test_ddp_on_cpu_with_two_processes(tmp_path):
    paths, split = _toy_split(tmp_path, n=24, n_sub=400)
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    out = tmp_path / "out"
    arg = json.dumps([[str(p) for p in paths], [str(p) for p in split], str(out)])
    proc = subprocess.run([sys.executable, str(script), arg], capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    # every rank keeps the same selection statistics and best epochs (rank 0's), and returns only once
    # rank 0 has written best.ckpt and history.csv (rank 1 used to find no out/ to write its json in)
    assert all({k: r[k] for k in ("world_size", "epochs")} == {"world_size": 2, "epochs": 2} for r in ranks)
    assert ranks[0]["selection"] == ranks[1]["selection"]
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and int(rows[-1]["step"]) == 16  # steps are counted per process
    net, _ = load_model(out / "best.ckpt")
    assert net.config["channels"][0] == 2


def dry_run(repo, workdir, override, *targets) -> subprocess.CompletedProcess:
    """`snakemake -n` of the checkout's workflow in `workdir`, config.yaml plus `override`."""
    snakemake = str(Path(sys.executable).parent / "snakemake")
    return subprocess.run([snakemake, "-s", str(repo / "Snakefile"), "-d", str(workdir), "--configfile",
                           str(repo / "config.yaml"), str(override), "-n", "--cores", "2", *targets],
                          capture_output=True, text=True, timeout=170)


def test_the_sweep_expands_into_one_gpu_job_per_point(tmp_path, repo):
    over = tmp_path / "sweep.yaml"
    over.write_text(f"results_dir: {tmp_path}/results\ndata_dir: {tmp_path}/data\n"
                    "train:\n  learning_rate: [0.1, 0.01]\n  weight_decay: [0.0, 0.1]\n  capacity: [2.0]\n")
    proc = dry_run(repo, tmp_path, over, f"{tmp_path}/results/select/best.ckpt")
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    out = proc.stdout + proc.stderr
    points = {f"lr{lr}_wd{wd}_cap2" for lr in ("0.1", "0.01") for wd in ("0", "0.1")}
    for p in points:
        assert f"{tmp_path}/results/train/{p}/best.ckpt" in out
    blocks = [b for b in out.split("rule ") if b.startswith("train:")]
    assert len(blocks) == 4 and all("gpu=1" in b for b in blocks)


def test_training_universes_are_made_gridded_and_given_to_split_train_and_hod(tmp_path, repo):
    """split.training_universes in the workflow: each mini-universe is synthesised and gridded
    like a held-out one, and its fields reach the split and train jobs, its manifests the HOD."""
    over = tmp_path / "universes.yaml"
    over.write_text(f"results_dir: {tmp_path}/results\ndata_dir: {tmp_path}/data\n"
                    "split:\n  training_universes: [{name: extra1, seed_offset: 101}]\n")
    proc = dry_run(repo, tmp_path, over, f"{tmp_path}/results/select/best.ckpt",
                   f"{tmp_path}/results/hod/test/bins.json")
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    blocks = {b.split(":", 1)[0]: b for b in (proc.stdout + proc.stderr).split("rule ")}
    fields = f"{tmp_path}/results/fields/universes/extra1"
    assert "universe=extra1" in blocks["synthesize_universe"]
    for rule in ("split", "train"):
        assert f"{fields}/dark/dm_mass.zarr" in blocks[rule] and f"{fields}/dark/subhalo_mass.zarr" in blocks[rule]
    assert f"{fields}/hydro/stellar_mass.zarr" in blocks["split"]
    assert f"{tmp_path}/data/universes/extra1/hydro/manifest.json" in blocks["hod"]
    over.write_text(over.read_text().replace("seed_offset: 101", "seed_offset: 1"))  # heldout1's
    proc = dry_run(repo, tmp_path, over)
    assert proc.returncode != 0 and "split.training_universes[0].seed_offset: 1 is also" in proc.stdout + proc.stderr
