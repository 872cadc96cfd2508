"""Rule split: cubes, training voxels, weights and normalisation (dm2gal.split.run_split)."""
from dm2gal.logs import log_to_file
from dm2gal.split import run_split

log_to_file(snakemake.log[0])
run_split(snakemake.input.dm, snakemake.input.subhalo, snakemake.input.stellar,
          snakemake.params.dark_base, snakemake.params.hydro_base, snakemake.params.snapshot,
          snakemake.params.split, snakemake.output.cubes, snakemake.output.train,
          seed=snakemake.params.seed)
