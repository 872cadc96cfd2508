# Shared by every rule file: config validation, paths, and small input helpers.
from pathlib import Path

from snakemake.utils import validate

validate(config, "../workflow/schemas/config.schema.yaml")

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
