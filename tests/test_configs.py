"""The config presets (configs/*.yaml, config.yaml, the tests' tiny config) validate
against workflow/schemas/config.schema.yaml, and defaults reach every depth (issue 6)."""
from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from dm2gal.schema import fill_defaults, validate_config
from snakemake_run import SNAKEMAKE, snakemake_jobs

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
PRESETS = [REPO / "config.yaml", *sorted((REPO / "configs").glob("*.yaml")), REPO / "tests" / "data" / "tiny_config.yaml"]


def load(path: Path) -> dict:
    """A preset as Snakemake sees it: `--configfile` merged over the embedded config.yaml."""
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    for key, value in yaml.safe_load(path.read_text()).items():
        cfg[key] = _merge(cfg.get(key), value)
    return cfg


def _merge(base, update):
    if isinstance(base, dict) and isinstance(update, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in update.items()}}
    return update


def validated(cfg: dict) -> dict:
    """The config as rules/common.smk leaves it: defaults at every depth, then validated."""
    cfg = fill_defaults(copy.deepcopy(cfg), SCHEMA)
    validate_config(cfg, SCHEMA)
    return cfg


def keys(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        out.add(prefix + k)
        if isinstance(v, dict):
            out |= keys(v, f"{prefix}{k}.")
    return out


def test_presets_exist():
    assert {p.name for p in PRESETS} >= {"config.yaml", "tng100.yaml", "camels.yaml", "tiny_config.yaml"}


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_preset_validates(preset: Path):
    cfg = validated(load(preset))
    # Every key of the embedded default exists after defaults are filled in.
    assert keys(validated(load(REPO / "config.yaml"))) <= keys(cfg)


def test_tng100_is_the_paper():
    cfg = validated(load(REPO / "configs" / "tng100.yaml"))
    assert cfg["acquire"]["source"] == "tng" and cfg["snapshot"] == 99
    assert (cfg["acquire"]["tng"]["hydro"], cfg["acquire"]["tng"]["dark"]) == ("TNG100-1", "TNG100-1-Dark")
    assert cfg["grid"]["n_grid"] == 2048
    assert cfg["split"]["units"] == "voxels"
    assert (cfg["split"]["validation"]["size"], cfg["split"]["test"]["size"]) == (840, 868)
    assert cfg["split"]["min_stellar_mass"] == 1e8
    assert cfg["split"]["weight_bins"] == 100 and cfg["split"]["weight_max_mass"] == pytest.approx(10**11.5)
    assert cfg["split"]["weight_power"] == 1  # inverse counts, whatever config.yaml says
    assert cfg["model"]["preset"] == "paper"
    lr, wd = cfg["train"]["learning_rate"], cfg["train"]["weight_decay"]
    assert min(lr) == pytest.approx(1e-5) and max(lr) == pytest.approx(1e-1)
    assert min(wd) == 0 and max(wd) == pytest.approx(1e-1)
    assert len(cfg["train"]["capacity"]) > 1
    assert cfg["train"]["gpus_per_job"] >= 1 and cfg["paint"]["device"] == "cuda"


def test_wrong_value_names_the_key():
    cfg = load(REPO / "config.yaml")
    cfg["grid"]["method"] = "fft"
    with pytest.raises(Exception) as err:
        validated(cfg)
    assert "method" in str(err.value) and "slabs" in str(err.value)


def test_fill_defaults_through_refs():
    """A section given in part gets its other keys, at every depth, from the stage schemas."""
    cfg = {"acquire": {"synthetic": {"galaxies": {"scatter": 0.3}}}, "grid": {"n_grid": 64}}
    for stage in ("split", "model", "train", "paint", "hod", "stats", "figures"):
        cfg[stage] = {}
    validate(cfg, str(SCHEMA))
    assert "method" not in cfg["grid"]  # Snakemake's validate() stops at the $ref
    fill_defaults(cfg, SCHEMA)
    grid_schema = yaml.safe_load((SCHEMA.parent / "grid.schema.yaml").read_text())
    assert cfg["grid"]["method"] == grid_schema["properties"]["method"]["default"]
    assert cfg["grid"]["n_grid"] == 64
    galaxies = cfg["acquire"]["synthetic"]["galaxies"]
    assert galaxies["scatter"] == 0.3 and "log_m1" in galaxies


def preset_jobs(preset: Path, tmp_path: Path) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job of a dry run of `all` with the preset, as
    `snakemake --configfile <preset> all` from a fresh checkout would plan them."""
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    env = dict(os.environ, TNG_API_KEY="dry-run")  # a tng preset needs a key before downloading
    proc = subprocess.run([str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--configfile", str(preset),
                           "--dry-run", "all"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return [job for job in snakemake_jobs(proc.stdout + proc.stderr, local=True).values() if job[0] != "all"]


def test_tng100_plans_the_paper_on_a_gpu_cluster(tmp_path: Path):
    jobs = preset_jobs(REPO / "configs" / "tng100.yaml", tmp_path)
    rules = [rule for rule, _ in jobs]
    assert "tng_listing" in rules  # downloads first; the chunk jobs follow from the archive's listing
    assert "grid_scatter" in rules and "grid_box" not in rules  # 2048^3 is gridded by slabs ...
    for rule, res in jobs:
        assert {"runtime", "mem_mb"} <= set(res), (rule, res)
        if rule.startswith("grid_"):
            assert int(res["mem_mb"]) < 16000, (rule, res)  # ... each job holding one slab, not the box
    train = [res for rule, res in jobs if rule == "train"]
    assert len(train) == 5 * 3 * 3
    assert all(res["gpu"] == "1" and int(res["runtime"]) == 1440 for res in train)
    assert all(res.get("gpu") == "1" for rule, res in jobs if rule in ("paint", "paint_oracle"))


def test_camels_plans_its_dag(tmp_path: Path):
    jobs = preset_jobs(REPO / "configs" / "camels.yaml", tmp_path)
    rules = {rule for rule, _ in jobs}
    assert {"camels_snapshot", "camels_groupcat"} <= rules
    assert all({"runtime", "mem_mb"} <= set(res) for _, res in jobs), jobs
    assert sum(rule == "train" for rule, _ in jobs) == 3 * 2
