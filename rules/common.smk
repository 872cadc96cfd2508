# Shared by the stage files: config validation, paths, and small input helpers.
# Stage input functions live here too (below), so that no rule file mixes rules and
# functions (snakemake --lint).
import glob
import json
import os
import zlib
from dataclasses import asdict
from pathlib import Path

from dm2gal import tng
from dm2gal.acquire.identity import acquired_with, check_acquired
from dm2gal.config_checks import check_api_key, check_config
from dm2gal.evaluate import check_universes, synthetic_params, run_name as universe_run
from dm2gal.acquire.tng_api import PART_TYPES as TNG_PART_TYPES
from dm2gal.grid import QUANTITIES, FieldSource, SlabPlan, memory_mb, runtime_min
from dm2gal.schema import fill_defaults, validate_config

REPO_DIR = Path(workflow.main_snakefile).resolve().parent
CONFIG_SCHEMA = REPO_DIR / "workflow" / "schemas" / "config.schema.yaml"

# Defaults at every depth (below the $refs to the stage schemas too), then the schema:
# a wrong key or value stops here, named, before any job.
fill_defaults(config, CONFIG_SCHEMA)
validate_config(config, CONFIG_SCHEMA)

# Rule scripts import dm2gal from this checkout in any environment that runs
# them (an activated venv, a conda env from envs/, a SLURM job).
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_DIR / "src"), os.environ.get("PYTHONPATH")])))

DATA_DIR = Path(config["data_dir"])
RESULTS_DIR = Path(config["results_dir"])
SNAPSHOT = config["snapshot"]

FINAL_TARGETS = []
"""What `all` builds: each stage appends its final outputs."""

SYNTHETIC = config["acquire"]["source"] == "synthetic"
UNIVERSES = {u["name"]: u for u in check_universes(config)}
EVAL_UNIVERSES = list(UNIVERSES)
"""The held-out universes (evaluation.universes); "test" is the training universe's test cube."""


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
    entry = UNIVERSES[universe]
    return sim_base(universe_run(universe, sim)) if "seed_offset" in entry else entry[f"{sim}_base"]


def universe_snapshot(universe):
    return SNAPSHOT if universe == "test" else UNIVERSES[universe].get("snapshot", SNAPSHOT)


ACQUIRED_RUNS = list(tng.SIMS) + ([universe_run(u, sim) for u in EVAL_UNIVERSES for sim in tng.SIMS]
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
    """What a job reading a held-out run's catalogue depends on: its manifest, or (an archive
    universe) its group-catalogue files."""
    if universe_run(universe, sim) in ACQUIRED_RUNS:
        return manifest(universe_run(universe, sim))
    base = universe_base(universe, sim)
    return sorted(glob.glob(f"{base}/groups_{universe_snapshot(universe):03d}/*.hdf5"))


def universe_field(universe, sim, quantity):
    """A whole-box grid field of one run of a universe ("test": the training pair)."""
    return results("fields", sim if universe == "test" else universe_run(universe, sim), f"{quantity}.zarr")


def logs(rule_name, name="log"):
    """The log file of one job, beside the results it belongs to: {results_dir}/logs/{rule}/{name}.log."""
    return results("logs", rule_name, f"{name}.log")


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
    return [results("hod", universe, f"realisation_{i}.zarr") for i in range(config["hod"]["realisations"])]


def hod_inputs(wildcards):
    """The training pair, the painted gravity-only run, the grid geometry (the universe's hydro field)."""
    u = wildcards.universe
    inputs = dict(dark=manifest("dark"), hydro=manifest("hydro"), truth=universe_field(u, "hydro", "stellar_mass"))
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
    return [results("paint", painted_dir(universe), f"realisation_{i}.zarr")
            for i in range(config["paint"]["realisations"])]


def ideal_realisation_fields(universe):
    """paint.realisations whole-box fields of the mini-universe's galaxies redrawn from its generator."""
    return [results("ideal", universe, f"realisation_{i}.zarr") for i in range(config["paint"]["realisations"])]


def dark_catalogue_input(universe):
    """What reading a universe's gravity-only subhalo catalogue depends on."""
    return manifest("dark") if universe == "test" else acquired_input(universe, "dark")


def stats_models(universe):
    """The models of one universe's statistics, in dm2gal.metrics.MODELS order (without "truth"):
    dm2gal_oracle on the test cube only (paint.oracle), ideal and ideal_realisations for the
    mini-universe only, the realisations when paint.realisations is not 0."""
    oracle = ["dm2gal_oracle"] if universe == "test" and config["paint"]["oracle"] else []
    draws = ["dm2gal_realisations"] if config["paint"]["realisations"] else []
    ideal = (["ideal"] + (["ideal_realisations"] if draws else [])) if SYNTHETIC else []
    return ["dm2gal", *draws, *oracle, "hod", *ideal]


def model_fields(universe, model):
    """The field(s) one model's statistics read: one path, or the HOD's list of realisations."""
    if model == "dm2gal":
        return painted_field(universe)
    if model == "dm2gal_oracle":
        return results("paint", "test_oracle", "stellar_mass.zarr")
    if model == "dm2gal_realisations":
        return dm2gal_realisation_fields(universe)
    if model == "hod":
        return hod_fields(universe)
    if model == "ideal":
        return universe_field(universe, "hydro", "stellar_mass_ideal")
    if model == "ideal_realisations":
        return ideal_realisation_fields(universe)
    raise ValueError(f"unknown model {model!r}")


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
    from dm2gal.split import read_cubes

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


def train_floor_input():
    """The generator's noise-free mean stellar-mass field, for the validation-MSE floor (synthetic source)."""
    return {"ideal": results("fields", "hydro", "stellar_mass_ideal.zarr")} if SYNTHETIC else {}
