"""Resumable training: a run killed mid-epoch (or just after an epoch) and resumed from last.ckpt
ends with the checkpoint and history of a run never stopped."""

import csv

import pytest
import torch

from dm2gal import train
from dm2gal.model import model_config
from test_train import SELECTION, _toy_split


class Killed(RuntimeError):
    """Stands for the end of a job: SIGKILL, a node failure, the time limit."""


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    paths, split = _toy_split(tmp_path_factory.mktemp("resume"), n=24, n_sub=400)
    torch.set_num_threads(1)
    return train.load_training_data(*paths, *split)


def run(data, out, **kw):
    kw.setdefault("schedule", "cosine")
    return train.fit(data, model_config("small", capacity=0.5, outputs=2), learning_rate=3e-3, weight_decay=1e-5,
                     batch_size=16, steps_per_epoch=6, max_epochs=3, seed=3, selection=SELECTION,
                     ckpt_path=out / "best.ckpt", history_path=out / "history.csv", resume_dir=out / "resume",
                     progress=False, **kw)


def rows(out):
    with open(out / "history.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def whole(toy, tmp_path_factory):
    """The uninterrupted run of each schedule."""
    outs = {}
    for schedule in ("cosine", "plateau"):
        outs[schedule] = tmp_path_factory.mktemp(schedule)
        run(toy, outs[schedule], schedule=schedule, patience=0)
        assert not (outs[schedule] / "resume").exists()  # removed once best.ckpt and history.csv are written
    return outs


@pytest.fixture
def uninterrupted(whole):
    return whole["cosine"]


@pytest.mark.parametrize("kill_at, schedule", [(8, "cosine"), (6, "cosine"), (12, "plateau")],
                         ids=["mid-epoch", "after-an-epoch", "after-an-epoch-plateau"])
def test_a_killed_run_resumes_to_the_uninterrupted_result(toy, whole, tmp_path, monkeypatch, kill_at, schedule):
    out, uninterrupted = tmp_path / "killed", whole[schedule]
    step = train.Dm2GalModule.training_step

    def dies(self, batch, batch_idx):
        if self.global_step == kill_at:
            raise Killed(f"killed before step {kill_at}")
        return step(self, batch, batch_idx)

    monkeypatch.setattr(train.Dm2GalModule, "training_step", dies)
    with pytest.raises(Killed):
        run(toy, out, schedule=schedule, patience=0, checkpoint_minutes=0)  # a checkpoint after every batch (and at every epoch's end)
    assert (out / "resume" / train.LAST_CHECKPOINT).exists() and not (out / "best.ckpt").exists()
    saved = torch.load(out / "resume" / train.LAST_CHECKPOINT, weights_only=False)
    assert saved["global_step"] == kill_at
    monkeypatch.setattr(train.Dm2GalModule, "training_step", step)
    res = run(toy, out, schedule=schedule, patience=0)
    assert res["epochs"] == 3 and not (out / "resume").exists()
    assert rows(out) == rows(uninterrupted)
    a, b = (torch.load(p / "best.ckpt", weights_only=True) for p in (uninterrupted, out))
    assert a["epoch"] == b["epoch"] and repr(a["metrics"]) == repr(b["metrics"]) and a["calibration"] == b["calibration"]
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_a_last_checkpoint_of_another_run_is_not_resumed(toy, uninterrupted, tmp_path, monkeypatch):
    out = tmp_path / "other"
    step = train.Dm2GalModule.training_step

    def dies(self, batch, batch_idx):
        if self.global_step == 4:
            raise Killed("killed")
        return step(self, batch, batch_idx)

    monkeypatch.setattr(train.Dm2GalModule, "training_step", dies)
    with pytest.raises(Killed):
        train.fit(toy, model_config("small", capacity=0.5, outputs=2), learning_rate=1e-2, weight_decay=1e-5,
                  batch_size=16, steps_per_epoch=6, max_epochs=3, seed=3, selection=SELECTION,
                  ckpt_path=out / "best.ckpt", history_path=out / "history.csv", resume_dir=out / "resume",
                  checkpoint_minutes=0, progress=False)
    monkeypatch.setattr(train.Dm2GalModule, "training_step", step)
    run(toy, out, patience=0)  # another learning rate: starts afresh
    assert rows(out) == rows(uninterrupted)
