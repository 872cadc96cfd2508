# Shared by the stage files: config validation, paths, and small input helpers.
# Stage input functions live here too (below), so that no rule file mixes rules and
# functions (snakemake --lint).
import glob
import json
import os
from dataclasses import asdict
from pathlib import Path

from dm2gal import models, seeds, tng
from dm2gal.acquire.identity import acquired_with, check_acquired
from dm2gal.config_checks import check_api_key, check_config
from dm2gal.evaluate import check_training_universes, check_universes, synthetic_params, run_name as universe_run
from dm2gal.acquire.tng_api import PART_TYPES as TNG_PART_TYPES
from dm2gal.grid import QUANTITIES, FieldSource, SlabPlan, memory_mb, runtime_min
from dm2gal.schema import fill_defaults, validate_config
from dm2gal.split import read_cubes

REPO_DIR = Path(workflow.main_snakefile).resolve().parent
CONFIG_SCHEMA = REPO_DIR / "workflow" / "schemas" / "config.schema.yaml"

# Defaults at every depth (below the $refs to the stage schemas too), then the schema:
# a wrong key or value stops here, named, before any job.
fill_defaults(config, CONFIG_SCHEMA)
validate_config(config, CONFIG_SCHEMA)


def sorted_keys(value):
    """`value` with every mapping's keys in sorted order, at every depth (lists keep theirs)."""
    if isinstance(value, dict):
        return {key: sorted_keys(value[key]) for key in sorted(value)}
    return [sorted_keys(v) for v in value] if isinstance(value, list) else value


# Snakemake compares a dict param in its key order, and fill_defaults puts the keys a config
# file gives before the defaults it adds: without sorting, writing a default out in
# config.yaml (stats.pdf.n_bins: 26) would rerun every rule whose params hold that section.
_sorted_config = sorted_keys(config)
config.clear()
config.update(_sorted_config)

# Rule scripts import dm2gal from this checkout in any environment that runs
# them (an activated venv, a conda env from envs/, a SLURM job).
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_DIR / "src"), os.environ.get("PYTHONPATH")])))

# --- Config-derived globals: every one that more than one rule file (or an input function
# below) reads is defined here, before any rule file is included. ---

DATA_DIR = Path(config["data_dir"])
RESULTS_DIR = Path(config["results_dir"])
SNAPSHOT = config["snapshot"]

FINAL_TARGETS = []
"""What `all` builds: each stage appends its final outputs."""

ACQUIRE_SOURCE = config["acquire"]["source"]
SYNTHETIC = ACQUIRE_SOURCE == "synthetic"
UNIVERSES = {u["name"]: u for u in check_universes(config)}
EVAL_UNIVERSES = list(UNIVERSES)
"""The held-out universes (evaluation.universes); "test" is the training universe's test cube."""
TRAINING_UNIVERSES = {u["name"]: u for u in check_training_universes(config)}
"""Paired runs whose whole boxes add training voxels and HOD halos (split.training_universes)."""
ALL_UNIVERSES = {**UNIVERSES, **TRAINING_UNIVERSES}

ACQUIRE_PARTICLES = {
    "dark": True,
    "hydro": config["grid"]["stellar_source"] == "particles",
}
"""Whether each run's snapshot (particles) is needed; the hydro run's only for a particle stellar field."""
TNG = config["acquire"]["tng"]
TNG_FIELDS = {"dark": TNG["dark_fields"], "hydro": TNG["hydro_fields"]}
"""The snapshot fields fetched from the TNG web API per run (acquire.source tng)."""

GRID = config["grid"]
GRID_METHOD = GRID["method"]
if GRID_METHOD == "auto":
    GRID_METHOD = "box" if GRID["n_grid"] <= GRID["box_max_n_grid"] else "slabs"
GRID_CHUNK = min(GRID["chunk"], GRID["n_grid"])

SPLIT_REPORT_KEYS = ("halo_mass_field",)
"""split keys that change only the cubes' report in cubes.json, not the cubes, voxels or weights."""

HOD = config["hod"]

FIGURES = {
    "figure1": "Figure 1",
    "pk": "Power spectrum",
    "bk": "Bispectrum",
    "pdf": "Stellar-mass PDF",
    "r": "Cross-correlation and transfer function",
}
"""Figure file stem -> report category (rules/figures.smk)."""


def results(*parts):
    """A path under results_dir, as a string for Snakemake."""
    return str(RESULTS_DIR.joinpath(*parts))


def sim_base(sim):
    """illustris_python's basePath of one run of the pair ('dark' or 'hydro')."""
    return str(DATA_DIR / sim / "output")


def manifest(sim):
    """Written last by acquire: the run is complete once this file exists."""
    return str(DATA_DIR / sim / "manifest.json")


def universe_base(universe, sim):
    """basePath of one run of a universe: the training pair ("test"), generated under
    data_dir/universes/ (synthetic) or the entry's dark_base / hydro_base (archive sources)."""
    if universe == "test":
        return sim_base(sim)
    entry = ALL_UNIVERSES[universe]
    return sim_base(universe_run(universe, sim)) if "seed_offset" in entry else entry[f"{sim}_base"]


def universe_snapshot(universe):
    return SNAPSHOT if universe == "test" else ALL_UNIVERSES[universe].get("snapshot", SNAPSHOT)


ACQUIRED_RUNS = list(tng.SIMS) + ([universe_run(u, sim) for u in ALL_UNIVERSES for sim in tng.SIMS]
                                  if SYNTHETIC else [])
"""Runs that get an acquire manifest (checkpoint `acquired`): the pair, and generated universes."""


def known_box_size():
    """The box side [Mpc/h] as known before any job: acquire.synthetic's, or the acquired gravity-only
    run's (None before it is acquired)."""
    if SYNTHETIC:
        return config["acquire"]["synthetic"]["box_size"]
    return json.loads(Path(manifest("dark")).read_text())["box_size"] if Path(manifest("dark")).exists() else None


# Checks that need only the config (and what is already on disk), so that `snakemake -n`
# refuses what a job would fail on later, or data acquired otherwise than configured.
for _run in ACQUIRED_RUNS:
    check_acquired(DATA_DIR, RESULTS_DIR, _run, acquired_with(config, _run))
check_api_key(config, [str(DATA_DIR / r) for r in ACQUIRED_RUNS if not Path(manifest(r)).exists()], os.environ)
check_config(config, known_box_size())


def acquired_input(universe, sim):
    """What a job reading a held-out or training run's catalogue depends on, as a list: its
    manifest, or (an archive universe) its group-catalogue files."""
    if universe_run(universe, sim) in ACQUIRED_RUNS:
        return [manifest(universe_run(universe, sim))]
    base = universe_base(universe, sim)
    return sorted(glob.glob(f"{base}/groups_{universe_snapshot(universe):03d}/*.hdf5"))


def universe_grid_run(universe, sim):
    """The grid stage's name of one run of a universe: `sim` itself for "test" (the training
    pair), universes/{name}/{sim} for a held-out one."""
    return sim if universe == "test" else universe_run(universe, sim)


def universe_field(universe, sim, quantity):
    """A whole-box grid field of one run of a universe ("test": the training pair)."""
    return results("fields", universe_grid_run(universe, sim), f"{quantity}.zarr")


def training_universe_fields(sim, quantity):
    """One whole-box field of every training universe (split.training_universes), in order."""
    return [universe_field(u, sim, quantity) for u in TRAINING_UNIVERSES]


def stage_seed(stage, *keys):
    """The seed of one stage (and universe) derived from the top-level seed (dm2gal.seeds)."""
    return seeds.stage_seed(config["seed"], stage, *keys)


def logs(rule_name, name="log"):
    """The log file of one job, beside the results it belongs to: {results_dir}/logs/{rule}/{name}.log."""
    return results("logs", rule_name, f"{name}.log")


GRID_RUNS = {sim: (sim_base(sim), SNAPSHOT) for sim in tng.SIMS}
GRID_RUNS.update({r["name"]: (r["base"], r.get("snapshot", SNAPSHOT)) for r in config["extra_runs"]})
if len(GRID_RUNS) != len(tng.SIMS) + len(config["extra_runs"]):
    raise ValueError(f"extra_runs names must be unique and differ from {tng.SIMS}: {config['extra_runs']}")
# the held-out and training universes' runs, gridded like the pair (same n_grid: the training
# voxel size for boxes of the training size; rules/evaluate.smk, rules/split.smk)
GRID_RUNS.update({universe_run(u, sim): (universe_base(u, sim), universe_snapshot(u))
                  for u in ALL_UNIVERSES for sim in tng.SIMS})
"""Every run the grid stage deposits: {run: (illustris_python basePath, snapshot)}."""
GRID_WORK = results("fields", ".work", "{run}", "{quantity}")
"""The slab path's intermediate files of one field (rules/grid.smk)."""
VOXEL_PAINTER = config["train"]["target"] == "voxels"
"""Whether the network paints voxels (train.target: voxels), where an occupancy threshold decides
which voxels hold a galaxy; the galaxy painter paints every gravity-only subhalo and needs none."""
OCCUPANCY = results("paint", "test", "occupancy.json")
SUMMARY_TABLES = {
    "split": results("split", "cubes.json"),
    **({"occupancy": OCCUPANCY} if VOXEL_PAINTER else {}),
    "select": results("select", "summary.tsv"),
}
"""Summary table name (dm2gal.tables.TABLES) -> the file it shows (rules/figures.smk)."""


wildcard_constraints:
    run="|".join(GRID_RUNS),
    quantity="|".join(QUANTITIES),
    model="|".join(["truth", *models.NAMES]),
    chunk=r"\d+",
    slab=r"\d+",


# --- acquire, archive sources (rules/acquire_archives.smk) ---


def tng_listing_file(sim):
    return str(DATA_DIR / sim / "tng_listing.json")


def _tng_inputs(wildcards):
    listing = json.loads(Path(checkpoints.tng_listing.get(sim=wildcards.sim).output[0]).read_text())
    base = sim_base(wildcards.sim)
    files = []
    for kind, path_of in (("snapshot", tng.snapshot_path), ("groupcat", tng.groupcat_path)):
        n = len(listing.get(kind, {}).get("urls", []))
        files += [str(path_of(base, SNAPSHOT, i)) for i in range(n)]
    return files


def _tng_manifest_options(wildcards):
    fields = TNG_FIELDS[wildcards.sim]
    part_types = sorted(TNG_PART_TYPES[p] for p in fields)
    return {
        "part_types": part_types if ACQUIRE_PARTICLES[wildcards.sim] else [],
        "archive_run": TNG[wildcards.sim],
        "fields": fields if ACQUIRE_PARTICLES[wildcards.sim] else {},
    }

# --- grid (rules/grid.smk) ---


def grid_source(wildcards):
    base, snap = GRID_RUNS[wildcards.run]
    return FieldSource(wildcards.run, base, snap, wildcards.quantity, GRID["stellar_source"])


def grid_run_input(wildcards):
    """What a field depends on: the acquire manifest (a checkpoint) of the pair or of a generated
    universe, or the files of an extra run or an archive universe."""
    if wildcards.run in ACQUIRED_RUNS:
        return checkpoints.acquired.get(sim=wildcards.run).output[0]
    src = grid_source(wildcards)
    folder = "snapdir" if src.part_type is not None else "groups"
    return sorted(glob.glob(f"{src.base}/{folder}_{src.snapshot:03d}/*.hdf5"))


def grid_per_chunk(wildcards):
    """Objects in the largest input chunk, for mem_mb: twice the mean particles per snapshot file
    (TNG splits each type roughly evenly), or the whole subhalo catalogue; 0 before acquisition."""
    src = grid_source(wildcards)
    try:
        if src.part_type is None:
            h = tng.groupcat_header(src.base, src.snapshot)
            return int(h.get("Nsubgroups_Total", h.get("Nsubhalos_Total", 0)))
        h = tng.snapshot_header(src.base, src.snapshot)
        return 2 * tng.total_particles(h, src.part_type) / int(h["NumFilesPerSnapshot"])
    except tng.CorruptChunkError:
        return 0


def grid_objects(wildcards):
    """Objects deposited into one field (particles or subhalos; 0 before acquisition), for runtime."""
    src = grid_source(wildcards)
    try:
        if src.part_type is None:
            return grid_per_chunk(wildcards)
        return tng.total_particles(tng.snapshot_header(src.base, src.snapshot), src.part_type)
    except tng.CorruptChunkError:
        return 0


def grid_resources(step, thickness):
    """mem_mb (growing with each retry) and runtime [min] of one grid job, from dm2gal.grid."""
    n = GRID["n_grid"]
    objects = grid_objects if step in ("box", "gather") else grid_per_chunk
    return dict(
        mem_mb=lambda wildcards, attempt: attempt * memory_mb(step, n, thickness, grid_per_chunk(wildcards)),
        runtime=lambda wildcards: runtime_min(step, n, thickness, objects(wildcards)),
    )


def grid_n_chunks(wildcards):
    """Input chunks of a field: snapshot files (from the manifest of an acquired run), or 1 for a catalogue."""
    src = grid_source(wildcards)
    if src.part_type is None:
        return 1
    if wildcards.run in ACQUIRED_RUNS:
        with open(checkpoints.acquired.get(sim=wildcards.run).output[0]) as f:
            return len(json.load(f)["snapshot_chunks"])
    return src.n_chunks()


def grid_buckets(wildcards):
    return expand(f"{GRID_WORK}/scatter_{{chunk}}.h5", run=wildcards.run, quantity=wildcards.quantity,
                  chunk=range(grid_n_chunks(wildcards)))

# --- hod (rules/hod.smk) ---


def hod_fields(universe):
    """The HOD's realisations on a universe: the test cube ("test") or the whole box."""
    return model_fields(universe, "hod")


def hod_inputs(wildcards):
    """The training pair and universes, the painted gravity-only run, the grid geometry (the universe's hydro field)."""
    u = wildcards.universe
    inputs = dict(dark=manifest("dark"), hydro=manifest("hydro"), truth=universe_field(u, "hydro", "stellar_mass"),
                  training=[f for t in TRAINING_UNIVERSES for sim in tng.SIMS for f in acquired_input(t, sim)])
    if u == "test":
        inputs["cubes"] = results("split", "cubes.json")
    else:
        inputs["target"] = acquired_input(u, "dark")
    return inputs

# --- stats (rules/stats.smk) ---


def painted_dir(universe):
    """Where the selected model's honest painting of a universe goes, under results/paint/."""
    return "test" if universe == "test" else f"universes/{universe}"


def painted_universe(painted):
    """The universe of a painted_dir."""
    return painted.removeprefix("universes/")


def painted_field(universe, quantity="stellar_mass"):
    """The selected model's honest painting of a universe (the test cube, or a held-out box
    whole): its mean stellar mass, or with quantity stellar_mass_scatter its log10 scatter."""
    return results("paint", painted_dir(universe), f"{quantity}.zarr")


def dm2gal_realisation_fields(universe):
    """The paint.realisations fields drawn from the painting's predicted scatter."""
    return model_fields(universe, "dm2gal_realisations")


def ideal_realisation_fields(universe):
    """paint.realisations whole-box fields of the mini-universe's galaxies redrawn from its generator."""
    return model_fields(universe, "ideal_realisations")


def dark_catalogue_input(universe):
    """What reading a universe's gravity-only subhalo catalogue depends on."""
    return manifest("dark") if universe == "test" else acquired_input(universe, "dark")


def stats_models(universe):
    """The models of one universe's statistics, in dm2gal.models.REGISTRY order (without "truth")."""
    return models.measured(config, universe, SYNTHETIC)


def model_fields(universe, model):
    """The field(s) one model's statistics read: one path, or an ensemble's list (dm2gal.models)."""
    paths = models.field_paths(config, model, painted_dir(universe), universe, universe_grid_run(universe, "hydro"))
    return [results(p) for p in paths] if isinstance(paths, list) else results(paths)


STATS_FIELDS = {model: model_fields("test", model) for model in ("dm2gal", "dm2gal_oracle")}
STATS_FIELDS["hod"] = hod_fields("test")[0]
"""The test-cube fields Figure 1 shows (the HOD's first realisation; rules/figures.smk)."""


def stats_files():
    """{universe: {"truth" | model: its stats file}} for "test" and every held-out universe."""
    return {u: {m: results("stats", u, f"{m}.npz") for m in ["truth", *stats_models(u)]}
            for u in ["test", *EVAL_UNIVERSES]}


def stats_inputs(wildcards):
    """The universe's hydro field (the truth), the model's field(s), and the split for the test cube."""
    u, model = wildcards.universe, wildcards.model
    inputs = {"hydro": universe_field(u, "hydro", "stellar_mass")}
    if u == "test":
        inputs["cubes"] = results("split", "cubes.json")
    if model != "truth":
        fields = model_fields(u, model)  # a list for the ensembles (hod and the realisations)
        inputs["realisations" if isinstance(fields, list) else "field"] = fields
    return inputs


def stats_mem_mb(wildcards, input):
    """About 16 float32 copies of the region (fields, overdensities, FFTs, bispectrum shells)."""
    try:
        size = read_cubes(input.cubes).test.size if wildcards.universe == "test" else GRID["n_grid"]
    except FileNotFoundError:  # before split has run
        return 2000
    return max(1000, 16 * 4 * size**3 // 2**20 + 500)

# --- figures (rules/figures.smk) ---


def figure_png(name):
    return report(
        results("figures", f"{name}.png"),
        caption=f"../workflow/report/{name}.rst",
        category=FIGURES[name],
        labels={"figure": FIGURES[name], "format": "PNG"},
    )

# --- train (rules/train.smk) ---


def occupancy_input():
    """The voxel painter's occupancy threshold (rule paint_occupancy) as the input `occupancy`;
    none for the galaxy painter."""
    return {"occupancy": OCCUPANCY} if VOXEL_PAINTER else {}


def train_floor_input():
    """The generator's noise-free mean stellar-mass field, for the validation-MSE floor (synthetic source)."""
    return {"ideal": results("fields", "hydro", "stellar_mass_ideal.zarr")} if SYNTHETIC else {}
