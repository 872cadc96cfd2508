# Shared by the stage files: config validation, paths, and small input helpers.
import os
from pathlib import Path

from snakemake.utils import validate

from dm2gal.schema import fill_defaults

REPO_DIR = Path(workflow.main_snakefile).resolve().parent

validate(config, "../workflow/schemas/config.schema.yaml")
# validate() sets no defaults below the $refs to the stage schemas: fill them in.
fill_defaults(config, REPO_DIR / "workflow" / "schemas" / "config.schema.yaml")

# Rule scripts import dm2gal from this checkout in any environment that runs
# them (an activated venv, a conda env from envs/, a SLURM job).
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_DIR / "src"), os.environ.get("PYTHONPATH")])))

DATA_DIR = Path(config["data_dir"])
RESULTS_DIR = Path(config["results_dir"])
SNAPSHOT = config["snapshot"]

FINAL_TARGETS = []
"""What `all` builds: each stage appends its final outputs."""


def results(*parts):
    """A path under results_dir, as a string for Snakemake."""
    return str(RESULTS_DIR.joinpath(*parts))


def sim_base(sim):
    """illustris_python's basePath of one run of the pair ('dark' or 'hydro')."""
    return str(DATA_DIR / sim / "output")


def manifest(sim):
    """Written last by acquire: the run is complete once this file exists."""
    return str(DATA_DIR / sim / "manifest.json")


def logs(rule_name, name="log"):
    """The log file of one job: logs/{rule}/{name}.log."""
    return f"logs/{rule_name}/{name}.log"
