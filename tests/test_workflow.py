"""The workflow as users drive it (issue 6): `snakemake --lint`, a dry run of
`all`, the whole pipeline end to end on the tiny config, and reruns after an
edit of the config that touch exactly the rules depending on the edited value.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from snakemake_run import REPO, TINY_CONFIG, dry_run_jobs, prepare_workdir, rule_blocks, snakemake, snakemake_jobs

ACQUIRE_RULE_FILES = ("acquire.smk", "acquire_synthetic.smk", "acquire_archives.smk")


def rules_defined_in(*smk_files: str) -> set[str]:
    """Names of the rules and checkpoints that rules/<file> defines."""
    names = set()
    for name in smk_files:
        names |= set(re.findall(r"^\s*(?:rule|checkpoint)\s+(\w+)\s*:", (REPO / "rules" / name).read_text(), re.M))
    return names


def test_lint(tmp_path: Path):
    proc = snakemake(prepare_workdir(tmp_path, REPO / "config.yaml"), "--lint", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Congratulations, your workflow is in a good condition!" in out, out[-8000:]


def test_dry_run_default_config(tmp_path: Path):
    """`snakemake -n all` on the embedded default: the DAG builds up to the acquire checkpoint."""
    jobs = dry_run_jobs(prepare_workdir(tmp_path, REPO / "config.yaml"), "all")
    n_held_out = len(yaml.safe_load((REPO / "config.yaml").read_text())["evaluation"]["universes"])
    assert n_held_out >= 2 and jobs.get("synthesize_universe") == n_held_out, jobs
    # dark and hydro of each universe, then the rest after the checkpoint
    assert jobs.get("acquired") == 2 * (1 + n_held_out), jobs


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """The whole pipeline on the tiny config, once for this module (2 cores)."""
    work = prepare_workdir(tmp_path_factory.mktemp("tiny"))
    started = time.monotonic()
    run = snakemake(work, "--cores", "2", "all", timeout=1200)
    (work / "run.log").write_text(run.stderr)
    print(f"\ntiny pipeline end to end: {time.monotonic() - started:.0f} s")
    return work


@pytest.mark.slow
def test_end_to_end(tiny_run: Path):
    cfg = yaml.safe_load(TINY_CONFIG.read_text())
    res = tiny_run / cfg.get("results_dir", "results")
    data = tiny_run / cfg.get("data_dir", "data/mini")
    # The file contract of docs/pipeline.md, stage by stage.
    for sim in ("dark", "hydro"):
        assert (data / sim / "manifest.json").is_file()
    for field in ("dark/dm_mass", "dark/subhalo_mass", "hydro/stellar_mass"):
        assert (res / "fields" / f"{field}.zarr").is_dir()
    assert (res / "split" / "cubes.json").is_file() and (res / "split" / "train.npz").is_file()
    assert list(res.glob("train/*/best.ckpt")) and list(res.glob("train/*/history.csv"))
    assert (res / "select" / "best.ckpt").is_file() and (res / "select" / "summary.tsv").is_file()
    for f in ("stellar_mass.zarr", "catalogue.hdf5"):
        assert (res / "paint" / "test" / f).exists()
    assert not (res / "paint" / "test" / "occupancy.json").exists()  # the galaxy painter needs no threshold
    for f in ("realisation_0.zarr", "catalogue.hdf5", "bins.json"):
        assert (res / "hod" / "test" / f).exists()
    for model in ("truth", "dm2gal", "hod"):
        assert (res / "stats" / "test" / f"{model}.npz").is_file()
    figures = sorted(p.name for p in (res / "figures").iterdir())
    assert "figure1.png" in figures and "figure1.pdf" in figures, figures
    assert all((res / "figures" / f).stat().st_size > 1000 for f in figures)
    metrics = json.loads((res / "metrics.json").read_text())
    assert metrics, "metrics.json is empty"
    # Known answer: the generator redrawn (a statistical twin of the truth) is declared
    # closer to the truth than the HOD on the held-out universe (docs/evaluation.md).
    for statistic in ("pk", "bk"):
        verdict = metrics["verdicts_ideal_realisations"][statistic]["held_out"]
        assert verdict["winner"] == "ideal_realisations", (statistic, verdict)
    assert {p.name for p in (res / "tables").iterdir()} == {"split.html", "select.html"}
    assert "<b>" in (res / "tables" / "select.html").read_text()  # the selected point
    assert "<th>validation</th><th>test</th>" in (res / "tables" / "split.html").read_text()
    # each stage that draws records the seed it derived from the top-level one (dm2gal.seeds)
    from dm2gal.fields import open_field
    from dm2gal.seeds import stage_seed

    assert json.loads((res / "split" / "cubes.json").read_text())["seed"] == stage_seed(cfg["seed"], "split")
    assert open_field(res / "hod" / "test" / "realisation_0.zarr").attrs["seed"] == stage_seed(cfg["seed"], "hod")
    assert open_field(res / "ideal" / "test" / "realisation_0.zarr").attrs["seed"] == \
        stage_seed(cfg["seed"], "ideal_realisations", "test")
    for stage in ("acquired", "split", "figures", "metrics", "training_curves", "table_split"):
        assert list((res / "benchmarks").glob(f"{stage}*")), stage
    # A finished run is up to date: running again would do nothing.
    assert dry_run_jobs(tiny_run, "all") == {}


def _rerun_after(tiny_run: Path, tmp_path: Path, section: str, key: str, value) -> set[str]:
    """Rules a dry run would rerun after setting config[section][key] = value, in a copy of the run."""
    return set(_jobs_after(tiny_run, tmp_path, section, key, value)) - {"all"}


def _jobs_after(tiny_run: Path, tmp_path: Path, section: str, key: str, value) -> dict[str, int]:
    """Jobs per rule of a dry run after setting config[section][key] = value, in a copy of the run."""
    work = tmp_path / "edited"
    # Hard links for the (large) data and results, which a dry run only reads;
    # real copies of config.yaml and Snakemake's metadata, which are edited.
    shared = [(tiny_run / d).resolve() for d in ("data", "results")]

    def link_or_copy(src, dst):
        if any(Path(src).resolve().is_relative_to(d) for d in shared):
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)

    shutil.copytree(tiny_run, work, copy_function=link_or_copy, symlinks=True)
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    assert cfg.get(section, {}).get(key) != value
    if isinstance(value, dict):  # one key of a subsection, the others as they were
        value = {**cfg.get(section, {}).get(key, {}), **value}
    prepare_workdir(work, work / "config.yaml", **{section: {key: value}})
    return dry_run_jobs(work, "all")


@pytest.mark.slow
def test_rerun_after_grid_change(tiny_run: Path, tmp_path: Path):
    """grid.n_grid changes every field: everything after acquisition reruns, acquisition does not."""
    every = set(dry_run_jobs(tiny_run, "--forceall", "all")) - {"all"}
    acquire = rules_defined_in(*ACQUIRE_RULE_FILES) | {"synthesize_universe"}  # rules/evaluate.smk
    n_grid = yaml.safe_load((tiny_run / "config.yaml").read_text())["grid"]["n_grid"]
    rerun = _rerun_after(tiny_run, tmp_path, "grid", "n_grid", n_grid * 2)
    print(f"\ngrid.n_grid {n_grid} -> {2 * n_grid}: reruns {sorted(rerun)}; keeps {sorted(every - rerun)}")
    assert every & acquire and every - acquire
    assert rerun == every - acquire


@pytest.mark.slow
def test_rerun_after_figure_change(tiny_run: Path, tmp_path: Path):
    """figures.dpi changes the figures only (the training curves too): no statistic, painting or
    training reruns."""
    dpi = yaml.safe_load((tiny_run / "config.yaml").read_text()).get("figures", {}).get("dpi", 150)
    rerun = _rerun_after(tiny_run, tmp_path, "figures", "dpi", dpi + 50)
    print(f"\nfigures.dpi {dpi} -> {dpi + 50}: reruns {sorted(rerun)}")
    assert rerun == {"figures", "training_curves"}


@pytest.mark.slow
def test_scheduler_value_reruns_nothing(tiny_run: Path, tmp_path: Path):
    """train.runtime is what SLURM is asked for, not what is computed: nothing reruns."""
    runtime = yaml.safe_load((tiny_run / "config.yaml").read_text())["train"]["runtime"]
    rerun = _rerun_after(tiny_run, tmp_path, "train", "runtime", runtime * 2)
    print(f"\ntrain.runtime {runtime} -> {2 * runtime}: reruns {sorted(rerun)}")
    assert rerun == set()


@pytest.mark.slow
@pytest.mark.parametrize("section, key, value, allowed", [
    ("paint", "max_memory_gb", 3, set()), ("paint", "tile", 16, set()), ("paint", "batch_size", 64, set()),
    ("paint", "device", "cpu", set()),
    ("train", "mem_mb", 3000, set()), ("stats", "threads", 2, set()), ("grid", "box_max_n_grid", 128, set()),
    ("stats", "r_at_k", 1.5, {"metrics", "figures"}),
    ("stats", "pdf", {"metric_log10_mass_min": 9.0}, {"metrics", "figures"}),
    ("stats", "pdf", {"metric_log10_mass_min": 8.5, "metric_min_voxels": 3}, {"metrics", "figures"}),
    ("split", "halo_mass_field", "GroupMass", set()),
    ("stats", "mas", "CIC", set())])
def test_how_not_what_reruns_no_painting_or_statistic(tiny_run: Path, tmp_path: Path, section, key, value, allowed):
    """How a painting is computed (memory, tile, batch, device), what a job is given (memory,
    threads) or how a grid is deposited repaints and recomputes nothing; what the metrics score
    over (r_at_k, the PDF's metric bins) reruns at most the metrics and figures, no painting
    and no statistic (stats.k_range also defines the training's selection statistic, so it
    retrains, as it must); the report-only split.halo_mass_field retrains nothing; a default
    written out in config.yaml (stats.mas) reruns nothing (params compare in sorted key order)."""
    rerun = _rerun_after(tiny_run, tmp_path, section, key, value)
    print(f"\n{section}.{key} -> {value}: reruns {sorted(rerun)}")
    assert rerun <= allowed


WITHOUT_BENCHMARK = {"all", "grid"}
"""Rules that do no work of their own (targets that gather other rules' outputs)."""


def test_every_rule_that_works_has_a_benchmark():
    blocks = rule_blocks()
    missing = {name for name, block in blocks.items() if not re.search(r"^\s+benchmark:", block, re.M)}
    assert "rule all:" in (REPO / "Snakefile").read_text()
    assert missing - WITHOUT_BENCHMARK == set(), missing - WITHOUT_BENCHMARK


@pytest.mark.slow
def test_report_has_the_summary_tables_and_training_curves(tiny_run: Path, tmp_path: Path):
    """`snakemake --report` of the tiny run: the training curves and the two summary tables,
    each under its category, beside the statistics' figures."""
    report = tiny_run / "report.html"
    snakemake(tiny_run, "--report", str(report), timeout=600)
    page = report.read_text()
    for entry in ("training_curves.png", "split.html", "select.html", "verdicts.html",
                  "Summary tables", "Training", "Figure 1"):
        assert entry in page, entry


@pytest.mark.slow
def test_every_rule_declares_its_resources(tiny_run: Path):
    """What a cluster job is given comes from its rule: runtime and mem_mb in every job of
    the tiny run (Snakemake's log shows declared resources only, without a profile)."""
    jobs = {k: v for k, v in snakemake_jobs((tiny_run / "run.log").read_text(), local=True).items()
            if v[0] != "all"}
    missing = {rule: sorted({"runtime", "mem_mb"} - set(res)) for rule, res in jobs.values()
               if {"runtime", "mem_mb"} - set(res)}
    print(f"\nresources of the tiny run's jobs: {sorted({(r, tuple(sorted(res.items()))) for r, res in jobs.values()})}")
    assert jobs and not missing, f"rules without runtime/mem_mb: {missing}"


@pytest.mark.slow
def test_new_sweep_point_trains_only_itself(tiny_run: Path, tmp_path: Path):
    """One more learning rate: one training job, then selection and what the selected model paints."""
    cfg = yaml.safe_load((tiny_run / "config.yaml").read_text())
    rates = cfg["train"]["learning_rate"]
    jobs = _jobs_after(tiny_run, tmp_path, "train", "learning_rate", [*rates, 0.01])
    print(f"\ntrain.learning_rate {rates} -> {[*rates, 0.01]}: jobs {jobs}")
    n_held_out = len(cfg["evaluation"]["universes"])  # each painted whole, its dm2gal statistics
    painted = 1 + n_held_out  # the test cube and every held-out box
    draws = 1 if cfg["paint"].get("realisations", 10) else 0  # dm2gal realisations, drawn and measured
    expected = {"train": 1, "select": 1, "paint": 1, "paint_universe": n_held_out,
                "stats": painted * (1 + draws), "figures": 1, "metrics": 1, "all": 1,
                "training_curves": 1, "table_select": 1}
    if draws:
        expected["paint_realisations"] = painted
    if cfg["paint"]["oracle"]:  # the oracle painting and its statistics use the selected model too
        expected |= {"paint_oracle": 1, "stats": expected["stats"] + 1}
    assert jobs == expected


@pytest.mark.slow
def test_held_out_universes(tiny_run: Path):
    """Each held-out universe is generated apart from the training pair, gridded at the training
    voxel size, painted whole by dm2gal and by hod.realisations HOD draws, and measured over its
    whole box; the test cube gets the ideal painter and the HOD ensemble too."""
    from dm2gal.fields import open_field
    from dm2gal.stats import load_stats

    cfg = yaml.safe_load(TINY_CONFIG.read_text())
    res = tiny_run / cfg.get("results_dir", "results")
    data = tiny_run / cfg.get("data_dir", "data/mini")
    n_real, n_grid, box = cfg["hod"]["realisations"], cfg["grid"]["n_grid"], cfg["acquire"]["synthetic"]["box_size"]
    (name,) = [u["name"] for u in cfg["evaluation"]["universes"]]
    for sim in ("dark", "hydro"):
        assert (data / "universes" / name / sim / "manifest.json").is_file()
    fields = res / "fields" / "universes" / name
    truth_attrs = dict(open_field(fields / "hydro" / "stellar_mass.zarr").attrs)
    assert truth_attrs["n_grid"] == n_grid and truth_attrs["box_size"] == box  # the training voxel size
    assert dict(open_field(fields / "hydro" / "stellar_mass_ideal.zarr").attrs)["quantity"] == "stellar_mass_ideal"
    painted = dict(open_field(res / "paint" / "universes" / name / "stellar_mass.zarr").attrs)
    assert painted["origin"] == [0, 0, 0] and painted["n_grid"] == n_grid and painted["mode"] == "honest"
    assert painted["painter"] == "galaxies" and "occupancy_threshold" not in painted
    for universe in ("test", name):
        realisations = [open_field(res / "hod" / universe / f"realisation_{i}.zarr") for i in range(n_real)]
        assert len({float(r[...].sum()) for r in realisations}) == n_real  # independent draws
        truth = load_stats(res / "stats" / universe / "truth.npz")
        assert truth["n_grid"] == (n_grid if universe == name else realisations[0].shape[0])
        hod = load_stats(res / "stats" / universe / "hod.npz")
        assert hod["realisations"] == n_real and hod["pk"].shape == (n_real, len(truth["k"]))
        ideal = load_stats(res / "stats" / universe / "ideal.npz")
        # the noise-free mean at the true positions: the same mass, tightly correlated on large scales
        assert abs(ideal["total_mass"] / truth["total_mass"] - 1) < 0.15
        assert ideal["r"][0] > 0.9
        dm2gal = load_stats(res / "stats" / universe / "dm2gal.npz")
        assert np.all(np.isfinite(dm2gal["pk"])) and dm2gal["total_mass"] > 0
    train_truth = load_stats(res / "stats" / "test" / "truth.npz")
    whole = open_field(res / "fields" / "hydro" / "stellar_mass.zarr")[...]
    assert float(open_field(fields / "hydro" / "stellar_mass.zarr")[...].sum()) != float(whole.sum())
    assert train_truth["box_size"] < box  # the test cube, not the box


def test_bad_universe_entry_is_refused_naming_the_key(tmp_path: Path):
    """A held-out universe that is the training one, or a malformed entry, stops the workflow at
    load time with the key named."""
    cases = [([{"name": "again", "seed_offset": 0}], "evaluation.universes[0].seed_offset"),
             ([{"name": "x", "seed_offset": 1, "dark_base": "/d"}], "evaluation.universes[0]: "),
             ([{"name": "test", "seed_offset": 3}], "evaluation.universes[0].name: ")]
    for entries, key in cases:
        work = prepare_workdir(tmp_path / str(len(list(tmp_path.iterdir()))), evaluation={"universes": entries})
        proc = snakemake(work, "--dry-run", "all", check=False)
        assert proc.returncode != 0 and key in proc.stdout + proc.stderr, (entries, (proc.stdout + proc.stderr)[-3000:])
