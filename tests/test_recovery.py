"""`make run` as a user meets it after faults (issue 13): a run killed with kill -9 (the
training job and the driver) is completed by `make run` with no extra flag, and a failed
job's reason reaches the terminal, not only its log's path."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dm2gal.locks import clear_stale_lock
from snakemake_run import REPO, SNAKEMAKE, prepare_workdir

FAST = dict(
    train={"learning_rate": [0.002], "steps_per_epoch": 40, "max_epochs": 2},
    paint={"oracle": False, "realisations": 0},
    hod={"realisations": 2},
    evaluation={"universes": []},
)
"""The tiny config cut to one training job and no optional painting."""
POINT = "lr0.002_wd1e-05_cap1"


def env() -> dict:
    """The environment of a run: dm2gal imported from this checkout."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])))


def make_run(workdir: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """`make run` of this checkout in `workdir`, with the tests' environment as the installed one."""
    cmd = ["make", "-f", str(REPO / "Makefile"), "run", f"BIN={SNAKEMAKE.parent}", "STAMP=", "CORES=2"]
    return subprocess.run(cmd, cwd=workdir, env=env(), capture_output=True, text=True, timeout=timeout)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


@pytest.mark.slow
def test_make_run_completes_a_run_killed_mid_epoch(tmp_path: Path):
    work = prepare_workdir(tmp_path / "work", **FAST)
    results = work / "results"
    log = results / "logs" / "train" / f"{POINT}.log"
    driver = subprocess.Popen([str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--cores", "2", "all"],
                              cwd=work, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        wait_for(lambda: log.exists() and "Epoch 0:" in log.read_text(), 600, "the first training epoch")
    finally:
        for pid in [driver.pid, *descendants(driver.pid)]:
            os.kill(pid, signal.SIGKILL)
        driver.wait()
    # A killed training job publishes nothing; the dead driver's lock is left behind.
    assert not (results / "train" / POINT / "best.ckpt").exists()
    assert not (results / "train" / POINT / "history.csv").exists()
    assert list((work / ".snakemake" / "locks").glob("*.lock"))

    run = make_run(work)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    assert "removed the lock that a killed Snakemake run left" in run.stderr
    for done in ("train/" + POINT + "/best.ckpt", "select/best.ckpt", "metrics.json", "report.html"):
        assert (results / done).is_file(), done


def test_failed_job_reason_reaches_the_terminal(tmp_path: Path):
    """A job that fails (a local copy with no snapshot) prints its error with `make run`."""
    empty = tmp_path / "empty"
    empty.mkdir()
    work = prepare_workdir(tmp_path / "work", acquire={"source": "local", "local": {"dark": str(empty), "hydro": str(empty)}},
                           evaluation={"universes": []})
    run = make_run(work, timeout=300)
    assert run.returncode != 0
    out = run.stdout + run.stderr
    assert f"CorruptChunkError: no snapshot of snapshot 99 under {empty}" in out, out[-3000:]


def test_stale_lock_is_cleared_only_without_a_live_snakemake(tmp_path: Path):
    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text("x\n")
    # a stand-in with "snakemake" on its command line, working in the directory
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "snakemake"], cwd=tmp_path)
    try:
        wait_for(lambda: b"snakemake" in Path(f"/proc/{alive.pid}/cmdline").read_bytes(), 10, "the stand-in")
        assert f"still runs here (pid {alive.pid})" in clear_stale_lock(tmp_path)
        assert list(locks.iterdir())
    finally:
        alive.kill()
        alive.wait()
    assert "removed the lock" in clear_stale_lock(tmp_path)
    assert not list(locks.iterdir())
    assert clear_stale_lock(tmp_path) is None
