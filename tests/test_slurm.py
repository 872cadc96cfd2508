"""The SLURM profile on a real single-node SLURM cluster (issue 6).

Brings up munged, slurmctld and slurmd (tests/slurm_cluster.py), runs the
pipeline on the tiny config with `--profile slurm` (the repository's profile,
plus a second profile holding only what this one-node cluster needs), and
checks that every job Snakemake submitted went through slurmctld and completed
there, GPU rules with a GPU request.
"""
from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from slurm_cluster import MIN_JOB_AGE, slurm_cluster
from snakemake_run import REPO, SNAKEMAKE, prepare_workdir, snakemake, snakemake_jobs

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)")


def test_profile():
    """The profile a user runs: SLURM executor, fallback resources, retries, a latency wait."""
    profile = yaml.safe_load((REPO / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert {"runtime", "mem_mb"} <= set(profile["default-resources"])
    assert profile["retries"] >= 1 and profile["latency-wait"] >= 30 and profile["jobs"] >= 1
    # `--profile slurm` resolves from the repository root, and Snakemake accepts every key.
    proc = subprocess.run([str(SNAKEMAKE), "--profile", "slurm", "--dry-run", "--quiet", "rules", "all"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and ("Job stats:" in out or "Nothing to be done" in out), out[-5000:]


def slurm_mb(value: str) -> float:
    """MB of a SLURM memory field like '5024M' or '8G'."""
    return float(value[:-1]) * {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}[value[-1]]


def test_pipeline_through_slurm(tmp_path: Path):
    # The tiny config with one training point, no oracle painting and no held-out universe:
    # every rule of the training universe's pipeline, in 27 jobs (each starts Snakemake twice
    # inside SLURM). The held-out universes' rules are the same rules on other wildcards
    # (their resources: test_workflow.py::test_every_rule_declares_its_resources).
    work = prepare_workdir(tmp_path / "work", train={"learning_rate": [0.001]}, paint={"oracle": False},
                           evaluation={"universes": []})
    started = time.monotonic()
    with slurm_cluster(tmp_path / "slurm") as cluster:
        up = time.monotonic() - started
        profile = yaml.safe_load((REPO / "slurm" / "config.yaml").read_text())
        overrides = {
            # The two values a user edits: this cluster has one partition and no accounts.
            "default-resources": {**profile["default-resources"], "slurm_partition": cluster.partition,
                                  "mem_mb": min(profile["default-resources"]["mem_mb"], cluster.mem_mb)},
            # No accounting database: `sacct` does not answer, `squeue` does for
            # MinJobAge seconds after a job ends.
            "slurm-status-command": "squeue",
            "slurm-init-seconds-before-status-checks": 2,
            "seconds-between-status-checks": 2,
            "slurm-keep-successful-logs": True,
            "latency-wait": 5,
            "retries": 0,
            "max-threads": cluster.cpus,
            "verbose": True,
        }
        assert MIN_JOB_AGE >= 3 * overrides["slurm-init-seconds-before-status-checks"]
        test_profile = tmp_path / "profile"
        test_profile.mkdir()
        (test_profile / "config.yaml").write_text(yaml.safe_dump(overrides))

        run = snakemake(work, "--profile", str(REPO / "slurm"), "--profile", str(test_profile), "all",
                        env=cluster.env, timeout=900)
        elapsed = time.monotonic() - started
        log = run.stderr
        jobs = snakemake_jobs(log)
        submitted = dict(SUBMITTED.findall(log))
        sbatch = re.findall(r"sbatch call: (.*)", log)
        records = {r["JobId"]: r for r in cluster.jobs()}
        ctld = cluster.ctld_log()

    print(f"\ncluster up in {up:.1f} s; pipeline through SLURM in {elapsed:.1f} s; "
          f"{len(submitted)} SLURM jobs")
    for job_id in sorted(records, key=int):
        r = records[job_id]
        print(f"  slurm job {job_id}: {r.get('Comment', '?')} {r['JobState']} exit {r['ExitCode']} "
              f"cpus {r['NumCPUs']} mem {r.get('MinMemoryNode', '?')} tres-per-job {r.get('TresPerJob', '-')}")
    for call in sbatch:
        if "--gpus" in call:
            print("  GPU sbatch line:", re.sub(r' --wrap=".*"', ' --wrap="..."', call))

    # Every job Snakemake ran went to SLURM: slurmctld allocated, ran and saw it finish.
    assert jobs and set(jobs) == set(submitted), (sorted(jobs), sorted(submitted))
    assert set(submitted.values()) == set(records), (submitted, sorted(records))
    rules = {rule for rule, _ in jobs.values()}
    assert {"synthesize", "acquired", "split", "train", "select", "paint", "hod", "stats", "figures", "metrics"} <= rules
    for jobid, slurm_id in submitted.items():
        rule, resources = jobs[jobid]
        r = records[slurm_id]
        assert r["JobState"] == "COMPLETED" and r["ExitCode"] == "0:0", r
        assert r["Partition"] == cluster.partition and r["NodeList"] == cluster.node
        assert r["Comment"].startswith(f"rule_{rule}"), (rule, r["Comment"])
        # slurmctld starts a job from its main scheduler or from the backfill scheduler, logged apart
        assert (f"sched: Allocate JobId={slurm_id} " in ctld
                or f"sched/backfill: _start_job: Started JobId={slurm_id} " in ctld), slurm_id
        assert f"_job_complete: JobId={slurm_id} done" in ctld
        # The rule's resources became the job's limits, a GPU request included.
        assert r["TimeLimit"] == f"{int(resources['runtime']) // 60:02d}:{int(resources['runtime']) % 60:02d}:00", r
        assert slurm_mb(r["MinMemoryNode"]) == int(resources["mem_mb"]), r
        assert ("gres:gpu:1" in r.get("TresPerJob", "")) == (resources.get("gpu", "0") == "1"), (rule, r)
    assert any(resources.get("gpu") == "1" for _, resources in jobs.values()), "no GPU job in the run"
    assert (work / "results" / "metrics.json").exists()
