"""Run the repository's workflow with Snakemake in a scratch working directory.

The workflow's outputs (data/, results/ with its logs/, .snakemake/) land in the scratch
directory, never in the repository. Used by tests/test_workflow.py and
tests/test_slurm.py.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
JOB_BLOCK = re.compile(r"^(localrule|localcheckpoint|rule|checkpoint) (\w+):\n((?:    .*\n)+)", re.M)
"""One job in Snakemake's log: its rule and indented details (jobid, resources, ...)."""
TINY_CONFIG = REPO / "tests" / "data" / "tiny_config.yaml"
"""The mini-universe shrunk until the whole pipeline runs in minutes on 2 cores."""


def prepare_workdir(workdir: Path, config: Path = TINY_CONFIG, **overrides) -> Path:
    """Write `config` (with top-level sections updated by `overrides`) as workdir/config.yaml."""
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load(config.read_text())
    for section, values in overrides.items():
        if isinstance(values, dict):
            cfg.setdefault(section, {}).update(values)
        else:
            cfg[section] = values
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return workdir


def snakemake(workdir: Path, *args: str, env: dict | None = None, timeout: float = 600,
              check: bool = True) -> subprocess.CompletedProcess:
    """`snakemake --snakefile REPO/Snakefile <args>` run in `workdir` (with workdir/config.yaml)."""
    cmd = [str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--configfile", "config.yaml", *args]
    env = dict(env if env is not None else os.environ)
    # The scratch directory is outside the repository: make sure the dm2gal in
    # this checkout is the one imported, installed or not.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}) in {workdir}:\n"
                             f"{proc.stdout[-5000:]}\n{proc.stderr[-15000:]}")
    return proc


def dry_run_jobs(workdir: Path, *targets: str, env: dict | None = None) -> dict[str, int]:
    """Rule -> number of jobs that a dry run of `targets` would execute (from the job-stats table)."""
    proc = snakemake(workdir, "--dry-run", "--quiet=rules", *targets, env=env)
    counts: dict[str, int] = {}
    text = proc.stdout + proc.stderr
    table = re.search(r"Job stats:\n(.*?)(?:\n\n|\Z)", text, re.S)
    if table is None:
        if "Nothing to be done" in text:
            return counts
        raise AssertionError(f"no job-stats table in the dry run:\n{text}")
    for line in table.group(1).splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1].isdigit() and fields[0] != "total":
            counts[fields[0]] = int(fields[1])
    return counts


def rule_blocks() -> dict[str, str]:
    """Rule name -> its definition's text (up to the next rule), from rules/*.smk.

    Rules defined in a loop (`rule:` with `name: f"..."`) appear under their
    name's template, e.g. `tng_{_kind}_chunk`.
    """
    header = re.compile(r"[ \t]*(?:rule|checkpoint)(?:[ \t]+(\w+))?[ \t]*:")
    blocks = {}
    for smk in (REPO / "rules").glob("*.smk"):
        for block in re.split(r"\n(?=[ \t]*(?:rule|checkpoint)(?:[ \t]+\w+)?[ \t]*:)", "\n" + smk.read_text()):
            head = header.match(block)
            if head is None:
                continue
            name = head.group(1) or re.search(r"^\s+name:\s*f?[\"']([^\"']+)", block, re.M).group(1)
            blocks[name] = block
    return blocks


def snakemake_jobs(log: str, local: bool = False) -> dict[str, tuple[str, dict[str, str]]]:
    """Snakemake job id -> (rule, resources) of the jobs in a Snakemake log: those sent to a
    cluster executor, or with `local` also those run on the local machine (all of a local run)."""
    jobs = {}
    for kind, rule, body in JOB_BLOCK.findall(log):
        jobid = re.search(r"^    jobid: (\d+)$", body, re.M)
        if (kind.startswith("local") and not local) or jobid is None:
            continue
        resources = re.search(r"^    resources: (.*)$", body, re.M)
        pairs = (kv.split("=", 1) for kv in resources.group(1).split(", ")) if resources else ()
        jobs[jobid.group(1)] = (rule, dict(pairs))
    return jobs
