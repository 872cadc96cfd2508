"""Rule split: cubes, training voxels, weights and normalisation (dm2gal.split.run_split), and the
galaxy painter's samples (dm2gal.galaxy_samples)."""
from dm2gal.galaxy_samples import write_galaxy_samples
from dm2gal.logs import log_to_file
from dm2gal.seeds import record_seed
from dm2gal.split import run_split

log_to_file(snakemake.log[0])
# the report-only keys (SPLIT_REPORT_KEYS) from the config: not params, so changing them retrains nothing
cfg = dict(snakemake.params.split, halo_mass_field=snakemake.config["split"]["halo_mass_field"])
run_split(snakemake.input.dm, snakemake.input.subhalo, snakemake.input.stellar,
          snakemake.params.dark_base, snakemake.params.hydro_base, snakemake.params.snapshot,
          cfg, snakemake.output.cubes, snakemake.output.train, seed=snakemake.params.seed,
          extra_boxes=list(zip(snakemake.input.extra_dm, snakemake.input.extra_subhalo, snakemake.input.extra_stellar)))
write_galaxy_samples(snakemake.output.galaxies, snakemake.params.dark_base, snakemake.params.hydro_base,
                     snakemake.params.snapshot, snakemake.output.cubes, snakemake.output.train,
                     [tuple(run) for run in snakemake.params.extra_runs])
record_seed(snakemake.output.cubes, snakemake.params.seed)
