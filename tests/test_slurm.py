"""The SLURM profile on a real single-node SLURM cluster (issue 6).

Brings up munged, slurmctld and slurmd (tests/slurm_cluster.py), runs the
pipeline on the tiny config with `--profile slurm` (the repository's profile,
plus a second profile holding only what this one-node cluster needs), and
checks that every job Snakemake submitted went through slurmctld and completed
there, GPU rules with a GPU request.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml

from slurm_cluster import MIN_JOB_AGE, slurm_cluster
from snakemake_run import REPO, dry_run_jobs, prepare_workdir, snakemake

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

GPU_RESOURCE = re.compile(r"^\s*gpu\s*=\s*1\b", re.M)


def gpu_rules() -> set[str]:
    """Rules whose `resources:` ask for gpu=1, read from rules/*.smk."""
    rules = set()
    for smk in (REPO / "rules").glob("*.smk"):
        for block in re.split(r"\n(?=(?:rule|checkpoint) )", smk.read_text()):
            head = re.match(r"(?:rule|checkpoint) (\w+):", block)
            if head and GPU_RESOURCE.search(block):
                rules.add(head.group(1))
    return rules


def test_profile():
    """The profile a user runs: SLURM executor, fallback resources, retries, a latency wait."""
    profile = yaml.safe_load((REPO / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert {"runtime", "mem_mb"} <= set(profile["default-resources"])
    assert profile["retries"] >= 1 and profile["latency-wait"] >= 30 and profile["jobs"] >= 1


def test_pipeline_through_slurm(tmp_path: Path):
    work = prepare_workdir(tmp_path / "work")
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

        expected = dry_run_jobs(work, "all", env=cluster.env)
        run = snakemake(work, "--profile", str(REPO / "slurm"), "--profile", str(test_profile), "all",
                        env=cluster.env, timeout=900)
        elapsed = time.monotonic() - started
        log = run.stderr
        submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", log))
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

    # Every job Snakemake submitted is a job slurmctld allocated, ran and saw finish.
    assert submitted, "no job was submitted to SLURM"
    assert set(submitted.values()) == set(records), (submitted, sorted(records))
    for job_id, r in records.items():
        assert r["JobState"] == "COMPLETED" and r["ExitCode"] == "0:0", r
        assert r["Partition"] == cluster.partition and r["NodeList"] == cluster.node
        assert f"sched: Allocate JobId={job_id} " in ctld
        assert f"_job_complete: JobId={job_id} done" in ctld
    # ... and they are the jobs of the dry run: every rule, as many times.
    ran = {}
    for r in records.values():
        rule = re.match(r"rule_(\w+?)(?:_wildcards_.*)?$", r["Comment"]).group(1)
        ran[rule] = ran.get(rule, 0) + 1
    for rule, n in expected.items():
        if rule != "all":
            assert ran.get(rule, 0) >= n, (rule, ran, expected)
    # GPU rules were submitted with a GPU request and got the node's GPU.
    gpu = gpu_rules() & set(ran)
    for r in records.values():
        rule = re.match(r"rule_(\w+?)(?:_wildcards_.*)?$", r["Comment"]).group(1)
        assert ("gres:gpu:1" in r.get("TresPerJob", "")) == (rule in gpu), r
    assert (work / "results" / "metrics.json").exists()
